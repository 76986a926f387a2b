"""The Ray backend with real actors: results vs the brute-force oracle, writes visible at
once, a killed shard actor restarting from its snapshot without loss, and a multi-node
cluster (in a subprocess, so it never collides with the session's ``ray_local``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.errors import InvalidInputError, NotFoundError, UnavailableError
from core.rules import RuleConfig
from tests.test_retrieval_oracle import REF, assert_matches, make_postings, oracle, unit_rows
from workers.backend import RecommendationBackend
from workers.engine.sharding import ShardingConfig
from workers.engine.types import ByIdQuery

RULES = RuleConfig(ref_date=REF)


def recs_of(frame: pl.DataFrame) -> dict[str, list]:
    return {
        key[0]: list(zip(g["rec_posting_id"].to_list(), g["score"].to_list(),
                         g["distance_km"].to_list(), strict=True))
        for key, g in frame.sort("rank").group_by("posting_id", maintain_order=True)
    }  # fmt: skip


def check_all(backend, df, vec, k=6, rules=RULES):
    rows, unit = df.to_dicts(), unit_rows(vec)
    got = recs_of(backend.recommend_all(k, rules))
    for i, r in enumerate(rows):
        want, qual = oracle(rows, unit, i, rules, k)
        assert_matches(got.get(r["posting_id"], []), want, qual, rules, r["posting_id"])


def online(backend, pid, k=6, rules=None):
    return [(x.posting_id, x.score, x.distance_km) for x in backend.similar(pid, k, rules)]


@pytest.fixture(scope="module")
def data():
    return make_postings(21, 300, spread_deg=0.7, n_companies=30)


@pytest.fixture
def backend(ray_local, data, tmp_path):
    df, vec = data
    b = RecommendationBackend.build(
        df, vec, sharding=ShardingConfig(num_shards=3, coarse_res=4), rules=RULES,
        snapshot_dir=tmp_path,
    )  # fmt: skip
    yield b
    b.shutdown()


def test_backend_matches_oracle_sync_and_async(backend, data):
    df, vec = data
    assert backend.size() == df.height
    assert backend.health()["ok"] and backend.health()["num_shards"] == 3
    owned = [s["owned"] for s in backend.shard_stats()]
    assert sum(owned) == df.height and min(owned) > 0  # every shard owns a territory
    check_all(backend, df, vec)
    lenient = RuleConfig(ref_date=REF, education_policy="lenient_no_requirement",
                         capital_radius_km=12.0, max_per_company=1)
    check_all(backend, df, vec, k=4, rules=lenient)
    rows, unit = df.to_dicts(), unit_rows(vec)
    for i in range(0, df.height, 37):
        pid = rows[i]["posting_id"]
        want, qual = oracle(rows, unit, i, lenient, 5)
        assert_matches(online(backend, pid, 5, lenient), want, qual, lenient, pid)
        got = asyncio.run(backend.asimilar(pid, 5, lenient))
        assert [(x.posting_id, x.score, x.distance_km) for x in got] == online(backend, pid, 5,
                                                                               lenient)
    # an inline posting is answered by the owner of its location
    q = dict(rows[3], posting_id="inline-1")
    qv = vec[3] * -1.0
    want, qual = oracle(rows, unit, -1, RULES, 6, q=q, qv=-unit[3])
    got = backend.similar_to(q, qv, 6)
    assert_matches([(x.posting_id, x.score, x.distance_km) for x in got], want, qual, RULES, "inline")
    assert asyncio.run(backend.asimilar_to(q, qv, 6)) == got
    assert backend.get(rows[0]["posting_id"]) == rows[0]
    assert asyncio.run(backend.aget(rows[1]["posting_id"])) == rows[1]


def test_backend_rejects_bad_input(backend, data):
    df, _ = data
    pid = df["posting_id"][0]
    with pytest.raises(NotFoundError):
        backend.similar("missing", 5)
    with pytest.raises(NotFoundError):
        backend.get("missing")
    for k in (0, 1001, "3", True):
        with pytest.raises(InvalidInputError) as exc:
            backend.similar(pid, k)
        assert exc.value.field == "k"
    with pytest.raises(InvalidInputError) as exc:
        backend.similar(pid, 5, RuleConfig(other_radius_km=41.0))
    assert exc.value.field == "other_radius_km"
    with pytest.raises(InvalidInputError) as exc:
        backend.similar_to({"lat": None, "lng": 127.0}, np.ones(16), 5)
    assert exc.value.field == "lat"
    with pytest.raises(InvalidInputError):
        backend.upsert(df[:2], np.zeros((2, 16), np.float32))  # zero vectors


def test_upsert_and_delete_are_visible_at_once(backend, data):
    df, vec = data
    rows = df.to_dicts()
    # a new posting identical in text (vector) and place to posting 0, from a new company
    new = df[0].with_columns(pl.lit("NEW-1").alias("posting_id"), pl.lit("NewCo").alias("company"),
                             pl.lit(None, dtype=pl.Date).alias("closes_on"))
    res = backend.upsert(new, vec[:1])
    assert (res.inserted, res.updated) == (1, 0)
    assert backend.size() == df.height + 1
    df2, vec2 = pl.concat([df, new]), np.vstack([vec, vec[:1]])
    got = backend.similar("NEW-1", 6)
    want, qual = oracle(df2.to_dicts(), unit_rows(vec2), df.height, RULES, 6)
    assert_matches([(x.posting_id, x.score, x.distance_km) for x in got], want, qual, RULES, "new")
    # it shows up for its twin when it qualifies there
    _, qual0 = oracle(df2.to_dicts(), unit_rows(vec2), 0, RULES, 6)
    assert ("NEW-1" in qual0) == ("NEW-1" in [x.posting_id for x in backend.similar(rows[0]["posting_id"], 50)])
    # update moves it far away (another shard): it leaves its old neighbourhood
    moved = new.with_columns(pl.lit(35.16).alias("lat"), pl.lit(129.06).alias("lng"),
                             pl.lit("부산광역시").alias("sido"))
    assert backend.upsert(moved, vec[:1]) == type(res)(inserted=0, updated=1)
    assert backend.get("NEW-1")["lat"] == 35.16
    assert all(x.posting_id != "NEW-1" for x in backend.similar(rows[0]["posting_id"], 50))
    assert backend.similar("NEW-1", 5) == []  # nothing else near Busan
    # delete
    gone = rows[5]["posting_id"]
    d = backend.delete([gone, "NEW-1", "never-there"])
    assert (d.deleted, d.not_found) == (2, ["never-there"])
    with pytest.raises(NotFoundError):
        backend.get(gone)
    check_all(backend, df.filter(pl.col("posting_id") != gone), np.delete(vec, 5, axis=0))


def test_killed_shard_restarts_from_snapshot_without_loss(backend, data, ray_local):
    ray = ray_local
    df, vec = data
    rows = df.to_dicts()
    # writes after the base snapshot must survive too
    extra = df[10].with_columns(pl.lit("NEW-2").alias("posting_id"))
    backend.upsert(extra, vec[10:11])
    backend.delete([rows[20]["posting_id"]])
    victim = backend._where[rows[10]["posting_id"]][0]
    before_stats = backend.shard_stats()[victim]
    probe = [p for p, (o, _) in backend._where.items() if o == victim][:15]
    before = {p: online(backend, p) for p in probe}
    before_all = backend.recommend_all(6)

    ray.kill(backend._actors[victim], no_restart=False)
    # ray.kill is asynchronous: the old process may still answer a call or two
    deadline = time.time() + 60
    while True:
        try:
            after_stats = backend.shard_stats()[victim]
            if after_stats["pid"] != before_stats["pid"]:
                break
        except UnavailableError:
            pass
        assert time.time() < deadline, "the killed shard was not restarted within 60 s"
        time.sleep(0.5)
    assert after_stats["restored"] and after_stats["pid"] != before_stats["pid"]
    assert after_stats["postings"] == before_stats["postings"]
    assert {p: online(backend, p) for p in probe} == before
    assert backend.recommend_all(6).equals(before_all)
    assert backend.get("NEW-2")["posting_id"] == "NEW-2"
    with pytest.raises(NotFoundError):
        backend.get(rows[20]["posting_id"])
    assert backend.health()["ok"]


def test_recommend_all_on_a_multi_node_cluster(tmp_path):
    # its own Ray (two raylets) in a subprocess: the session's ray_local stays untouched
    script = textwrap.dedent(
        """
        import sys
        import numpy as np, polars as pl, ray
        from ray.cluster_utils import Cluster
        from tests.test_retrieval_oracle import make_postings, build_local, REF
        from core.rules import RuleConfig
        from workers.backend import RecommendationBackend
        from workers.engine.sharding import ShardingConfig

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        # a node that just joined may not be schedulable yet: run a task on each first
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        here = ray.remote(num_cpus=0)(lambda: ray.get_runtime_context().get_node_id())
        for n in ray.nodes():
            strategy = NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            assert ray.get(here.options(scheduling_strategy=strategy).remote()) == n["NodeID"]
        df, vec = make_postings(5, 200, spread_deg=0.7, n_companies=20)
        rules = RuleConfig(ref_date=REF)
        b = RecommendationBackend.build(df, vec, sharding=ShardingConfig(num_shards=2),
                                        rules=rules, snapshot_dir=sys.argv[1])
        nodes = {a["Address"]["NodeID"] for a in ray._private.state.actors().values()
                 if a["State"] == "ALIVE" and a["ActorClassName"].endswith("Shard")}
        got = b.recommend_all(5)
        _, _, (local,) = build_local(df, vec, ShardingConfig(num_shards=1), rules)
        want = local.recommend_owned(5).sort(["posting_id", "rank"])
        same = got.select("posting_id", "rank", "rec_posting_id").equals(
            want.select("posting_id", "rank", "rec_posting_id"))
        print("NODES", len(nodes), "SAME", same, "ROWS", got.height)
        b.shutdown()
        ray.shutdown()
        cluster.shutdown()
        sys.exit(0 if same and len(nodes) == 2 and got.height > 0 else 1)
        """
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=root, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "NODES 2 SAME True" in proc.stdout


def test_concurrent_async_queries_are_coalesced_and_match_sync(backend, data):
    """Concurrent ``asimilar`` / ``asimilar_to`` calls share actor calls (``search_many``),
    give exactly the sync answers, and an error fails only its own request."""
    df, vec = data
    ids = df["posting_id"].to_list()[:80]
    rows = df.to_dicts()
    inline = {**rows[3], "posting_id": "INLINE"}
    other = RuleConfig(ref_date=REF, capital_radius_km=10, max_per_company=1)

    async def run():
        calls = [backend.asimilar(p, 5) for p in ids]
        calls += [backend.asimilar(ids[0], 7, other), backend.asimilar_to(inline, vec[3], 4)]
        calls += [backend.asimilar_to({**inline, "career": "boss"}, vec[3], 4)]
        return await asyncio.gather(*calls, return_exceptions=True)

    got = asyncio.run(run())
    for p, g in zip(ids, got, strict=False):
        assert g == backend.similar(p, 5)
    assert got[len(ids)] == backend.similar(ids[0], 7, other)
    assert got[len(ids) + 1] == backend.similar_to(inline, vec[3], 4)
    bad = got[len(ids) + 2]
    assert isinstance(bad, InvalidInputError) and bad.field == "career"
    made = sum(c.calls for per in backend._coalescers.values() for c in per.values())
    assert made < len(got)  # several queries shared a call

    # a shard answers each request of a batch on its own
    shard = backend._where[ids[0]][0]
    import ray

    answers = ray.get(backend._actors[shard].search_many.remote(
        [ByIdQuery("never-there", 5), ByIdQuery(ids[0], 5)]
    ))  # fmt: skip
    assert isinstance(answers[0], NotFoundError)
    assert answers[1] == backend.similar(ids[0], 5)


def test_shard_resources_are_checked_and_parsed():
    from workers.engine.sharding import parse_resources

    assert parse_resources(["jobrec_shard=1", "pool=0.5"]) == (("jobrec_shard", 1.0), ("pool", 0.5))
    assert parse_resources(["jobrec_shard"]) == (("jobrec_shard", 1.0),)
    assert parse_resources(None) == ()
    for bad in (["CPU=1"], ["x=0"], ["x=-1"], ["=1"], ["x=1", "x=2"], ["x=abc"]):
        with pytest.raises(ValueError):
            parse_resources(bad)
    with pytest.raises(ValueError, match="custom name"):
        ShardingConfig(resources=(("GPU", 1.0),))
    with pytest.raises(ValueError, match="tuple"):
        ShardingConfig(resources={"x": 1.0})
