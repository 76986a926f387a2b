"""Shared, durable shards: two frontends (one in another process) on the same named shard
actors, a shard that comes back empty reloaded from an S3 store, and a shard restarted on
another node of a multi-node cluster after its node is removed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from core.errors import NotFoundError
from server.app import BackgroundServer, JobrecServer, ServerConfig
from server.generated.jobrec.v1 import recommendation_pb2 as pb
from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc
from server.runtime import build_backend
from tests.test_retrieval_oracle import REF, make_postings
from tests.test_store import s3_server  # noqa: F401  (fixture)
from workers.store.generation import open_store

ROOT = Path(__file__).resolve().parents[1]

# A second frontend in its own process: joins the test's Ray and namespace, attaches to the
# store's shards, serves gRPC on a free port and prints it.
FRONTEND = textwrap.dedent(
    """
    import sys, time
    from server.app import BackgroundServer, JobrecServer, ServerConfig
    from server.runtime import build_backend
    from tests.test_retrieval_oracle import REF
    from workers.store.generation import open_store
    backend, rules = build_backend(None, None, ref_date=REF, store=open_store(sys.argv[1]),
                                   ray_address=sys.argv[2], ray_namespace=sys.argv[3],
                                   shared=True)
    bg = BackgroundServer(JobrecServer(backend, None, rules, ServerConfig(port=0,
                                       health_interval_s=0)))
    print("PORT", bg.start(), "ACTORS", len(backend._actors), flush=True)
    sys.stdin.read()  # until the test closes stdin
    bg.stop()
    """
)


def _recs(recs):
    # vectors reloaded from the store are normalised once more: equal up to float32 rounding
    return [(r.posting_id, round(r.score, 5), round(r.distance_km, 3)) for r in recs]


def _ids(resp):
    return [(r.posting_id, round(r.score, 5)) for r in resp.recommendations]


def test_two_frontends_serve_the_same_shards(ray_local, tmp_path):
    df, vec = make_postings(6, 160, spread_deg=0.6, n_companies=16)
    store = open_store(str(tmp_path / "store"))
    a, rules = build_backend(df, vec, shards=2, ref_date=REF, store=store, shared=True)
    srv_a = BackgroundServer(
        JobrecServer(a, None, rules, ServerConfig(port=0, health_interval_s=0))
    )
    srv_a.start()
    ctx = ray_local.get_runtime_context()
    proc = subprocess.Popen(
        [sys.executable, "-c", FRONTEND, str(tmp_path / "store"), ctx.gcs_address, ctx.namespace],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT"), line + proc.stderr.read()[-3000:]
        port_b = int(line.split()[1])
        ch_a = grpc.insecure_channel(f"127.0.0.1:{srv_a.port}")
        ch_b = grpc.insecure_channel(f"127.0.0.1:{port_b}")
        sa, sb = pb_grpc.RecommendationServiceStub(ch_a), pb_grpc.RecommendationServiceStub(ch_b)
        # one set of shard actors: no second set was started for frontend B
        shards = [x for x in ray_local.util.list_named_actors(all_namespaces=True)
                  if x["name"].startswith("jobrec-g000001-shard-")]  # fmt: skip
        assert len(shards) == 2
        pid = df["posting_id"][3]
        assert _ids(sa.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid, k=5))) == _ids(
            sb.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid, k=5))
        )
        # a write acknowledged by A is visible through B at once, and the other way round
        new = df[:1].with_columns(
            df[:1]["posting_id"].map_elements(lambda _: "NEW-A", return_dtype=str)
        )
        a.upsert(new, vec[:1])
        assert sb.GetPosting(pb.GetPostingRequest(posting_id="NEW-A")).posting_id == "NEW-A"
        got = sb.SimilarPostings(pb.SimilarPostingsRequest(posting_id="NEW-A", k=3))
        assert got.query_posting_id == "NEW-A"
        assert _ids(got) == _ids(
            sa.SimilarPostings(pb.SimilarPostingsRequest(posting_id="NEW-A", k=3))
        )
        victim = df["posting_id"][7]
        sb.DeletePostings(pb.DeletePostingsRequest(posting_ids=[victim]))
        with pytest.raises(grpc.RpcError) as err:
            sa.GetPosting(pb.GetPostingRequest(posting_id=victim))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # frontend B goes away: the shards stay for A
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        assert a.health()["ok"] and a.get("NEW-A")["posting_id"] == "NEW-A"
        ch_a.close()
        ch_b.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        srv_a.stop()
        a.shutdown_shared()


def test_a_shard_that_comes_back_empty_is_reloaded_from_the_s3_store(ray_local, s3_server):  # noqa: F811
    df, vec = make_postings(11, 150, spread_deg=0.5, n_companies=12)
    store = open_store("s3://jobrec-test/heal", s3_server)
    backend, rules = build_backend(df, vec, shards=2, ref_date=REF, store=store, shared=True)
    server = JobrecServer(backend, None, rules, ServerConfig(port=0, health_interval_s=0))
    bg = BackgroundServer(server)
    bg.start()
    try:
        new = df[:2].with_columns(
            df[:2]["posting_id"].map_elements(lambda p: f"S3-{p}", return_dtype=str)
        )
        backend.upsert(new, np.asarray(vec[:2]) + 0.1)
        probe = [df["posting_id"][i] for i in range(0, 150, 15)] + new["posting_id"].to_list()
        before = {p: _recs(backend.similar(p, 5)) for p in probe}
        # the shard's local snapshot is lost with its node: kill it and remove the snapshot
        st = backend.shard_stats()[0]
        shutil.rmtree(backend.snapshot_dir, ignore_errors=True)
        os.kill(st["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if backend.shard_stats()[0]["pid"] != st["pid"]:
                    break
            except Exception:  # noqa: BLE001  (restarting)
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert backend.shard_stats()[0]["postings"] == 0  # came back empty
        assert bg.call(server.check_backend()) is True  # the health loop heals it
        assert backend.shard_stats()[0]["postings"] == st["postings"]
        assert {p: _recs(backend.similar(p, 5)) for p in probe} == before
    finally:
        bg.stop()
        backend.shutdown_shared()


MULTI_NODE = textwrap.dedent(
    """
    import sys, time
    import numpy as np, ray
    from ray.cluster_utils import Cluster
    from server.runtime import build_backend
    from tests.test_retrieval_oracle import make_postings, REF
    from workers.store.generation import open_store

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    # the shards require a resource only the worker nodes advertise: never on the head
    nodes = [cluster.add_node(num_cpus=1, resources={"jobrec_shard": 2}) for _ in range(2)]
    cluster.wait_for_nodes()
    df, vec = make_postings(5, 200, spread_deg=0.7, n_companies=20)
    backend, _ = build_backend(df, vec, shards=2, ref_date=REF, store=open_store(sys.argv[1]),
                               ray_address=cluster.address, ray_namespace="multi", shared=True,
                               shard_resources=(("jobrec_shard", 1),))
    new = df[:3].with_columns(df[:3]["posting_id"].map_elements(lambda p: "N-" + p,
                                                                return_dtype=str))
    backend.upsert(new, vec[:3])  # acknowledged: in the store's log
    probe = df["posting_id"].to_list()[::10] + new["posting_id"].to_list()
    def recs(p):
        return [(r.posting_id, round(r.score, 5)) for r in backend.similar(p, 5)]

    before = {p: recs(p) for p in probe}

    def where():
        return {a["Name"]: a["Address"]["NodeID"] for a in ray._private.state.actors().values()
                if a["State"] == "ALIVE" and a["ActorClassName"].endswith("Shard")}

    first = where()
    workers = {n.node_id: n for n in nodes}
    assert set(first.values()) <= set(workers), first  # the resource kept them off the head
    name, victim_id = sorted(first.items())[0]
    victim = workers[victim_id]
    cluster.remove_node(victim)
    deadline = time.monotonic() + 120
    while True:
        try:
            after = {p: recs(p) for p in probe}
            break
        except Exception as exc:
            assert time.monotonic() < deadline, repr(exc)
            time.sleep(0.5)
    now = where()
    print("MOVED", now[name] != victim_id,
          "SAME", after == before, "NEW", all(backend.get(p) for p in new["posting_id"]))
    backend.shutdown_shared()
    ray.shutdown()
    cluster.shutdown()
    """
)


def test_restart_from_the_store_on_another_node(tmp_path):
    # its own multi-node Ray in a subprocess: the session's ray_local stays untouched
    proc = subprocess.run(
        [sys.executable, "-c", MULTI_NODE, str(tmp_path / "store")], cwd=ROOT,
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "MOVED True SAME True NEW True" in proc.stdout, proc.stdout[-2000:]


def test_not_found_stays_not_found(ray_local, tmp_path):
    df, vec = make_postings(2, 60, spread_deg=0.3, n_companies=5)
    backend, _ = build_backend(df, vec, shards=2, ref_date=REF,
                               store=open_store(str(tmp_path / "s")), shared=True)  # fmt: skip
    try:
        with pytest.raises(NotFoundError):
            backend.similar("never-there", 3)
        with pytest.raises(NotFoundError):
            backend.get("never-there")
    finally:
        backend.shutdown_shared()
