"""core.rules: config validation, haversine, the scalar rules, the vectorised kernel, selection."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidInputError
from core.rules import (
    MAX_K,
    POSTING_RULES,
    RuleConfig,
    check_k,
    haversine_km,
    haversine_km_grid,
    passes,
    posting_rule_columns,
    radius_for,
    select_top_k,
    unit_xyz,
)

REF = date(2024, 6, 1)


def posting(pid="a", *, sido="서울특별시", edu=0, career="any", years=0, closes=None):
    return {
        "posting_id": pid,
        "sido": sido,
        "min_education_level": edu,
        "career": career,
        "min_career_years": years,
        "closes_on": closes,
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"capital_radius_km": 0}, "capital_radius_km"),
        ({"other_radius_km": -1.0}, "other_radius_km"),
        ({"other_radius_km": float("nan")}, "other_radius_km"),
        ({"capital_radius_km": True}, "capital_radius_km"),
        ({"education_policy": "loose"}, "education_policy"),
        ({"career_filter": 1}, "career_filter"),
        ({"exclude_expired": "yes"}, "exclude_expired"),
        ({"max_per_company": -1}, "max_per_company"),
        ({"max_per_company": 2.0}, "max_per_company"),
        ({"ref_date": "2024-06-01"}, "ref_date"),
    ],
)
def test_rule_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError) as exc:
        RuleConfig(**kwargs)
    assert isinstance(exc.value, InvalidInputError)
    assert exc.value.field == field


def test_rule_config_defaults():
    cfg = RuleConfig()
    assert (cfg.capital_radius_km, cfg.other_radius_km, cfg.max_per_company) == (20.0, 40.0, 2)
    assert cfg.education_policy == "strict" and cfg.max_radius_km == 40.0
    assert cfg.effective_ref_date() == date.today()


def test_haversine_against_known_distances():
    # one degree of longitude on the equator is 2*pi*R/360
    assert haversine_km(0.0, 0.0, 0.0, 1.0) == pytest.approx(2 * math.pi * 6371.0088 / 360, 1e-9)
    # Seoul City Hall - Busan City Hall, about 325 km
    assert haversine_km(37.5663, 126.9779, 35.1798, 129.0750) == pytest.approx(325, abs=3)
    lat = np.array([37.5, 35.1])
    d = haversine_km(lat[:, None], 127.0, lat[None, :], 127.5)
    assert d.shape == (2, 2) and d[0, 0] == pytest.approx(d[1, 1] * math.cos(math.radians(37.5))
                                                          / math.cos(math.radians(35.1)), 1e-3)
    assert haversine_km(36.0, 128.0, 36.0, 128.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 60), seed=st.integers(0, 10_000))
def test_haversine_grid_is_haversine_to_the_bit(m, n, seed):
    rng = np.random.default_rng(seed)
    la1, lo1 = rng.uniform(33, 39, m), rng.uniform(124, 132, m)
    la2, lo2 = rng.uniform(33, 39, n), rng.uniform(124, 132, n)
    la2[0], lo2[0] = la1[0], lo1[0]  # a zero distance
    la2[-1], lo2[-1] = la1[-1] + 1e-9, lo1[-1]  # a tiny one
    got = haversine_km_grid(la1, lo1, la2, lo2)
    assert np.array_equal(got, haversine_km(la1[:, None], lo1[:, None], la2[None, :], lo2[None, :]))
    for i in range(m):  # the one-seeker path of the scalar reference
        assert np.array_equal(got[i], haversine_km(la1[i], lo1[i], la2, lo2))


def test_radius_for():
    cfg = RuleConfig(capital_radius_km=15, other_radius_km=35)
    for sido in ("서울특별시", "경기도", "인천광역시"):
        assert radius_for(sido, cfg) == 15
    for sido in ("부산광역시", "강원도", "세종특별자치시", None):
        assert radius_for(sido, cfg) == 35


def test_distance_rule_depends_on_the_viewed_posting():
    cfg = RuleConfig()
    q_cap, q_other, c = posting("q", sido="경기도"), posting("q", sido="충청북도"), posting("c")
    assert passes(q_cap, c, cfg, 20.0) and not passes(q_cap, c, cfg, 20.01)
    assert passes(q_other, c, cfg, 40.0) and not passes(q_other, c, cfg, 40.01)


def test_education_strict_and_lenient():
    strict, lenient = RuleConfig(), RuleConfig(education_policy="lenient_no_requirement")
    q0, q3 = posting("q", edu=0), posting("q", edu=3)
    c0, c3, c5 = posting("c", edu=0), posting("c", edu=3), posting("c", edu=5)
    assert passes(q0, c0, strict, 1) and not passes(q0, c3, strict, 1)
    assert passes(q3, c3, strict, 1) and passes(q3, c0, strict, 1) and not passes(q3, c5, strict, 1)
    # lenient: a 학력무관 posting is shown every education level; others unchanged
    assert passes(q0, c5, lenient, 1) and not passes(q3, c5, lenient, 1)


def test_career_rules():
    cfg = RuleConfig()
    entry, any_ = posting("q", career="entry"), posting("q", career="any", years=5)
    exp3 = posting("q", career="experienced", years=3)
    c_exp5, c_exp2 = posting("c", career="experienced", years=5), posting("c", career="experienced", years=2)
    c_entry, c_any = posting("c", career="entry"), posting("c", career="any")
    assert not passes(entry, c_exp2, cfg, 1) and passes(entry, c_entry, cfg, 1)
    assert passes(entry, c_any, cfg, 1)
    assert passes(exp3, c_exp2, cfg, 1) and not passes(exp3, c_exp5, cfg, 1)
    assert passes(exp3, c_entry, cfg, 1)
    assert passes(any_, c_exp5, cfg, 1)  # 관계없음: no career filter at all
    assert passes(entry, c_exp5, RuleConfig(career_filter=False), 1)


def test_expiry_self_and_ref_date():
    cfg = RuleConfig(ref_date=REF)
    q = posting("q")
    assert passes(q, posting("c", closes=REF), cfg, 1)
    assert not passes(q, posting("c", closes=REF - timedelta(days=1)), cfg, 1)
    assert passes(q, posting("c", closes=None), cfg, 1)
    assert passes(q, posting("c", closes=REF - timedelta(days=1)), RuleConfig(exclude_expired=False), 1)
    assert not passes(q, posting("q"), cfg, 0.0)


def rule_columns(rows, lat=None, lng=None):
    """Kernel columns of posting dicts (row = position, for "not itself")."""
    cols = posting_rule_columns(
        [r["min_education_level"] for r in rows],
        [r["career"] for r in rows],
        [r["min_career_years"] for r in rows],
        [r["closes_on"] for r in rows],
        [r["sido"] for r in rows],
    )
    cols["row"] = np.arange(len(rows))
    if lat is not None:
        cols["lat"], cols["lng"], cols["xyz"] = lat, lng, unit_xyz(lat, lng)
    return cols


def test_vectorised_mask_matches_scalar_rules():
    rng = np.random.default_rng(7)
    n = 400
    rows = [
        posting(
            f"p{i}",
            sido=str(rng.choice(["서울특별시", "강원도"])),
            edu=int(rng.choice([0, 1, 3, 4, 5, 7])),
            career=str(rng.choice(["entry", "experienced", "any"])),
            years=int(rng.integers(0, 6)),
            closes=None if rng.random() < 0.3 else REF + timedelta(days=int(rng.integers(-5, 5))),
        )
        for i in range(n)
    ]
    lat, lng = 37.0 + rng.uniform(-0.4, 0.4, n), 127.5 + rng.uniform(-0.5, 0.5, n)
    arr = rule_columns(rows, lat, lng)
    d = haversine_km(lat[:, None], lng[:, None], lat[None, :], lng[None, :])
    for cfg in (
        RuleConfig(ref_date=REF),
        RuleConfig(ref_date=REF, education_policy="lenient_no_requirement", career_filter=False),
        RuleConfig(ref_date=REF, exclude_expired=False),
    ):
        qs = np.arange(0, n, 7)
        q = {k: v[qs] for k, v in arr.items()}
        got = POSTING_RULES.pair_mask(q, arr, cfg)
        for a, i in enumerate(qs.tolist()):
            mask = got[a]
            want = np.array([passes(rows[i], c, cfg, float(d[i, j])) for j, c in enumerate(rows)])
            assert np.array_equal(mask, want)


posting_st = st.fixed_dictionaries(
    {
        "posting_id": st.sampled_from(["a", "b", "c"]),
        "sido": st.sampled_from(["서울특별시", "경기도", "인천광역시", "강원도", "부산광역시"]),
        "min_education_level": st.integers(0, 7),
        "career": st.sampled_from(["entry", "experienced", "any"]),
        "min_career_years": st.one_of(st.none(), st.integers(0, 10)),
        "closes_on": st.one_of(st.none(), st.dates(REF - timedelta(days=3), REF + timedelta(days=3))),
    }
)
cfg_st = st.builds(
    RuleConfig,
    capital_radius_km=st.sampled_from([5.0, 20.0]),
    other_radius_km=st.sampled_from([10.0, 40.0]),
    education_policy=st.sampled_from(["strict", "lenient_no_requirement"]),
    career_filter=st.booleans(),
    exclude_expired=st.booleans(),
    ref_date=st.just(REF),
)


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(posting_st, posting_st, st.sampled_from([0.0, 4.99, 5.0, 5.01, 10.0, 20.0,
                                                           20.01, 39.9, 40.0, 41.0])),
        min_size=1, max_size=30,
    ),
    cfg=cfg_st,
)
def test_kernel_equals_passes_on_random_pairs(pairs, cfg):
    """The kernel (aligned pairs, given distances; and the q x c matrix with coordinates)
    says exactly what the scalar reference says, pair by pair."""
    qs = [q for q, _, _ in pairs]
    cs = [c for _, c, _ in pairs]
    dist = np.array([d for _, _, d in pairs])
    q_cols, c_cols = rule_columns(qs), rule_columns(cs)
    # "not itself" compares keys: the same key for the same posting_id
    key = {p: i for i, p in enumerate("abc")}
    q_cols["row"] = np.array([key[q["posting_id"]] for q in qs])
    c_cols["row"] = np.array([key[c["posting_id"]] for c in cs])
    got = POSTING_RULES.pairs_mask(q_cols, c_cols, cfg, distance_km=dist)
    want = [passes(q, c, cfg, float(d)) for q, c, d in zip(qs, cs, dist, strict=True)]
    assert got.tolist() == want
    # the matrix form with coordinates: candidates spread at known bearings around q
    lat = np.linspace(36.0, 37.5, len(qs))
    lng = np.linspace(127.0, 128.4, len(cs))
    q_cols.update(lat=lat, lng=np.full(len(qs), 127.7), xyz=unit_xyz(lat, np.full(len(qs), 127.7)))
    c_lat = np.full(len(cs), 36.8)
    c_cols.update(lat=c_lat, lng=lng, xyz=unit_xyz(c_lat, lng))
    mat = POSTING_RULES.pair_mask(q_cols, c_cols, cfg)
    d = haversine_km(lat[:, None], 127.7, c_lat[None, :], lng[None, :])
    for i, q in enumerate(qs):
        assert mat[i].tolist() == [passes(q, c, cfg, float(d[i, j])) for j, c in enumerate(cs)]


def test_check_k_is_the_one_limit():
    assert check_k(1) == 1 and check_k(MAX_K) == MAX_K
    for bad in (0, MAX_K + 1, "3", True, 2.0):
        with pytest.raises(InvalidInputError) as exc:
            check_k(bad)
        assert exc.value.field == "k"


def test_select_top_k_ties_company_cap_and_fill():
    scores = np.array([0.9, 0.9, 0.9, 0.8, 0.7, -np.inf, 0.95], dtype=np.float32)
    ids = ["d", "b", "c", "a", "e", "f", "z"]
    comp = ["X", "X", "Y", "X", "Z", "Z", "X"]
    # z (X), then ties by id: b (X) ... X is capped at 2 -> c (Y), d (X) skipped, a skipped, e
    assert select_top_k(scores, ids, comp, 4, 2) == [6, 1, 2, 4]
    assert select_top_k(scores, ids, comp, 4, 0) == [6, 1, 2, 0]
    # fewer than k only when fewer qualify; -inf never selected
    assert select_top_k(scores, ids, comp, 10, 1) == [6, 2, 4]
    assert select_top_k(scores, ids, comp, 0, 2) == []


def test_select_top_k_large_with_partition_matches_full_sort():
    rng = np.random.default_rng(3)
    n = 5000
    scores = np.round(rng.random(n), 2).astype(np.float32)  # many ties
    ids = [f"id{i:05d}" for i in rng.permutation(n)]
    comp = rng.integers(0, 3, n).tolist()  # few companies: the cap bites hard
    got = select_top_k(scores, ids, comp, 6, 2)
    order = sorted(range(n), key=lambda j: (-float(scores[j]), ids[j]))
    want, per = [], {}
    for j in order:
        if per.get(comp[j], 0) < 2:
            per[comp[j]] = per.get(comp[j], 0) + 1
            want.append(j)
    assert got == want[:6]
