"""``jobrec.v1.CourseService`` end to end: real local Ray shard actors holding postings and
courses (a named collection), the server in-process on port 0, called over real gRPC.

Ground truth: one :class:`CourseIndex` over *all* courses (itself checked against a brute
force in tests/test_course_rules.py) with the posting's own vector, so any course lost by
the placement, the routing or the merge shows up as a difference.
"""

from __future__ import annotations

import datetime as dt

import grpc
import numpy as np
import pytest

from core.course_rank import CertificateDemand, CourseIndex, CourseQuery, posting_query
from core.course_rules import CourseRuleConfig
from core.rules import RuleConfig
from server.app import BackgroundServer, JobrecServer, ServerConfig
from server.errors import FIELD_METADATA_KEY
from server.generated.jobrec.v1 import courses_pb2 as cpb
from server.generated.jobrec.v1 import courses_pb2_grpc as cpb_grpc
from server.generated.jobrec.v1 import recommendation_pb2 as pb

REF = dt.date(2026, 11, 20)
DIM = 16


@pytest.fixture(scope="module")
def world():
    from core.synth import generate_course_corpus, generate_postings

    postings = generate_postings(800, 41, ref_date=REF)
    courses = generate_course_corpus(900, 42, ref_date=REF).courses
    rng = np.random.default_rng(5)
    pvec = rng.normal(size=(postings.height, DIM)).astype(np.float32)
    cvec = rng.normal(size=(courses.height, DIM)).astype(np.float32)
    pvec /= np.linalg.norm(pvec, axis=1, keepdims=True)
    cvec /= np.linalg.norm(cvec, axis=1, keepdims=True)
    return postings, pvec, courses, cvec


@pytest.fixture(scope="module")
def backend(ray_local, world):
    from workers.backend import RecommendationBackend
    from workers.engine.sharding import ShardingConfig

    postings, pvec, courses, cvec = world
    b = RecommendationBackend.build(postings, pvec, sharding=ShardingConfig(num_shards=2),
                                    rules=RuleConfig(ref_date=REF))
    assert b.load_courses(courses, cvec, CertificateDemand.from_postings(postings)) == courses.height
    yield b
    b.shutdown()


@pytest.fixture(scope="module")
def stub(backend):
    server = JobrecServer(backend, None, backend.rules, ServerConfig(port=0, health_interval_s=0),
                          course_rules=CourseRuleConfig(ref_date=REF))
    bg = BackgroundServer(server)
    port = bg.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield cpb_grpc.CourseServiceStub(channel)
    channel.close()
    bg.stop()


def _err(call, req) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(req, timeout=30)
    return info.value


def _field(err: grpc.RpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get(FIELD_METADATA_KEY)


def test_courses_for_posting_equal_one_whole_index(stub, world):
    postings, pvec, courses, cvec = world
    whole = CourseIndex(courses, cvec)
    rules = CourseRuleConfig(ref_date=REF)
    rng = np.random.default_rng(6)
    seen = 0
    for j in rng.choice(postings.height, 25, replace=False).tolist():
        p = postings.row(j, named=True)
        resp = stub.CoursesForPosting(cpb.CoursesForPostingRequest(posting_id=p["posting_id"], k=5),
                                      timeout=30)
        want = whole.search(posting_query(p, pvec[j]), 5, rules)
        assert [c.course_id for c in resp.courses] == [r.course_id for r in want]
        assert [c.rank for c in resp.courses] == list(range(1, len(want) + 1))
        for c, r in zip(resp.courses, want, strict=True):
            assert c.score == pytest.approx(r.score, abs=1e-5)
            assert list(c.reasons) == list(r.reasons) and c.online == r.online
            assert c.HasField("distance_km") == (r.distance_km is not None)
        assert resp.query_id == p["posting_id"] and resp.rules.ref_date == REF.isoformat()
        assert sorted(resp.skill_gap) == sorted(posting_query(p).gap.values())
        seen += len(want)
    assert seen > 50


def test_course_table_of_every_posting(backend, world):
    postings, pvec, courses, cvec = world
    whole = CourseIndex(courses, cvec)
    rules = CourseRuleConfig(ref_date=REF)
    table = backend.recommend_courses_all(3, rules)
    assert table["posting_id"].n_unique() == postings.height
    rng = np.random.default_rng(8)
    for j in rng.choice(postings.height, 20, replace=False).tolist():
        p = postings.row(j, named=True)
        got = table.filter(table["posting_id"] == p["posting_id"]).sort("rank")["course_id"].to_list()
        assert got == [r.course_id for r in whole.search(posting_query(p, pvec[j]), 3, rules)]


def test_held_certificates_and_overrides(stub, world):
    postings, pvec, courses, cvec = world
    j = next(i for i, c in enumerate(postings["certificates"].to_list()) if c)
    p = postings.row(j, named=True)
    held = list(posting_query(p).gap.values())
    resp = stub.CoursesForPosting(cpb.CoursesForPostingRequest(
        posting_id=p["posting_id"], k=10, held_certificates=held), timeout=30)
    assert list(resp.skill_gap) == [] and not any(c.gap_certificates for c in resp.courses)
    resp = stub.CoursesForPosting(cpb.CoursesForPostingRequest(
        posting_id=p["posting_id"], k=50,
        rules=cpb.CourseRuleOverrides(include_online=False, horizon_days=30)), timeout=30)
    assert not any(c.online for c in resp.courses)
    assert all(dt.date.fromisoformat(c.start_date) <= REF + dt.timedelta(days=30) for c in resp.courses)
    assert resp.rules.include_online is False and resp.rules.horizon_days == 30


def test_courses_for_seeker(stub, world, backend):
    postings, _, courses, cvec = world
    whole = CourseIndex(courses, cvec)
    rules = CourseRuleConfig(ref_date=REF)
    seeker = cpb.CourseSeekerProfile(home_region="경기 수원시 팔달구", desired_regions=["부산 해운대구"],
                               desired_occupation_codes=["824100", "531700"],
                               certificates=["용접기능사"])
    resp = stub.CoursesForSeeker(cpb.CoursesForSeekerRequest(seeker=seeker, k=8), timeout=30)
    from core.course_rank import resolve_anchors, seeker_query

    anchors = resolve_anchors(None, None, None, "경기 수원시 팔달구", ["부산 해운대구"])
    q = seeker_query(anchors, ["824100", "531700"], ["용접기능사"], backend.certificate_demand,
                     whole.cfg)
    want = whole.search(q, 8, rules)
    assert [c.course_id for c in resp.courses] == [r.course_id for r in want] and want
    assert "용접기능사" not in resp.skill_gap and sorted(resp.skill_gap) == sorted(q.gap.values())
    # both places are served: courses near Busan and near Suwon
    near = {c.course_id for c in stub.CoursesForSeeker(cpb.CoursesForSeekerRequest(
        seeker=seeker, k=100, rules=cpb.CourseRuleOverrides(include_online=False)), timeout=30).courses}
    sido = dict(zip(courses["course_id"].to_list(), courses["sido"].to_list(), strict=True))
    assert {"부산광역시", "경기도"} <= {sido[c] for c in near}
    assert isinstance(CourseQuery(tuple(anchors)), CourseQuery)


def test_courses_for_a_stored_seeker_by_id(backend, world):
    """A seeker of the matching store, by id: the same courses as one whole index for the
    seeker's stored home (province of the nearest region) and desired regions."""
    from core.course_rank import resolve_anchors, seeker_query
    from core.regions import nearest_sido
    from core.synth.seekers import generate_seekers
    from workers.matching.service import LexicalEncoder, MatchService

    postings, pvec, courses, cvec = world
    seekers = generate_seekers(30, 43, postings=postings, ref_date=REF)
    svec = np.zeros((seekers.height, DIM), dtype=np.float32)
    svec[:, 0] = 1.0
    matching = MatchService(postings, pvec, seekers, svec, LexicalEncoder(DIM), num_shards=1)
    server = JobrecServer(backend, None, backend.rules, ServerConfig(port=0, health_interval_s=0),
                          course_rules=CourseRuleConfig(ref_date=REF), matching=matching)
    whole = CourseIndex(courses, cvec)
    rules = CourseRuleConfig(ref_date=REF)
    with BackgroundServer(server) as bg, grpc.insecure_channel(f"127.0.0.1:{bg.port}") as ch:
        stub = cpb_grpc.CourseServiceStub(ch)
        checked = 0
        for row in seekers.head(12).iter_rows(named=True):
            resp = stub.CoursesForSeeker(cpb.CoursesForSeekerRequest(seeker_id=row["seeker_id"], k=10),
                                         timeout=30)
            home = [] if row["home_lat"] is None else [(row["home_lat"], row["home_lng"])]
            anchors = [(la, ln, nearest_sido(la, ln)) for la, ln in home] + resolve_anchors(
                None, None, None, None, [f"{r['sido']} {r['sigungu'] or ''}".strip()
                                         for r in row["desired_regions"]])
            q = seeker_query(anchors, row["desired_occupations"], row["certificates"],
                             backend.certificate_demand, whole.cfg)
            want = whole.search(q, 10, rules)
            assert [c.course_id for c in resp.courses] == [r.course_id for r in want]
            assert resp.query_id == row["seeker_id"]
            assert sorted(resp.skill_gap) == sorted(q.gap.values())
            checked += bool(want)
        assert checked >= 6
        err = _err(stub.CoursesForSeeker, cpb.CoursesForSeekerRequest(seeker_id="S-nope"))
        assert err.code() == grpc.StatusCode.NOT_FOUND


def test_nearest_province_of_a_point(world):
    from core.regions import nearest_sido

    postings = world[0]
    got = [nearest_sido(la, ln) for la, ln in zip(postings["lat"], postings["lng"], strict=True)]
    agree = np.mean(np.array(got) == postings["sido"].to_numpy())
    assert agree >= 0.97, agree  # postings lie within a few km of their region's centroid


def test_error_codes(stub, world):
    postings = world[0]
    pid = postings["posting_id"][0]
    err = _err(stub.CoursesForPosting, cpb.CoursesForPostingRequest(posting_id="K-nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = _err(stub.CoursesForPosting, cpb.CoursesForPostingRequest(posting_id=pid, k=500))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(err) == "k"
    err = _err(stub.CoursesForPosting, cpb.CoursesForPostingRequest(
        posting_id=pid, rules=cpb.CourseRuleOverrides(other_radius_km=80)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(err) == "rules.other_radius_km"
    err = _err(stub.CoursesForPosting, cpb.CoursesForPostingRequest(
        posting_id=pid, rules=cpb.CourseRuleOverrides(ref_date="2026/11/20")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(err) == "rules.ref_date"
    err = _err(stub.CoursesForPosting, cpb.CoursesForPostingRequest())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(err) == "query"
    err = _err(stub.CoursesForPosting, cpb.CoursesForPostingRequest(posting=pb.Posting(posting_id="x")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # no encoder on this server
    bad = cpb.CourseSeekerProfile(home_region="아틀란티스", desired_occupation_codes=["824100"])
    err = _err(stub.CoursesForSeeker, cpb.CoursesForSeekerRequest(seeker=bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(err) == "seeker.home_region"
    err = _err(stub.CoursesForSeeker, cpb.CoursesForSeekerRequest(
        seeker=cpb.CourseSeekerProfile(home_region="서울 강남구")))
    assert _field(err) == "seeker.desired_occupation_codes"
    err = _err(stub.CoursesForSeeker, cpb.CoursesForSeekerRequest())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(err) == "seeker"
    err = _err(stub.CoursesForSeeker, cpb.CoursesForSeekerRequest(seeker_id="S1"))  # no seeker store
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(err) == "seeker_id"


def test_unavailable_without_courses(ray_local, world):
    from workers.backend import RecommendationBackend
    from workers.engine.sharding import ShardingConfig

    postings, pvec, _, _ = world
    b = RecommendationBackend.build(postings.head(100), pvec[:100],
                                    sharding=ShardingConfig(num_shards=1), rules=RuleConfig(ref_date=REF))
    try:
        server = JobrecServer(b, None, b.rules, ServerConfig(port=0, health_interval_s=0),
                              course_rules=CourseRuleConfig(ref_date=REF))
        with BackgroundServer(server) as bg, grpc.insecure_channel(f"127.0.0.1:{bg.port}") as ch:
            err = _err(cpb_grpc.CourseServiceStub(ch).CoursesForPosting,
                       cpb.CoursesForPostingRequest(posting_id=postings["posting_id"][0]))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        b.shutdown()
