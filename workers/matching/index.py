"""Matching indexes (plain classes; Ray wraps them in :mod:`workers.matching.actors`).

:class:`JobIndex` holds one shard's postings with a region index ((시도) and (시도, 시군구)
-> positions), so a seeker's candidates are exactly the postings of its desired regions;
:class:`SeekerIndex` holds seekers with the reverse index, for a posting's candidates.
:func:`merge_exact` merges per-shard lists into the one global exact answer (the company
cap makes a plain concatenation wrong; shards whose list may be cut short are asked again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl

from core.match_block import (
    BLOCK_CELLS,
    QueryBlock,
    TopBlock,
    area_columns,
    block_scores,
    company_codes,
    occ_relation_codes,
    reason_columns,
    reason_dicts,
    sort_ranks,
    top_k_rows,
)
from core.matching import (
    OCC_RELATIONS,
    SEEKER_JOB_RULES,
    AreaCodes,
    Match,
    MatchConfig,
    PostingSide,
    SeekerQuery,
    cosine,
    posting_columns,
    query_columns,
    region_mask,
    seeker_columns,
)
from core.rules import haversine_km, haversine_km_grid, select_top_k
from core.seekers import Area, areas_of


class JobIndex:
    """Postings of one shard, searchable by seeker; ``upsert`` makes new postings live at once."""

    def __init__(self, postings: pl.DataFrame, vectors: np.ndarray) -> None:
        self.areas = AreaCodes()
        self._frame = postings
        self._vectors = np.asarray(vectors, dtype=np.float32)
        self._build()

    def _build(self) -> None:
        side = PostingSide.build(self._frame, self._vectors, self.areas)
        # rows sorted by (province, 시군구): every desired region's candidates are one
        # contiguous block, scored without gathering vectors
        order = np.lexsort((side.sigungu, side.sido))
        self.order = order  # index row -> row of the frame it was built from
        self._frame = self._frame[order]
        self._vectors = self._vectors[order]
        self.side = side.take(order)
        sido, sgg = self.side.sido, self.side.sigungu
        n = len(sido)
        ranges: dict[tuple[int, int], tuple[int, int]] = {}
        if n:
            cut = np.flatnonzero(np.diff(sido)) + 1
            for a, b in zip(np.r_[0, cut].tolist(), np.r_[cut, n].tolist(), strict=True):
                ranges[(int(sido[a]), -1)] = (a, b)
            cut = np.flatnonzero((np.diff(sido) != 0) | (np.diff(sgg) != 0)) + 1
            for a, b in zip(np.r_[0, cut].tolist(), np.r_[cut, n].tolist(), strict=True):
                if sgg[a] >= 0:
                    ranges[(int(sido[a]), int(sgg[a]))] = (a, b)
        self._ranges = ranges
        self._rows = None
        # float64 once: every group's cosine is accumulated in float64 (core.matching.cosine)
        self._v64 = self.side.vectors.astype(np.float64)
        ids = self.side.ids
        self._pos = {pid: j for j, pid in enumerate(ids.tolist())}
        self._idrank = sort_ranks(ids)
        self._company_code = company_codes(self.side.company)

    def __len__(self) -> int:
        return self._frame.height

    @property
    def id_rank(self) -> np.ndarray:
        """Each row's rank among the posting ids (ties go to the smaller id)."""
        return self._idrank

    def upsert(self, postings: pl.DataFrame, vectors: np.ndarray) -> None:
        """Add or replace postings (by id); the next query sees them."""
        keep = ~self._frame["posting_id"].is_in(postings["posting_id"].implode()).to_numpy()
        self._frame = pl.concat([self._frame.filter(pl.Series(keep)),
                                 postings.select(self._frame.columns)], how="vertical_relaxed")
        self._vectors = np.concatenate([self._vectors[keep], np.asarray(vectors, np.float32)])
        self._build()

    def delete(self, posting_ids: Sequence[str]) -> int:
        """Remove postings (by id); returns how many this shard held."""
        gone = self._frame["posting_id"].is_in(pl.Series(list(posting_ids), dtype=pl.Utf8)
                                               .implode()).to_numpy()
        if not gone.any():
            return 0
        self._frame = self._frame.filter(pl.Series(~gone))
        self._vectors = self._vectors[~gone]
        self._build()
        return int(gone.sum())

    def holds(self, area: Area) -> bool:
        """True if this shard has postings in ``area``."""
        return self._key(area) in self._ranges

    def _key(self, a: Area) -> tuple[int, int]:
        s = self.areas.sido.get(a.sido, -9)
        if a.sigungu is None:
            return (s, -1)
        return (s, self.areas.sigungu.get((a.sido, a.sigungu), -9))

    def blocks(self, areas: Sequence[Area]) -> list[tuple[int, int]]:
        """The disjoint, sorted row ranges holding the postings in ``areas``."""
        rs = sorted(self._ranges[k] for k in map(self._key, areas) if k in self._ranges)
        out: list[tuple[int, int]] = []
        for a, b in rs:  # a 시군구 inside a desired province: one range covers the other
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        return out

    def candidates(self, areas: Sequence[Area]) -> np.ndarray:
        """Positions of the postings in ``areas`` (sorted, unique)."""
        rs = self.blocks(areas)
        if not rs:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in rs])

    def _cosine(self, q: np.ndarray, rs: list[tuple[int, int]]) -> np.ndarray:
        """``cosine(q, vectors of the rows in rs)``, read from the contiguous blocks."""
        parts = [cosine(q, self._v64[a:b]) for a, b in rs]
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    def recommend(self, q: SeekerQuery, cfg: MatchConfig, k: int | None = None) -> list[Match]:
        """The exact top-``k`` of this shard for ``q`` (all hard rules, company cap)."""
        return self.recommend_many([q], cfg, k)[0]

    def recommend_many(self, qs: Sequence[SeekerQuery], cfg: MatchConfig,
                       k: int | None = None) -> list[list[Match]]:
        """:meth:`recommend` for many seekers, with reasons (the online form)."""
        block = self._top(qs, cfg, k)
        qb = QueryBlock.of(qs, with_vectors=False)
        cols = reason_columns(qb, area_columns(qs, self.areas), block.row, self.side,
                              block.pos, block.sim)
        why = reason_dicts(cols)
        ids = self.side.ids[block.pos].tolist()
        scores = block.score.tolist()
        out: list[list[Match]] = []
        for a, b in zip(block.offsets[:-1].tolist(), block.offsets[1:].tolist(), strict=True):
            out.append([Match(str(ids[t]), scores[t], why[t]) for t in range(a, b)])
        return out

    def top_block(self, qs: Sequence[SeekerQuery], cfg: MatchConfig,
                  k: int | None = None) -> TopBlock:
        """The exact top-``k`` of every query as flat arrays (the batch form); ``pos`` are
        rows of the frame the index was built from (before its region sort)."""
        block = self._top(qs, cfg, k)
        block.pos = self.order[block.pos]
        return block

    def _top(self, qs: Sequence[SeekerQuery], cfg: MatchConfig, k: int | None) -> TopBlock:
        """Seekers with the same desired regions share one candidate set, scored as one
        matrix; ``pos`` are index rows."""
        k = cfg.k if k is None else k
        per: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * len(qs)
        for rows, idx, _ok, scores, sims in self._scored_groups(qs, cfg):
            picks = top_k_rows(scores, self._idrank[idx], self._company_code[idx], k,
                               cfg.max_per_company, self.side.ids[idx], self.side.company[idx])
            for r, (i, c) in enumerate(zip(rows, picks, strict=True)):
                per[i] = (idx[c], scores[r, c], sims[r, c])
        return TopBlock.of(per)

    def passing(self, qs: Sequence[SeekerQuery], cfg: MatchConfig
                ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """Per query, every candidate that passes the rules: (index rows, sorted; formula
        scores, :func:`core.matching.job_scores`; cosines), or None when none passes — the
        learned ranker's pools, computed in the same blocks as :meth:`top_block`."""
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * len(qs)
        for rows, idx, ok, scores, sims in self._scored_groups(qs, cfg):
            for r, i in enumerate(rows):
                keep = ok[r]
                if keep.any():
                    out[i] = (idx[keep], scores[r, keep], sims[r, keep])
        return out

    def _scored_groups(self, qs: Sequence[SeekerQuery], cfg: MatchConfig):
        """(query numbers, candidates, pass mask, scores with -inf where a rule fails,
        cosines) of each block of queries with the same desired regions."""
        groups: dict[tuple, list[int]] = {}
        for i, q in enumerate(qs):
            groups.setdefault(tuple(sorted((a.sido, a.sigungu or "") for a in q.areas)), []).append(i)
        for members in groups.values():
            idx = self.candidates(qs[members[0]].areas)
            if idx.size == 0:
                continue
            step = max(1, BLOCK_CELLS // idx.size)
            for s in range(0, len(members), step):
                rows = members[s:s + step]
                yield (rows, idx, *self._score_group([qs[i] for i in rows], idx, cfg))

    def _score_group(self, group: list[SeekerQuery], idx: np.ndarray, cfg: MatchConfig
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.side
        qb = QueryBlock.of(group)
        rs = self.blocks(group[0].areas)
        sims = self._cosine(qb.vectors, rs)
        hist = None
        if qb.history is not None and cfg.w_history:
            hist = self._cosine(qb.history[qb.has_history], rs)
        # one kernel pass: the same regions, so one region mask for the group
        ok = SEEKER_JOB_RULES.pair_mask(query_columns(group), posting_columns(p, idx), cfg)
        ok &= region_mask(group[0], p, self.areas, idx)[None, :]
        dist = None
        if not np.isnan(qb.home_lat).all():
            dist = haversine_km_grid(qb.home_lat, qb.home_lng, p.lat[idx], p.lng[idx])
            ok &= ~(dist > qb.commute[:, None])  # nan (no home) passes
        for r, q in enumerate(group):
            if q.excluded:
                at = np.fromiter((self._pos[x] for x in q.excluded if x in self._pos), np.int64)
                if at.size:
                    c = np.minimum(np.searchsorted(idx, at), idx.size - 1)
                    ok[r, c[idx[c] == at]] = False
        scores = block_scores(qb, p, idx, cfg, sims, dist, hist)
        np.putmask(scores, ~ok, -np.inf)
        return ok, scores, sims

    def rows(self) -> dict[str, dict]:
        """posting_id -> canonical row (for sort views and result display)."""
        if self._rows is None:
            self._rows = {r["posting_id"]: r for r in self._frame.iter_rows(named=True)}
        return self._rows


def merge_exact(lists: Mapping[int, list[Match]], k: int, max_per_company: int,
                company_of: Callable[[str], str]) -> list[Match]:
    """The global exact top-``k`` from per-shard top-``k`` lists (each under the company cap):
    the capped top-``k`` of their union.

    No shard needs asking again: an item ``z`` beyond shard A's list scores below all ``k`` of
    it; each of those the global cap drops (company X) is preceded by a kept X item from
    another shard (A's list holds at most ``cap`` X items), so at least ``k`` kept items
    precede ``z`` (checked against one global search in tests/test_match_block.py).
    """
    pool = [m for ms in lists.values() for m in ms]
    picked = select_top_k(np.array([m.score for m in pool], dtype=np.float64),
                          [m.item_id for m in pool], [company_of(m.item_id) for m in pool], k,
                          max_per_company)
    return [pool[t] for t in picked]


class SeekerIndex:
    """Active seekers, searchable by posting (the candidates side)."""

    def __init__(self, seekers: pl.DataFrame, vectors: np.ndarray,
                 excluded: Mapping[str, set[str]] | None = None) -> None:
        """``excluded``: posting_id -> seekers who applied to or hid it (never proposed)."""
        act = seekers["active"].to_numpy()
        self.frame = seekers.filter(pl.Series(act))
        self.vectors = np.asarray(vectors, dtype=np.float32)[act]
        self.excluded = excluded or {}
        f = self.frame
        self.ids = f["seeker_id"].to_numpy().astype(object)
        self.education = f["education_level"].to_numpy()
        self.years = f["career_years"].to_numpy()
        self.wages = f["desired_monthly_wage"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        self.home_lat = f["home_lat"].fill_null(np.nan).to_numpy()
        self.home_lng = f["home_lng"].fill_null(np.nan).to_numpy()
        self.commute = f["max_commute_km"].fill_null(np.inf).to_numpy()
        self.occs = f["desired_occupations"].to_list()
        self.occ_codes = QueryBlock.occ_codes(self.occs)
        self._at = {sid: i for i, sid in enumerate(self.ids.tolist())}
        self._idrank = sort_ranks(self.ids)
        self.alive = np.ones(len(self.ids), dtype=bool)  # False: retired (see retire)
        self.regions = [areas_of(r) for r in f["desired_regions"].to_list()]
        index: dict[tuple[str, str | None], list[int]] = {}
        for i, areas in enumerate(self.regions):
            for a in areas:
                index.setdefault((a.sido, a.sigungu), []).append(i)
        # (seeker rows, their vectors as float64: the cosine is accumulated in float64 as on
        # the jobs side) per desired region
        self._blocks = {k: (np.array(v, dtype=np.int64), self.vectors[v].astype(np.float64))
                        for k, v in index.items()}

    def candidates_for(self, posting: Mapping, vector: np.ndarray, cfg: MatchConfig,
                       k: int | None = None) -> list[Match]:
        """The top-``k`` seekers for ``posting`` (canonical row) by the same pair rules.

        Reasons name the seeker's matching region, occupation relation and the checks; the
        résumé never leaves this method.
        """
        k = cfg.k if k is None else k
        sido, sgg = posting["sido"], posting.get("sigungu")
        parts = [self._blocks.get((sido, None))] + ([self._blocks.get((sido, sgg))] if sgg else [])
        parts = [x for x in parts if x is not None]
        if not parts:
            return []
        idx = np.concatenate([x[0] for x in parts])
        # each region's seeker vectors are one contiguous float64 block: no gather per call
        sims_all = np.hstack([cosine(np.asarray(vector, np.float32)[None, :], x[1])[0]
                              for x in parts])
        if len(parts) > 1:  # a seeker desiring the province and its 시군구: keep it once
            _, first = np.unique(idx, return_index=True)
            if first.size < idx.size:
                keep = np.sort(first)
                idx, sims_all = idx[keep], sims_all[keep]
        # the same kernel rules as jobs for a seeker, with the posting as the one candidate
        one = {"education": np.array([posting["min_education_level"]], np.int8),
               "experienced": np.array([posting["career"] == "experienced"]),
               "min_years": np.array([posting.get("min_career_years") or 0], np.int16),
               "closes_days": np.array([np.iinfo(np.int32).max], np.int32),  # checked by caller
               "monthly_wage": np.array([np.nan if posting.get("monthly_wage") is None
                                         else posting["monthly_wage"]], np.float64)}
        m = SEEKER_JOB_RULES.pair_mask(seeker_columns(
            self.education[idx], self.years[idx], self.wages[idx]), one, cfg)[:, 0]
        m &= self.alive[idx]
        d = haversine_km(self.home_lat[idx], self.home_lng[idx], posting["lat"], posting["lng"])
        m &= ~(d > self.commute[idx])  # nan distance (no home) passes: no commute limit
        gone = self.excluded.get(posting["posting_id"])
        if gone:
            m &= ~np.isin(self.ids[idx], list(gone))
        cand = idx[m]
        if cand.size == 0:
            return []
        sims = sims_all[m]
        rel = occ_relation_codes(self.occ_codes[cand],
                                 np.array([-1 if posting["occupation_code"] is None
                                           else int(posting["occupation_code"])]))[:, 0]
        bonus = np.array([*cfg.w_occupation, 0.0])[rel]
        dist = d[m]
        scores = cfg.w_similarity * sims.astype(np.float64) + bonus \
            - cfg.w_distance_per_10km * np.nan_to_num(dist, nan=0.0) / 10.0
        ids = self.ids[cand]
        t = top_k_rows(scores[None, :], self._idrank[cand], self._idrank[cand], k, 0, ids, ids)[0]
        sel = cand[t]
        wage = posting.get("monthly_wage")
        return [Match(sid, sc, {
            "matched_region": next(a.label for a in self.regions[i] if a.contains(sido, sgg)),
            "distance_km": None if dk != dk else dk, "occupation_relation": OCC_RELATIONS[r],
            "education_ok": True, "career_ok": True, "monthly_wage": wage,
            "desired_wage": None if dw != dw else int(dw), "wage_vs_desired": None,
            "similarity": sm})
            for sid, sc, i, dk, r, dw, sm in zip(
                ids[t].tolist(), scores[t].tolist(), sel.tolist(), np.round(dist[t], 2).tolist(),
                rel[t].tolist(), self.wages[sel].tolist(),
                np.round(sims[t].astype(np.float64), 4).tolist(), strict=True)]

    def retire(self, seeker_ids: Sequence[str]) -> None:
        """Never propose these seekers again (deleted, or superseded by a newer version held
        elsewhere); the index is not rebuilt."""
        for sid in seeker_ids:
            i = self._at.get(sid)
            if i is not None:
                self.alive[i] = False

    def profile(self, seeker_id: str) -> dict:
        """The non-identifying fields of a seeker (what may leave the service)."""
        i = self._at[seeker_id]
        return {"seeker_id": seeker_id, "desired_occupations": list(self.occs[i]),
                "desired_regions": [a.label for a in self.regions[i]],
                "education_level": int(self.education[i]), "career_years": int(self.years[i])}
