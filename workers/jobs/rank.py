"""``jobrec train-ranker`` and ranked lists: the learned ranker over one in-process index.

The rules, pools and features are :mod:`core.ranker`'s; this module wires them to the
matching index (:class:`~workers.matching.index.JobIndex`) and the seeker queries of
:mod:`workers.jobs.match`, so training and ranking see exactly the candidates ``jobrec match``
lets through.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Sequence

import numpy as np
import polars as pl

from core.collab import CollabModel
from core.match_block import TopBlock
from core.matching import MatchConfig, SeekerQuery
from core.ranker import (
    DRIVER_TEXTS,
    FEATURES,
    Ranker,
    RankerConfig,
    Window,
    fingerprint,
    pool_features,
    rank_lists,
    rank_pools,
    split_targets,
    train_ranker,
)
from workers.jobs.match import block_frame, excluded_by_seeker, history_vectors, seeker_queries
from workers.matching.index import JobIndex

RANK_CHUNK = 5000  # seekers per ranked-batch task


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
              rcfg: RankerConfig | None = None, incumbent: Ranker | None = None
              ) -> tuple[Ranker, dict]:
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
            windows, self.side, self.index, rcfg, incumbent=incumbent,
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

    def match_frame(self, ranker: Ranker | None, log: pl.DataFrame | None, cfg: MatchConfig,
                    pool: int = 300, *, use_ray: bool = False, tasks: int = 2,
                    chunk: int = RANK_CHUNK) -> pl.DataFrame:
        """``jobrec match --ranker``: the result table (``MATCH_SCHEMA``) of every active
        seeker, the ranker's driver in the reasons; ``use_ray``: chunks of ``chunk`` seekers
        as Ray tasks, ``tasks`` at once (one index and collaborative model in the object
        store). A chunk's pools and features are what a task holds, so memory does not grow
        with the number of seekers (two tasks of 50k seekers each were killed by Ray's memory
        monitor at 100k on 24 GB)."""
        qs = self.queries(log)
        collab = CollabModel(log)
        if not use_ray or len(qs) <= chunk:
            return ranked_frame(qs, self.index, collab, ranker, cfg, pool)
        from workers.matching.actors import ray_runner

        shared = (self.index, collab, ranker, cfg, pool)
        items = [(a, qs[a:a + chunk]) for a in range(0, len(qs), chunk)]
        done = dict(ray_runner(tasks, 3)(_ranked_chunk, shared, items))
        return pl.concat([done[a] for a, _ in items], how="vertical")


def _ranked_chunk(shared, start: int, qs: Sequence[SeekerQuery]) -> tuple[int, pl.DataFrame]:
    index, collab, ranker, cfg, pool = shared
    return start, ranked_frame(qs, index, collab, ranker, cfg, pool)


def ranked_frame(qs: Sequence[SeekerQuery], index: JobIndex, collab: CollabModel,
                 ranker: Ranker | None, cfg: MatchConfig, pool: int) -> pl.DataFrame:
    """The top-``cfg.k`` of every seeker's rule-passing pool by ``ranker`` (None: the
    formula) as the batch result table; with a ranker, the learned signal that lifted each
    recommendation most leads its reasons (``ranker_reason``) and its 추천기준."""
    side = index.side
    pools = pool_features(qs, side, index, collab, cfg, pool)
    lists = rank_lists(ranker, pools, side, cfg.k, cfg.max_per_company)
    sim_col = FEATURES.index("similarity")
    per, rows = [], []
    for q in qs:
        got = lists.get(q.seeker_id)
        if got is None:
            per.append(None)
            continue
        pos, score, r = got
        per.append((pos, score, pools.X[r, sim_col]))
        rows.append(r)
    frame = block_frame(qs, TopBlock.of(per), side, index.areas)
    if ranker is None:
        return frame
    r = np.concatenate(rows) if rows else np.empty(0, np.int64)
    return with_drivers(frame, ranker.driver_codes(pools.X[r]))


def with_drivers(frame: pl.DataFrame, codes: np.ndarray) -> pl.DataFrame:
    """``ranker_reason`` (:data:`core.ranker.DRIVER_TEXTS`; -1: none) appended to the reasons
    JSON and put first in 추천기준, as :func:`core.matching.reason_text` does online."""
    at = pl.Series(codes, dtype=pl.Int64)
    text = pl.Series(DRIVER_TEXTS, dtype=pl.Utf8).gather(
        pl.select(pl.when(at >= 0).then(at)).to_series())
    quoted = pl.Series([json.dumps(t, ensure_ascii=False) for t in DRIVER_TEXTS],
                       dtype=pl.Utf8).gather(pl.select(pl.when(at >= 0).then(at)).to_series())
    d = pl.col("_driver")
    return frame.with_columns(_driver=text, _quoted=quoted).with_columns(
        reasons=pl.when(d.is_null()).then(pl.col("reasons")).otherwise(pl.concat_str([
            pl.col("reasons").str.head(-1), pl.lit(',"ranker_reason":'), pl.col("_quoted"),
            pl.lit("}")])),
        reason_text=pl.when(d.is_null()).then(pl.col("reason_text"))
        .otherwise(pl.concat_str([d, pl.lit(" · "), pl.col("reason_text")])),
    ).drop("_driver", "_quoted")
