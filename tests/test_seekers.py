"""Seekers: ingestion (every reject reason), résumé PII scrubbing, the generator, and
matching against an independent brute-force oracle (rules, exact top-k, fan-out merge, sort).

The oracle re-implements the rules from the issue text with plain Python (math haversine,
dict lookups, sorting), sharing no code with core.matching or workers.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from core.ingest.seekers import SEEKER_REJECT_REASONS, ingest_seekers
from core.matching import MatchConfig, sort_view
from core.pii import scrub_resume
from core.seekers import SEEKER_SCHEMA, seeker_text, validate_interactions, validate_seekers
from core.synth import generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from workers.jobs.match import (
    LocalShards,
    excluded_by_seeker,
    history_vectors,
    recommend_fanout,
    run_match,
    seeker_queries,
    shard_postings,
)
from workers.matching.index import JobIndex, SeekerIndex

REF = dt.date(2026, 11, 20)
HEADER = "구직자번호,성명,희망직종,희망지역,희망임금,최종학력,경력,경력사항,자격증,자기소개,거주지,최대통근거리,등록일,구직상태\n"


def _csv(tmp_path, body: str):
    p = tmp_path / "seekers.csv"
    p.write_text(HEADER + body, encoding="utf-8")
    return p


def test_ingest_csv_accepts_and_rejects_with_every_reason(tmp_path):
    rows = [
        'K1,홍길동,요양보호사,경기 수원시,월 250만원,고졸,3,요양보호사 3년,요양보호사 1급,"저는 홍길동입니다. 010-1234-5678",경기 수원시 팔달구,15,2024-05-01,구직중',
        "K2,,550100,서울 전체; 경기 성남시,230,대졸(4년),신입,,,성실합니다,,,,",
        "K3,,,서울,,,,,,,,,,",  # missing_occupation
        "K4,,없는직종xx,서울,,,,,,,,,,",  # unknown_occupation
        'K5,,"550100,027204,027205,027206",서울,,,,,,,,,,',  # too_many_occupations
        "K6,,550100,,,,,,,,,,,",  # missing_region
        "K7,,550100,중구,,,,,,,,,,",  # unknown_region (ambiguous)
        'K8,,550100,"서울 강남구,서울 서초구,서울 송파구,서울 강동구",,,,,,,,,,',  # too_many_regions
        "K9,,550100,서울,,대학원졸업학위,,,,,,,,",  # invalid_education
        "K10,,550100,서울,,,몇년,,,,,,,",  # invalid_career
        "K11,,550100,서울,월급 많이,,,,,,,,,",  # unparseable_wage
        "K12,,550100,서울,,,,,,,,30,,",  # invalid_location (commute without home)
        "K13,,550100,서울,,,,,,,,,not-a-date,",  # unparseable_date
        "K1,,550100,서울,,,,,,,,,,",  # duplicate_id
        ",,550100,서울,,,,,,,,,,",  # missing_id
        "K14,,550100",  # malformed_row
    ]
    res = ingest_seekers([_csv(tmp_path, "\n".join(rows) + "\n")], "csv", ref_date=REF)
    assert res.counts["read"] == len(rows) == res.counts["accepted"] + res.counts["rejected"]
    assert res.seekers["seeker_id"].to_list() == ["K1", "K2"]
    got = dict(zip(res.rejects["seeker_id"].fill_null("-").to_list(),
                   res.rejects["reason"].to_list(), strict=True))
    assert got["K3"] == "missing_occupation" and got["K4"] == "unknown_occupation"
    assert got["K5"] == "too_many_occupations" and got["K6"] == "missing_region"
    assert got["K7"] == "unknown_region" and got["K8"] == "too_many_regions"
    assert got["K9"] == "invalid_education" and got["K10"] == "invalid_career"
    assert got["K11"] == "unparseable_wage" and got["K12"] == "invalid_location"
    assert got["K13"] == "unparseable_date" and got["-"] in ("missing_id", "malformed_row")
    reasons = set(res.rejects["reason"].to_list())
    assert reasons == set(SEEKER_REJECT_REASONS) - {"invalid_employment_type"}
    k1 = res.seekers.row(0, named=True)
    assert k1["desired_regions"] == [{"sido": "경기도", "sigungu": "수원시"}]
    assert k1["desired_monthly_wage"] == 2_500_000 and k1["career_years"] == 3
    assert "홍길동" not in k1["resume_text"] and "010" not in k1["resume_text"]
    assert "홍길동" not in "".join(res.rejects["raw"].to_list())
    k2 = res.seekers.row(1, named=True)
    assert k2["desired_regions"] == [{"sido": "서울특별시", "sigungu": None},
                                     {"sido": "경기도", "sigungu": "성남시"}]
    assert k2["desired_monthly_wage"] == 2_300_000 and k2["education_level"] == 5


def test_generated_parquet_reingests_identically(tmp_path):
    p = generate_postings(600, 2, ref_date=REF)
    s = generate_seekers(80, 2, postings=p, ref_date=REF)
    s.write_parquet(tmp_path / "s.parquet")
    res = ingest_seekers([tmp_path / "s.parquet"], "parquet", ref_date=REF)
    assert res.counts["rejected"] == 0
    cols = [c for c in SEEKER_SCHEMA if c != "resume_text"]
    assert res.seekers.select(cols).equals(s.select(cols))


@pytest.mark.parametrize("text,gone", [
    ("이름: 홍길동 / 연락처 010-1234-5678", ["홍길동", "010-1234-5678"]),
    ("저는 김철수입니다. hong@example.com", ["김철수", "hong@example.com"]),
    ("주민번호 900101-1234567 입니다", ["900101-1234567"]),
    ("서울 강남구 테헤란로 123, 101동 1203호 거주", ["테헤란로 123", "1203호"]),
    ("역삼동 123-45 거주", ["123-45"]),
    ("박영희 드림", ["박영희"]),
])
def test_resume_pii_is_scrubbed(text, gone):
    out = scrub_resume(text)
    for g in gone:
        assert g not in out
    assert scrub_resume(out) == out  # idempotent


@pytest.mark.parametrize("text", ["요양보호사 5년, 고객 응대 경험 2년", "지게차 운전 10년",
                                  "3교대 근무 가능, 주 5일", "저는 신입입니다", "물류로 35년 근무"])
def test_resume_ordinary_text_is_kept(text):
    assert scrub_resume(text) == text


def test_resume_own_name_is_scrubbed():
    assert "이몽룡" not in scrub_resume("안녕하세요 이몽룡 지원자입니다", names=("이몽룡",))


@pytest.fixture(scope="module")
def world():
    postings = generate_postings(3000, 4, ref_date=REF)
    seekers = generate_seekers(250, 4, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, 4, days=3, ref_date=REF)
    rng = np.random.default_rng(0)
    pv = rng.standard_normal((postings.height, 16)).astype(np.float32)
    pv /= np.linalg.norm(pv, axis=1, keepdims=True)
    sv = rng.standard_normal((seekers.height, 16)).astype(np.float32)
    sv /= np.linalg.norm(sv, axis=1, keepdims=True)
    return postings, seekers, inter, pv, sv


def test_generator_distributions(world):
    postings, seekers, inter, _, _ = world
    validate_seekers(seekers)
    validate_interactions(inter)
    big = generate_seekers(3000, 9, ref_date=REF)
    age = REF.year - big["birth_year"].to_numpy()
    assert 0.44 < (age >= 40).mean() < 0.54
    assert 0.52 < (big["education_level"] >= 4).mean() < 0.66
    n = big["desired_regions"].list.len()
    assert (n == 1).mean() > 0.55 and (n >= 2).mean() > 0.2
    assert big["desired_regions"].list.eval(pl.element().struct.field("sigungu").is_null()).list.any().mean() > 0.03
    assert set(inter["event"].unique()) == {"shown", "clicked", "applied", "hidden"}
    assert seeker_text(seekers.row(0, named=True))
    assert postings["sigungu"].null_count() < postings.height * 0.05


# ----------------------------------------------------------------- the independent oracle
def _hav(a, b, c, d):
    p1, p2 = math.radians(a), math.radians(c)
    x = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(d - b) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, x)))


def _oracle_ok(s, p, ref, excluded):
    in_region = any(r["sido"] == p["sido"] and (r["sigungu"] is None or r["sigungu"] == p["sigungu"])
                    for r in s["desired_regions"])
    if not in_region:
        return False
    if s["max_commute_km"] is not None and \
            _hav(s["home_lat"], s["home_lng"], p["lat"], p["lng"]) > s["max_commute_km"]:
        return False
    if p["min_education_level"] > s["education_level"]:
        return False
    if p["career"] == "experienced" and s["career_years"] < max(1, p["min_career_years"] or 0):
        return False
    if p["closes_on"] is not None and p["closes_on"] < ref:
        return False
    return p["posting_id"] not in excluded


def test_batch_has_no_rule_violation_and_is_the_exact_top_k(world):
    postings, seekers, inter, pv, sv = world
    cfg = MatchConfig(k=30, ref_date=REF)
    frame, _ = run_match(seekers, postings, sv, pv, cfg, num_shards=2, interactions=inter,
                         use_ray=False, progress=False)
    ex = excluded_by_seeker(inter)
    prow = {r["posting_id"]: r for r in postings.iter_rows(named=True)}
    srow = {r["seeker_id"]: r for r in seekers.iter_rows(named=True)}
    assert frame.height > 0
    for sid, pid in frame.select("seeker_id", "posting_id").iter_rows():
        assert _oracle_ok(srow[sid], prow[pid], REF, ex.get(sid, frozenset()))
    assert set(frame["seeker_id"]) <= {s for s, r in srow.items() if r["active"]}
    # exact top-k on a sample: brute force over every posting with the scores recomputed
    index = JobIndex(postings, pv)
    hist = history_vectors(inter, postings["posting_id"].to_list(), pv)
    qs = {q.seeker_id: q for q in seeker_queries(seekers, sv, ex, hist)}
    from core.matching import job_scores

    got = {s: list(p) for s, p in frame.sort(["seeker_id", "rank"]).group_by(
        "seeker_id", maintain_order=True).agg("posting_id").iter_rows()}
    for sid in list(got)[:40]:
        s = srow[sid]
        ok = [j for j, pid in enumerate(index.side.ids) if
              _oracle_ok(s, prow[pid], REF, ex.get(sid, frozenset()))]
        sc = job_scores(qs[sid], index.side, np.array(ok, dtype=np.int64), cfg)
        order = sorted(zip(ok, sc.tolist(), strict=True), key=lambda t: (-t[1], index.side.ids[t[0]]))
        want, per = [], {}
        for j, _ in order:
            c = index.side.company[j]
            if per.get(c, 0) >= cfg.max_per_company:
                continue
            per[c] = per.get(c, 0) + 1
            want.append(index.side.ids[j])
            if len(want) == cfg.k:
                break
        assert got.get(sid, []) == want, sid


def test_fanout_merge_equals_single_global_search(world):
    postings, seekers, _, pv, sv = world
    # one company everywhere, so the cap binds across shards and the merge must re-query
    postings = postings.with_columns(
        pl.when(pl.arange(0, pl.len()) % 3 == 0).then(pl.lit("큰회사")).otherwise(pl.col("company"))
        .alias("company"))
    cfg = MatchConfig(k=25, ref_date=REF, max_per_company=3)
    qs = seeker_queries(seekers, sv)
    single = JobIndex(postings, pv)
    parts = shard_postings(postings, 4)
    shards = LocalShards([JobIndex(postings[p], pv[p]) for p in parts])
    company = dict(zip(postings["posting_id"], postings["company"], strict=True))
    holders = [[s for s in range(4) if shards.holds(s, q.areas)] for q in qs]
    assert any(len(h) > 1 for h in holders)
    fan = recommend_fanout(shards, holders, qs, cfg, company.__getitem__)
    for q, got in zip(qs, fan, strict=True):
        want = single.recommend(q, cfg)
        assert [m.item_id for m in got] == [m.item_id for m in want]


def test_new_posting_is_recommended_at_once(world):
    postings, seekers, _, pv, sv = world
    q = seeker_queries(seekers.head(1), sv[:1])[0]
    index = JobIndex(postings, pv)
    a = q.areas[0]
    new = postings.head(1).with_columns(
        pl.lit("NEW0001").alias("posting_id"), pl.lit(a.sido).alias("sido"),
        pl.lit(a.sigungu).alias("sigungu"), pl.lit(0, pl.Int8).alias("min_education_level"),
        pl.lit("any").alias("career"), pl.lit(None, pl.Date).alias("closes_on"),
        pl.lit(q.home[0]).alias("lat"), pl.lit(q.home[1]).alias("lng"),
        pl.lit(q.occupations[0]).alias("occupation_code"), pl.lit("새회사").alias("company"))
    index.upsert(new, q.vector[None, :])
    got = index.recommend(q, MatchConfig(k=5, ref_date=REF))
    assert got[0].item_id == "NEW0001"
    assert got[0].reasons["occupation_relation"] == "same_code"
    assert "희망직종 일치" in got[0].reason_text


def test_sort_views_keep_the_candidate_set(world):
    postings, seekers, _, pv, sv = world
    index = JobIndex(postings, pv)
    q = next(q for q in seeker_queries(seekers, sv) if len(index.recommend(q, MatchConfig(k=20, ref_date=REF))) >= 5)
    top = index.recommend(q, MatchConfig(k=20, ref_date=REF))
    rows = index.rows()
    for key in ("score", "wage", "deadline", "distance", "newest"):
        view = sort_view(top, key, frame_lookup=rows)
        assert sorted(m.item_id for m in view) == sorted(m.item_id for m in top)
    d = [m.reasons["distance_km"] for m in sort_view(top, "distance")]
    assert d == sorted(d)
    with pytest.raises(ValueError):
        sort_view(top, "salary")


def test_candidates_for_a_posting_follow_the_rules(world):
    postings, seekers, inter, pv, sv = world
    ex: dict[str, set[str]] = {}
    for s, p in inter.filter(pl.col("event").is_in(["applied", "hidden"])).select(
            "seeker_id", "posting_id").iter_rows():
        ex.setdefault(p, set()).add(s)
    idx = SeekerIndex(seekers, sv, ex)
    srow = {r["seeker_id"]: r for r in seekers.iter_rows(named=True)}
    cfg = MatchConfig(k=50, ref_date=REF)
    checked = 0
    for j, p in enumerate(postings.head(300).iter_rows(named=True)):
        got = idx.candidates_for(p, pv[j], cfg)
        want = {s for s, r in srow.items() if r["active"] and
                _oracle_ok(r, {**p, "closes_on": None}, REF, set()) and s not in ex.get(p["posting_id"], set())}
        assert {m.item_id for m in got} <= want
        if len(want) <= cfg.k:
            assert {m.item_id for m in got} == want
        checked += bool(got)
        for m in got:
            assert set(idx.profile(m.item_id)) == {"seeker_id", "desired_occupations", "desired_regions",
                                                   "education_level", "career_years"}
    assert checked > 20


def test_batch_on_ray_equals_local(world, ray_local):
    postings, seekers, inter, pv, sv = world
    cfg = MatchConfig(k=20, ref_date=REF)
    a, _ = run_match(seekers, postings, sv, pv, cfg, num_shards=2, interactions=inter,
                     use_ray=True, progress=False)
    b, _ = run_match(seekers, postings, sv, pv, cfg, num_shards=2, interactions=inter,
                     use_ray=False, progress=False)
    assert a.select("seeker_id", "rank", "posting_id").equals(b.select("seeker_id", "rank", "posting_id"))


@pytest.mark.parametrize("wage_hard", [False, True])
def test_kernel_rule_set_equals_scalar_reference(world, wage_hard):
    """SEEKER_JOB_RULES in the engine kernel + region + commute == core.matching.pair_passes."""
    from core.matching import AreaCodes, PostingSide, jobs_mask, pair_passes

    postings, seekers, _, pv, sv = world
    cfg = MatchConfig(ref_date=REF, wage_hard=wage_hard)
    areas = AreaCodes()
    side = PostingSide.build(postings, pv, areas)
    prow = list(postings.iter_rows(named=True))
    rng = np.random.default_rng(1)
    idx = rng.choice(postings.height, 800, replace=False)
    passed = 0
    for q, row in zip(seeker_queries(seekers.head(60), sv[:60]), seekers.head(60).iter_rows(named=True),
                      strict=True):
        got = jobs_mask(q, side, areas, idx, cfg)
        want = np.array([pair_passes(row, prow[j], cfg) for j in idx])
        assert (got == want).all()
        passed += int(got.sum())
    assert passed > 0
