"""``jobrec train-ranker`` and ranked lists: the learned ranker over one in-process index.

The rules, pools and features are :mod:`core.ranker`'s; this module wires them to the
matching index (:class:`~workers.matching.JobIndex`) and the seeker queries of
:mod:`workers.match_job`, so training and ranking see exactly the candidates ``jobrec match``
lets through.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import numpy as np
import polars as pl

from core.collab import CollabModel
from core.matching import MatchConfig
from core.ranker import (
    Ranker,
    RankerConfig,
    Window,
    fingerprint,
    pool_features,
    rank_pools,
    split_targets,
    train_ranker,
)
from workers.match_job import excluded_by_seeker, history_vectors, seeker_queries
from workers.matching import JobIndex


class RankWorld:
    """Postings, active seekers and their vectors, indexed once."""

    def __init__(self, seekers: pl.DataFrame, postings: pl.DataFrame, seeker_vectors: np.ndarray,
                 posting_vectors: np.ndarray) -> None:
        act = seekers["active"].to_numpy()
        self.seekers = seekers.filter(pl.Series(act))
        self.sv = np.asarray(seeker_vectors, np.float32)[act]
        self.index = JobIndex(postings, posting_vectors)
        self.side = self.index.side

    def queries(self, log: pl.DataFrame | None):
        """Seeker queries with the exclusions and history vectors of ``log``."""
        return seeker_queries(self.seekers, self.sv, excluded_by_seeker(log),
                              history_vectors(log, self.side.ids.tolist(), self.side.vectors))

    def train(self, interactions: pl.DataFrame, cfg: MatchConfig,
              rcfg: RankerConfig | None = None) -> tuple[Ranker, dict]:
        """Split the log (:func:`core.ranker.split_targets`), fit on the feature part with the
        reference date of the target part, return the ranker and its validation metrics."""
        rcfg = rcfg or RankerConfig()
        t0 = time.perf_counter()
        windows, how = [], []
        for feat, targets, why in split_targets(interactions, rcfg.seed, windows=rcfg.windows):
            ref = cfg.ref_date
            if feat.height and feat["at"].null_count() < feat.height:
                ref = feat["at"].max().date() + dt.timedelta(days=1)
            windows.append(Window(self.queries(feat), feat, targets,
                                  dataclasses.replace(cfg, ref_date=ref)))
            how.append(why)
        ranker, metrics = train_ranker(
            windows, self.side, self.index, rcfg,
            extra_manifest={"split": how, "fingerprint": fingerprint(
                self.seekers.select("seeker_id"), self.index._frame.select("posting_id"),
                interactions.select("seeker_id", "posting_id", "event"))})
        metrics["train_s"] = round(time.perf_counter() - t0, 2)
        ranker.manifest["metrics"] = metrics
        return ranker, metrics

    def ranked(self, ranker: Ranker | None, log: pl.DataFrame | None, cfg: MatchConfig,
               pool: int = 300) -> dict[str, list[str]]:
        """Top-``cfg.k`` posting ids per active seeker by ``ranker`` (None: the formula) over
        the rule-passing pools, with the collaborative signals of ``log``."""
        pools = pool_features(self.queries(log), self.side, self.index, CollabModel(log), cfg,
                              pool)
        lists = rank_pools(ranker, pools, self.side, cfg.k, cfg.max_per_company)
        return {s: [str(self.side.ids[p]) for p, _ in v] for s, v in lists.items()}
