"""Matching inside the shards: the area plan against a brute-force oracle, served answers ==
the in-process MatchService == the ``jobrec match`` batch, RecordInteractions durable in the
shards' own logs (a restarted shard, a restarted frontend, a killed actor), and a frontend
that holds nothing per seeker."""

from __future__ import annotations

import datetime as dt
import pickle

import numpy as np
import polars as pl
import pytest

from core.errors import InvalidInputError, NotFoundError
from core.matching import MatchConfig
from core.seekers import areas_of, seeker_text
from core.synth import generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from encoding.text import posting_text
from tests.helpers import same_matches, seeker_profile
from workers.jobs.match import run_match
from workers.matching.deployment import StoredMatchShard, read_plan, write_deployment
from workers.matching.frontend import LocalShardCalls, ShardedMatchService
from workers.matching.interaction_log import read_interactions
from workers.matching.service import LexicalEncoder, MatchService
from workers.matching.sharded import AreaPlan, MatchShard, build_shards

REF = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def data():
    postings = generate_postings(1500, 13, ref_date=REF)
    seekers = generate_seekers(90, 13, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, 13, days=2, ref_date=REF)
    enc = LexicalEncoder(96)
    pv = enc.encode([posting_text(r) for r in postings.iter_rows(named=True)])
    sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    return {"postings": postings, "seekers": seekers, "inter": inter, "enc": enc, "pv": pv,
            "sv": sv, "cfg": MatchConfig(k=25, ref_date=REF)}


def _local(d, n, log_root=None):
    plan = AreaPlan.build(d["postings"], n)
    kws = build_shards(plan, d["postings"], d["pv"], d["seekers"], d["sv"],
                       interactions=d["inter"], log_root=log_root)
    return ShardedMatchService(LocalShardCalls([MatchShard(**kw) for kw in kws]), plan,
                               d["enc"], d["cfg"], records=log_root is not None), plan


def _plain(d):
    return MatchService(d["postings"], d["pv"], d["seekers"], d["sv"], d["enc"],
                        interactions=d["inter"], num_shards=2, config=d["cfg"])


@pytest.mark.parametrize("n", [2, 3])
def test_plan_places_every_possible_pair_together(data, n):
    """Oracle: every (seeker, posting) pair whose posting lies in a desired region has the
    seeker in the posting's shard; each posting is in exactly one shard."""
    plan = AreaPlan.build(data["postings"], n)
    p_parts = plan.split_postings(data["postings"])
    s_parts = plan.split_seekers(data["seekers"])
    owner = np.full(data["postings"].height, -1)
    for s, rows in enumerate(p_parts):
        assert (owner[rows] == -1).all()
        owner[rows] = s
    assert (owner >= 0).all() and {len(r) > 0 for r in p_parts} == {True}
    held = [set(r.tolist()) for r in s_parts]
    where = list(zip(data["postings"]["sido"].to_list(), data["postings"]["sigungu"].to_list(),
                     strict=True))
    pairs = 0
    for i, regions in enumerate(data["seekers"]["desired_regions"].to_list()):
        areas = areas_of(regions)
        for j, (sido, sgg) in enumerate(where):
            if any(a.contains(sido, sgg) for a in areas):
                pairs += 1
                assert i in held[owner[j]]
    assert pairs > 1000
    # an area no posting had at build time still has an owner (its province's, or 0)
    assert plan.posting_shard("제주특별자치도", "없는시") in range(n)
    assert plan.posting_shard("없는도", None) == 0


@pytest.mark.parametrize("n", [2, 3])
def test_served_from_shards_equals_service_and_batch(data, n):
    sharded, _ = _local(data, n)
    plain = _plain(data)
    batch, _ = run_match(data["seekers"], data["postings"], data["sv"], data["pv"], data["cfg"],
                         num_shards=2, interactions=data["inter"], use_ray=False, progress=False)
    by_seeker = {s: g for s, g in batch.group_by("seeker_id", maintain_order=True)}
    checked = 0
    for sid, active in data["seekers"].select("seeker_id", "active").iter_rows():
        got = sharded.recommend_jobs(seeker_id=sid)
        same_matches(got, plain.recommend_jobs(seeker_id=sid))
        if active and got:
            b = by_seeker[(sid,)]
            assert b["posting_id"].to_list() == [m.item_id for m in got]
            np.testing.assert_array_equal(b["score"].to_numpy(),
                                          np.array([m.score for m in got], np.float32))
            checked += 1
    assert checked > 30
    sid = data["seekers"]["seeker_id"][0]
    for sort in ("wage", "deadline", "distance", "newest"):
        same_matches(sharded.recommend_jobs(seeker_id=sid, sort=sort),
                     plain.recommend_jobs(seeker_id=sid, sort=sort))
    got, rows = sharded.jobs_with_rows(seeker_id=sid, k=5)
    assert set(rows) == {m.item_id for m in got}
    # candidates: one shard's answer == the service's over every seeker
    for pid in data["postings"]["posting_id"].to_list()[::50]:
        same_matches(sharded.recommend_candidates(pid), plain.recommend_candidates(pid))
        c, prof = sharded.candidates_with_profiles(pid, k=5)
        assert all("resume_text" not in prof[m.item_id] for m in c)
    profile = {"desired_occupations": ["231100"],
               "desired_regions": [{"sido": "서울특별시"}, {"sido": "경기도", "sigungu": "성남시"}],
               "education_level": 4, "career_years": 2, "resume_text": "자바 백엔드 개발"}
    same_matches(sharded.recommend_jobs(profile=profile), plain.recommend_jobs(profile=profile))


def test_unknown_ids_and_bad_calls(data, tmp_path):
    sharded, _ = _local(data, 2, tmp_path / "log")
    with pytest.raises(NotFoundError):
        sharded.recommend_jobs(seeker_id="nobody")
    with pytest.raises(NotFoundError):
        sharded.recommend_candidates("no-posting")
    with pytest.raises(InvalidInputError):
        sharded.recommend_jobs()
    with pytest.raises(InvalidInputError):
        sharded.recommend_candidates(data["postings"]["posting_id"][0], sort="wage")
    sid = data["seekers"]["seeker_id"][0]
    pid = data["postings"]["posting_id"][0]
    # all or nothing: a bad second row leaves nothing in any shard's log
    for bad in ({"seeker_id": "nobody", "posting_id": pid, "event": "applied"},
                {"seeker_id": sid, "posting_id": "nothing", "event": "applied"},
                {"seeker_id": sid, "posting_id": pid, "event": "liked"}):
        with pytest.raises((NotFoundError, InvalidInputError)):
            sharded.record_interactions([{"seeker_id": sid, "posting_id": pid,
                                          "event": "applied"}, bad])
    assert read_interactions(tmp_path / "log").height == 0


def _two_shard_seeker(d, plan):
    """A seeker held by one shard only, and a posting of the other shard."""
    parts = plan.split_seekers(d["seekers"])
    only0 = set(parts[0].tolist()) - set(parts[1].tolist())
    i = min(only0)
    other = plan.split_postings(d["postings"])[1]
    return d["seekers"]["seeker_id"][i], d["postings"]["posting_id"][int(other[0])]


def test_record_excludes_at_once_and_survives_restarts(data, tmp_path):
    root = tmp_path / "log"
    sharded, plan = _local(data, 2, root)
    plain = _plain(data)
    from workers.matching.interaction_log import InteractionLog

    plain.interaction_log = InteractionLog(tmp_path / "plain")
    sid, foreign = _two_shard_seeker(data, plan)
    first = sharded.recommend_jobs(seeker_id=sid)
    assert first, "the seeker needs a list"
    top = first[0].item_id
    at = dt.datetime(2026, 11, 20, 9, 30)
    rows = [{"seeker_id": sid, "posting_id": top, "event": "applied", "at": at},
            {"seeker_id": sid, "posting_id": foreign, "event": "clicked", "at": at}]
    assert sharded.record_interactions(rows) == 2
    plain.record_interactions(rows)
    after = sharded.recommend_jobs(seeker_id=sid)
    assert top not in {m.item_id for m in after}
    # the history vector moved the same way
    same_matches(after, plain.recommend_jobs(seeker_id=sid))
    # a frontend restart: a new frontend over the same shards answers the same
    again = ShardedMatchService(sharded.calls, plan, data["enc"], data["cfg"])
    same_matches(again.recommend_jobs(seeker_id=sid), after)
    # every shard restarted from its start-up tables and its own log (the clicked posting's
    # vector, held by the other shard, came back from the log)
    restarted, _ = _local(data, 2, root)
    same_matches(restarted.recommend_jobs(seeker_id=sid), after)
    for pid in (top,):
        assert sid not in {m.item_id for m in restarted.recommend_candidates(pid, k=100)}
    log = read_interactions(root)
    assert log.height == 2 and set(log["event"]) == {"applied", "clicked"}


def test_a_seeker_in_two_shards_is_written_to_both_and_read_once(data, tmp_path):
    root = tmp_path / "log"
    sharded, plan = _local(data, 2, root)
    parts = plan.split_seekers(data["seekers"])
    both = sorted(set(parts[0].tolist()) & set(parts[1].tolist()))
    assert both, "the corpus needs a seeker desiring areas of both shards"
    sid = data["seekers"]["seeker_id"][both[0]]
    got = sharded.recommend_jobs(seeker_id=sid)
    pids = [m.item_id for m in got[:3]]
    sharded.record_interactions([{"seeker_id": sid, "posting_id": p, "event": "hidden"}
                                 for p in pids])
    assert not set(pids) & {m.item_id for m in sharded.recommend_jobs(seeker_id=sid)}
    assert (root / "shard-000").is_dir() and (root / "shard-001").is_dir()
    assert read_interactions(root).height == 3


def test_upsert_and_delete_postings_reach_the_owner(data):
    sharded, plan = _local(data, 3)
    sid = data["seekers"]["seeker_id"][0]
    got = sharded.recommend_jobs(seeker_id=sid)
    src = data["postings"].filter(pl.col("posting_id") == got[-1].item_id)
    new = src.with_columns(pl.lit("P-NEW-1").alias("posting_id"))
    vec = data["pv"][data["postings"]["posting_id"].to_list().index(got[0].item_id)][None, :]
    sharded.upsert_postings(new, vec)
    assert "P-NEW-1" in {m.item_id for m in sharded.recommend_jobs(seeker_id=sid, k=100)}
    owner = plan.posting_shard(new["sido"][0], new["sigungu"][0])
    assert [st["postings"] for st in sharded.stats()][owner] == \
        len(plan.split_postings(data["postings"])[owner]) + 1
    assert sharded.delete_postings(["P-NEW-1", "unknown"]) == 1
    assert "P-NEW-1" not in {m.item_id for m in sharded.recommend_jobs(seeker_id=sid, k=100)}


def test_the_frontend_holds_nothing_per_seeker(data):
    small = dict(data, seekers=data["seekers"][:10], sv=data["sv"][:10])
    a, _ = _local(small, 2)
    b, _ = _local(data, 2)
    size = lambda s: len(pickle.dumps((s.plan, s.config, s._all)))  # noqa: E731
    assert size(a) == size(b)
    assert sum(st["seekers"] for st in b.stats()) >= data["seekers"].height


def test_ray_shard_actors_named_restarted_and_shared(data, tmp_path, ray_local):
    import ray

    from workers.matching.shard_actors import (
        RayShardCalls,
        find_match_shards,
        match_shard_names,
        start_match_shards,
    )

    plan = AreaPlan.build(data["postings"], 2)
    root = write_deployment(tmp_path / "deploy", plan, data["postings"], data["pv"],
                            data["seekers"], data["sv"], data["inter"])
    names = match_shard_names("jobrec-match-test", 2)
    calls = RayShardCalls(start_match_shards(str(root), 2, names=names))
    try:
        front = ShardedMatchService(calls, calls.plan(), data["enc"], data["cfg"])
        local, _ = _local(data, 2)
        sid, foreign = _two_shard_seeker(data, plan)
        same_matches(front.recommend_jobs(seeker_id=sid), local.recommend_jobs(seeker_id=sid))
        # concurrent async requests: the same answers, fewer actor calls than requests
        import asyncio

        sids = data["seekers"]["seeker_id"].to_list()[:24]
        pids = data["postings"]["posting_id"].to_list()[:24]

        async def many():
            jobs = await asyncio.gather(*(front.ajobs_with_rows(seeker_id=s) for s in sids))
            cands = await asyncio.gather(*(front.acandidates_with_profiles(p) for p in pids))
            return jobs, cands, sum(c.calls for per in front._coalescers.values()
                                    for c in per.values())
        jobs, cands, made = asyncio.run(many())
        for s, (got, _) in zip(sids, jobs, strict=True):
            same_matches(got, front.recommend_jobs(seeker_id=s))
        for p, (got, _) in zip(pids, cands, strict=True):
            same_matches(got, front.recommend_candidates(p))
        assert made < 2 * 2 * 24  # two shards, two methods, 24 requests each
        top = front.recommend_jobs(seeker_id=sid)[0].item_id
        front.record_interactions([{"seeker_id": sid, "posting_id": top, "event": "applied"},
                                   {"seeker_id": sid, "posting_id": foreign, "event": "clicked"}])
        after = front.recommend_jobs(seeker_id=sid)
        assert top not in {m.item_id for m in after}
        # the shard dies after the acknowledgement; Ray restarts it from its tables + its log
        pid = front.stats()[0]["pid"]
        ray.kill(calls.actors[0], no_restart=False)
        second = ShardedMatchService(RayShardCalls(find_match_shards(names)), calls.plan(),
                                     data["enc"], data["cfg"])
        import time

        deadline = time.monotonic() + 60
        while True:  # ray.kill returns at once: wait for the new process
            try:
                if second.stats()[0]["pid"] != pid:
                    break
            except Exception:  # noqa: BLE001 - restarting
                pass
            assert time.monotonic() < deadline, "the shard did not come back"
            time.sleep(0.1)
        same_matches(second.recommend_jobs(seeker_id=sid), after)
    finally:
        calls.close()


def test_a_stored_shard_comes_back_with_its_writes(data, tmp_path):
    """Shards opened from a deployment root: posting upserts (one that moved area too),
    deletes and interactions acknowledged before the restart are all there after it."""
    plan = AreaPlan.build(data["postings"], 2)
    root = write_deployment(tmp_path / "d", plan, data["postings"], data["pv"], data["seekers"],
                            data["sv"], data["inter"])
    with pytest.raises(InvalidInputError):
        write_deployment(root, plan, data["postings"], data["pv"], data["seekers"], data["sv"])
    assert read_plan(root) == plan

    def open_all():
        return ShardedMatchService(LocalShardCalls([StoredMatchShard(root, s) for s in (0, 1)]),
                                   read_plan(root), data["enc"], data["cfg"])
    front = open_all()
    local, _ = _local(data, 2)
    sid = data["seekers"]["seeker_id"][3]
    same_matches(front.recommend_jobs(seeker_id=sid), local.recommend_jobs(seeker_id=sid))
    got = front.recommend_jobs(seeker_id=sid)
    pids = data["postings"]["posting_id"].to_list()
    # a posting moved to an area of the other shard, one new, one deleted, one applied to
    moved = got[0].item_id
    row = data["postings"].filter(pl.col("posting_id") == moved)
    away = 1 - plan.posting_shard(row["sido"][0], row["sigungu"][0])
    far = data["postings"][int(plan.split_postings(data["postings"])[away][0])]
    moved_row = row.with_columns(pl.lit(far["sido"][0]).alias("sido"),
                                 pl.lit(far["sigungu"][0]).alias("sigungu"),
                                 pl.lit(far["lat"][0]).alias("lat"), pl.lit(far["lng"][0]).alias("lng"))
    new = row.with_columns(pl.lit("P-NEW-2").alias("posting_id"))
    both = pl.concat([moved_row, new])
    vec = data["pv"][[pids.index(moved)] * 2]
    for f in (front, local):
        f.upsert_postings(both, vec)
        f.delete_postings([got[1].item_id])
    front.record_interactions([{"seeker_id": sid, "posting_id": "P-NEW-2", "event": "applied"}])
    before = [st["postings"] for st in front.stats()]
    after = open_all()
    assert [st["postings"] for st in after.stats()] == before
    same_matches(after.recommend_jobs(seeker_id=sid), front.recommend_jobs(seeker_id=sid))
    assert "P-NEW-2" not in {m.item_id for m in after.recommend_jobs(seeker_id=sid, k=100)}
    assert got[1].item_id not in {m.item_id for m in after.recommend_jobs(seeker_id=sid, k=100)}
    assert after.delete_postings([moved]) == 1  # it lives in one shard only


@pytest.mark.parametrize("fold", [False, True])
def test_seeker_writes_equal_a_rebuild(data, tmp_path, monkeypatch, fold):
    """UpsertSeekers / DeleteSeekers through the shards == a MatchService rebuilt over the
    written table: a new seeker, one that moved into the other shard's areas (its exclusions
    and history carried), a deleted one; the same after every shard restarts. ``fold``:
    the written seekers are folded into the base index instead of kept beside it."""
    import workers.matching.sharded as sharded_mod
    from workers.matching.service import seeker_frame

    if fold:
        monkeypatch.setattr(sharded_mod, "FOLD_AT", 1)
    plan = AreaPlan.build(data["postings"], 2)
    root = write_deployment(tmp_path / "d", plan, data["postings"], data["pv"], data["seekers"],
                            data["sv"], data["inter"])

    def open_all():
        return ShardedMatchService(LocalShardCalls([StoredMatchShard(root, s) for s in (0, 1)]),
                                   plan, data["enc"], data["cfg"])
    front = open_all()
    sk = data["seekers"]
    parts = plan.split_seekers(sk)
    only0 = sorted(set(parts[0].tolist()) - set(parts[1].tolist()))
    liked = set(data["inter"].filter(pl.col("event").is_in(["applied", "clicked"]))["seeker_id"])
    mover = next(i for i in only0 if sk["seeker_id"][i] in liked
                 and len(sk["desired_regions"][i]) < 3)
    far = data["postings"][int(plan.split_postings(data["postings"])[1][0])]
    row = sk.row(mover, named=True)
    moved = seeker_profile(row, desired_regions=row["desired_regions"] + [
        {"sido": far["sido"][0], "sigungu": far["sigungu"][0]}])
    news = [seeker_profile(sk.row(i, named=True), seeker_id=f"S-NEW-{i}") for i in range(6)]
    gone_id = sk["seeker_id"][7]
    assert front.upsert_seekers([moved, *news]) == 7
    assert front.delete_seekers([gone_id, "nobody"]) == 1
    with pytest.raises(InvalidInputError):
        front.upsert_seekers([{**news[0], "desired_regions": [{"sido": "없는도"}]}])
    with pytest.raises(InvalidInputError):
        front.upsert_seekers([news[0], news[0]])

    written = seeker_frame([moved, *news])
    wvec = data["enc"].encode([seeker_text(r) for r in written.iter_rows(named=True)])
    keep = ~sk["seeker_id"].is_in(pl.Series([row["seeker_id"], gone_id]).implode()).to_numpy()
    table = pl.concat([sk.filter(pl.Series(keep)), written])
    vecs = np.concatenate([data["sv"][keep], wvec])
    oracle = MatchService(data["postings"], data["pv"], table, vecs, data["enc"],
                          interactions=data["inter"], num_shards=2, config=data["cfg"])
    assert 1 in plan.seeker_shards(areas_of(moved["desired_regions"]))
    fresh = sum(st["fresh_seekers"] for st in front.stats())
    assert (fresh == 0) if fold else fresh >= 7
    for f in (front, open_all()):
        for sid in table["seeker_id"].to_list():
            same_matches(f.recommend_jobs(seeker_id=sid), oracle.recommend_jobs(seeker_id=sid))
        with pytest.raises(NotFoundError):
            f.recommend_jobs(seeker_id=gone_id)
        for pid in data["postings"]["posting_id"].to_list()[::25]:
            same_matches(f.recommend_candidates(pid), oracle.recommend_candidates(pid))
