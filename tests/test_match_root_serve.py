"""``jobrec serve --match-root``: matching answered by named shard actors that several
frontends share. The first frontend writes the deployment; a second needs only the root; an
interaction recorded through one is excluded at once through the other; a frontend that goes
away (and one started after it) loses nothing; the answers are the ``jobrec match`` batch's."""

from __future__ import annotations

import datetime as dt

import grpc
import polars as pl
import pytest

from jobrec.cli import build_parser, main
from server.generated.jobrec.v1 import matching_pb2 as mpb
from server.generated.jobrec.v1 import matching_pb2_grpc as mpb_grpc
from tests.helpers import matching_files

REF = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("match_root")
    matching_files(d, 900, 120, 41, 3, REF)
    return d


class Frontend:
    def __init__(self, argv) -> None:
        from server.app import BackgroundServer
        from server.cli import build_server

        self.server, self.backend, _ = build_server(build_parser().parse_args(argv))
        self.bg = BackgroundServer(self.server)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.bg.start()}")
        self.stub = mpb_grpc.MatchingServiceStub(self.channel)

    def jobs(self, sid, k=20):
        return [m.posting_id for m in self.stub.RecommendJobs(
            mpb.RecommendJobsRequest(seeker_id=sid, k=k), timeout=30).matches]

    def close(self) -> None:
        self.channel.close()
        self.bg.stop()
        self.backend.shutdown()


def _serve(d, *extra):
    return ["serve", "--port", "0", "--shards", "2", "--ref-date", REF.isoformat(),
            "--postings", str(d / "postings.parquet"), "--model", str(d / "model"), *extra]


def test_two_frontends_share_the_match_shards(files, tmp_path, ray_local):
    d = files
    out = tmp_path / "batch.parquet"
    assert main(["match", "--seekers", str(d / "seekers.parquet"), "--postings",
                 str(d / "postings.parquet"), "--model", str(d / "model"), "--interactions",
                 str(d / "interactions.parquet"), "--k", "20", "--ref-date", REF.isoformat(),
                 "--out", str(out)]) == 0
    batch = pl.read_parquet(out)
    sids = batch["seeker_id"].unique(maintain_order=True).head(12).to_list()
    want = {s: batch.filter(pl.col("seeker_id") == s).sort("rank")["posting_id"].to_list()
            for s in sids}
    root = tmp_path / "deploy"
    with pytest.raises(SystemExit, match="no matching deployment"):
        Frontend(_serve(d, "--match-root", str(root)))
    a = Frontend(_serve(d, "--match-root", str(root), "--seekers", str(d / "seekers.parquet"),
                        "--interactions", str(d / "interactions.parquet")))
    b = Frontend(_serve(d, "--match-root", str(root)))  # only the root: no seeker table
    try:
        assert {s: a.jobs(s) for s in sids} == want
        assert {s: b.jobs(s) for s in sids} == want
        sid = sids[0]
        top = want[sid][0]
        resp = a.stub.RecordInteractions(mpb.RecordInteractionsRequest(interactions=[
            mpb.Interaction(seeker_id=sid, posting_id=top, event="applied")]), timeout=30)
        assert resp.recorded == 1
        assert top not in b.jobs(sid, k=100)  # through the other frontend, at once
        with pytest.raises(grpc.RpcError) as err:
            b.stub.RecordInteractions(mpb.RecordInteractionsRequest(interactions=[
                mpb.Interaction(seeker_id="nobody", posting_id=top, event="applied")]),
                timeout=30)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        a.close()
    c = Frontend(_serve(d, "--match-root", str(root)))  # a frontend started after one left
    try:
        assert top not in b.jobs(sid, k=100) and top not in c.jobs(sid, k=100)
        assert {s: c.jobs(s) for s in sids[1:]} == {s: want[s] for s in sids[1:]}
        # every shard actor gone for good: MatchingService turns NOT_SERVING on the health
        # check (RecommendationService does not), and a frontend started then brings the
        # shards back from the deployment; the others find them by name; nothing is lost
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from workers.actors import kill_named

        kill_named(c.server.matching.calls.names)
        health = health_pb2_grpc.HealthStub(c.channel)

        def status(name):
            c.bg.call(c.server.check_backend())
            return health.Check(health_pb2.HealthCheckRequest(service=name), timeout=30).status
        assert status("jobrec.v1.MatchingService") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert status("jobrec.v1.RecommendationService") == health_pb2.HealthCheckResponse.SERVING
        e = Frontend(_serve(d, "--match-root", str(root)))
        try:
            for f in (e, c, b):
                assert top not in f.jobs(sid, k=100)
                assert f.jobs(sids[1]) == want[sids[1]]
            assert status("jobrec.v1.MatchingService") == health_pb2.HealthCheckResponse.SERVING
        finally:
            e.close()
    finally:
        b.close(), c.close()
    from workers.matching.generations import serving_dir
    from workers.matching.interaction_log import read_interactions

    logged = read_interactions(serving_dir(root) / "interactions")
    assert logged.select("seeker_id", "posting_id", "event").rows() == [(sid, top, "applied")]


def test_match_root_refusals(files, tmp_path):
    from server.cli import build_server

    d = files
    for extra, msg in ((["--interaction-log", str(tmp_path / "log")], "drop --interaction-log"),):
        args = build_parser().parse_args(_serve(d, "--match-root", str(tmp_path / "r"),
                                                "--seekers", str(d / "seekers.parquet"), *extra))
        with pytest.raises(SystemExit, match=msg):
            build_server(args)


def test_match_deploy_switches_the_frontends_without_a_restart(files, tmp_path, ray_local):
    """A frontend started with ``--match-wait`` before any generation serves the first one
    once it is written. ``jobrec match-deploy`` writes the next day as a new generation while
    two frontends serve the first: the one that checks first switches; a write through the other, refused
    by the sealed generation, goes to the new one; an application recorded before stays
    excluded; a seeker the day's table no longer has is gone."""
    d = files
    root = tmp_path / "gens"
    w = Frontend(_serve(d, "--match-root", str(root), "--match-wait"))  # before any generation
    with pytest.raises(grpc.RpcError) as err:
        w.jobs("anyone")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    a = Frontend(_serve(d, "--match-root", str(root), "--seekers", str(d / "seekers.parquet"),
                        "--interactions", str(d / "interactions.parquet")))
    b = Frontend(_serve(d, "--match-root", str(root)))
    try:
        w.bg.call(w.server.check_backend())  # the first generation appeared: served from it
        assert w.server.matching.generation == "gen-000001"
        assert w.jobs(pl.read_parquet(d / "seekers.parquet")["seeker_id"][0]) == \
            a.jobs(pl.read_parquet(d / "seekers.parquet")["seeker_id"][0])
        sk = pl.read_parquet(d / "seekers.parquet")
        sids = sk["seeker_id"].to_list()
        sid = sids[0]
        gone = next(s for s in reversed(sids) if a.jobs(s))
        top = a.jobs(sid)[0]
        assert a.stub.RecordInteractions(mpb.RecordInteractionsRequest(interactions=[
            mpb.Interaction(seeker_id=sid, posting_id=top, event="applied")]),
            timeout=30).recorded == 1
        assert a.jobs(gone)
        sk.filter(pl.col("seeker_id") != gone).write_parquet(tmp_path / "day2.parquet")
        assert main(["match-deploy", "--match-root", str(root), "--postings",
                     str(d / "postings.parquet"), "--seekers", str(tmp_path / "day2.parquet"),
                     "--model", str(d / "model"), "--shards", "3"]) == 0
        assert a.server.matching.generation == "gen-000001"  # not checked yet: still serving
        assert a.jobs(gone)
        a.bg.call(a.server.check_backend())
        assert a.server.matching.generation == "gen-000002"
        top1 = b.jobs(sids[1])[0]  # b still reads the sealed generation ...
        assert b.stub.RecordInteractions(mpb.RecordInteractionsRequest(interactions=[
            mpb.Interaction(seeker_id=sids[1], posting_id=top1, event="applied")]),
            timeout=60).recorded == 1  # ... and its write went to the new one
        assert b.server.matching.generation == "gen-000002"
        for f in (a, b):
            assert top not in f.jobs(sid, k=100) and top1 not in f.jobs(sids[1], k=100)
            with pytest.raises(grpc.RpcError) as err:
                f.jobs(gone)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert len(a.server.matching.calls) == 3
    finally:
        a.close(), b.close(), w.close()
