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
    from workers.matching.interaction_log import read_interactions

    logged = read_interactions(root / "interactions")
    assert logged.select("seeker_id", "posting_id", "event").rows() == [(sid, top, "applied")]


def test_match_root_refusals(files, tmp_path):
    from server.cli import build_server

    d = files
    for extra, msg in ((["--interaction-log", str(tmp_path / "log")], "drop --interaction-log"),):
        args = build_parser().parse_args(_serve(d, "--match-root", str(tmp_path / "r"),
                                                "--seekers", str(d / "seekers.parquet"), *extra))
        with pytest.raises(SystemExit, match=msg):
            build_server(args)
