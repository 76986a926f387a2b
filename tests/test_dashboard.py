"""The Grafana dashboard only queries metrics a real server exports, and the shard and store
metrics carry values after a health check (real server over real Ray shards and a store)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc
import pytest

from server.app import BackgroundServer, JobrecServer, ServerConfig
from server.generated.jobrec.v1 import recommendation_pb2 as pb
from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc
from server.runtime import build_backend
from tests.test_retrieval_oracle import REF, make_postings
from workers.store.generation import open_store

DASHBOARD = Path(__file__).resolve().parent.parent / "ops" / "grafana" / "jobrec-dashboard.json"
_NAME = re.compile(r"\b(jobrec_[a-z0-9_]+)\b")


def _exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]


def _scrape(port: int) -> tuple[set[str], dict[str, list[str]]]:
    """(names announced by # TYPE, sample lines by sample name) of a /metrics page."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    announced, samples = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            announced |= (
                {name}
                | (
                    {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
                    if kind == "histogram"
                    else set()
                )
                | ({f"{name}_total"} if kind == "counter" else set())
            )
        elif line and not line.startswith("#"):
            samples.setdefault(re.split(r"[{ ]", line, maxsplit=1)[0], []).append(line)
    return announced, samples


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    df, vec = make_postings(9, 120, spread_deg=0.5, n_companies=10)
    store = open_store(str(tmp_path_factory.mktemp("store")))
    backend, rules = build_backend(df, vec, shards=2, ref_date=REF, store=store)
    server = JobrecServer(
        backend, None, rules, ServerConfig(port=0, metrics_port=0, health_interval_s=0)
    )
    bg = BackgroundServer(server)
    bg.start()
    yield bg, server, backend, df, vec
    bg.stop()
    backend.shutdown()


def test_dashboard_queries_only_exported_metrics(served):
    bg, server, backend, df, vec = served
    with grpc.insecure_channel(f"127.0.0.1:{bg.port}") as ch:
        stub = pb_grpc.RecommendationServiceStub(ch)
        stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=df["posting_id"][0], k=3))
        with pytest.raises(grpc.RpcError):
            stub.GetPosting(pb.GetPostingRequest(posting_id="nope"))
    backend.upsert(df[:1], vec[:1])  # a durable write: the store-append histogram
    assert bg.call(server.check_backend()) is True
    announced, samples = _scrape(server.metrics_port)
    used = {n for e in _exprs() for n in _NAME.findall(e)}
    assert len(used) >= 9
    assert used <= announced, used - announced
    # the shard and store panels have data, per shard where they are per shard
    for name in (
        "jobrec_shard_postings",
        "jobrec_shard_up",
        "jobrec_shard_request_duration_seconds_count",
    ):
        assert {re.search(r'shard="(\d+)"', x).group(1) for x in samples[name]} == {"0", "1"}
    assert float(samples["jobrec_store_log_objects"][0].split()[-1]) >= 1
    assert float(samples["jobrec_store_append_duration_seconds_count"][0].split()[-1]) >= 1
    assert any('method="/jobrec.v1.RecommendationService/GetPosting"' in x and "NOT_FOUND" in x
               for x in samples["jobrec_grpc_requests_total"])  # fmt: skip


def test_dashboard_is_importable_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}"
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")")
            for var in re.findall(r"\$(\w+)", t["expr"]):
                assert var in variables or var.startswith("__"), var
