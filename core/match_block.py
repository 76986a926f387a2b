"""Block matching: many seekers against one candidate set in matrix form (plain numpy).

The batch (100k seekers) and the online service run the same code: a group of seekers with
the same desired regions shares one candidate set, so scores are one matrix product plus
elementwise features, the hard rules one kernel pass (:data:`core.matching.SEEKER_JOB_RULES`),
and the company-capped top-k one row-wise partition and sort (:func:`top_k_rows`), falling
back to the scalar :func:`core.rules.select_top_k` only for rows it cannot settle (ties at
the cut, a cap that empties the prefix). :func:`core.matching.job_scores` stays the scalar
reference the tests compare against. Reasons are columns (:func:`reason_columns`) that become
dicts online and a Parquet struct/JSON column in the batch, with the one 추천기준 text rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from core.matching import (
    OCC_RELATIONS,
    AreaCodes,
    MatchConfig,
    PostingSide,
    SeekerQuery,
    cosine,
    reason_text,
)
from core.rules import haversine_km, select_top_k

MAX_CODES = 3  # desired occupations and regions per seeker (core.seekers limits)
BLOCK_CELLS = 1 << 21  # seekers x candidates per scoring block (bounds the memory)


@dataclass
class QueryBlock:
    """Seeker queries as aligned columns (rows = queries)."""

    queries: list[SeekerQuery]
    vectors: np.ndarray  # (G, d) float32
    home_lat: np.ndarray  # nan = no home
    home_lng: np.ndarray
    commute: np.ndarray  # inf = no limit (or no home)
    desired_wage: np.ndarray  # nan = none
    occ: np.ndarray  # (G, 3) int64 codes, -1 padded
    history: np.ndarray | None  # (G, d) float32, zero rows where none
    has_history: np.ndarray  # bool (G,)

    @classmethod
    def of(cls, qs: Sequence[SeekerQuery], with_vectors: bool = True) -> QueryBlock:
        """Columns of ``qs`` (``with_vectors=False``: no vector columns, for reasons only)."""
        qs = list(qs)
        g = len(qs)
        home = np.array([q.home if q.home is not None else (np.nan, np.nan) for q in qs],
                        dtype=np.float64).reshape(g, 2)
        commute = np.array([np.inf if q.max_commute_km is None or q.home is None
                            else float(q.max_commute_km) for q in qs], dtype=np.float64)
        wage = np.array([np.nan if not q.desired_wage else float(q.desired_wage) for q in qs],
                        dtype=np.float64)
        occ = cls.occ_codes([q.occupations for q in qs])
        has = np.array([q.history_vector is not None for q in qs], dtype=bool) if with_vectors \
            else np.zeros(g, dtype=bool)
        d = qs[0].vector.shape[0] if qs else 0
        hist = None
        if has.any():
            hist = np.zeros((g, d), dtype=np.float32)
            for i in np.flatnonzero(has):
                hist[i] = qs[i].history_vector
        vec = np.stack([q.vector for q in qs]).astype(np.float32, copy=False) \
            if qs and with_vectors else np.zeros((0, d), np.float32)
        return cls(qs, vec, home[:, 0], home[:, 1], commute, wage, occ, hist, has)

    @staticmethod
    def occ_codes(occupations: Sequence[Sequence[str]]) -> np.ndarray:
        """(G, 3) int codes of desired occupations, -1 padded."""
        occ = np.full((len(occupations), MAX_CODES), -1, dtype=np.int64)
        for i, codes in enumerate(occupations):
            c = [int(x) for x in list(codes)[:MAX_CODES]]
            occ[i, :len(c)] = c
        return occ



@dataclass
class TopBlock:
    """Top lists of many queries as flat arrays: query ``i`` owns ``offsets[i]:offsets[i+1]``
    (``row``: its query index; ``pos``: posting positions in the index; ``score``; ``sim``)."""

    offsets: np.ndarray
    row: np.ndarray
    pos: np.ndarray
    score: np.ndarray
    sim: np.ndarray

    @classmethod
    def of(cls, per: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray] | None]) -> TopBlock:
        """From one (positions, scores, sims) triple (or None: empty) per query."""
        lens = np.array([0 if x is None else len(x[0]) for x in per], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        full = [x for x in per if x is not None and len(x[0])]

        def cat(i: int, dtype) -> np.ndarray:
            return np.concatenate([x[i] for x in full]).astype(dtype) if full \
                else np.empty(0, dtype)
        return cls(offsets, np.repeat(np.arange(len(per), dtype=np.int64), lens),
                   cat(0, np.int64), cat(1, np.float64), cat(2, np.float32))

    def lists(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One (positions, scores, sims) triple per query."""
        o = self.offsets
        return [(self.pos[a:b], self.score[a:b], self.sim[a:b])
                for a, b in zip(o[:-1].tolist(), o[1:].tolist(), strict=True)]


def occ_relation_codes(occ_rows: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """Per (row, candidate) 0 same code, 1 same mid, 2 same major, 3 other
    (``occ_rows`` (G, 3) desired codes padded with -1, ``occ`` (n,) or (G, n) codes)."""
    o = occ[None, :] if occ.ndim == 1 else occ
    o_mid, o_major = o // 1000, o // 10000
    shape = (occ_rows.shape[0], o.shape[1])
    rel = np.full(shape, 3, dtype=np.int8)
    # the closest relation over the desired codes: apply the weakest first
    for level, div, mine in ((2, 10000, o_major), (1, 1000, o_mid), (0, 1, o)):
        hit = np.zeros(shape, dtype=bool)
        for a in range(occ_rows.shape[1]):
            d = occ_rows[:, a:a + 1]
            hit |= (mine == d // div) & (d >= 0)
        rel[hit] = level
    return rel


def block_scores(qb: QueryBlock, p: PostingSide, idx: np.ndarray, cfg: MatchConfig,
                 sims: np.ndarray, dist: np.ndarray | None,
                 hist_sims: np.ndarray | None = None) -> np.ndarray:
    """(G, n) float64 scores of postings ``idx`` — :func:`core.matching.job_scores` per row,
    the same operations in the same order (``dist``: home distance, nan where no home;
    ``hist_sims``: cosine of the rows with a history, when the caller computed it).

    The occupation and wage terms depend on a row and the posting's code or wage only, so
    they are computed once per distinct code / wage of the block and gathered (the same
    values: the batch's candidate blocks hold a few thousand postings but far fewer codes)."""
    g = qb.occ.shape[0]
    s = cfg.w_similarity * sims.astype(np.float64)
    w1, w2, w3 = cfg.w_occupation
    codes, at = np.unique(p.occ[idx], return_inverse=True)
    s += np.array([w1, w2, w3, 0.0])[occ_relation_codes(qb.occ, codes)][:, at]
    if qb.history is not None and cfg.w_history:
        rows = np.flatnonzero(qb.has_history)
        hs = cosine(qb.history[rows], p.vectors[idx]) if hist_sims is None else hist_sims
        hs = hs.astype(np.float64)
        s[rows] += cfg.w_history * hs
    if dist is not None:
        rows = np.flatnonzero(~np.isnan(qb.home_lat))
        if rows.size == g:  # no gather and scatter when every row has a home
            pen = np.multiply(cfg.w_distance_per_10km, dist)
            np.divide(pen, 10.0, out=pen)
            s -= pen
        else:
            s[rows] -= cfg.w_distance_per_10km * dist[rows] / 10.0
    rows = np.flatnonzero(~np.isnan(qb.desired_wage))
    if rows.size:
        wages, at = np.unique(p.monthly_wage[idx], return_inverse=True)
        w = wages[None, :]
        dw = qb.desired_wage[rows][:, None]
        term = np.where(np.isnan(w), 0.0,
                        cfg.w_wage * np.clip(np.log(np.maximum(w, 1.0) / dw), -1.0, 0.5))
        if rows.size == g:
            s += term[:, at]
        else:
            s[rows] += term[:, at]
    return s


def sort_ranks(values: np.ndarray) -> np.ndarray:
    """Each value's position in (stable) sorted order: :func:`top_k_rows`' ``idrank``, which
    orders ids as :func:`select_top_k`'s comparisons do."""
    rank = np.empty(len(values), dtype=np.int64)
    rank[np.argsort(values, kind="stable")] = np.arange(len(values))
    return rank


def company_codes(companies: np.ndarray) -> np.ndarray:
    """Small int codes of company names (equal names, equal codes): ``top_k_rows``' cap key."""
    return np.unique(np.asarray(companies).astype(str), return_inverse=True)[1]


def top_k_rows(scores: np.ndarray, idrank: np.ndarray, company: np.ndarray, k: int,
               max_per_company: int, ids: np.ndarray, companies: np.ndarray) -> list[np.ndarray]:
    """Per row of ``scores`` (-inf = disqualified), the columns :func:`select_top_k` picks,
    in order: score desc, then id asc (``idrank``: the ids' sort rank), at most
    ``max_per_company`` per ``company`` code. Rows the vectorised prefix cannot settle are
    handed to :func:`select_top_k` itself (``ids``, ``companies``: its arguments)."""
    g, n = scores.shape
    if g == 0 or n == 0 or k <= 0:
        return [np.empty(0, np.int64) for _ in range(g)]
    t = min(n, max(4 * k, 32))
    finite = np.isfinite(scores)
    nfin = finite.sum(axis=1)
    if t < n:
        part = np.argpartition(-scores, t - 1, axis=1)[:, :t]
    else:
        part = np.broadcast_to(np.arange(n), (g, n))
    ps = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((idrank[part], -ps), axis=1)
    cols = np.take_along_axis(part, order, axis=1)
    ps = np.take_along_axis(ps, order, axis=1)
    ok = np.isfinite(ps)
    unsettled = np.zeros(g, dtype=bool)
    if t < n:
        # a tie with the t-th score outside the prefix: the scalar path takes them all
        cut = ps[:, -1]
        big = nfin > t
        unsettled |= big & ((scores >= cut[:, None]).sum(axis=1) > t)
    if max_per_company:
        comp = company[cols]
        o = np.argsort(comp, axis=1, kind="stable")
        cs = np.take_along_axis(comp, o, axis=1)
        ar = np.broadcast_to(np.arange(t), (g, t))
        start = np.ones((g, t), dtype=bool)
        start[:, 1:] = cs[:, 1:] != cs[:, :-1]
        run = ar - np.maximum.accumulate(np.where(start, ar, 0), axis=1)
        occ = np.empty((g, t), dtype=np.int64)
        np.put_along_axis(occ, o, run, axis=1)
        ok &= occ < max_per_company
    kept = np.cumsum(ok, axis=1)
    sel = ok & (kept <= k)
    # fewer than k kept in the prefix while more qualifying candidates lie beyond it
    unsettled |= (kept[:, -1] < k) & (nfin > t)
    out = []
    for r in range(g):
        if unsettled[r]:
            out.append(np.asarray(select_top_k(scores[r], ids, companies, k, max_per_company),
                                  dtype=np.int64))
        else:
            out.append(cols[r][sel[r]].astype(np.int64))
    return out


def area_columns(qs: Sequence[SeekerQuery], areas: AreaCodes) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """(G, 3) province codes, 시군구 codes (-1 = whole province) and labels of the desired
    regions (-9 = no region / unknown name, never matching)."""
    g = len(qs)
    sido = np.full((g, MAX_CODES), -9, dtype=np.int64)
    sgg = np.full((g, MAX_CODES), -9, dtype=np.int64)
    label = np.full((g, MAX_CODES), None, dtype=object)
    for i, q in enumerate(qs):
        for a, area in enumerate(q.areas[:MAX_CODES]):
            sido[i, a] = areas.sido.get(area.sido, -9)
            sgg[i, a] = -1 if area.sigungu is None else areas.sigungu.get(
                (area.sido, area.sigungu), -9)
            label[i, a] = area.label
    return sido, sgg, label


_WAGE_VS: tuple[str | None, ...] = ("above", "below", None)


def reason_columns(qb: QueryBlock, area_cols, row: np.ndarray, p: PostingSide, js: np.ndarray,
                   sims: np.ndarray) -> dict[str, np.ndarray]:
    """Reasons of recommendations (query ``row[t]``, posting ``js[t]``, cosine ``sims[t]``) as
    numeric columns: matched region (``region``: index into ``region_labels``, -1 none), home
    distance, occupation relation (index into OCC_RELATIONS), wage and desired wage, wage
    against desired (index into ``_WAGE_VS``), similarity (every hard rule passed, so
    education and career are ok)."""
    sido, sgg, label = area_cols
    ps, pg = p.sido[js], p.sigungu[js]
    hit = (sido[row] == ps[:, None]) & ((sgg[row] == -1) | (sgg[row] == pg[:, None]))
    first = np.argmax(hit, axis=1) if js.size else np.empty(0, np.int64)
    region = np.where(hit.any(axis=1), row * label.shape[1] + first, -1)
    dist = np.round(haversine_km(qb.home_lat[row], qb.home_lng[row], p.lat[js], p.lng[js]), 2)
    rel = occ_relation_codes(qb.occ[row], p.occ[js][:, None])[:, 0] if js.size \
        else np.empty(0, np.int8)
    wage = p.monthly_wage[js]
    dw = qb.desired_wage[row]
    vs = np.where(np.isnan(wage) | np.isnan(dw), 2, np.where(wage >= dw, 0, 1)).astype(np.int8)
    return {"region": region, "region_labels": label.ravel(), "distance_km": dist,
            "occupation_relation": rel, "monthly_wage": wage, "desired_wage": dw,
            "wage_vs_desired": vs, "similarity": np.round(np.asarray(sims, dtype=np.float64), 4)}


def _num(x: float) -> int | None:
    return None if x != x else int(x)


def reason_dicts(cols: dict[str, np.ndarray]) -> list[dict]:
    """:func:`reason_columns` as one dict per recommendation (the online form)."""
    labels = cols["region_labels"]
    return [{"matched_region": labels[g] if g >= 0 else None, "distance_km": None if d != d else d,
             "occupation_relation": OCC_RELATIONS[r], "education_ok": True, "career_ok": True,
             "monthly_wage": _num(w), "desired_wage": _num(dw), "wage_vs_desired": _WAGE_VS[v],
             "similarity": s}
            for g, d, r, w, dw, v, s in zip(
                cols["region"].tolist(), cols["distance_km"].tolist(),
                cols["occupation_relation"].tolist(), cols["monthly_wage"].tolist(),
                cols["desired_wage"].tolist(), cols["wage_vs_desired"].tolist(),
                cols["similarity"].tolist(), strict=True)]


def _codes(values: Sequence, idx: np.ndarray) -> pl.Series:
    """``values[idx]`` as a text column, gathered by polars (-1 -> null)."""
    table = pl.Series(list(values), dtype=pl.Utf8)
    at = pl.Series(idx, dtype=pl.Int64)
    return table.gather(pl.select(pl.when(at >= 0).then(at)).to_series())


def _fixed(col: str, places: int) -> pl.Expr:
    """``col`` as text with ``places`` decimals by :func:`core.matching.fixed_text`'s rule."""
    scale = 10 ** places
    units = (pl.col(col) * scale + 0.5).floor().cast(pl.Int64)
    mag = units.abs()
    sign = pl.when(units < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    frac = (mag % scale).cast(pl.Utf8).str.zfill(places)
    return pl.concat_str([sign, (mag // scale).cast(pl.Utf8), pl.lit("."), frac])


_OCC_TEXT = pl.col("occupation_relation").replace_strict(
    {"same_code": "희망직종 일치", "same_mid": "희망직종과 같은 직종 중분류",
     "same_major": "희망직종과 같은 직종 대분류", "other": "관련 직종 외"}, default="관련 직종 외")


def reason_frame(cols: dict[str, np.ndarray]) -> pl.DataFrame:
    """``reasons`` (JSON text of the reason fields) and ``reason_text`` (추천기준) columns,
    vectorised; equal to ``json`` of :func:`reason_dicts` and :func:`core.matching.reason_text`."""
    n = len(cols["similarity"])
    f = pl.DataFrame({
        "matched_region": _codes(cols["region_labels"].tolist(), cols["region"]),
        "distance_km": pl.Series(cols["distance_km"], dtype=pl.Float64).fill_nan(None),
        "occupation_relation": _codes(OCC_RELATIONS, cols["occupation_relation"]),
        "education_ok": pl.Series(np.ones(n, dtype=bool)),
        "career_ok": pl.Series(np.ones(n, dtype=bool)),
        "monthly_wage": pl.Series(cols["monthly_wage"], dtype=pl.Float64).fill_nan(None)
        .cast(pl.Int64),
        "desired_wage": pl.Series(cols["desired_wage"], dtype=pl.Float64).fill_nan(None)
        .cast(pl.Int64),
        "wage_vs_desired": _codes(_WAGE_VS, np.where(cols["wage_vs_desired"] == 2, -1,
                                                     cols["wage_vs_desired"])),
        "similarity": pl.Series(cols["similarity"], dtype=pl.Float64),
    })
    wage = pl.when(pl.col("wage_vs_desired") == "above").then(pl.lit("희망임금 이상")) \
        .when(pl.col("wage_vs_desired") == "below").then(pl.lit("희망임금 미만"))
    parts = [
        pl.concat_str([pl.lit("희망지역("), pl.col("matched_region"), pl.lit(")")]),  # null-safe
        _OCC_TEXT,
        pl.concat_str([pl.lit("거리 "), _fixed("distance_km", 1), pl.lit("km")]),
        wage,
        pl.lit("학력·경력 충족"),
        pl.concat_str([pl.lit("유사도 "), _fixed("similarity", 2)]),
    ]
    # a null part (no region, no home, no wage comparison) is left out, as the scalar text does
    return f.select(
        pl.struct(pl.all()).struct.json_encode().alias("reasons"),
        pl.concat_str(parts, separator=" · ", ignore_nulls=True).alias("reason_text"),
    )


__all__ = ["QueryBlock", "TopBlock", "company_codes", "sort_ranks", "area_columns", "block_scores", "occ_relation_codes", "reason_columns",
           "reason_dicts", "reason_frame", "reason_text", "top_k_rows"]
