"""The batch path: top-k of every owned item of a collection, exact, fast.

Queries grouped by coarse H3 cell share one candidate block (the fine cells within the
measured ring count, :func:`workers.engine.geo.rings_for`), scored by one float32 BLAS matmul;
the rule kernel (:meth:`core.rules.RuleSet.pair_mask`) masks the pairs failing a rule;
each row keeps its best few with FAISS's heap (``float_minheap_array_t``, several times
faster than ``np.argpartition``); rows with a near-tie up to their last pick are rescored
exactly and re-selected; the picks' scores are then replaced by their exact scores
(:mod:`workers.engine.scoring`), so results equal the single-query path's
(:meth:`workers.engine.collection.Collection.search`), which also answers the few rows this path
cannot settle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import h3.api.numpy_int as h3n
import numpy as np
import polars as pl

from core.rules import EARTH_RADIUS_KM, NO_LIMIT, AtMost, haversine_km, unit_xyz
from workers.engine import geo
from workers.engine.cellindex import ranges
from workers.engine.collection import Collection
from workers.engine.scoring import exact_scores, order_pick, top_t
from workers.engine.sharding import parents_np
from workers.engine.types import RECS_SCHEMA

BLOCK_ROWS = 256  # queries per matmul block (bounds memory of the block path)
SPLIT_ABOVE = 64  # queries in a group above which the group is split by the split rule
_PENALTY = 1e30  # subtracted from the score of a pair that fails a rule
_MASKED = -1e29  # scores below this failed a rule


@dataclass
class BatchStats:
    """Counters of one batch run (pairs scored, fallbacks, CPU seconds, ...)."""

    groups: int = 0
    blocks: int = 0
    pairs: int = 0
    fallback_rows: int = 0
    fallback_more: int = 0
    fallback_tie: int = 0
    rescored_rows: int = 0
    deeper_rows: int = 0
    queries: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def as_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class _Run:
    """The state of one batch run (passed along, never stored on the shard)."""

    coll: Collection
    k: int
    cfg: object
    rank: np.ndarray  # row -> rank of its id (ties are broken by id)
    stats: BatchStats = field(default_factory=BatchStats)


def recommend_owned(
    coll: Collection, k: int, cfg: object, group_res: int | None = None
) -> tuple[pl.DataFrame, BatchStats]:
    """Top-k of every owned live item of ``coll`` as a :data:`RECS_SCHEMA` frame
    (query id, rank, recommended id, score, distance_km), and the run's counters."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    st, rules = coll.store, coll.kind.rules
    n = coll.n
    group_res = max(0, coll.fine_res - 2) if group_res is None else group_res
    alive = st["alive"]
    qrows = np.flatnonzero(alive & st["owned"])
    cand_ok = alive.copy()
    cm = rules.candidate_mask(st, cfg)
    if cm is not None:
        cand_ok &= cm
    ids_np = np.array(coll.ids, dtype=object)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(np.array(coll.ids, dtype=str), kind="stable")] = np.arange(n)
    run = _Run(coll, k, cfg, rank)
    # queries of one group with the same limit of the split rule share a candidate subset
    split = rules.rule(rules.split) if rules.split else None
    q_lim = np.full(qrows.size, NO_LIMIT, dtype=np.int64)
    if isinstance(split, AtMost):
        lim = split.limit(coll.candidates(qrows), cfg)
        if lim is not None:
            q_lim = np.asarray(lim, dtype=np.int64)
    fine = st["fine"]
    group = parents_np(fine[qrows], group_res)
    # fine cell last: consecutive queries of a block are close together
    order = np.lexsort((fine[qrows], q_lim, group))
    qrows, q_lim, group = qrows[order], q_lim[order], group[order]
    bounds = np.flatnonzero(np.diff(group)) + 1
    starts = np.concatenate([[0], bounds]).astype(int) if qrows.size else np.zeros(0, int)
    ends = np.concatenate([bounds, [qrows.size]]).astype(int) if qrows.size else starts
    # candidate index: rows passing the candidate-only rules, sorted by fine cell
    crow_all = np.flatnonzero(cand_ok)
    crow_all = crow_all[np.argsort(fine[crow_all], kind="stable")]
    occ_cells, occ_start, occ_count = np.unique(
        fine[crow_all], return_index=True, return_counts=True
    )
    radius_all = rules.radius_km(coll.candidates(qrows), cfg) if qrows.size else np.zeros(0)
    out: list[list[np.ndarray]] = [[], [], [], [], []]
    run.stats.groups = len(starts)
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        g_rows, g_lim = qrows[a:b], q_lim[a:b]
        radius = float(radius_all[a:b].max())
        # every fine cell of the group lies within `spread` rings of its centre child
        center = h3n.cell_to_center_child(int(group[a]), coll.fine_res)
        spread = max(h3n.grid_distance(center, int(f)) for f in np.unique(fine[g_rows]).tolist())
        cells = geo.disk_cells(center, geo.rings_for(coll.fine_res, radius) + spread)
        pos = np.minimum(np.searchsorted(occ_cells, cells), max(occ_cells.size - 1, 0))
        hit = pos[occ_cells[pos] == cells] if occ_cells.size else pos[:0]
        crows = crow_all[ranges(occ_start[hit], occ_count[hit])]
        if crows.size == 0:
            continue
        if g_rows.size <= SPLIT_ABOVE or split is None:
            blocks = [(g_rows, crows)]
        else:  # big groups: skip candidates failing the split rule before the matmul
            c_val = st[split.column][crows]
            blocks = [
                (g_rows[g_lim == e], crows if e >= NO_LIMIT else crows[c_val <= e])
                for e in np.unique(g_lim).tolist()
            ]
        for qs_all, cs in blocks:
            for s0 in range(0, qs_all.size, BLOCK_ROWS):
                res = _block(run, qs_all[s0 : s0 + BLOCK_ROWS], cs)
                if res is not None:
                    for lst, v in zip(out, res, strict=True):
                        lst.append(v)
    stats = run.stats
    stats.cpu_s = time.process_time() - cpu0
    stats.wall_s = time.perf_counter() - wall0
    stats.queries = int(qrows.size)
    if out[0]:
        qv, cv, rk, sc, dk = (np.concatenate(x) for x in out)
    else:
        qv = cv = np.zeros(0, np.int64)
        rk, sc, dk = np.zeros(0, np.int16), np.zeros(0, np.float32), np.zeros(0, np.float32)
    frame = pl.DataFrame(
        {
            "posting_id": ids_np[qv].tolist() if qv.size else [],
            "rank": rk,
            "rec_posting_id": ids_np[cv].tolist() if cv.size else [],
            "score": sc,
            "distance_km": dk,
        },
        schema=RECS_SCHEMA,
    )
    return frame, stats


def _select(run: _Run, S, bad, qs, cs, t, cap, rank_c, comp_c):
    """Pick each row's top-k from its best ``t`` scores in ``S`` (masked with -inf).

    Returns (row, column, rank, score) of the picks of the rows that are settled, and
    two masks: ``more`` (the cap skipped too many; look deeper) and ``unsure`` (a tie
    with a score beyond the best t: use the single-query path).
    """
    k, vec, stats = run.k, run.coll.store["vector"], run.stats
    m, n = S.shape
    ps, part = top_t(S, t)  # FAISS heap: best t per row, score desc; -1 = empty slot
    heap_min = ps[:, t - 1].copy()
    keep = (part >= 0) & (ps > _MASKED)
    part_c = np.where(keep, part, 0)
    ps, part_c, pick = order_pick(ps, part_c, keep, rank_c, comp_c, k, cap)
    # BLAS float32 scores of equal vectors can differ in the last bits with their position.
    # Rows with a near-tie up to the first unpicked candidate after the last pick are
    # rescored position-independently (float64 dot, as the online path does) and
    # re-selected, so ties are exact and broken by id.
    eps = run.coll.eps
    upto = t - np.argmax(pick[:, ::-1], axis=1) + 1  # last pick + 2
    with np.errstate(invalid="ignore"):  # -inf - -inf in empty slots
        gap = ps[:, :-1] - ps[:, 1:]
    close = (gap < eps) & (np.arange(1, t)[None, :] < upto[:, None])
    fr = np.flatnonzero(close.any(axis=1) & pick.any(axis=1))
    if fr.size:
        stats.rescored_rows += int(fr.size)
        pc = part_c[fr]
        ok = np.isfinite(ps[fr])
        s64 = exact_scores(np.repeat(vec[qs[fr]], t, axis=0), vec[cs[pc.ravel()]]).reshape(pc.shape)
        s64 = np.where(ok, s64, -np.inf)
        ps[fr], part_c[fr], pick[fr] = order_pick(s64, pc, ok, rank_c, comp_c, k, cap)
    npick = pick.sum(axis=1)
    more = np.zeros(m, dtype=bool)
    unsure = np.zeros(m, dtype=bool)
    if t < n:
        short = np.flatnonzero(npick < k)
        if short.size:
            more[short] = np.count_nonzero(~bad[short], axis=1) > t
        last = t - 1 - np.argmax(pick[:, ::-1], axis=1)
        unsure = (npick > 0) & (ps[np.arange(m), last] - heap_min < eps) & ~more
        stats.fallback_more += int(more.sum())
        stats.fallback_tie += int(unsure.sum())
    ri, ci = np.nonzero(pick & ~(more | unsure)[:, None])
    rk = (np.cumsum(pick, axis=1) - 1)[ri, ci] + 1
    return ri, part_c[ri, ci], rk, ps[ri, ci], more, unsure


def _block(run: _Run, qs: np.ndarray, cs: np.ndarray):
    """Top-k of queries ``qs`` over candidates ``cs`` (passing the candidate-only rules,
    near enough). Returns (query rows, rec rows, rank, score, distance_km) arrays, or None."""
    coll, cfg, k, stats = run.coll, run.cfg, run.k, run.stats
    st, rules = coll.store, coll.kind.rules
    lat, lng, xyz, vec = st["lat"], st["lng"], st["xyz"], st["vector"]
    q = coll.candidates(qs)
    radius = rules.radius_km(q, cfg)
    # Triangle inequality around a centre c of the queries: candidates farther than
    # r_max + spread from c reach no query; those within r_min - spread reach all of them
    # (the kernel skips their distance). Only the annulus between needs the per-pair test.
    clat, clng = float(lat[qs].mean()), float(lng[qs].mean())
    spread = float(haversine_km(clat, clng, lat[qs], lng[qs]).max())
    # compare cosines of central angles (a 3-d dot product, no trigonometry per
    # candidate); the 1 m margins dwarf the rounding of either form
    cdot = xyz[cs] @ unit_xyz(np.array([clat]), np.array([clng]))[0]
    near = cdot >= np.cos(min(np.pi, (radius.max() + spread + 1e-3) / EARTH_RADIUS_KM))
    inner = radius.min() - spread - 1e-3
    if inner > 0:
        sure = cdot[near] >= np.cos(inner / EARTH_RADIUS_KM)
    else:
        sure = np.zeros(int(near.sum()), dtype=bool)
    cs = np.concatenate([cs[near][sure], cs[near][~sure]])
    ns = int(sure.sum())
    m, n = qs.size, cs.size
    if n == 0:
        return None
    stats.pairs += m * n
    stats.blocks += 1
    ok = rules.pair_mask(q, coll.candidates(cs), cfg, known_within=ns, candidate_rules=False)
    bad = ~ok
    S = vec[qs] @ vec[cs].T
    # push failing pairs far down: arithmetic is several times faster than a masked write
    S -= bad.view(np.uint8) * np.float32(_PENALTY)
    gcol = rules.group_column
    comp_c = st[gcol][cs] if gcol else np.zeros(n, np.int32)
    rank_c, cap = run.rank[cs], rules.cap(cfg)
    t = min(n, max(4 * k, 16))
    ri, col, rk, score, more, fb = _select(run, S, bad, qs, cs, t, cap, rank_c, comp_c)
    if more.any():
        # the cap skipped too many of the best t: look deeper for those rows
        rows = np.flatnonzero(more)
        t2 = min(n, 16 * t)
        r2, c2, k2, s2, more2, fb2 = _select(
            run, S[rows], bad[rows], qs[rows], cs, t2, cap, rank_c, comp_c
        )
        ri, col = np.concatenate([ri, rows[r2]]), np.concatenate([col, c2])
        rk, score = np.concatenate([rk, k2]), np.concatenate([score, s2])
        fb[rows[more2 | fb2]] = True
        stats.deeper_rows += int(rows.size)
    qrow, crow = qs[ri], cs[col]
    # the picks are those of the exact scores (rows with near-ties were rescored above);
    # report the exact scores themselves, so both paths return identical values
    score = exact_scores(vec[qrow], vec[crow])
    dist = haversine_km(lat[qrow], lng[qrow], lat[crow], lng[crow])
    out = [qrow, crow, rk.astype(np.int16), score.astype(np.float32), dist.astype(np.float32)]
    if fb.any():
        stats.fallback_rows += int(fb.sum())
        extra: list[list] = [[], [], [], [], []]
        for i in np.flatnonzero(fb).tolist():
            hits = coll.search(coll.query_of_row(int(qs[i])), k, cfg)
            for j, h in enumerate(hits):
                for lst, v in zip(extra, (qs[i], h.row, j + 1, h.score, h.distance_km),
                                  strict=True):  # fmt: skip
                    lst.append(v)
        dt = (np.int64, np.int64, np.int16, np.float32, np.float32)
        out = [
            np.concatenate([o_, np.array(e_, dtype=d_)])
            for o_, e_, d_ in zip(out, extra, dt, strict=True)
        ]
    return out
