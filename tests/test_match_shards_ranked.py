"""The learned ranker in the match shards: each shard builds and scores its part of the pool,
the frontend merges; the lists, scores and reasons equal the in-process MatchService with the
same ranker and the ``jobrec match --ranker`` batch, for every seeker, on 2 and 3 shards,
after an application is recorded, after a restart from the deployment, and through actors."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import numpy as np
import pytest

from core.collab import CollabModel
from core.errors import NotFoundError
from core.matching import MatchConfig
from core.ranker import RankerConfig
from core.seekers import seeker_text
from core.synth import generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from encoding.text import posting_text
from tests.helpers import same_matches
from workers.jobs.rank import RankWorld
from workers.matching.deployment import StoredMatchShard, read_plan, write_deployment
from workers.matching.frontend import LocalShardCalls, ShardedMatchService
from workers.matching.ranked import ShardRanker, history_occupations, merge_pools
from workers.matching.service import LexicalEncoder, MatchService
from workers.matching.sharded import AreaPlan, MatchShard, build_shards

REF = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def world():
    postings = generate_postings(1500, 31, ref_date=REF)
    seekers = generate_seekers(240, 31, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, 31, days=4, ref_date=REF)
    enc = LexicalEncoder(96)
    pv = enc.encode([posting_text(r) for r in postings.iter_rows(named=True)])
    sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    cfg = MatchConfig(k=30, ref_date=REF)
    ranker, _ = RankWorld(seekers, postings, sv, pv).train(
        inter, cfg, RankerConfig(rounds=40, early_stopping=40, min_data_in_leaf=20, windows=2))
    return {"postings": postings, "seekers": seekers, "inter": inter, "enc": enc, "pv": pv,
            "sv": sv, "cfg": cfg, "ranker": ranker}


def _plain(w, pool=80):
    return MatchService(w["postings"], w["pv"], w["seekers"], w["sv"], w["enc"],
                        interactions=w["inter"], config=w["cfg"], ranker=w["ranker"],
                        ranker_pool=pool)


def _ranking(w, pool=80):
    collab = CollabModel(w["inter"])
    return ShardRanker(w["ranker"], collab, pool, history_occupations(collab, w["postings"]))


def _sharded(w, n, pool=80, log_root=None):
    plan = AreaPlan.build(w["postings"], n)
    kws = build_shards(plan, w["postings"], w["pv"], w["seekers"], w["sv"],
                       interactions=w["inter"], log_root=log_root, ranking=_ranking(w, pool))
    return ShardedMatchService(LocalShardCalls([MatchShard(**kw) for kw in kws]), plan,
                               w["enc"], w["cfg"], records=log_root is not None, ranked=True)


@pytest.mark.parametrize("n", [2, 3])
def test_ranked_shards_equal_in_process_ranker_for_every_seeker(world, n):
    """Oracle: MatchService with the ranker over one global index (the batch's function)."""
    plain, sharded = _plain(world), _sharded(world, n)
    drivers = 0
    for sid in world["seekers"]["seeker_id"].to_list():
        want = plain.recommend_jobs(seeker_id=sid)
        got = sharded.recommend_jobs(seeker_id=sid)
        same_matches(got, want)
        drivers += sum("ranker_reason" in m.reasons for m in got)
    assert drivers > 0  # the learned reasons travel from the shards
    # the sort views read the rows the shards return
    sid = world["seekers"]["seeker_id"][0]
    same_matches(sharded.recommend_jobs(seeker_id=sid, sort="wage"),
                 plain.recommend_jobs(seeker_id=sid, sort="wage"))
    with pytest.raises(NotFoundError):
        sharded.recommend_jobs(seeker_id="nobody")


def test_pools_cut_across_shards_differ_from_local_cuts(world):
    """The merge re-cuts the pool: with a small pool, shards' local pools hold postings the
    global pool drops, and the list still equals the in-process one."""
    plain, sharded = _plain(world, pool=10), _sharded(world, 2, pool=10)
    dropped = spanning = 0
    cfg = world["cfg"]
    for sid in world["seekers"]["seeker_id"].to_list():
        parts = sharded.calls.call([0, 1], "ranked_pool_many", [(sid, cfg)])
        held = {s: p[0] for s, p in enumerate(parts) if p[0] is not None and p[0].ids.size}
        if len(held) < 2:
            continue
        spanning += 1
        local = sum(p.ids.size for p in held.values())
        listed = merge_pools(held, 10_000, 0)  # the whole global pool, in order
        dropped += local - len(listed)
        same_matches(sharded.recommend_jobs(seeker_id=sid), plain.recommend_jobs(seeker_id=sid))
    assert spanning > 0 and dropped > 0


def test_inline_profile_and_async_paths(world):
    plain, sharded = _plain(world), _sharded(world, 2)
    row = dict(world["seekers"].row(3, named=True))
    row["seeker_id"] = "walk-in"
    same_matches(sharded.recommend_jobs(profile=row), plain.recommend_jobs(profile=row))

    async def both():
        sids = world["seekers"]["seeker_id"].to_list()[:12]
        return sids, await asyncio.gather(*(sharded.ajobs_with_rows(seeker_id=s) for s in sids))

    sids, got = asyncio.run(both())
    for sid, (matches, rows) in zip(sids, got, strict=True):
        same_matches(matches, plain.recommend_jobs(seeker_id=sid))
        assert set(rows) == {m.item_id for m in matches}


def test_recorded_application_leaves_the_ranked_list_and_survives_restart(world, tmp_path):
    root = tmp_path / "dep"
    plan = AreaPlan.build(world["postings"], 2)
    write_deployment(root, plan, world["postings"], world["pv"], world["seekers"], world["sv"],
                     world["inter"], ranker=world["ranker"], ranker_pool=80)
    calls = LocalShardCalls([StoredMatchShard(root, s) for s in range(2)])
    sharded = ShardedMatchService(calls, read_plan(root), world["enc"], world["cfg"],
                                  ranked=True)
    plain = _plain(world)
    sid = world["seekers"]["seeker_id"][5]
    first = sharded.recommend_jobs(seeker_id=sid)
    same_matches(first, plain.recommend_jobs(seeker_id=sid))
    top = first[0].item_id
    sharded.record_interactions([{"seeker_id": sid, "posting_id": top, "event": "applied",
                                  "at": dt.datetime(2026, 11, 20, 9)}])
    after = sharded.recommend_jobs(seeker_id=sid)
    assert top not in {m.item_id for m in after}
    again = ShardedMatchService(LocalShardCalls([StoredMatchShard(root, s) for s in range(2)]),
                                read_plan(root), world["enc"], world["cfg"], ranked=True)
    same_matches(again.recommend_jobs(seeker_id=sid), after)
    assert json.loads((root / "ranking" / "settings.json").read_text())["pool"] == 80


def test_ranker_in_the_shards_equals_the_batch(world):
    """``jobrec match --ranker``'s table (RankWorld.match_frame) == the shards' lists."""
    w = RankWorld(world["seekers"], world["postings"], world["sv"], world["pv"])
    frame = w.match_frame(world["ranker"], world["inter"], world["cfg"], 80)
    sharded = _sharded(world, 3)
    for sid, part in frame.group_by("seeker_id", maintain_order=True):
        got = sharded.recommend_jobs(seeker_id=sid[0])
        assert [m.item_id for m in got] == part.sort("rank")["posting_id"].to_list()
        assert np.allclose([m.score for m in got], part.sort("rank")["score"].to_numpy())


def test_shards_without_a_ranker_refuse_ranked_calls(world):
    plan = AreaPlan.build(world["postings"], 2)
    kws = build_shards(plan, world["postings"], world["pv"], world["seekers"], world["sv"])
    svc = ShardedMatchService(LocalShardCalls([MatchShard(**kw) for kw in kws]), plan,
                              world["enc"], world["cfg"], ranked=True)
    from core.errors import NotConfiguredError

    with pytest.raises(NotConfiguredError):
        svc.recommend_jobs(seeker_id=world["seekers"]["seeker_id"][0])
