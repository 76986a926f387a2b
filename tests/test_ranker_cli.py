"""The learned ranker through the product: ``jobrec train-ranker`` writes a gated version,
``jobrec match --ranker`` obeys every rule (the scalar oracle) and equals ``RecommendJobs``
of a :class:`MatchService` holding the same ranker (batch == online), a ranker of another
feature version is refused, a worse version is kept aside, and a frontend's
:class:`RankerSlot` swaps to a promoted version without a restart."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import polars as pl
import pytest

from core.matching import MatchConfig, reason_text
from core.ranker import DRIVER_TEXTS
from jobrec.cli import main
from tests.helpers import matching_files
from tests.test_seekers import _oracle_ok
from workers.jobs.match import MATCH_SCHEMA, excluded_by_seeker
from workers.matching.ranker_store import RankerSlot, current_version, load_ranker, publish

REF = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("rank")
    return (d, *matching_files(d, 900, 240, 31, 5, REF))


def _args(d, *extra):
    return ["--seekers", str(d / "seekers.parquet"), "--postings", str(d / "postings.parquet"),
            "--model", str(d / "model"), *extra]


@pytest.fixture(scope="module")
def trained(files):
    d, *_ = files
    rc = main(["train-ranker", *_args(d, "--interactions", str(d / "interactions.parquet"),
                                      "--out", str(d / "ranker"), "--rounds", "40")])
    assert rc == 0
    return d / "ranker"


def test_train_ranker_publishes_a_first_version(files, trained):
    name = current_version(trained)
    assert name is not None
    v = trained / "versions" / name
    manifest = json.loads((v / "manifest.json").read_text())
    assert manifest["feature_version"] >= 1 and manifest["fingerprint"]
    assert json.loads((v / "decision.json").read_text())["promoted"]
    assert json.loads((v / "metrics.json").read_text())["ranker"]["seekers"] > 0


def test_match_with_ranker_obeys_the_rules_and_equals_online(files, trained, ray_local):
    d, postings, seekers, inter = files
    out = d / "ranked.parquet"
    rc = main(["match", *_args(d, "--interactions", str(d / "interactions.parquet"),
                               "--ranker", str(trained), "--k", "20", "--ref-date",
                               REF.isoformat(), "--out", str(out))])
    assert rc == 0
    frame = pl.read_parquet(out)
    assert frame.schema == pl.Schema(MATCH_SCHEMA) and frame.height > 0
    prow = {r["posting_id"]: r for r in postings.iter_rows(named=True)}
    srow = {r["seeker_id"]: r for r in seekers.iter_rows(named=True)}
    ex = excluded_by_seeker(inter)
    for sid, pid in frame.select("seeker_id", "posting_id").iter_rows():
        assert _oracle_ok(srow[sid], prow[pid], REF, ex.get(sid, frozenset()))
    per = frame.group_by("seeker_id").agg(pl.col("posting_id").count().alias("n"),
                                          pl.col("score").diff().max().alias("up"))
    assert per["n"].max() <= 20
    assert (per["up"].fill_null(0.0) <= 1e-6).all()  # scores never rise down a list
    comp = frame.join(postings.select("posting_id", "company"), on="posting_id")
    assert comp.group_by("seeker_id", "company").len()["len"].max() <= 2
    # the learned driver leads the reasons where one lifted the posting
    led = frame.filter(pl.col("reasons").str.contains("ranker_reason"))
    assert led.height > 0
    for r in led.head(50).iter_rows(named=True):
        why = json.loads(r["reasons"])
        assert why["ranker_reason"] in DRIVER_TEXTS and r["reason_text"] == reason_text(why)
        assert r["reason_text"].startswith(why["ranker_reason"])

    # online: the same ranker in a MatchService answers the same lists
    from workers.jobs.match_cli import encode_sides
    from workers.matching.service import MatchService

    sv, pv = encode_sides(d / "model", seekers, postings)
    svc = MatchService(postings, pv, seekers, sv, None, interactions=inter,
                       config=MatchConfig(ref_date=REF), ranker=RankerSlot(trained))
    for sid in frame["seeker_id"].unique().sort().head(25).to_list():
        got = svc.recommend_jobs(seeker_id=sid, k=20)
        want = frame.filter(pl.col("seeker_id") == sid).sort("rank")
        assert [m.item_id for m in got] == want["posting_id"].to_list()
        np.testing.assert_allclose([m.score for m in got], want["score"].to_numpy(), rtol=1e-6)
        assert [reason_text(m.reasons) for m in got] == want["reason_text"].to_list()


def test_other_feature_version_is_refused(files, trained, capsys):
    d, *_ = files
    bad = d / "old_ranker"
    shutil.copytree(trained / "versions" / current_version(trained), bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["feature_version"] = 0
    (bad / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    rc = main(["match", *_args(d, "--ranker", str(bad), "--out", str(d / "x.parquet"))])
    assert rc == 2
    assert "feature version 0" in capsys.readouterr().err


def test_gate_keeps_a_worse_version_aside_and_slot_swaps_a_better(files, trained, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(trained, root)
    slot = RankerSlot(root, check_s=0.0)
    first = slot.version
    ranker = load_ranker(root)
    hit = ranker.manifest["metrics"]["ranker"]["hit@120"]
    worse = publish(root, ranker, {"hit@120": hit + 0.01},
                    now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert not worse["promoted"] and "kept aside" in worse["reason"]
    assert current_version(root) == first and not slot.refresh() and slot.version == first
    before = slot.current()
    better = publish(root, ranker, {"hit@120": hit},  # not worse: promoted
                     now=dt.datetime(2030, 1, 2, tzinfo=dt.UTC))
    assert better["promoted"] and current_version(root) == better["version"] != first
    after = slot.current()  # check_s = 0: the next request already sees the new version
    assert slot.version == better["version"] and after is not before
    # a version that does not load leaves the serving one in place
    (root / "versions" / "broken").mkdir()
    (root / "CURRENT").write_text("broken\n")
    assert not slot.refresh() and slot.current() is after


@pytest.fixture(scope="module")
def ranked_batch(files, trained, tmp_path_factory):
    """`jobrec match --ranker` at k = 20: the lists the serving tests must give."""
    d, *_ = files
    out = tmp_path_factory.mktemp("ranked") / "ranked.parquet"
    assert main(["match", *_args(d, "--interactions", str(d / "interactions.parquet"),
                                 "--ranker", str(trained), "--k", "20", "--ref-date",
                                 REF.isoformat(), "--out", str(out))]) == 0
    return pl.read_parquet(out)


def test_serve_with_ranker_answers_the_batch_and_takes_a_first_version_live(
        files, trained, ranked_batch, ray_local, tmp_path):
    """`jobrec serve --seekers --ranker R` over gRPC == `jobrec match --ranker R`; started on
    a ranker directory no training has written yet, it serves the formula and switches to the
    first promoted version without a restart."""
    import time

    import grpc

    from jobrec.cli import build_parser
    from server.app import BackgroundServer
    from server.cli import build_server
    from server.generated.jobrec.v1 import matching_pb2 as mpb
    from server.generated.jobrec.v1 import matching_pb2_grpc as mpb_grpc

    d, postings, seekers, inter = files
    frame = ranked_batch
    formula = tmp_path / "formula.parquet"
    assert main(["match", *_args(d, "--interactions", str(d / "interactions.parquet"),
                                 "--k", "20", "--ref-date", REF.isoformat(),
                                 "--out", str(formula))]) == 0
    plain = pl.read_parquet(formula)
    sids = frame["seeker_id"].unique().sort().head(15).to_list()

    def serve(ranker_dir):
        args = build_parser().parse_args(
            # no encoder flags: serve and `jobrec match` both encode by the refresh's rule
            ["serve", "--port", "0", "--shards", "1", "--ref-date", REF.isoformat(),
             "--interactions", str(d / "interactions.parquet"), "--ranker", str(ranker_dir),
             *_args(d)])
        server, backend, _ = build_server(args)
        bg = BackgroundServer(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{bg.start()}")
        return bg, backend, channel, mpb_grpc.MatchingServiceStub(channel)

    def lists(stub):
        return {s: [m.posting_id for m in stub.RecommendJobs(
            mpb.RecommendJobsRequest(seeker_id=s, k=20), timeout=30).matches] for s in sids}

    def want(f):
        return {s: f.filter(pl.col("seeker_id") == s).sort("rank")["posting_id"].to_list()
                for s in sids}

    bg, backend, channel, stub = serve(trained)
    try:
        assert lists(stub) == want(frame)
        led = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sids[0], k=20), timeout=30)
        assert all(m.reason_text for m in led.matches)
    finally:
        channel.close(), bg.stop(), backend.shutdown()

    empty = tmp_path / "fresh"  # a new deployment: the daily training has not run yet
    bg, backend, channel, stub = serve(empty)
    try:
        assert lists(stub) == want(plain) != want(frame)
        name = current_version(trained)
        shutil.copytree(trained / "versions" / name, empty / "versions" / name)
        (empty / "CURRENT").write_text(name + "\n")
        time.sleep(5.5)  # RankerSlot re-reads CURRENT at most every 5 s
        assert lists(stub) == want(frame)
    finally:
        channel.close(), bg.stop(), backend.shutdown()


def test_serve_ranker_needs_seekers(files, trained):
    from jobrec.cli import build_parser
    from server.cli import build_server

    d, *_ = files
    args = build_parser().parse_args(["serve", "--port", "0", "--postings",
                                      str(d / "postings.parquet"), "--model", str(d / "model"),
                                      "--ranker", str(trained)])
    with pytest.raises(SystemExit, match="--seekers"):
        build_server(args)


def test_serve_match_root_with_ranker_answers_the_batch_from_the_shards(
        files, trained, ranked_batch, ray_local, tmp_path):
    """`jobrec serve --match-root R --ranker K`: the shard actors hold the ranker and order
    RecommendJobs as `jobrec match --ranker K` does; a second frontend needs no seeker table;
    a root deployed without a ranker refuses one."""
    import grpc

    from core.errors import InvalidInputError
    from jobrec.cli import build_parser
    from server.app import BackgroundServer
    from server.cli import build_server
    from server.generated.jobrec.v1 import matching_pb2 as mpb
    from server.generated.jobrec.v1 import matching_pb2_grpc as mpb_grpc
    from workers.matching.deployment import write_deployment
    from workers.matching.sharded import AreaPlan

    d, postings, seekers, inter = files
    frame = ranked_batch
    sids = frame["seeker_id"].unique().sort().head(15).to_list()
    want = {s: frame.filter(pl.col("seeker_id") == s).sort("rank")["posting_id"].to_list()
            for s in sids}
    root = tmp_path / "deploy"
    base = ["serve", "--port", "0", "--shards", "2", "--ref-date", REF.isoformat(),
            "--postings", str(d / "postings.parquet"), "--model", str(d / "model"),
            "--match-root", str(root), "--ranker", str(trained)]
    ends = []
    try:
        for argv in (base + ["--seekers", str(d / "seekers.parquet"), "--interactions",
                             str(d / "interactions.parquet")], base):
            server, backend, _ = build_server(build_parser().parse_args(argv))
            bg = BackgroundServer(server)
            channel = grpc.insecure_channel(f"127.0.0.1:{bg.start()}")
            ends.append((channel, bg, backend))
            stub = mpb_grpc.MatchingServiceStub(channel)
            got = {s: stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=s, k=20),
                                         timeout=30).matches for s in sids}
            assert {s: [m.posting_id for m in g] for s, g in got.items()} == want
            texts = {m.reason_text.split(" · ")[0] for g in got.values() for m in g}
            assert texts & set(DRIVER_TEXTS)  # the learned reasons come from the shards
    finally:
        for channel, bg, backend in ends:
            channel.close(), bg.stop(), backend.shutdown()
    plain = tmp_path / "plain"
    vec = np.zeros((postings.height, 8), np.float32)
    write_deployment(plain, AreaPlan.build(postings, 2), postings, vec, seekers,
                     np.zeros((seekers.height, 8), np.float32))
    from server.runtime import load_sharded_matching

    with pytest.raises(InvalidInputError, match="without a ranker"):
        load_sharded_matching(plain, None, None, None, None, None, ranker=trained)
