"""Fault handling in the frontend, over real Ray shard actors that are killed mid-flight:
a restarting shard is hidden by the server's retries; with those off, a client using the
documented service config retries by itself (honouring the server's pushback); a shard that
is truly gone gives UNAVAILABLE with retry advice and health NOT_SERVING."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.rules import RuleConfig
from server.app import SERVICE_NAME, BackgroundServer, JobrecServer, ServerConfig
from server.errors import RETRY_PUSHBACK_METADATA_KEY
from server.generated.jobrec.v1 import recommendation_pb2 as pb
from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc
from tests.test_retrieval_oracle import REF, make_postings
from workers.backend import RecommendationBackend
from workers.engine.sharding import ShardingConfig

SERVICE_CONFIG = Path(__file__).resolve().parent.parent / "server" / "service_config.json"


@pytest.fixture(scope="module")
def data():
    return make_postings(4, 150, spread_deg=0.5, n_companies=12)


def _backend(data, tmp_path, max_restarts):
    df, vec = data
    return RecommendationBackend.build(
        df, vec, sharding=ShardingConfig(num_shards=2, coarse_res=4, max_restarts=max_restarts),
        rules=RuleConfig(ref_date=REF), snapshot_dir=tmp_path,
    )  # fmt: skip


def _serve(backend, **cfg):
    server = JobrecServer(
        backend, None, backend.rules, ServerConfig(port=0, health_interval_s=0, **cfg)
    )
    bg = BackgroundServer(server)
    bg.start()
    return server, bg


def _kill_all(backend):
    deadline = time.monotonic() + 30
    while not backend.health(timeout=2)["ok"]:  # still restarting from an earlier kill
        assert time.monotonic() < deadline, "shards never came back"
        time.sleep(0.2)
    for st in backend.shard_stats():
        os.kill(st["pid"], signal.SIGKILL)


def _ids(resp):
    return [(r.posting_id, round(r.score, 5)) for r in resp.recommendations]


def test_server_retries_hide_a_restarting_shard(ray_local, data, tmp_path):
    backend = _backend(data, tmp_path, max_restarts=3)
    server, bg = _serve(backend)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{bg.port}") as ch:
            stub = pb_grpc.RecommendationServiceStub(ch)
            pids = data[0]["posting_id"].to_list()[:5]
            want = {
                p: _ids(stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=p, k=4)))
                for p in pids
            }
            _kill_all(backend)
            t0 = time.monotonic()
            for p in pids:  # no error reaches the caller while the actors restart
                assert (
                    _ids(
                        stub.SimilarPostings(
                            pb.SimilarPostingsRequest(posting_id=p, k=4), timeout=30
                        )
                    )
                    == want[p]
                )
            assert (
                stub.GetPosting(pb.GetPostingRequest(posting_id=pids[0]), timeout=30).posting_id
                == pids[0]
            )
            assert time.monotonic() - t0 < 30
        assert bg.call(server.check_backend()) is True
    finally:
        bg.stop()
        backend.shutdown()


def test_client_service_config_retries_on_pushback(ray_local, data, tmp_path):
    backend = _backend(data, tmp_path, max_restarts=3)
    server, bg = _serve(backend, backend_retries=0)  # the server gives up at once
    config = json.loads(SERVICE_CONFIG.read_text())
    assert config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    pid = data[0]["posting_id"][0]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{bg.port}") as plain:
            stub = pb_grpc.RecommendationServiceStub(plain)
            want = _ids(stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid, k=4)))
            _kill_all(backend)
            with pytest.raises(grpc.RpcError) as err:  # without a retry policy: one failure
                stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid, k=4), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "retry in" in err.value.details()
            trailing = dict(err.value.trailing_metadata() or ())
            assert int(trailing[RETRY_PUSHBACK_METADATA_KEY]) > 0
        options = [("grpc.service_config", SERVICE_CONFIG.read_text()), ("grpc.enable_retries", 1)]
        with grpc.insecure_channel(f"127.0.0.1:{bg.port}", options=options) as ch:
            stub = pb_grpc.RecommendationServiceStub(ch)
            _kill_all(backend)
            got = stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid, k=4), timeout=15)
            assert _ids(got) == want
    finally:
        bg.stop()
        backend.shutdown()


def test_unavailable_with_advice_and_not_serving_when_a_shard_is_gone(ray_local, data, tmp_path):
    backend = _backend(data, tmp_path, max_restarts=0)
    server, bg = _serve(backend, backend_retries=2, backend_backoff_s=0.05)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{bg.port}") as ch:
            stub = pb_grpc.RecommendationServiceStub(ch)
            pid = data[0]["posting_id"][0]
            stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid))
            _kill_all(backend)
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid), timeout=20)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "retry in" in err.value.details() and "Traceback" not in err.value.details()
            assert len(err.value.details()) < 400
            assert time.monotonic() - t0 < 10
            assert bg.call(server.check_backend()) is False
            health = health_pb2_grpc.HealthStub(ch)
            resp = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        bg.stop()
        backend.shutdown()
