"""The learned ranker next to the data: each match shard builds and scores its part of a
seeker's pool, the frontend forms the global pool and list exactly, and the shards that hold
the listed postings write their reasons.

Why it is exact (the same lists, scores and reasons as
:class:`~workers.matching.service.MatchService` with a ranker and ``jobrec match --ranker``):
the pool (:func:`core.ranker.pool_features`) is the union over signals (formula, item-kNN,
EASE, user-kNN, walk, times shown) of the top ``pool`` rule-passing postings by that signal.
A posting in the global top ``pool`` of a signal is in the top ``pool`` of its own shard, so
the union of the shards' local pools holds every global pool member, and taking each signal's
top ``pool`` again over that union gives the global pool. A pair's features and ranker score
do not depend on the other candidates, so the shard computes them; the frontend only selects
(company cap, fresh places: :func:`core.ranker.rank_lists`).

The collaborative model is fitted on the deployment's start-up log, the same in every shard
(as :class:`MatchService` fits it at start): applications recorded since reach its features
at the next deployment, the exclusions and history vectors at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import polars as pl

from core.collab import CollabModel
from core.match_block import TopBlock, sort_ranks
from core.matching import Match, MatchConfig, SeekerQuery
from core.ranker import FEATURES, Pools, Ranker, _pool_of, pool_features, rank_lists

_SIM = FEATURES.index("similarity")
# pool signals besides the formula, as stored in the feature rows (times shown as its log:
# the same order)
_SIGNALS = tuple(FEATURES.index(f) for f in ("coapply_knn", "ease", "user_knn", "walk",
                                              "seen_before"))


@dataclass
class LocalPool:
    """One shard's part of a seeker's pool: posting ids, companies, formula scores (float64,
    as the pool is cut), feature rows and the ranker's scores; with the pool size and the
    ranker's fresh places, so a frontend needs no ranker settings of its own."""

    ids: np.ndarray
    company: np.ndarray
    formula: np.ndarray
    X: np.ndarray
    score: np.ndarray
    pool: int
    fresh: int


def history_occupations(collab: CollabModel, postings: pl.DataFrame) -> dict[str, int]:
    """The occupation code (-1: unclassified) of every posting of the log's histories that
    ``postings`` holds: what a shard reads for history postings held by other shards."""
    from core.matching import _occ_ints

    keep = postings.filter(pl.col("posting_id").is_in(pl.Series(collab.items.tolist(),
                                                                 dtype=pl.Utf8).implode()))
    occ = _occ_ints(keep["occupation_code"].to_list())[0]
    return dict(zip(keep["posting_id"].to_list(), occ.tolist(), strict=True))


class ShardRanker:
    """A ranker with the collaborative model and history occupations it reads in a shard."""

    def __init__(self, ranker: Ranker, collab: CollabModel, pool: int,
                 history_occ: Mapping[str, int]) -> None:
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool!r}")
        self.ranker, self.collab, self.pool = ranker, collab, pool
        self.history_occ = dict(history_occ)

    def noted(self, postings: pl.DataFrame) -> None:
        """Occupations of postings written to this shard (a history posting may change)."""
        self.history_occ.update(history_occupations(self.collab, postings))

    def pools(self, jobs, qs: Sequence[SeekerQuery], cfg: MatchConfig) -> list[LocalPool]:
        """Each query's local pool over the shard's postings ``jobs`` (a JobIndex), scored."""
        side = jobs.side
        p = pool_features(qs, side, jobs, self.collab, cfg, self.pool, self.history_occ)
        score = self.ranker.score(p.X)
        starts = np.searchsorted(p.row, np.arange(len(qs) + 1))
        out = []
        for i in range(len(qs)):
            r = slice(starts[i], starts[i + 1])
            pos = p.pos[r]
            out.append(LocalPool(side.ids[pos], side.company[pos], p.formula[r], p.X[r],
                                 score[r], self.pool, self.ranker.fresh_slots))
        return out

    def rows(self, jobs, q: SeekerQuery, ids: Sequence[str], scores: np.ndarray,
             X: np.ndarray) -> list[Match]:
        """The listed postings of this shard as Matches with their reasons and the learned
        signal that lifted each most (what :func:`workers.jobs.rank.ranked_frame` writes)."""
        from workers.jobs.match import block_frame
        from workers.jobs.rank import with_drivers

        if not len(ids):
            return []
        pos = np.asarray([jobs._pos[i] for i in ids], dtype=np.int64)
        block = TopBlock.of([(pos, np.asarray(scores, np.float64), X[:, _SIM])])
        frame = with_drivers(block_frame([q], block, jobs.side, jobs.areas),
                             self.ranker.driver_codes(X))
        return [Match(pid, float(sc), json.loads(r)) for pid, sc, r in
                frame.select("posting_id", "score", "reasons").iter_rows()]


def merge_pools(parts: Mapping[int, LocalPool], k: int, max_per_company: int
                ) -> list[tuple[int, str, float, np.ndarray]]:
    """The seeker's list from the shards' pools: (shard, posting id, score, feature row) in
    list order, as :func:`core.ranker.rank_lists` orders the global pool."""
    shards = [s for s, p in parts.items() if p.ids.size]
    if not shards:
        return []
    cat = lambda f: np.concatenate([getattr(parts[s], f) for s in shards])  # noqa: E731
    ids, company, formula, X, score = (cat(f) for f in
                                       ("ids", "company", "formula", "X", "score"))
    first = parts[shards[0]]
    owner = np.concatenate([np.full(parts[s].ids.size, s) for s in shards])
    keep = _pool_of(formula, [X[:, c] for c in _SIGNALS], sort_ranks(ids), first.pool)
    n = keep.size
    pools = Pools([""], np.zeros(n, np.int64), np.arange(n), X[keep], formula[keep])
    side = SimpleNamespace(ids=ids[keep], company=company[keep])
    got = rank_lists(None, pools, side, k, max_per_company, first.fresh, scores=score[keep])
    if not got:
        return []
    pos, sc, _ = got[""]
    at = keep[pos]
    return [(int(owner[j]), str(ids[j]), float(s), X[j]) for j, s in zip(at, sc, strict=True)]
