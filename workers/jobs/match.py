"""``jobrec match``: jobs for every active seeker (and candidates for every posting), on Ray.

Postings are split into geo shards (the refresh's H3 bisection, owner only: regions are
explicit, no halo is needed); each shard is a :class:`~workers.matching.index.JobIndex` actor. A
seeker is sent to every shard holding postings of its desired regions and the lists are
merged exactly (:func:`~workers.matching.index.merge_exact`). Vectors come from a
``vector_fn(texts) -> array`` (the posting encoder), so seekers and postings share one space.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from core.collab import LIKED_EVENTS
from core.match_block import (
    QueryBlock,
    TopBlock,
    area_columns,
    company_codes,
    reason_columns,
    reason_frame,
    sort_ranks,
    top_k_rows,
)
from core.matching import AreaCodes, Match, MatchConfig, PostingSide, SeekerQuery, reason_text
from core.seekers import EXCLUDING_EVENTS, areas_of
from workers.matching.index import JobIndex, merge_exact

log = logging.getLogger("jobrec.match")
_EPOCH = dt.date(1970, 1, 1)

MATCH_SCHEMA: dict[str, pl.DataType] = {
    "seeker_id": pl.Utf8(),
    "rank": pl.Int16(),
    "posting_id": pl.Utf8(),
    "score": pl.Float32(),
    "reasons": pl.Utf8(),  # JSON object of the machine-readable reasons
    "reason_text": pl.Utf8(),  # 추천기준
}


def excluded_by_seeker(interactions: pl.DataFrame | None) -> dict[str, frozenset[str]]:
    """seeker_id -> postings it applied to or hid."""
    if interactions is None or interactions.height == 0:
        return {}
    ex = interactions.filter(pl.col("event").is_in(list(EXCLUDING_EVENTS)))
    g = ex.group_by("seeker_id").agg(pl.col("posting_id").unique())
    return {s: frozenset(p) for s, p in g.iter_rows()}


def liked_by_seeker(interactions: pl.DataFrame | None) -> dict[str, frozenset[str]]:
    """seeker_id -> postings it clicked or applied to."""
    if interactions is None or interactions.height == 0:
        return {}
    g = interactions.filter(pl.col("event").is_in(list(LIKED_EVENTS))) \
        .group_by("seeker_id").agg(pl.col("posting_id").unique())
    return {s: frozenset(p) for s, p in g.iter_rows()}


def seekers_by_excluded(excluded: Mapping[str, frozenset[str]]) -> dict[str, set[str]]:
    """posting_id -> seekers who applied to or hid it (the candidates side's exclusions)."""
    gone: dict[str, set[str]] = {}
    for sid, pids in excluded.items():
        for p in pids:
            gone.setdefault(p, set()).add(sid)
    return gone


def apply_interactions(rows, excluded: dict, gone: dict, liked: dict, history: dict,
                       vector_of: Callable[[str], np.ndarray | None]) -> None:
    """The in-memory effect of logged interaction rows ``(seeker_id, posting_id, event,
    ...)``: an application or a hidden posting excluded both ways, a click or an
    application in the seeker's history vector (the liked postings' vectors by
    ``vector_of``, None: unknown, in posting-id order as :func:`history_vectors`). Readers
    run in other threads: every set a reader may iterate is replaced, never mutated."""
    touched: set[str] = set()
    for sid, pid, event, *_ in rows:
        if event in EXCLUDING_EVENTS:
            excluded[sid] = excluded.get(sid, frozenset()) | {pid}
            gone[pid] = gone.get(pid, set()) | {sid}
        if event in LIKED_EVENTS:
            liked[sid] = liked.get(sid, frozenset()) | {pid}
            touched.add(sid)
    for sid in touched:
        vecs = [v for v in map(vector_of, sorted(liked[sid])) if v is not None]
        v = unit_mean(np.asarray(vecs)) if vecs else None
        if v is not None:
            history[sid] = v


def history_vectors(interactions: pl.DataFrame | None, posting_ids: Sequence[str],
                    vectors: np.ndarray) -> dict[str, np.ndarray]:
    """seeker_id -> normalised mean vector of the postings it clicked or applied to."""
    if interactions is None or interactions.height == 0:
        return {}
    pos = {p: i for i, p in enumerate(posting_ids)}
    pos_df = pl.DataFrame({"posting_id": list(pos), "_i": list(pos.values())},
                          schema={"posting_id": pl.Utf8(), "_i": pl.Int64()})
    # in posting-id order: the online path (MatchService) averages a recorded click in the
    # same order, so its float32 mean is this one's to the bit
    liked = interactions.filter(pl.col("event").is_in(list(LIKED_EVENTS))) \
        .join(pos_df, on="posting_id").unique(["seeker_id", "posting_id"]) \
        .sort("seeker_id", "posting_id").group_by("seeker_id", maintain_order=True) \
        .agg(pl.col("_i"))
    out = {}
    for sid, idx in liked.iter_rows():
        v = unit_mean(np.asarray(vectors)[np.asarray(idx)])
        if v is not None:
            out[sid] = v
    return out


def unit_mean(rows: np.ndarray) -> np.ndarray | None:
    """The normalised float32 mean of ``rows`` (None when it is zero)."""
    v = np.asarray(rows, dtype=np.float32).mean(axis=0)
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else None


def seeker_queries(seekers: pl.DataFrame, vectors: np.ndarray,
                   excluded: dict[str, frozenset[str]] | None = None,
                   history: dict[str, np.ndarray] | None = None) -> list[SeekerQuery]:
    """One :class:`SeekerQuery` per row (vectors aligned with rows)."""
    excluded, history = excluded or {}, history or {}
    return [SeekerQuery.from_row(r, vectors[i], excluded.get(r["seeker_id"], frozenset()),
                                 history.get(r["seeker_id"]))
            for i, r in enumerate(seekers.iter_rows(named=True))]


@dataclass(frozen=True)
class MatchReport:
    """What a batch match did."""

    seekers: int
    postings: int
    recommendations: int
    num_shards: int
    timings_s: dict[str, float]
    out_path: str | None


def shard_postings(postings: pl.DataFrame, num_shards: int) -> list[np.ndarray]:
    """Row indices of each shard (geo bisection of the H3 cells, balanced by count)."""
    if num_shards == 1 or postings.height == 0:
        return [np.arange(postings.height)]
    from workers.engine import geo
    from workers.engine.sharding import ShardingConfig, ShardPlan

    cfg = ShardingConfig(num_shards=num_shards)
    lat, lng = postings["lat"].to_numpy(), postings["lng"].to_numpy()
    plan = ShardPlan.build(lat, lng, cfg, halo_km=1.0)
    owner = plan.owners(geo.cells(lat, lng, cfg.fine_res))
    return [np.flatnonzero(owner == s) for s in range(num_shards)]


class LocalShards:
    """Shards as in-process :class:`JobIndex` objects (the same calls the actors answer)."""

    def __init__(self, indexes: list[JobIndex]) -> None:
        self.indexes = indexes

    def holds(self, shard: int, areas) -> bool:
        return any(self.indexes[shard].holds(a) for a in areas)

    def many(self, calls: dict[int, list[SeekerQuery]], cfg: MatchConfig, k: int):
        return {s: self.indexes[s].recommend_many(qs, cfg, k) for s, qs in calls.items()}

    def many_block(self, calls: dict[int, list[SeekerQuery]], cfg: MatchConfig, k: int):
        return {s: self.indexes[s].top_block(qs, cfg, k) for s, qs in calls.items()}


def recommend_fanout(shards, holders: list[list[int]], qs: Sequence[SeekerQuery],
                     cfg: MatchConfig, company_of: Callable[[str], str]) -> list[list[Match]]:
    """Each seeker's exact global top-k over the shards in ``holders[i]``."""
    calls: dict[int, list[int]] = {}
    for i, hs in enumerate(holders):
        for s in hs:
            calls.setdefault(s, []).append(i)
    res = shards.many({s: [qs[i] for i in ix] for s, ix in calls.items()}, cfg, cfg.k)
    per_seeker: list[dict[int, list[Match]]] = [{} for _ in qs]
    for s, ix in calls.items():
        for i, lst in zip(ix, res[s], strict=True):
            per_seeker[i][s] = lst
    return [merge_exact(lists, cfg.k, cfg.max_per_company, company_of) if len(lists) > 1
            else next(iter(lists.values()), []) for lists in per_seeker]


def match_frame(seeker_ids: Sequence[str], results: Sequence[list[Match]],
                id_col: str = "seeker_id", item_col: str = "posting_id") -> pl.DataFrame:
    """Results as a table of (id, rank, item, score, reasons JSON, 추천기준)."""
    rows = [(sid, r + 1, m.item_id, m.score,
             json.dumps(m.reasons, ensure_ascii=False, default=str), reason_text(m.reasons))
            for sid, ms in zip(seeker_ids, results, strict=True) for r, m in enumerate(ms)]
    schema = {id_col: pl.Utf8(), "rank": pl.Int16(), item_col: pl.Utf8(), "score": pl.Float32(),
              "reasons": pl.Utf8(), "reason_text": pl.Utf8()}
    return pl.DataFrame(rows, schema=schema, orient="row")


def block_frame(qs: Sequence[SeekerQuery], block: TopBlock, side: PostingSide,
                areas: AreaCodes) -> pl.DataFrame:
    """The batch result table (:data:`MATCH_SCHEMA`) from flat top lists, columnar."""
    qb = QueryBlock.of(qs, with_vectors=False)
    cols = reason_columns(qb, area_columns(qs, areas), block.row, side, block.pos, block.sim)
    rank = np.arange(block.pos.size, dtype=np.int64) - block.offsets[block.row] + 1
    # ids gathered by polars: no Python string per recommendation; a few lists (online)
    # take their ids alone rather than a column of every posting
    seeker_ids = pl.Series([q.seeker_id for q in qs], dtype=pl.Utf8)
    if block.pos.size * 4 < len(side.ids):
        rec_ids = pl.Series(side.ids[block.pos].tolist(), dtype=pl.Utf8)
    else:
        rec_ids = pl.Series(side.ids.tolist(), dtype=pl.Utf8).gather(block.pos)
    head = pl.DataFrame({
        "seeker_id": seeker_ids.gather(block.row),
        "rank": pl.Series(rank, dtype=pl.Int16),
        "posting_id": rec_ids,
        "score": pl.Series(block.score, dtype=pl.Float32),
    })
    return pl.concat([head, reason_frame(cols)], how="horizontal")


class _Ranks:
    """Global tie order (posting id rank) and company codes, for the exact merge."""

    def __init__(self, side: PostingSide) -> None:
        self.ids, self.companies = side.ids, side.company
        self.idrank = sort_ranks(side.ids)
        self.company = company_codes(side.company)


def merge_block(lists: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], k: int,
                max_per_company: int, ranks: _Ranks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`~workers.matching.index.merge_exact` on array lists (global posting positions)."""
    pos = np.concatenate([v[0] for v in lists.values()])
    score = np.concatenate([v[1] for v in lists.values()])
    sim = np.concatenate([v[2] for v in lists.values()])
    take = top_k_rows(score[None, :], ranks.idrank[pos], ranks.company[pos], k, max_per_company,
                      ranks.ids[pos], ranks.companies[pos])[0]
    return pos[take], score[take], sim[take]


@dataclass
class MatchWorld:
    """What every batch chunk needs besides the shards: the posting side (global positions),
    the shards' row sets, which shards hold each area, and the exact-merge order."""

    parts: list[np.ndarray]
    area_shards: dict[tuple, set[int]]
    areas: AreaCodes
    side: PostingSide
    ranks: _Ranks

    @classmethod
    def build(cls, postings: pl.DataFrame, posting_vectors: np.ndarray,
              num_shards: int) -> MatchWorld:
        """Split ``postings`` into ``num_shards`` geo shards and index their areas."""
        parts = shard_postings(postings, num_shards)
        area_shards: dict[tuple, set[int]] = {}
        for s, p in enumerate(parts):
            sub = postings[p]
            sgg = sub["sigungu"].to_list() if "sigungu" in sub.columns else [None] * sub.height
            for a, g in set(zip(sub["sido"].to_list(), sgg, strict=True)):
                area_shards.setdefault((a, None), set()).add(s)
                if g:
                    area_shards.setdefault((a, g), set()).add(s)
        areas = AreaCodes()
        side = PostingSide.build(postings, posting_vectors, areas)
        return cls(parts, area_shards, areas, side, _Ranks(side))

    def shards(self, postings: pl.DataFrame, posting_vectors: np.ndarray, use_ray: bool):
        """The shard indexes: Ray actors, or in-process :class:`LocalShards`."""
        if use_ray:
            from workers.matching.actors import RayShards

            return RayShards([(postings[p], posting_vectors[p]) for p in self.parts])
        return LocalShards([JobIndex(postings[p], posting_vectors[p]) for p in self.parts])

    def top(self, shards, qs: Sequence[SeekerQuery], cfg: MatchConfig):
        """Each query's exact global top-k as (global positions, scores, sims) or None."""
        holders = [sorted(set().union(*(self.area_shards.get((a.sido, a.sigungu), set())
                                        for a in q.areas))) for q in qs]
        return _fanout_block(shards, self.parts, holders, qs, cfg, self.ranks)

    def frame(self, qs: Sequence[SeekerQuery], per) -> pl.DataFrame:
        """The :data:`MATCH_SCHEMA` table of :meth:`top`'s lists."""
        return block_frame(qs, TopBlock.of(per), self.side, self.areas)


def active_queries(seekers: pl.DataFrame, seeker_vectors: np.ndarray,
                   interactions: pl.DataFrame | None, posting_ids: Sequence[str],
                   posting_vectors: np.ndarray) -> list[SeekerQuery]:
    """Queries of the active seekers: exclusions and history vectors from ``interactions``."""
    active = seekers["active"].to_numpy()
    sk = seekers.filter(pl.Series(active))
    return seeker_queries(sk, np.asarray(seeker_vectors)[active], excluded_by_seeker(interactions),
                          history_vectors(interactions, posting_ids, posting_vectors))


def run_match(seekers: pl.DataFrame, postings: pl.DataFrame, seeker_vectors: np.ndarray,
              posting_vectors: np.ndarray, cfg: MatchConfig, *, num_shards: int = 2,
              interactions: pl.DataFrame | None = None, use_ray: bool = True,
              batch: int = 5000, progress: bool = True) -> tuple[pl.DataFrame, dict[str, float]]:
    """Top-k jobs for every active seeker, as one table in memory (the streamed, resumable
    form is :func:`workers.jobs.match_stream.run_match_stream`). Returns the table and
    per-stage seconds."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    world = MatchWorld.build(postings, posting_vectors, num_shards)
    shards = world.shards(postings, posting_vectors, use_ray)
    timings["build_shards"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    qs = active_queries(seekers, seeker_vectors, interactions, postings["posting_id"].to_list(),
                        posting_vectors)
    timings["queries"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    per: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    for start in range(0, len(qs), batch):
        per.extend(world.top(shards, qs[start:start + batch], cfg))
        if progress:
            log.info("matched %d / %d seekers", min(start + batch, len(qs)), len(qs))
    timings["match"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = world.frame(qs, per)
    timings["format"] = time.perf_counter() - t0
    if use_ray:
        shards.close()
    return frame, timings


def _fanout_block(shards, parts: list[np.ndarray], holders: list[list[int]],
                  qs: Sequence[SeekerQuery], cfg: MatchConfig, ranks: _Ranks):
    """Each seeker's exact global top-k as (global positions, scores, sims)."""
    calls: dict[int, list[int]] = {}
    for i, hs in enumerate(holders):
        for s in hs:
            calls.setdefault(s, []).append(i)
    res = shards.many_block({s: [qs[i] for i in ix] for s, ix in calls.items()}, cfg, cfg.k)
    lists: list[dict[int, tuple]] = [{} for _ in qs]
    for s, ix in calls.items():
        for i, (pos, sc, sm) in zip(ix, res[s].lists(), strict=True):
            lists[i][s] = (parts[s][pos], sc, sm)
    out = []
    for by_shard in lists:
        if len(by_shard) <= 1:
            out.append(next(iter(by_shard.values()), None))
        else:
            out.append(merge_block(by_shard, cfg.k, cfg.max_per_company, ranks))
    return out


def region_violations(frame: pl.DataFrame, seekers: pl.DataFrame, postings: pl.DataFrame) -> int:
    """Recommendations whose posting lies outside the seeker's desired regions (must be 0)."""
    where = {r[0]: (r[1], r[2]) for r in postings.select(
        "posting_id", "sido", pl.col("sigungu") if "sigungu" in postings.columns
        else pl.lit(None, pl.Utf8).alias("sigungu")).iter_rows()}
    regions = {r["seeker_id"]: areas_of(r["desired_regions"]) for r in seekers.iter_rows(named=True)}
    bad = 0
    for sid, pid in frame.select("seeker_id", "posting_id").iter_rows():
        s, g = where[pid]
        bad += not any(a.contains(s, g) for a in regions[sid])
    return bad


def candidates_all(seekers: pl.DataFrame, postings: pl.DataFrame, seeker_vectors: np.ndarray,
                   posting_vectors: np.ndarray, cfg: MatchConfig, *,
                   interactions: pl.DataFrame | None = None) -> pl.DataFrame:
    """Top-k active seekers for every open posting (``--candidates``)."""
    from workers.matching.index import SeekerIndex

    index = SeekerIndex(seekers, seeker_vectors,
                        seekers_by_excluded(excluded_by_seeker(interactions)))
    ref = cfg.ref_days()
    ids, results = [], []
    for j, row in enumerate(postings.iter_rows(named=True)):
        if cfg.exclude_expired and row["closes_on"] is not None and \
                (row["closes_on"] - _EPOCH).days < ref:
            continue
        ids.append(row["posting_id"])
        results.append(index.candidates_for(row, posting_vectors[j], cfg))
    return match_frame(ids, results, id_col="posting_id", item_col="seeker_id")
