"""Matching indexes (plain classes; Ray wraps them in :mod:`workers.match_actors`).

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

from core.matching import (
    SEEKER_JOB_RULES,
    AreaCodes,
    Match,
    MatchConfig,
    PostingSide,
    SeekerQuery,
    best_relation,
    job_scores,
    personal_mask,
    posting_columns,
    query_columns,
    reasons_many,
    region_mask,
    seeker_columns,
)
from core.rules import haversine_km, select_top_k
from core.seekers import Area, areas_of


class JobIndex:
    """Postings of one shard, searchable by seeker; ``upsert`` makes new postings live at once."""

    def __init__(self, postings: pl.DataFrame, vectors: np.ndarray) -> None:
        self.areas = AreaCodes()
        self._frame = postings
        self._vectors = np.asarray(vectors, dtype=np.float32)
        self._build()

    def _build(self) -> None:
        self.side = PostingSide.build(self._frame, self._vectors, self.areas)
        index: dict[tuple[int, int], list[int]] = {}
        for j, (s, g) in enumerate(zip(self.side.sido.tolist(), self.side.sigungu.tolist(),
                                       strict=True)):
            index.setdefault((s, -1), []).append(j)
            if g >= 0:
                index.setdefault((s, g), []).append(j)
        self._index = {k: np.array(v, dtype=np.int64) for k, v in index.items()}
        self._rows = None

    def __len__(self) -> int:
        return self._frame.height

    def upsert(self, postings: pl.DataFrame, vectors: np.ndarray) -> None:
        """Add or replace postings (by id); the next query sees them."""
        keep = ~self._frame["posting_id"].is_in(postings["posting_id"].implode()).to_numpy()
        self._frame = pl.concat([self._frame.filter(pl.Series(keep)),
                                 postings.select(self._frame.columns)], how="vertical_relaxed")
        self._vectors = np.concatenate([self._vectors[keep], np.asarray(vectors, np.float32)])
        self._build()

    def holds(self, area: Area) -> bool:
        """True if this shard has postings in ``area``."""
        return self._key(area) in self._index

    def _key(self, a: Area) -> tuple[int, int]:
        s = self.areas.sido.get(a.sido, -9)
        if a.sigungu is None:
            return (s, -1)
        return (s, self.areas.sigungu.get((a.sido, a.sigungu), -9))

    def candidates(self, areas: Sequence[Area]) -> np.ndarray:
        """Positions of the postings in ``areas`` (sorted, unique)."""
        parts = [self._index[k] for k in map(self._key, areas) if k in self._index]
        if not parts:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(parts)) if len(parts) > 1 else parts[0]

    def recommend(self, q: SeekerQuery, cfg: MatchConfig, k: int | None = None) -> list[Match]:
        """The exact top-``k`` of this shard for ``q`` (all hard rules, company cap)."""
        return self.recommend_many([q], cfg, k)[0]

    def recommend_many(self, qs: Sequence[SeekerQuery], cfg: MatchConfig,
                       k: int | None = None) -> list[list[Match]]:
        """:meth:`recommend` for many seekers: seekers with the same regions share one
        matrix product over their candidates."""
        k = cfg.k if k is None else k
        out: list[list[Match]] = [[] for _ in qs]
        groups: dict[tuple, list[int]] = {}
        for i, q in enumerate(qs):
            groups.setdefault(tuple(sorted((a.sido, a.sigungu or "") for a in q.areas)), []).append(i)
        p = self.side
        for members in groups.values():
            idx = self.candidates(qs[members[0]].areas)
            if idx.size == 0:
                continue
            group = [qs[i] for i in members]
            sims_all = np.stack([q.vector for q in group]) @ p.vectors[idx].T
            # one kernel pass for the group: the same regions, so one region mask
            ok_all = SEEKER_JOB_RULES.pair_mask(query_columns(group), posting_columns(p, idx), cfg)
            ok_all &= region_mask(group[0], p, self.areas, idx)[None, :]
            for row, i in enumerate(members):
                q = qs[i]
                ok = ok_all[row] & personal_mask(q, p, idx)
                cand = idx[ok]
                if cand.size == 0:
                    continue
                sims = sims_all[row][ok]
                scores = job_scores(q, p, cand, cfg, sims)
                picked = select_top_k(scores, p.ids[cand], p.company[cand], k, cfg.max_per_company)
                sel = np.asarray(picked, dtype=np.int64)
                why = reasons_many(q, p, cand[sel], sims[sel]) if sel.size else []
                out[i] = [Match(str(p.ids[cand[t]]), float(scores[t]), r)
                          for t, r in zip(picked, why, strict=True)]
        return out

    def rows(self) -> dict[str, dict]:
        """posting_id -> canonical row (for sort views and result display)."""
        if self._rows is None:
            self._rows = {r["posting_id"]: r for r in self._frame.iter_rows(named=True)}
        return self._rows


def merge_exact(lists: Mapping[int, list[Match]], k: int, max_per_company: int,
                company_of: Callable[[str], str],
                requery: Callable[[int, int], list[Match]]) -> list[Match]:
    """The global exact top-``k`` from per-shard top-``k`` lists (each under the company cap).

    A shard's list can hide a qualifying item behind ones the global cap drops (a company
    with postings in two shards); such a shard, if its list was full, is asked again with a
    larger ``k`` (``requery(shard, k)``) until no list can hide anything.
    """
    lists = dict(lists)
    asked = {s: k for s in lists}
    while True:
        pool = [(m, s) for s, ms in lists.items() for m in ms]
        pool.sort(key=lambda t: (-t[0].score, t[0].item_id))
        per: dict[str, int] = {}
        picked: list[Match] = []
        dropped_from: set[int] = set()
        for m, s in pool:
            if len(picked) == k:
                break
            c = company_of(m.item_id)
            if max_per_company and per.get(c, 0) >= max_per_company:
                dropped_from.add(s)
                continue
            per[c] = per.get(c, 0) + 1
            picked.append(m)
        short = [s for s in dropped_from if len(lists[s]) >= asked[s]]
        if not short:
            return picked
        for s in short:
            asked[s] *= 2
            lists[s] = requery(s, asked[s])


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
        self.regions = [areas_of(r) for r in f["desired_regions"].to_list()]
        index: dict[tuple[str, str | None], list[int]] = {}
        for i, areas in enumerate(self.regions):
            for a in areas:
                index.setdefault((a.sido, a.sigungu), []).append(i)
        self._index = {k: np.array(v, dtype=np.int64) for k, v in index.items()}

    def candidates_for(self, posting: Mapping, vector: np.ndarray, cfg: MatchConfig,
                       k: int | None = None) -> list[Match]:
        """The top-``k`` seekers for ``posting`` (canonical row) by the same pair rules.

        Reasons name the seeker's matching region, occupation relation and the checks; the
        résumé never leaves this method.
        """
        k = cfg.k if k is None else k
        sido, sgg = posting["sido"], posting.get("sigungu")
        parts = [self._index.get((sido, None))] + ([self._index.get((sido, sgg))] if sgg else [])
        parts = [x for x in parts if x is not None]
        if not parts:
            return []
        idx = np.unique(np.concatenate(parts))
        # the same kernel rules as jobs for a seeker, with the posting as the one candidate
        one = {"education": np.array([posting["min_education_level"]], np.int8),
               "experienced": np.array([posting["career"] == "experienced"]),
               "min_years": np.array([posting.get("min_career_years") or 0], np.int16),
               "closes_days": np.array([np.iinfo(np.int32).max], np.int32),  # checked by caller
               "monthly_wage": np.array([np.nan if posting.get("monthly_wage") is None
                                         else posting["monthly_wage"]], np.float64)}
        m = SEEKER_JOB_RULES.pair_mask(seeker_columns(
            self.education[idx], self.years[idx], self.wages[idx]), one, cfg)[:, 0]
        d = haversine_km(self.home_lat[idx], self.home_lng[idx], posting["lat"], posting["lng"])
        m &= ~(d > self.commute[idx])  # nan distance (no home) passes: no commute limit
        gone = self.excluded.get(posting["posting_id"])
        if gone:
            m &= ~np.isin(self.ids[idx], list(gone))
        cand = idx[m]
        if cand.size == 0:
            return []
        sims = self.vectors[cand] @ np.asarray(vector, dtype=np.float32)
        code = posting["occupation_code"]
        w1, w2, w3 = cfg.w_occupation
        bonus = np.array([{"same_code": w1, "same_mid": w2, "same_major": w3}.get(
            best_relation(self.occs[i], code), 0.0) for i in cand.tolist()])
        dist = d[m]
        scores = cfg.w_similarity * sims.astype(np.float64) + bonus \
            - cfg.w_distance_per_10km * np.nan_to_num(dist, nan=0.0) / 10.0
        picked = select_top_k(scores, self.ids[cand], self.ids[cand], k, 0)
        out = []
        for t in picked:
            i = int(cand[t])
            matched = next(a.label for a in self.regions[i] if a.contains(sido, sgg))
            out.append(Match(str(self.ids[i]), float(scores[t]), {
                "matched_region": matched,
                "distance_km": None if np.isnan(dist[t]) else round(float(dist[t]), 2),
                "occupation_relation": best_relation(self.occs[i], code),
                "education_ok": True, "career_ok": True,
                "monthly_wage": posting.get("monthly_wage"),
                "desired_wage": self.frame["desired_monthly_wage"][i],
                "wage_vs_desired": None,
                "similarity": round(float(sims[t]), 4),
            }))
        return out

    def profile(self, seeker_id: str) -> dict:
        """The non-identifying fields of a seeker (what may leave the service)."""
        row = self.frame.filter(pl.col("seeker_id") == seeker_id).row(0, named=True)
        return {"seeker_id": row["seeker_id"], "desired_occupations": row["desired_occupations"],
                "desired_regions": [a.label for a in areas_of(row["desired_regions"])],
                "education_level": row["education_level"], "career_years": row["career_years"]}
