"""A faithful re-implementation of the old prototype, kept only for the benchmark.

The prototype searched a global FAISS ``IndexFlatIP`` for the top-k' (100) neighbours of
every posting, then filtered them using a precomputed
region-to-region distance matrix of 시군구 centroids (distance between postings taken as the
distance between their regions' centroids), with no education filter for 학력무관 postings,
and kept the first k that passed. Postings whose k' neighbours contain fewer than k that
pass are left short: that is the post-filtering defect the sharded exact search removes.
"""

from __future__ import annotations

import time

import faiss
import numpy as np
import polars as pl

from core.reference import regions
from core.rules import POSTING_RULES, RuleConfig, haversine_km, posting_rule_columns
from core.schema import conform
from workers.engine.types import RECS_SCHEMA

OLD_RULES = RuleConfig(education_policy="lenient_no_requirement")


def sigungu_centroids() -> pl.DataFrame:
    """시군구-level regions with a centroid (sido, sigungu, lat, lng)."""
    r = regions()
    return r.filter(
        (pl.col("sigungu") != "") & (pl.col("gu_or_eupmyeondong") == "") & pl.col("lat").is_not_null()
    ).select("sido", "sigungu", "lat", "lng")


def nearest_region(lat: np.ndarray, lng: np.ndarray, rlat: np.ndarray, rlng: np.ndarray):
    """Index of the nearest centroid for every point (exact, chunked haversine)."""
    out = np.empty(len(lat), dtype=np.int32)
    for s in range(0, len(lat), 4096):
        d = haversine_km(lat[s : s + 4096, None], lng[s : s + 4096, None], rlat[None], rlng[None])
        out[s : s + 4096] = d.argmin(axis=1)
    return out


class OldPrototype:
    """Global FAISS top-k', then per-posting Python filtering by a region distance matrix."""

    def __init__(
        self,
        postings: pl.DataFrame,
        vectors: np.ndarray,
        *,
        k_prime: int = 100,
        rules: RuleConfig = OLD_RULES,
    ) -> None:
        t0 = time.perf_counter()
        self.df = conform(postings)
        self.rules = rules
        self.k_prime = int(k_prime)
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        self.vectors = v / np.linalg.norm(v, axis=1, keepdims=True)
        cent = sigungu_centroids()
        rlat, rlng = cent["lat"].to_numpy(), cent["lng"].to_numpy()
        self.region = nearest_region(
            self.df["lat"].to_numpy(), self.df["lng"].to_numpy(), rlat, rlng
        )
        self.region_km = haversine_km(rlat[:, None], rlng[:, None], rlat[None], rlng[None])
        self.index = faiss.IndexFlatIP(v.shape[1])
        self.index.add(self.vectors)
        self.build_s = time.perf_counter() - t0

    def recommend_all(self, k: int = 10) -> tuple[pl.DataFrame, dict]:
        """(recommendations, timings): the prototype's FAISS search, its filter (the rule
        kernel over its k' neighbours, region-centroid distances) and first-k selection."""
        t0 = time.perf_counter()
        scores, nbrs = self.index.search(self.vectors, self.k_prime + 1)
        t_faiss = time.perf_counter() - t0
        t0 = time.perf_counter()
        df, cfg = self.df, self.rules
        n, width = nbrs.shape
        cols = posting_rule_columns(
            df["min_education_level"].to_list(), df["career"].to_list(),
            df["min_career_years"].to_list(), df["closes_on"].to_list(), df["sido"].to_list(),
        )  # fmt: skip
        cols["row"] = np.arange(n)
        # every (posting, neighbour) pair through the rule kernel at once, with the
        # prototype's distance: that of the two postings' region centroids
        qi, cj = np.repeat(np.arange(n), width), nbrs.ravel()
        live = cj >= 0
        qi, cj = qi[live], cj[live]
        ok = np.zeros(n * width, dtype=bool)
        ok[live] = POSTING_RULES.pairs_mask(
            {c: v[qi] for c, v in cols.items()}, {c: v[cj] for c, v in cols.items()}, cfg,
            distance_km=self.region_km[self.region[qi], self.region[cj]],
        )  # fmt: skip
        ok = ok.reshape(n, width)
        ids = df["posting_id"].to_list()
        company = df["company"].to_list()
        region = self.region.tolist()
        dist = self.region_km
        cap = POSTING_RULES.cap(cfg)
        out_q, out_c, out_r, out_s, out_d = [], [], [], [], []
        for i in range(n):
            ri, picked, per = region[i], 0, {}
            # the prototype's selection: neighbours in FAISS order, first k passing
            for s, j, good in zip(scores[i].tolist(), nbrs[i].tolist(), ok[i].tolist(),
                                  strict=True):  # fmt: skip
                if not good:
                    continue
                c = company[j]
                if cap and per.get(c, 0) >= cap:
                    continue
                per[c] = per.get(c, 0) + 1
                picked += 1
                out_q.append(ids[i])
                out_c.append(ids[j])
                out_r.append(picked)
                out_s.append(s)
                out_d.append(float(dist[ri, region[j]]))
                if picked == k:
                    break
        t_filter = time.perf_counter() - t0
        recs = pl.DataFrame(
            {"posting_id": out_q, "rank": out_r, "rec_posting_id": out_c, "score": out_s,
             "distance_km": out_d},
            schema=RECS_SCHEMA,
        )  # fmt: skip
        return recs, {"faiss_s": t_faiss, "filter_s": t_filter, "build_s": self.build_s}
