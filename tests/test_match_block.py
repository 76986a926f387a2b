"""The block (matrix) matching path against the scalar references it replaces.

``top_k_rows`` against ``select_top_k`` on adversarial scores (ties, -inf, a binding company
cap); the batch's array merge against one global search when the cap binds across shards;
the batch's columnar reasons and 추천기준 text against the online ones, field by field.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.match_block import _fixed, company_codes, sort_ranks, top_k_rows
from core.matching import MatchConfig, fixed_text
from core.rules import select_top_k
from core.synth import generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from workers.jobs.match import (
    LocalShards,
    excluded_by_seeker,
    history_vectors,
    run_match,
    seeker_queries,
    shard_postings,
)
from workers.matching.index import JobIndex

REF = dt.date(2026, 11, 20)


@settings(max_examples=150, deadline=None)
@given(g=st.integers(1, 6), n=st.integers(1, 300), k=st.integers(1, 40), cap=st.integers(0, 3),
       levels=st.integers(1, 12), comps=st.integers(1, 8), dead=st.floats(0, 0.9),
       seed=st.integers(0, 10_000))
def test_top_k_rows_equals_select_top_k(g, n, k, cap, levels, comps, dead, seed):
    rng = np.random.default_rng(seed)
    # few distinct levels: many exact ties, broken by id
    scores = rng.integers(0, levels, size=(g, n)).astype(np.float64)
    scores[rng.random((g, n)) < dead] = -np.inf
    ids = np.array([f"P{x:05d}" for x in rng.permutation(n)], dtype=object)
    companies = np.array([f"C{x}" for x in rng.integers(0, comps, n)], dtype=object)
    got = top_k_rows(scores, sort_ranks(ids), company_codes(companies), k, cap, ids, companies)
    for r in range(g):
        assert got[r].tolist() == select_top_k(scores[r], ids, companies, k, cap)


@pytest.mark.parametrize("x", [0.0, 0.05, 0.15, 2.25, 2.35, -0.05, -0.004, -1.25, 0.995, 12.3456,
                               -0.3712, 0.3159])
def test_fixed_text_matches_the_batch_expression(x):
    for places in (1, 2):
        batch = pl.DataFrame({"v": [x]}).select(_fixed("v", places)).item()
        assert batch == fixed_text(x, places)


@pytest.fixture(scope="module")
def world():
    postings = generate_postings(2500, 8, ref_date=REF)
    seekers = generate_seekers(200, 8, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, 8, days=3, ref_date=REF)
    rng = np.random.default_rng(1)
    pv = rng.standard_normal((postings.height, 16)).astype(np.float32)
    pv /= np.linalg.norm(pv, axis=1, keepdims=True)
    # duplicated vectors: exact score ties the id order must settle everywhere
    pv[1::7] = pv[0::7][: len(pv[1::7])]
    sv = rng.standard_normal((seekers.height, 16)).astype(np.float32)
    sv /= np.linalg.norm(sv, axis=1, keepdims=True)
    return postings, seekers, inter, pv, sv


def test_batch_merge_equals_one_global_search_when_the_cap_binds(world):
    postings, seekers, inter, pv, sv = world
    postings = postings.with_columns(
        pl.when(pl.arange(0, pl.len()) % 3 == 0).then(pl.lit("큰회사")).otherwise(pl.col("company"))
        .alias("company"))
    cfg = MatchConfig(k=25, ref_date=REF, max_per_company=3)
    frame, _ = run_match(seekers, postings, sv, pv, cfg, num_shards=4, interactions=inter,
                         use_ray=False, progress=False)
    got = {s: list(p) for s, p in frame.sort(["seeker_id", "rank"]).group_by(
        "seeker_id", maintain_order=True).agg("posting_id").iter_rows()}
    single = JobIndex(postings, pv)
    ex = excluded_by_seeker(inter)
    hist = history_vectors(inter, postings["posting_id"].to_list(), pv)
    act = seekers["active"].to_numpy()
    qs = seeker_queries(seekers.filter(pl.Series(act)), sv[act], ex, hist)
    parts = shard_postings(postings, 4)
    shards = LocalShards([JobIndex(postings[p], pv[p]) for p in parts])
    multi = sum(sum(shards.holds(s, q.areas) for s in range(4)) > 1 for q in qs)
    assert multi > 10  # the merge is exercised
    for q in qs:
        want = [m.item_id for m in single.recommend(q, cfg)]
        assert got.get(q.seeker_id, []) == want, q.seeker_id


def test_batch_reasons_equal_the_online_ones(world):
    postings, seekers, inter, pv, sv = world
    cfg = MatchConfig(k=30, ref_date=REF)
    frame, _ = run_match(seekers, postings, sv, pv, cfg, num_shards=1, interactions=inter,
                         use_ray=False, progress=False)
    index = JobIndex(postings, pv)
    ex = excluded_by_seeker(inter)
    hist = history_vectors(inter, postings["posting_id"].to_list(), pv)
    act = seekers["active"].to_numpy()
    qs = seeker_queries(seekers.filter(pl.Series(act)), sv[act], ex, hist)
    checked = 0
    for q in qs[:60]:
        online = index.recommend(q, cfg)
        batch = frame.filter(pl.col("seeker_id") == q.seeker_id).sort("rank")
        assert batch["posting_id"].to_list() == [m.item_id for m in online]
        for m, (score, reasons, text) in zip(online, batch.select("score", "reasons", "reason_text")
                                             .iter_rows(), strict=True):
            assert json.loads(reasons) == m.reasons
            assert text == m.reason_text
            assert score == pytest.approx(m.score, abs=1e-6)
            checked += 1
    assert checked > 300


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 80), shards=st.integers(1, 4), k=st.integers(1, 20), cap=st.integers(0, 3),
       comps=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_union_of_shard_top_lists_holds_the_global_top_k(n, shards, k, cap, comps, seed):
    """Why the merge never asks a shard again: the capped top-k of the union of per-shard
    capped top-k lists equals the global capped top-k (ties and a binding cap included)."""
    from core.matching import Match
    from workers.matching.index import merge_exact

    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, n).astype(np.float64)
    ids = np.array([f"P{i:03d}" for i in rng.permutation(n)], dtype=object)
    comp = np.array([f"C{c}" for c in rng.integers(0, comps, n)], dtype=object)
    owner = rng.integers(0, shards, n)
    want = [ids[j] for j in select_top_k(scores, ids, comp, k, cap)]
    lists = {}
    for s in range(shards):
        m = np.flatnonzero(owner == s)
        lists[s] = [Match(str(ids[m[t]]), float(scores[m[t]]), {})
                    for t in select_top_k(scores[m], ids[m], comp[m], k, cap)]
    company = dict(zip(ids.tolist(), comp.tolist(), strict=True))
    assert [m.item_id for m in merge_exact(lists, k, cap, company.__getitem__)] == want


@settings(max_examples=100, deadline=None)
@given(desired=st.lists(st.lists(st.integers(0, 60), min_size=1, max_size=3), min_size=1,
                        max_size=5),
       codes=st.lists(st.integers(0, 60), min_size=1, max_size=30))
def test_occupation_relation_codes_equal_the_scalar_relation(desired, codes):
    from core.match_block import QueryBlock, occ_relation_codes
    from core.matching import OCC_RELATIONS, best_relation

    # small digits spread over the code's levels so that the mid and major groups collide
    def code(x: int) -> str:
        return f"{x % 3:02d}{x % 5}{x:03d}"
    want = [[best_relation([code(d) for d in ds], code(c)) for c in codes] for ds in desired]
    rows = QueryBlock.occ_codes([[code(d) for d in ds] for ds in desired])
    got = occ_relation_codes(rows, np.array([int(code(c)) for c in codes]))
    assert [[OCC_RELATIONS[v] for v in r] for r in got.tolist()] == want


def test_passing_equals_the_one_seeker_rules_and_scores(world):
    """JobIndex.passing (the ranker's pools, in blocks) against the one-seeker reference:
    jobs_mask for the candidates, job_scores for the formula, cosine for the similarity."""
    from core.matching import cosine, job_scores, jobs_mask

    postings, seekers, inter, pv, sv = world
    cfg = MatchConfig(k=30, ref_date=REF)
    index = JobIndex(postings, pv)
    act = seekers["active"].to_numpy()
    qs = seeker_queries(seekers.filter(pl.Series(act)), sv[act], excluded_by_seeker(inter),
                        history_vectors(inter, index.side.ids.tolist(), index.side.vectors))
    got = index.passing(qs, cfg)
    some = 0
    for q, g in zip(qs, got, strict=True):
        idx = index.candidates(q.areas)
        idx = idx[jobs_mask(q, index.side, index.areas, idx, cfg)]
        if idx.size == 0:
            assert g is None
            continue
        some += 1
        pos, f, sims = g
        assert np.array_equal(pos, idx)
        want_sims = cosine(q.vector[None, :], index.side.vectors[idx])[0]
        assert np.array_equal(sims, want_sims)
        assert np.array_equal(f, job_scores(q, index.side, idx, cfg, sims=want_sims))
    assert some > len(qs) // 2
