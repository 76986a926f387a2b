"""RecordInteractions: the durable interaction log, exclusion at once, batch == online after
recording, all-or-nothing rejects with the right status codes, and a server killed after the
acknowledgement still excludes the posting when it comes back."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import polars as pl
import pytest

from bench.matching_serve import serve_in_thread
from core.errors import InvalidInputError, NotConfiguredError, NotFoundError
from core.matching import MatchConfig
from core.seekers import INTERACTION_SCHEMA, seeker_text
from core.synth import generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from encoding.text import posting_text
from server.auth import load_key_scopes
from server.generated.jobrec.v1 import matching_pb2 as mpb
from server.generated.jobrec.v1 import matching_pb2_grpc as mpb_grpc
from workers.jobs.match import run_match
from workers.matching.interaction_log import InteractionLog, is_interaction_log, read_interactions
from workers.matching.service import LexicalEncoder, MatchService

REF = dt.date(2026, 11, 20)
ROOT = Path(__file__).resolve().parents[1]


def _frame(rows):
    return pl.DataFrame(rows, schema=INTERACTION_SCHEMA, orient="row")


@pytest.fixture(scope="module")
def data():
    postings = generate_postings(1500, 11, ref_date=REF)
    seekers = generate_seekers(80, 11, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, 11, days=2, ref_date=REF)
    enc = LexicalEncoder(96)
    pv = enc.encode([posting_text(r) for r in postings.iter_rows(named=True)])
    sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    return {"postings": postings, "seekers": seekers, "inter": inter, "enc": enc, "pv": pv,
            "sv": sv, "cfg": MatchConfig(k=30, ref_date=REF)}


def _service(d, log_dir=None):
    return MatchService(d["postings"], d["pv"], d["seekers"], d["sv"], d["enc"],
                        interactions=d["inter"], num_shards=2, config=d["cfg"],
                        interaction_log=None if log_dir is None else InteractionLog(log_dir))


def _seeker_with_list(service, d, n=3):
    for sid in d["seekers"].filter(pl.col("active"))["seeker_id"].to_list():
        got = service.recommend_jobs(seeker_id=sid)
        if len(got) >= n:
            return sid, [m.item_id for m in got]
    raise AssertionError("no seeker with a list")


def test_log_appends_reads_back_and_compacts(tmp_path):
    t0 = dt.datetime(2026, 11, 1, 9)
    d = tmp_path / "log"
    log = InteractionLog(d, segment_rows=2)
    batches = [_frame([("s1", f"p{i}", "applied", t0 + dt.timedelta(minutes=i, microseconds=i))])
               for i in range(3)]
    batches.append(_frame([("s2", "p9", "shown", t0), ("s2", "p9", "shown", t0)]))  # repeats kept
    for b in batches:
        log.append(b)
    assert len(list((d / "log").glob("*.jsonl"))) == 2  # rotated after two rows
    log.close()
    with open(sorted((d / "log").glob("*.jsonl"))[-1], "ab") as fh:
        fh.write(b'[["s9", "p9", "appl')  # a write torn by a crash: never acknowledged
    want = pl.concat(batches)
    assert is_interaction_log(d) and not is_interaction_log(tmp_path)
    again = InteractionLog(d)
    assert again.read().equals(want)
    extra = _frame([("s3", "p1", "hidden", t0)])
    again.append(extra)  # after the torn line: a new segment, nothing glued to the torn bytes
    assert read_interactions(d).equals(pl.concat([want, extra]))
    keep = sorted((d / "log").glob("*.jsonl"))[-1]
    saved = keep.read_bytes()
    assert again.compact() == 3
    assert again.read().equals(pl.concat([want, extra]))
    assert not list((d / "log").glob("*.jsonl")) and len(list(d.glob("base-*.parquet"))) == 1
    # a crash after the new base was written but before the folded segments were removed
    keep.write_bytes(saved)
    assert InteractionLog(d).read().equals(pl.concat([want, extra]))  # no row twice
    more = _frame([("s4", "p2", "clicked", t0)])
    log2 = InteractionLog(d)
    log2.append(more)
    assert log2.read().equals(pl.concat([want, extra, more]))
    with pytest.raises(InvalidInputError):
        log2.append([("s", "p", "liked", t0)])
    with pytest.raises(InvalidInputError):
        log2.append(pl.DataFrame({"seeker_id": ["s"]}))


def test_recorded_application_leaves_the_next_list(data, tmp_path):
    service = _service(data, tmp_path / "il")
    sid, before = _seeker_with_list(service, data)
    applied, hidden = before[0], before[1]
    pv = next(p for p in data["postings"]["posting_id"].to_list() if p not in before)
    n = service.record_interactions([
        {"seeker_id": sid, "posting_id": applied, "event": "applied", "at": None},
        {"seeker_id": sid, "posting_id": hidden, "event": "hidden",
         "at": dt.datetime(2026, 11, 20, 9, tzinfo=dt.timezone(dt.timedelta(hours=9)))},
        {"seeker_id": sid, "posting_id": pv, "event": "clicked", "at": None},
    ])
    assert n == 3
    after = [m.item_id for m in service.recommend_jobs(seeker_id=sid)]
    assert applied not in after and hidden not in after
    assert set(after) - {applied, hidden} and after != before
    cands = service.recommend_candidates(applied, k=100)
    assert sid not in [m.item_id for m in cands]
    logged = InteractionLog(tmp_path / "il").read()
    assert logged.height == 3 and logged["at"][1] == dt.datetime(2026, 11, 20, 0)  # UTC
    # batch on the base log plus what was recorded == the online list
    frame, _ = run_match(data["seekers"], data["postings"], data["sv"], data["pv"], data["cfg"],
                         num_shards=2, interactions=pl.concat([data["inter"], logged]),
                         use_ray=False, progress=False)
    want = frame.filter(pl.col("seeker_id") == sid).sort("rank")["posting_id"].to_list()
    assert after == want
    # a restart reads the log back: the same list
    restarted = _service(data, tmp_path / "il")
    assert [m.item_id for m in restarted.recommend_jobs(seeker_id=sid)] == after


def test_a_bad_row_rejects_the_whole_call(data, tmp_path):
    service = _service(data, tmp_path / "il")
    sid = data["seekers"]["seeker_id"][0]
    pid = data["postings"]["posting_id"][0]
    good = {"seeker_id": sid, "posting_id": pid, "event": "applied", "at": None}
    for bad, err in [({"event": "liked"}, InvalidInputError),
                     ({"seeker_id": "nobody"}, NotFoundError),
                     ({"posting_id": "P-none"}, NotFoundError),
                     ({"at": "yesterday"}, InvalidInputError)]:
        with pytest.raises(err, match=r"interactions\[1\]"):
            service.record_interactions([good, {**good, **bad}])
    with pytest.raises(InvalidInputError):
        service.record_interactions([])
    assert InteractionLog(tmp_path / "il").read().height == 0
    assert pid not in service.excluded.get(sid, frozenset())
    with pytest.raises(NotConfiguredError):
        _service(data).record_interactions([good])


def _md():
    return (("authorization", "Bearer k1"),)


def test_record_interactions_over_grpc(data, tmp_path):
    service = _service(data, tmp_path / "il")
    scopes = load_key_scopes(env={"JOBREC_API_KEYS": "k1"})
    port, stop = serve_in_thread(service, scopes)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = mpb_grpc.MatchingServiceStub(ch)
            sid, before = _seeker_with_list(service, data)
            r = stub.RecordInteractions(mpb.RecordInteractionsRequest(interactions=[
                mpb.Interaction(seeker_id=sid, posting_id=before[0], event="applied",
                                at="2026-11-20T10:00:00")]), metadata=_md())
            assert r.recorded == 1
            got = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid), metadata=_md())
            assert before[0] not in [m.posting_id for m in got.matches]
            for x, code in [
                (mpb.Interaction(seeker_id=sid, posting_id=before[1], event="applied", at="noon"),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (mpb.Interaction(seeker_id=sid, posting_id=before[1], event="bookmarked"),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (mpb.Interaction(seeker_id="nobody", posting_id=before[1], event="applied"),
                 grpc.StatusCode.NOT_FOUND),
            ]:
                with pytest.raises(grpc.RpcError) as err:
                    stub.RecordInteractions(mpb.RecordInteractionsRequest(interactions=[x]),
                                            metadata=_md())
                assert err.value.code() == code
            with pytest.raises(grpc.RpcError) as err:
                stub.RecordInteractions(mpb.RecordInteractionsRequest(), metadata=_md())
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            got = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid), metadata=_md())
            assert before[1] in [m.posting_id for m in got.matches]  # rejected: not excluded
            assert InteractionLog(tmp_path / "il").read().height == 1
    finally:
        stop()
    no_log = _service(data)
    port, stop = serve_in_thread(no_log, scopes)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.RpcError) as err:
                mpb_grpc.MatchingServiceStub(ch).RecordInteractions(
                    mpb.RecordInteractionsRequest(interactions=[mpb.Interaction(
                        seeker_id=sid, posting_id=before[0], event="applied")]), metadata=_md())
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        stop()


_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np, polars as pl
    from bench.matching_serve import serve_in_thread
    from core.matching import MatchConfig
    from server.auth import load_key_scopes
    from workers.matching.interaction_log import InteractionLog
    from workers.matching.service import LexicalEncoder, MatchService
    d = sys.argv[1]
    import datetime as dt
    svc = MatchService(pl.read_parquet(d + "/p.parquet"), np.load(d + "/pv.npy"),
                       pl.read_parquet(d + "/s.parquet"), np.load(d + "/sv.npy"),
                       LexicalEncoder(96), interactions=pl.read_parquet(d + "/i.parquet"),
                       config=MatchConfig(k=30, ref_date=dt.date(2026, 11, 20)),
                       interaction_log=InteractionLog(d + "/log"))
    port, _ = serve_in_thread(svc, load_key_scopes(env={"JOBREC_API_KEYS": "k1"}))
    print(port, flush=True)
    time.sleep(600)
""")


def _start_child(d: Path):
    p = subprocess.Popen([sys.executable, "-c", _CHILD, str(d)], stdout=subprocess.PIPE,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    line = p.stdout.readline()
    if not line.strip():
        p.kill()
        raise AssertionError("the child server did not start")
    return p, int(line)


def test_killed_after_the_ack_still_excluded(data, tmp_path):
    import numpy as np

    data["postings"].write_parquet(tmp_path / "p.parquet")
    data["seekers"].write_parquet(tmp_path / "s.parquet")
    data["inter"].write_parquet(tmp_path / "i.parquet")
    np.save(tmp_path / "pv.npy", data["pv"])
    np.save(tmp_path / "sv.npy", data["sv"])
    sid, before = _seeker_with_list(_service(data), data)
    child, port = _start_child(tmp_path)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            r = mpb_grpc.MatchingServiceStub(ch).RecordInteractions(
                mpb.RecordInteractionsRequest(interactions=[mpb.Interaction(
                    seeker_id=sid, posting_id=before[0], event="applied")]), metadata=_md())
            assert r.recorded == 1
        child.send_signal(signal.SIGKILL)  # right after the acknowledgement, no clean shutdown
        child.wait(30)
        child, port = _start_child(tmp_path)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            got = mpb_grpc.MatchingServiceStub(ch).RecommendJobs(
                mpb.RecommendJobsRequest(seeker_id=sid), metadata=_md())
        ids = [m.posting_id for m in got.matches]
        assert before[0] not in ids and ids[:1] != before[:1]
    finally:
        child.kill()
        child.wait(30)
