"""Courses in the geo shards: placement (the owner shard of a posting stores every course
within its radius; online courses are everywhere), the per-shard collection with its
snapshot, merging shard answers, and the course conversions of server/convert.py."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from core.course_rank import CourseIndex, CourseQuery, posting_query
from core.course_rules import CourseRuleConfig
from core.errors import InvalidInputError
from core.rules import haversine_km
from core.schema import CAPITAL_AREA_SIDO
from core.synth import generate_course_corpus, generate_postings
from workers.engine.shard import Shard
from workers.engine.sharding import ShardingConfig, ShardPlan
from workers.kinds.courses import COURSES, course_partition, merge_answers

REF = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def world():
    postings = generate_postings(1200, 31, ref_date=REF)
    courses = generate_course_corpus(1500, 32, ref_date=REF).courses
    plan = ShardPlan.build(postings["lat"].to_numpy(), postings["lng"].to_numpy(),
                           ShardingConfig(num_shards=3), halo_km=40.0)
    return postings, courses, plan


def test_owner_shard_stores_every_course_in_radius(world):
    postings, courses, plan = world
    parts = course_partition(plan, courses)
    online = courses["online"].to_numpy()
    stored = [set(idx.tolist()) for idx, _ in parts]
    # each course is owned exactly once overall
    owned_total = sum(int(o.sum()) for _, o in parts)
    assert owned_total == courses.height
    assert all(set(np.flatnonzero(online).tolist()) <= s for s in stored)
    _, owners, _ = plan.assign(postings["lat"].to_numpy(), postings["lng"].to_numpy())
    clat, clng = courses["lat"].to_numpy(), courses["lng"].to_numpy()
    for p, s in zip(postings.iter_rows(named=True), owners.tolist(), strict=True):
        r = 20.0 if p["sido"] in CAPITAL_AREA_SIDO else 40.0
        near = np.flatnonzero(haversine_km(p["lat"], p["lng"], clat, clng) <= r)
        assert set(near.tolist()) <= stored[s]


def test_sharded_answers_equal_one_index(world, tmp_path):
    postings, courses, plan = world
    rules = CourseRuleConfig(ref_date=REF)
    vecs = np.random.default_rng(3).normal(size=(courses.height, 8)).astype(np.float32)
    whole = CourseIndex(courses, vecs)
    shards = []
    for s, (idx, owned) in enumerate(course_partition(plan, courses)):
        sh = Shard(s, dim=8, snapshot_dir=tmp_path)
        assert sh.load(courses[idx], vecs[idx], owned, collection=COURSES) == idx.size
        shards.append(sh)
    _, owners, _ = plan.assign(postings["lat"].to_numpy(), postings["lng"].to_numpy())
    rng = np.random.default_rng(4)
    for j in rng.choice(postings.height, 60, replace=False).tolist():
        p = postings.row(j, named=True)
        q = posting_query(p, rng.normal(size=8).astype(np.float32))
        _same(shards[int(owners[j])].courses(q, 5, rules), whole.search(q, 5, rules))
    # restarted from its snapshot, a shard answers the same
    again = Shard(0, dim=8, snapshot_dir=tmp_path)
    assert again.size(COURSES) == shards[0].size(COURSES)
    q = posting_query(postings.row(0, named=True), np.ones(8, np.float32))
    assert again.courses(q, 5, rules) == shards[0].courses(q, 5, rules)
    # a write invalidates the shard's course index
    gone = shards[0].courses(q, 1, rules)[0].course_id
    shards[0].delete([gone], collection=COURSES)
    assert gone not in {r.course_id for r in shards[0].courses(q, 50, rules)}
    # a seeker with places in two shards: each place's owner answers, answers merged
    a = postings.row(0, named=True)
    far = next(r for r in postings.iter_rows(named=True)
               if haversine_km(a["lat"], a["lng"], r["lat"], r["lng"]) > 150)
    q = CourseQuery(((a["lat"], a["lng"], a["sido"]), (far["lat"], far["lng"], far["sido"])))
    owners2 = sorted({int(x) for x in plan.assign(np.array([a["lat"], far["lat"]]),
                                                   np.array([a["lng"], far["lng"]]))[1]})
    merged = merge_answers([shards[s].courses(q, 20, rules) for s in owners2], 20)
    full = Shard(9, dim=8)
    full.load(courses, vecs, np.ones(courses.height, bool), collection=COURSES)
    _same(merged, [r for r in full.courses(q, 21, rules) if r.course_id != gone][:20])


def _same(got, want):
    """Equal answers; scores may differ in the last float32 bit (vectors normalised twice)."""
    assert [r.course_id for r in got] == [r.course_id for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.score == pytest.approx(w.score, abs=2e-6)
        assert dataclasses.replace(g, score=w.score) == w


def test_collection_rejects_bad_loads(world):
    _, courses, _ = world
    sh = Shard(0, dim=4)
    with pytest.raises(InvalidInputError, match="differ in length"):
        sh.load(courses, np.ones((3, 4)), np.ones(courses.height, bool), collection=COURSES)
    with pytest.raises(InvalidInputError, match="lacks required columns"):
        sh.load(courses.drop("title"), np.ones((courses.height, 4)),
                np.ones(courses.height, bool), collection=COURSES)


def test_course_conversions():
    from server import convert
    from server.generated.jobrec.v1 import courses_pb2 as cpb

    base = CourseRuleConfig(ref_date=REF)
    msg = cpb.CourseRuleOverrides(horizon_days=-1, include_online=False, ref_date="2026-12-01")
    got = convert.course_rules_from_overrides(base, msg, has=True)
    assert got.horizon_days is None and got.include_online is False and got.ref_date == dt.date(2026, 12, 1)
    applied = convert.applied_course_rules(got)
    assert applied.horizon_days == -1 and applied.ref_date == "2026-12-01"
    with pytest.raises(InvalidInputError) as info:
        convert.course_rules_from_overrides(base, cpb.CourseRuleOverrides(other_radius_km=-3), has=True)
    assert info.value.field == "rules.other_radius_km"
    with pytest.raises(InvalidInputError) as info:
        convert.course_rules_from_overrides(base, cpb.CourseRuleOverrides(ref_date="12/01"), has=True)
    assert info.value.field == "rules.ref_date"
    assert convert.validate_course_k(0) == 5
    with pytest.raises(InvalidInputError):
        convert.validate_course_k(101)
    f = convert.seeker_profile_fields(cpb.CourseSeekerProfile(home_region=" 서울 강남구 ",
                                                        desired_occupation_codes=["824100"]))
    assert f["lat"] is None and f["home_region"] == "서울 강남구"
    with pytest.raises(InvalidInputError) as info:
        convert.seeker_profile_fields(cpb.CourseSeekerProfile(desired_occupation_codes=["8241"]))
    assert info.value.field == "seeker.desired_occupation_codes[0]"
    courses = generate_course_corpus(50, 2, ref_date=REF).courses
    idx = CourseIndex(courses, None)
    recs = idx.search(CourseQuery(((37.5665, 126.978, "서울특별시"),)), 3, CourseRuleConfig(
        ref_date=REF, other_radius_km=400, capital_radius_km=400))
    resp = convert.courses_response(recs, query_id="Q", gap=["b", "a"], rules=base)
    assert [m.rank for m in resp.courses] == list(range(1, len(recs) + 1)) and recs
    assert list(resp.skill_gap) == ["a", "b"]
    back = convert.course_recommendation_from_pb(resp.courses[0])
    assert back["course_id"] == recs[0].course_id and back["reasons"] == list(recs[0].reasons)
    assert (back["distance_km"] is None) == recs[0].online


def test_course_table_of_a_refresh(world):
    from workers.kinds.courses import COURSE_RECS_SCHEMA, courses_for_postings

    postings, courses, _ = world
    idx = CourseIndex(courses, None)
    rules = CourseRuleConfig(ref_date=REF)
    table = courses_for_postings(postings.head(50), None, idx.search, 5, rules)
    assert dict(table.schema) == COURSE_RECS_SCHEMA
    for pid, grp in table.group_by("posting_id"):
        p = postings.filter(postings["posting_id"] == pid[0]).row(0, named=True)
        want = [r.course_id for r in idx.search(posting_query(p), 5, rules)]
        assert grp.sort("rank")["course_id"].to_list() == want
    assert table["rank"].max() == 5 and table.height > 100
