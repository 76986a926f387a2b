"""Course rules and ranking against an independent brute force (math.haversine, the rules
written out again from their statement), the vectorised mask against the scalar reference,
and the certificate-gap boost."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.course_rank import (
    CertificateDemand,
    CourseIndex,
    CourseQuery,
    CourseRankConfig,
    posting_query,
    seeker_query,
)
from core.course_rules import (
    CourseRuleConfig,
    anchor_columns,
    course_passes,
    course_rule_columns,
    courses_columns,
    pair_mask,
)
from core.courses import keco_mids_for_ncs
from core.errors import InvalidInputError
from core.reference import keco_groups
from core.synth import generate_course_corpus, generate_postings

REF = dt.date(2026, 11, 20)
CAPITAL = {"서울특별시", "경기도", "인천광역시"}


def _hav(lat1, lng1, lat2, lng2) -> float:
    r = 6371.0088
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2)
    return 2 * r * math.asin(math.sqrt(min(1.0, a)))


def _brute_ok(anchors, c, cfg: CourseRuleConfig, ref: dt.date) -> bool:
    """The rules of core.course_rules' docstring, written out again."""
    if c["online"] and not cfg.include_online:
        return False
    if not c["online"] and not any(
        _hav(la, ln, c["lat"], c["lng"]) <= (20.0 if s in CAPITAL else 40.0) for la, ln, s in anchors
    ):
        return False
    s, e = c["start_date"], c["end_date"]
    if not ((ref <= s <= ref + dt.timedelta(days=cfg.horizon_days))
            or (cfg.admit_running and s < ref and (e is None or e >= ref))):
        return False
    return not (c["capacity"] is not None and (c["enrolled"] or 0) >= c["capacity"])


@pytest.fixture(scope="module")
def world():
    postings = generate_postings(1500, 21, ref_date=REF)
    corpus = generate_course_corpus(1500, 22, ref_date=REF)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(corpus.courses.height, 16)).astype(np.float32)
    return postings, corpus, vecs


def _brute_rank(anchors, qvec, fams, gap, courses, vecs, cfg, rank: CourseRankConfig):
    out = []
    for i, c in enumerate(courses.iter_rows(named=True)):
        if not _brute_ok(anchors, c, cfg, REF):
            continue
        s = 0.0
        if qvec is not None:
            s += rank.w_vector * float(np.dot(vecs[i] / np.linalg.norm(vecs[i]), qvec / np.linalg.norm(qvec)))
        if set(keco_mids_for_ncs(c["ncs_code"])) & fams:
            s += rank.w_family
        certs = [x.strip().replace(" ", "").lower() for x in (c["certificate"] or "").split(",")]
        if any(k in gap for k in certs if k):
            s += rank.w_gap
        out.append((-round(s, 6), c["start_date"], c["course_id"]))
    return [cid for _, _, cid in sorted(out)]


def test_search_equals_brute_force(world):
    postings, corpus, vecs = world
    rank = CourseRankConfig()
    idx = CourseIndex(corpus.courses, vecs, rank)
    rules = CourseRuleConfig(ref_date=REF)
    rng = np.random.default_rng(1)
    checked = 0
    for j in rng.choice(postings.height, 40, replace=False).tolist():
        p = postings.row(j, named=True)
        qvec = rng.normal(size=16).astype(np.float32)
        q = posting_query(p, qvec)
        got = [r.course_id for r in idx.search(q, 10_000, rules)]
        fams = {g.mid_code for g in keco_groups(p["occupation_code"])}
        want = _brute_rank([(p["lat"], p["lng"], p["sido"])], qvec, fams, set(q.gap),
                           corpus.courses, vecs, rules, rank)
        assert got == want
        checked += len(got)
        top = idx.search(q, 5, rules)
        assert [r.course_id for r in top] == want[:5]
        for r in top:  # reasons state the facts the rules checked
            c = corpus.courses.row(int(np.flatnonzero(corpus.courses["course_id"] == r.course_id)[0]),
                                   named=True)
            if r.online:
                assert r.distance_km is None and r.reasons[0].startswith("온라인")
            else:
                assert r.distance_km == pytest.approx(_hav(p["lat"], p["lng"], c["lat"], c["lng"]), abs=1e-3)
                assert r.reasons[0].startswith(f"거리 {r.distance_km:.1f}km")
            assert c["start_date"].isoformat() in r.reasons[1]
            assert r.reasons[2].startswith(("자부담", "수강비"))
    assert checked > 200  # the rules leave real work to compare


def test_seeker_with_two_anchors_and_rule_knobs(world):
    _, corpus, vecs = world
    idx = CourseIndex(corpus.courses, vecs)
    anchors = [(37.5665, 126.9780, "서울특별시"), (35.1796, 129.0756, "부산광역시")]
    for cfg in (CourseRuleConfig(ref_date=REF),
                CourseRuleConfig(ref_date=REF, include_online=False, admit_running=False,
                                 horizon_days=30),
                CourseRuleConfig(ref_date=REF, exclude_full=False, horizon_days=60)):
        got = {r.course_id for r in idx.search(CourseQuery(tuple(anchors)), 10_000, cfg)}
        want = set()
        for c in corpus.courses.iter_rows(named=True):
            if cfg.exclude_full:
                ok = _brute_ok(anchors, c, cfg, REF)
            else:
                ok = _brute_ok(anchors, {**c, "capacity": None}, cfg, REF)
            if ok:
                want.add(c["course_id"])
        assert got == want and got
    cfg = CourseRuleConfig(ref_date=REF, include_online=False)
    got = idx.search(CourseQuery(tuple(anchors)), 10_000, cfg)
    assert not any(r.online for r in got)


_DAY = st.integers(-60, 200).map(lambda d: REF + dt.timedelta(days=d))


@given(
    qlat=st.floats(34.0, 38.0), qlng=st.floats(126.0, 129.5), capital=st.booleans(),
    clat=st.floats(34.0, 38.0), clng=st.floats(126.0, 129.5), online=st.booleans(),
    start=_DAY, length=st.one_of(st.none(), st.integers(0, 120)),
    capacity=st.one_of(st.none(), st.integers(0, 40)), enrolled=st.one_of(st.none(), st.integers(0, 45)),
    horizon=st.one_of(st.none(), st.integers(0, 150)), running=st.booleans(), online_ok=st.booleans(),
)
def test_vectorised_mask_equals_scalar(qlat, qlng, capital, clat, clng, online, start, length,
                                       capacity, enrolled, horizon, running, online_ok):
    cfg = CourseRuleConfig(ref_date=REF, horizon_days=horizon, admit_running=running,
                           include_online=online_ok)
    end = None if length is None else start + dt.timedelta(days=length)
    sido = "서울특별시" if capital else "강원도"
    c = {"lat": clat, "lng": clng, "online": online, "start_date": start, "end_date": end,
         "capacity": capacity, "enrolled": enrolled}
    cols = course_rule_columns([clat], [clng], [online], [start], [end], [capacity], [enrolled])
    ok, dist = pair_mask(anchor_columns([qlat], [qlng], [sido]), cols, cfg)
    d = _hav(qlat, qlng, clat, clng)
    assert dist[0, 0] == pytest.approx(d, abs=1e-6)
    assert bool(ok[0, 0]) == course_passes({"sido": sido}, c, cfg, d)


def test_certificate_gap_boost(world):
    postings, corpus, _ = world
    weld = corpus.courses.filter(pl.col("certificate") == "용접기능사").row(0, named=True)
    # three classroom courses at the same place and date: only one grants 용접기능사
    base = {**weld, "online": False, "training_type": "classroom", "enrolled": 0, "capacity": 20,
            "start_date": REF + dt.timedelta(days=10), "end_date": REF + dt.timedelta(days=60)}
    rows = [{**base, "course_id": "A_1", "certificate": "특수용접기능사"},
            {**base, "course_id": "B_1", "certificate": "용접기능사"},
            {**base, "course_id": "C_1", "certificate": None}]
    courses = pl.DataFrame(rows, schema=corpus.courses.schema)
    idx = CourseIndex(courses, None)
    rules = CourseRuleConfig(ref_date=REF)
    posting = {"lat": weld["lat"], "lng": weld["lng"], "sido": weld["sido"],
               "occupation_code": "824100", "certificates": "용접기능사"}
    top = idx.search(posting_query(posting), 3, rules)
    assert top[0].course_id == "B_1" and top[0].gap_certificates == ("용접기능사",)
    assert "부족한 자격 취득: 용접기능사" in top[0].reasons
    assert top[0].family == "098" and top[0].score > top[1].score
    # the viewer already holds it: no gap, ties fall back to start date then id
    held = idx.search(posting_query(posting, held=["용접 기능사"]), 3, rules)
    assert [r.course_id for r in held] == ["A_1", "B_1", "C_1"] and not held[1].gap_certificates
    # a seeker: the gap comes from what postings of the desired occupation ask for
    demand = CertificateDemand.from_postings(pl.DataFrame({
        "occupation_code": ["824100"] * 4 + ["531700"],
        "certificates": ["용접기능사", "용접기능사, 지게차운전기능사", None, None, "바리스타"],
    }))
    cfg = CourseRankConfig(min_certificate_share=0.3)
    q = seeker_query([(weld["lat"], weld["lng"], weld["sido"])], ["824100"], [], demand, cfg)
    assert dict(q.gap) == {"용접기능사": "용접기능사"}  # 지게차 is asked by 1 of 4 < 30%
    assert idx.search(q, 1, rules)[0].course_id == "B_1"
    q = seeker_query([(weld["lat"], weld["lng"], weld["sido"])], ["824100"], ["용접기능사"], demand, cfg)
    assert not q.gap


def test_bad_settings():
    with pytest.raises(InvalidInputError, match="horizon_days"):
        CourseRuleConfig(horizon_days=-1)
    with pytest.raises(InvalidInputError, match="capital_radius_km"):
        CourseRuleConfig(capital_radius_km=0)
    with pytest.raises(InvalidInputError, match="w_gap"):
        CourseRankConfig(w_gap=-1)
    with pytest.raises(InvalidInputError, match="outside Korea"):
        CourseQuery(((0.0, 0.0, None),))
    with pytest.raises(InvalidInputError, match="at least one place"):
        CourseQuery(())
    idx = CourseIndex(generate_course_corpus(5, 1, ref_date=REF).courses, None)
    with pytest.raises(InvalidInputError, match="k must be"):
        idx.search(CourseQuery(((37.5, 127.0, "서울특별시"),)), 0, CourseRuleConfig())
    with pytest.raises(InvalidInputError, match="vectors for"):
        CourseIndex(idx.df, np.zeros((3, 4)))
    assert courses_columns(idx.df)["capacity"].dtype == np.int32
