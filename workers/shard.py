"""One shard: postings of a few coarse H3 cells plus their halo, with exact filtered search.

Plain class (no Ray here; :mod:`workers.actors` wraps it). Retrieval is exact:

1. candidates = postings bucketed in fine H3 cells near the query: within the *measured*
   ring count of its cell (:func:`workers.geo.rings_for`, batch path) or whose centre is
   within the radius plus the cell's own radius (single query), so every posting within
   the radius is a candidate;
2. every rule of :mod:`core.rules` is applied to the candidates (exact haversine distance);
3. the exact inner product of L2-normalised float32 vectors ranks the survivors, and the
   top-k is selected with ``max_per_company`` applied while selecting (score desc, then
   posting_id asc). Nothing is post-filtered.

Scoring. Every score either path returns comes from :func:`exact_scores` (float64
accumulation of one pair's inner product, rounded to float32: independent of a candidate's
position or a batch's shape), and results are ordered by (score desc, posting_id asc), so
the batch and the single-query paths return identical rankings, scores and (float32)
distances. Both first score in float32 (BLAS or FAISS, whose error is below half of
``_tie_eps``) and only rescore what float32 cannot settle:

- batch (:meth:`Shard.recommend_owned`): queries grouped by H3 cell share one candidate
  block scored by one float32 BLAS matmul; pairs failing a rule are masked; each row keeps
  its best few with FAISS's heap (``float_minheap_array_t``, several times faster than
  ``np.argpartition``); rows with a near-tie up to their last pick are rescored exactly
  and re-selected; the picks' scores are then replaced by their exact scores.
- single query (:meth:`Shard._exact`): candidates come from a CSR index of live rows by
  fine cell (:class:`_CellIndex`; rows appended since it was built are scanned directly
  until it is rebuilt lazily), pruned per cell by the triangle inequality (cell centre +
  the cell's own radius), then rules and the exact distance are checked per candidate;
  survivors are scored in float32 in place (FAISS ``fvec_inner_products_by_idx``, no copy),
  a greedy pick bounds the k-th score and only candidates within ``_tie_eps`` of it are
  rescored exactly and selected. Rows are stored in fine-cell order (bulk loads and
  compactions), so a query's candidates lie in contiguous runs of memory.

Durability: with a ``snapshot_dir`` the shard writes a base snapshot (postings parquet +
vectors npy) and appends every upsert/delete batch to a log *before* answering, so a
restarted shard (``__init__`` again) reloads exactly what it had acknowledged.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from pathlib import Path

import faiss
import h3.api.numpy_int as h3n
import numpy as np
import polars as pl

from core.errors import InvalidInputError, JobrecError, NotFoundError
from core.rules import (
    CAREER_CODES,
    EARTH_RADIUS_KM,
    RuleArrays,
    RuleConfig,
    date_to_days,
    haversine_km,
    radius_for,
    select_top_k,
)
from core.schema import CAPITAL_AREA_SIDO, POSTING_SCHEMA, conform
from workers import geo
from workers.sharding import parents_np

log = logging.getLogger(__name__)

_CAREER_EXP = CAREER_CODES["experienced"]
_CAREER_ENTRY = CAREER_CODES["entry"]
_CAREER_ANY = CAREER_CODES["any"]
_NO_EDU_FILTER = 127
_DIST_SLACK_KM = 1e-6  # the block path pre-filters with slack, then confirms with haversine
_BLOCK_ROWS = 256  # queries per matmul block (bounds memory of the block path)
_COMPACT_LOG_EVERY = 64
_A_CAPITAL_SIDO = sorted(CAPITAL_AREA_SIDO)[0]
_PENALTY = 1e30  # subtracted from the score of a pair that fails a rule
_MASKED = -1e29  # scores below this failed a rule
_SPLIT_EDU_ABOVE = 64  # queries in a group above which the group is split by education
_DELTA_MAX = 2048  # rows appended after the cell index was built are scanned directly
_MARGIN_KM = 0.01  # slack of the single-query geometric pre-filters (exact check follows)


def exact_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise inner products ``a[i] . b[i]`` accumulated in float64, rounded to float32.

    Every score either path returns comes from here: each pair is reduced by the same code
    over one contiguous float64 row, so the value depends only on the two vectors (never on
    a batch's shape or a candidate's position), and equal vectors tie exactly.
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    return np.einsum("ij,ij->i", a, b).astype(np.float32)


class _CellIndex:
    """Live rows sorted by fine cell (CSR), with each occupied cell's centre and angular
    radius (the farthest of its postings from the centre), for exact candidate pruning:
    a posting within r of q lies in a cell whose centre is within r + radius of q."""

    __slots__ = ("upto", "cells", "start", "count", "rows", "centre", "ang")

    def __init__(self, shard: Shard) -> None:
        n = shard._n
        rows = np.flatnonzero(shard._alive[:n])
        fine = shard._fine[rows]
        o = np.argsort(fine, kind="stable")
        self.rows, fine = rows[o], fine[o]
        self.upto = n
        if rows.size == 0:
            self.cells = np.zeros(0, np.uint64)
            self.start = self.count = np.zeros(0, np.int64)
            self.centre, self.ang = np.zeros((0, 3)), np.zeros(0)
            return
        self.cells, self.start, self.count = np.unique(
            fine, return_index=True, return_counts=True
        )
        xyz = shard._xyz[self.rows]
        c = np.add.reduceat(xyz, self.start, axis=0)
        self.centre = c / np.linalg.norm(c, axis=1, keepdims=True)
        dots = np.einsum("ij,ij->i", xyz, np.repeat(self.centre, self.count, axis=0))
        self.ang = np.arccos(np.clip(np.minimum.reduceat(dots, self.start), -1.0, 1.0))

    def cell_rows(self, cell_ids: np.ndarray) -> np.ndarray:
        """Rows (live when indexed) bucketed in ``cell_ids``."""
        if self.cells.size == 0:
            return np.zeros(0, dtype=np.int64)
        cell_ids = np.asarray(cell_ids, dtype=np.uint64)
        pos = np.minimum(np.searchsorted(self.cells, cell_ids), self.cells.size - 1)
        hit = pos[self.cells[pos] == cell_ids]
        return self.rows[_ranges(self.start[hit], self.count[hit])]

    def near_rows(self, qxyz: np.ndarray, radius_km: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the cells that may hold a posting within ``radius_km`` of ``qxyz``, split
        into (inner, edge): every posting of an inner cell is within the radius (with a
        margin), those of an edge cell need the per-posting distance check."""
        if self.cells.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        theta = np.arccos(np.clip(self.centre @ qxyz, -1.0, 1.0))
        near = theta <= self.ang + (radius_km + _MARGIN_KM) / EARTH_RADIUS_KM
        inner = theta <= (radius_km - _MARGIN_KM) / EARTH_RADIUS_KM - self.ang
        edge = np.flatnonzero(near & ~inner)
        inner = np.flatnonzero(inner)
        return (
            self.rows[_ranges(self.start[inner], self.count[inner])],
            self.rows[_ranges(self.start[edge], self.count[edge])],
        )


def _top_t(S: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``t`` scores per row of ``S`` (desc) and their columns, with FAISS's heap
    (several times faster than ``np.argpartition``); empty slots have column -1."""
    m, n = S.shape
    S = np.ascontiguousarray(S, dtype=np.float32)
    D = np.empty((m, t), dtype=np.float32)
    Ix = np.empty((m, t), dtype=np.int64)
    h = faiss.float_minheap_array_t()
    h.k, h.nh = t, m
    h.val, h.ids = faiss.swig_ptr(D), faiss.swig_ptr(Ix)
    h.heapify()
    h.addn(n, faiss.swig_ptr(S))
    h.reorder()
    return D, Ix


def _order_pick(ps, part_c, keep, rank_c, comp_c, k, cap):
    """Sort each row's kept candidates by (score desc, posting_id asc) and pick the first
    ``k`` under the per-company cap. Returns (sorted scores, sorted columns, pick mask)."""
    ps = np.where(keep, ps, -np.inf)
    o = np.lexsort((rank_c[part_c], -ps), axis=1)
    part_c = np.take_along_axis(part_c, o, axis=1)
    ps = np.take_along_axis(ps, o, axis=1)
    keep = np.isfinite(ps)
    if cap:
        # occurrence of each company among the earlier candidates of its row: a stable sort
        # by company keeps score order within a company, so the position in its run counts
        comp = np.where(keep, comp_c[part_c], -1)
        m, t = comp.shape
        order = np.argsort(comp, axis=1, kind="stable")
        sc = np.take_along_axis(comp, order, axis=1)
        pos = np.broadcast_to(np.arange(t), (m, t))
        start = np.ones((m, t), dtype=bool)
        start[:, 1:] = sc[:, 1:] != sc[:, :-1]
        run0 = np.maximum.accumulate(np.where(start, pos, 0), axis=1)
        occ = np.empty((m, t), dtype=np.int64)
        np.put_along_axis(occ, order, pos - run0, axis=1)
        keep &= occ < cap
    pick = keep & (np.cumsum(keep, axis=1) <= k)
    return ps, part_c, pick


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair (vectorised)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return np.arange(total, dtype=np.int64) + offs


def _xyz(lat: np.ndarray, lng: np.ndarray) -> np.ndarray:
    p, lam = np.radians(lat), np.radians(lng)
    return np.stack([np.cos(p) * np.cos(lam), np.cos(p) * np.sin(lam), np.sin(p)], axis=1)


def normalise(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Float32, L2-normalised rows; rejects wrong shapes, non-finite or zero vectors."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or (dim is not None and v.shape[1] != dim):
        raise InvalidInputError(
            f"vectors must have shape (n, {dim if dim is not None else 'dim'}), got {v.shape}",
            field="vector",
        )
    if not np.isfinite(v).all():
        raise InvalidInputError("vectors contain NaN or infinite values", field="vector")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InvalidInputError("a vector has zero norm", field="vector")
    return np.ascontiguousarray(v / norms, dtype=np.float32)


class Shard:
    """Postings (metadata + vectors) of one territory and its halo, searchable exactly."""

    def __init__(
        self,
        shard_id: int,
        *,
        dim: int,
        fine_res: int = 7,
        halo_km: float = 40.0,
        rules: RuleConfig | None = None,
        snapshot_dir: str | Path | None = None,
        threads: int = 1,
    ) -> None:
        self.shard_id = int(shard_id)
        self.dim = int(dim)
        self.fine_res = int(fine_res)
        self.halo_km = float(halo_km)
        self.rules = rules or RuleConfig()
        self.threads = int(threads)
        # float32 dot products of unit vectors err by at most ~dim * 2^-24 (rounding)
        self._tie_eps = 1e-6 + self.dim * 1.2e-7
        self._set_threads()
        self._dir = Path(snapshot_dir) / f"shard-{self.shard_id:03d}" if snapshot_dir else None
        self._log_seq = 0
        self._reset()
        self.restored = False
        if self._dir is not None and (self._dir / "base.parquet").exists():
            self._restore()
            self.restored = True

    # ------------------------------------------------------------------ storage
    def _set_threads(self) -> None:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(self.threads)
            faiss.omp_set_num_threads(self.threads)
        except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
            pass

    def _reset(self) -> None:
        self._n = 0
        cap = 0
        self._vec = np.zeros((cap, self.dim), dtype=np.float32)
        self._lat = np.zeros(cap)
        self._lng = np.zeros(cap)
        self._xyz = np.zeros((cap, 3))
        self._edu = np.zeros(cap, dtype=np.int8)
        self._car = np.zeros(cap, dtype=np.int8)
        self._yrs = np.zeros(cap, dtype=np.int16)
        self._close = np.zeros(cap, dtype=np.int32)
        self._capital = np.zeros(cap, dtype=bool)
        self._comp = np.zeros(cap, dtype=np.int32)
        self._owned = np.zeros(cap, dtype=bool)
        self._alive = np.zeros(cap, dtype=bool)
        self._fine = np.zeros(cap, dtype=np.uint64)
        self._ids: list[str] = []
        self._titles: list[str] = []
        self._region_of: list[int] = []
        self._regions: dict[str, int] = {}
        self._region_names: list[str] = []
        self._companies: dict[str, int] = {}
        self._company_names: list[str] = []
        self._meta: list[pl.DataFrame] = []  # canonical rows (+ _owned), aligned with rows
        self._meta_df: pl.DataFrame | None = None
        self._row: dict[str, int] = {}
        self._index: _CellIndex | None = None  # built lazily by _cell_index

    _ARRAYS = (
        "_vec", "_lat", "_lng", "_xyz", "_edu", "_car", "_yrs", "_close", "_capital",
        "_comp", "_owned", "_alive", "_fine",
    )  # fmt: skip

    def _grow(self, extra: int) -> None:
        need = self._n + extra
        cap = self._alive.shape[0]
        if need <= cap:
            return
        new_cap = max(need, int(cap * 1.5) + 16)
        for name in self._ARRAYS:
            a = getattr(self, name)
            b = np.zeros((new_cap, *a.shape[1:]), dtype=a.dtype)
            b[: self._n] = a[: self._n]
            setattr(self, name, b)

    def _append(self, df: pl.DataFrame, vectors: np.ndarray, owned: np.ndarray) -> None:
        """Append rows (ids must not be alive already)."""
        n = df.height
        if n == 0:
            return
        self._grow(n)
        s = slice(self._n, self._n + n)
        lat = df["lat"].to_numpy().astype(np.float64)
        lng = df["lng"].to_numpy().astype(np.float64)
        ra = RuleArrays.from_columns(
            df["min_education_level"].to_list(),
            df["career"].to_list(),
            df["min_career_years"].to_list(),
            df["closes_on"].to_list(),
            df["sido"].to_list(),
        )
        self._vec[s] = vectors
        self._lat[s], self._lng[s] = lat, lng
        self._xyz[s] = _xyz(lat, lng)
        self._edu[s], self._car[s], self._yrs[s] = ra.education, ra.career, ra.min_years
        self._close[s], self._capital[s] = ra.closes_days, ra.capital
        comp, names = self._companies, self._company_names
        codes = []
        for c in df["company"].to_list():
            code = comp.get(c)
            if code is None:
                code = comp[c] = len(names)
                names.append(c)
            codes.append(code)
        self._comp[s] = codes
        reg, rnames = self._regions, self._region_names
        for r_ in df["region"].to_list():
            code = reg.get(r_)
            if code is None:
                code = reg[r_] = len(rnames)
                rnames.append(r_)
            self._region_of.append(code)
        self._titles.extend(df["title"].to_list())
        self._owned[s] = owned
        self._alive[s] = True
        fine = geo.cells(lat, lng, self.fine_res)
        self._fine[s] = fine
        ids = df["posting_id"].to_list()
        self._row.update(zip(ids, range(self._n, self._n + n), strict=True))
        self._ids.extend(ids)
        self._meta.append(df.with_columns(pl.Series("_owned", owned, dtype=pl.Boolean)))
        self._meta_df = None
        self._n += n

    def _kill(self, pid: str) -> bool:
        r = self._row.pop(pid, None)
        if r is None:
            return False
        self._alive[r] = False  # the cell index skips dead rows until it is rebuilt
        return True

    def _meta_frame(self) -> pl.DataFrame:
        if self._meta_df is None:
            self._meta_df = pl.concat(self._meta, how="vertical") if self._meta else None
            self._meta = [self._meta_df] if self._meta_df is not None else []
        return self._meta_df

    def _alive_state(self) -> tuple[pl.DataFrame, np.ndarray]:
        alive = np.flatnonzero(self._alive[: self._n])
        meta = self._meta_frame()
        if meta is None:
            df = pl.DataFrame(schema={**POSTING_SCHEMA, "_owned": pl.Boolean()})
            return df, np.zeros((0, self.dim), np.float32)
        return meta[alive], self._vec[alive]

    def _compact(self) -> None:
        df, vec = self._alive_state()
        self._reset()
        self._append_by_cell(df.drop("_owned"), vec, df["_owned"].to_numpy())

    # --------------------------------------------------------------- snapshot
    def _atomic_write(self, path: Path, df: pl.DataFrame | None, vec: np.ndarray | None) -> None:
        tmp = path.with_name(path.name + ".tmp")
        if vec is not None:
            with open(tmp.with_suffix(".npy.tmp"), "wb") as fh:
                np.save(fh, vec)
            os.replace(tmp.with_suffix(".npy.tmp"), path.with_suffix(".npy"))
        df.write_parquet(tmp)
        os.replace(tmp, path)  # the parquet is the commit point of an entry

    def _write_base(self) -> None:
        if self._dir is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        df, vec = self._alive_state()
        self._atomic_write(self._dir / "base.parquet", df, vec)
        # the log is folded into the base; replaying it again would be harmless (idempotent)
        logdir = self._dir / "log"
        if logdir.exists():
            shutil.rmtree(logdir)
        self._log_seq = 0

    def _append_log(self, kind: str, df: pl.DataFrame, vec: np.ndarray | None) -> None:
        if self._dir is None:
            return
        logdir = self._dir / "log"
        logdir.mkdir(parents=True, exist_ok=True)
        self._log_seq += 1
        self._atomic_write(logdir / f"{self._log_seq:08d}.{kind}.parquet", df, vec)

    def _restore(self) -> None:
        base = pl.read_parquet(self._dir / "base.parquet")
        vec = np.load(self._dir / "base.npy")
        self._append(base.drop("_owned"), vec, base["_owned"].to_numpy())
        logdir = self._dir / "log"
        entries = sorted(logdir.glob("*.parquet")) if logdir.exists() else []
        for e in entries:
            seq, kind = e.name.split(".")[:2]
            df = pl.read_parquet(e)
            if kind == "upsert":
                self._apply_upsert(df.drop("_owned"), np.load(e.with_suffix(".npy")),
                                   df["_owned"].to_numpy())
            else:
                self._apply_delete(df["posting_id"].to_list())
            self._log_seq = max(self._log_seq, int(seq))
        log.info("shard %d restored %d postings (+%d log entries)", self.shard_id,
                 len(self._row), len(entries))

    # ------------------------------------------------------------------ writes
    def load(self, df: pl.DataFrame, vectors: np.ndarray, owned: np.ndarray) -> int:
        """Replace the shard's content (bulk build) and write the base snapshot."""
        df = conform(df)
        vec = normalise(vectors, self.dim)
        if vec.shape[0] != df.height:
            raise InvalidInputError("postings and vectors differ in length", field="vectors")
        self._reset()
        self._append_by_cell(df, vec, np.asarray(owned, dtype=bool))
        self._write_base()
        return len(self._row)

    def _append_by_cell(self, df: pl.DataFrame, vec: np.ndarray, owned: np.ndarray) -> None:
        """Append in fine-cell order: a query's candidates (whole nearby cells) then lie in
        contiguous runs of memory, which makes scoring them ~1.5x faster than reading
        vectors scattered in input order."""
        if df.height == 0:
            return
        order = np.argsort(geo.cells(df["lat"].to_numpy(), df["lng"].to_numpy(), self.fine_res),
                           kind="stable")  # fmt: skip
        self._append(df[order], vec[order], owned[order])

    def _apply_upsert(self, df, vec, owned) -> tuple[int, int]:
        updated = 0
        for pid in df["posting_id"].to_list():
            updated += self._kill(pid)
        self._append(df, vec, owned)
        return df.height - updated, updated

    def _apply_delete(self, ids) -> list[str]:
        return [pid for pid in ids if not self._kill(pid)]

    def upsert(self, df: pl.DataFrame, vectors: np.ndarray, owned: np.ndarray) -> tuple[int, int]:
        """Insert or replace postings; durable (logged) before returning (inserted, updated)."""
        df = conform(df)
        vec = normalise(vectors, self.dim)
        owned = np.asarray(owned, dtype=bool)
        if df["posting_id"].n_unique() != df.height:
            raise InvalidInputError("duplicate posting_id in one upsert", field="posting_id")
        self._append_log("upsert", df.with_columns(pl.Series("_owned", owned)), vec)
        res = self._apply_upsert(df, vec, owned)
        self._maybe_compact()
        return res

    def delete(self, ids: list[str]) -> list[str]:
        """Delete postings; returns the ids that were not here. Durable before returning."""
        ids = list(ids)
        self._append_log("delete", pl.DataFrame({"posting_id": ids}, schema={"posting_id": pl.Utf8}),
                         None)
        missing = self._apply_delete(ids)
        self._maybe_compact()
        return missing

    def _maybe_compact(self) -> None:
        dead = self._n - len(self._row)
        if dead > 1024 and dead > self._n // 4:
            self._compact()
            self._write_base()
        elif self._log_seq >= _COMPACT_LOG_EVERY:
            self._write_base()

    # ------------------------------------------------------------------- reads
    def size(self) -> int:
        return len(self._row)

    def ids(self) -> list[str]:
        """Ids of the postings stored (owned and halo)."""
        return list(self._row)

    def owned_ids(self) -> list[str]:
        return [p for p, r in self._row.items() if self._owned[r]]

    def has(self, posting_id: str) -> bool:
        return posting_id in self._row

    def get(self, posting_id: str) -> dict:
        """The canonical row of a stored posting."""
        r = self._row.get(posting_id)
        if r is None:
            raise NotFoundError(f"unknown posting_id {posting_id!r}")
        row = self._meta_frame().row(r, named=True)
        row.pop("_owned")
        return row

    def vector(self, posting_id: str) -> np.ndarray:
        r = self._row.get(posting_id)
        if r is None:
            raise NotFoundError(f"unknown posting_id {posting_id!r}")
        return self._vec[r].copy()

    def stats(self) -> dict:
        n = self._n
        meta = self._meta_frame()
        return {
            "shard_id": self.shard_id,
            "postings": len(self._row),
            "owned": int(self._owned[:n][self._alive[:n]].sum()),
            "rows_incl_deleted": n,
            "vector_bytes": int(self._vec[:n].nbytes),
            "metadata_bytes": int(
                sum(getattr(self, a)[:n].nbytes for a in self._ARRAYS if a != "_vec")
                + (meta.estimated_size() if meta is not None else 0)
            ),
            "rss_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "restored": self.restored,
            "pid": os.getpid(),
        }

    def batch_stats(self) -> dict:
        """Counters of the last :meth:`recommend_owned` (pairs scored, CPU seconds, ...)."""
        return dict(getattr(self, "last_batch_stats", {}))

    # ------------------------------------------------------------------ search
    def _check_rules(self, rules: RuleConfig | None) -> RuleConfig:
        rules = rules or self.rules
        for name in ("capital_radius_km", "other_radius_km"):
            if getattr(rules, name) > self.halo_km + 1e-9:
                raise InvalidInputError(
                    f"{name}={getattr(rules, name)} exceeds the shard halo of {self.halo_km} km",
                    field=name,
                )
        return rules

    def _cell_index(self) -> _CellIndex:
        ix = self._index
        if ix is None or self._n - ix.upto > _DELTA_MAX or ix.upto > self._n:
            ix = self._index = _CellIndex(self)
        return ix

    def _recent_rows(self, ix: _CellIndex) -> np.ndarray:
        """Rows appended since ``ix`` was built (few; scanned without the index)."""
        return np.arange(ix.upto, self._n, dtype=np.int64)

    def _cell_rows(self, cell_ids: np.ndarray) -> np.ndarray:
        """Live rows bucketed in the fine cells ``cell_ids``."""
        ix = self._cell_index()
        rows = ix.cell_rows(cell_ids)
        recent = self._recent_rows(ix)
        if recent.size:
            recent = recent[np.isin(self._fine[recent], np.asarray(cell_ids, dtype=np.uint64))]
            rows = np.concatenate([rows, recent])
        return rows[self._alive[rows]]

    def _exact(self, q: dict, k: int, rules: RuleConfig) -> list[tuple[int, float, float]]:
        """Exact top-k for one query: [(row, score, distance_km)].

        Candidates: the rows of every fine cell whose centre lies within the radius plus the
        cell's own radius (a superset of the radius disk by the triangle inequality), plus
        rows appended since the cell index was built. Rules and the distance are checked per
        candidate; survivors are scored in float32 (BLAS) and only those within the float32
        error bound of the k-th pick are rescored with :func:`exact_scores`, which picks.
        """
        radius = radius_for(q["sido"], rules)
        lat, lng = float(q["lat"]), float(q["lng"])
        qxyz = _xyz(np.array([lat]), np.array([lng]))[0]
        ix = self._cell_index()
        inner, edge = ix.near_rows(qxyz, radius)
        rows = np.concatenate([inner, edge, self._recent_rows(ix)])
        if rows.size == 0:
            return []
        # non-distance rules first: they need one byte per candidate, the distance 24
        mask = self._alive[rows]
        q_edu = int(q["min_education_level"])
        if not (rules.education_policy == "lenient_no_requirement" and q_edu == 0):
            mask &= self._edu[rows] <= q_edu
        career = CAREER_CODES[q["career"]]
        if rules.career_filter and career != _CAREER_ANY:
            if career == _CAREER_ENTRY:
                mask &= self._car[rows] != _CAREER_EXP
            years = int(q.get("min_career_years") or 0)
            if years >= 1:
                mask &= self._yrs[rows] <= years
        if rules.exclude_expired:
            mask &= self._close[rows] >= date_to_days(rules.effective_ref_date())
        pid = q.get("posting_id")
        me = self._row.get(pid) if pid is not None else None
        if me is not None:
            mask &= rows != me
        # distance, for candidates outside the inner cells: cosine of the central angle with
        # a 10 m margin either side; only the band between is checked with the haversine
        chk = inner.size + np.flatnonzero(mask[inner.size :])
        cdot = self._xyz[rows[chk]] @ qxyz
        far = cdot < np.cos(min(np.pi, (radius + _MARGIN_KM) / EARTH_RADIUS_KM))
        mask[chk[far]] = False
        band = chk[~far & (cdot < np.cos(max(0.0, radius - _MARGIN_KM) / EARTH_RADIUS_KM))]
        if band.size:
            d = haversine_km(lat, lng, self._lat[rows[band]], self._lng[rows[band]])
            mask[band[d > radius]] = False
        rows = rows[mask]
        if rows.size == 0:
            return []
        qv = np.ascontiguousarray(q["vector"], dtype=np.float32)
        picked, scores = self._pick(rows, self._dots(qv, rows), qv, k, rules.max_per_company)
        # float32 like the batch output, so both paths return identical values
        d = haversine_km(lat, lng, self._lat[picked], self._lng[picked]).astype(np.float32)
        return list(zip(picked.tolist(), scores.tolist(), d.tolist(), strict=True))

    def _dots(self, qv: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Float32 inner products of ``qv`` with the vectors of ``rows``, read in place
        (FAISS), without gathering the rows into a copy first (2.5x faster)."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = np.empty(rows.size, dtype=np.float32)
        if rows.size:
            faiss.fvec_inner_products_by_idx(
                faiss.swig_ptr(out), faiss.swig_ptr(qv), faiss.swig_ptr(self._vec),
                faiss.swig_ptr(rows), self.dim, 1, rows.size,
            )  # fmt: skip
        return out

    def _pick(self, rows, s, qv, k, cap) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of candidate ``rows`` with float32 scores ``s``: (rows, exact scores).

        A greedy selection on ``s`` gives k picks whose lowest score bounds the k-th exact
        score; every candidate that could still be picked by exact scores lies within
        ``self._tie_eps`` of that bound (the float32 error is below half of it), so only
        those are rescored with :func:`exact_scores` and selected by (score desc, id asc)
        under the company cap.
        """
        n = s.size
        comp = self._comp[rows]
        t = min(n, max(4 * k, 32))
        floor = -np.inf
        while True:
            part = np.argpartition(s, n - t)[n - t :] if t < n else np.arange(n)
            part = part[np.argsort(-s[part], kind="stable")]
            got, last, per = 0, -1, {}
            for j, c in zip(part.tolist(), comp[part].tolist(), strict=True):
                if cap:
                    m = per.get(c, 0)
                    if m >= cap:
                        continue
                    per[c] = m + 1
                got += 1
                if got == k:
                    last = j
                    break
            if last >= 0:
                floor = float(s[last]) - self._tie_eps
                break
            if t == n:
                break  # fewer than k can be picked: every candidate counts
            t = min(n, 4 * t)
        near = np.flatnonzero(s >= floor)
        cand = rows[near]
        exact = exact_scores(np.broadcast_to(qv, (cand.size, qv.size)), self._vec[cand])
        ids = [self._ids[r] for r in cand.tolist()]
        sel = np.asarray(select_top_k(exact, ids, comp[near], k, cap), dtype=np.int64)
        return cand[sel], exact[sel]

    def _query_of_row(self, r: int) -> dict:
        return {
            "posting_id": self._ids[r],
            "lat": self._lat[r],
            "lng": self._lng[r],
            # only the capital-area flag of sido matters to the rules
            "sido": _A_CAPITAL_SIDO if self._capital[r] else "",
            "min_education_level": int(self._edu[r]),
            "career": ("entry", "experienced", "any")[int(self._car[r])],
            "min_career_years": int(self._yrs[r]),
            "vector": self._vec[r],
        }

    def _results(self, hits) -> list[dict]:
        comp, reg = self._comp, self._region_of
        cn, rn = self._company_names, self._region_names
        return [
            {"posting_id": self._ids[r], "score": sc, "distance_km": d, "title": self._titles[r],
             "company": cn[comp[r]], "region": rn[reg[r]]}
            for r, sc, d in hits
        ]  # fmt: skip

    def similar(self, posting_id: str, k: int = 10, rules: RuleConfig | None = None) -> list[dict]:
        """Top-k recommendations of a stored posting (dicts with Recommendation fields)."""
        rules = self._check_rules(rules)
        r = self._row.get(posting_id)
        if r is None:
            raise NotFoundError(f"unknown posting_id {posting_id!r}")
        return self._results(self._exact(self._query_of_row(r), k, rules))

    def similar_to(
        self, posting: dict, vector: np.ndarray, k: int = 10, rules: RuleConfig | None = None
    ) -> list[dict]:
        """Top-k for an inline posting (not indexed); excludes a stored posting of the same id."""
        rules = self._check_rules(rules)
        for f in ("lat", "lng", "sido", "min_education_level", "career"):
            if posting.get(f) is None:
                raise InvalidInputError(f"inline posting lacks {f!r}", field=f)
        if posting["career"] not in CAREER_CODES:
            raise InvalidInputError(f"unknown career {posting['career']!r}", field="career")
        if not 0 <= int(posting["min_education_level"]) <= 7:
            raise InvalidInputError("min_education_level must be in 0..7",
                                    field="min_education_level")  # fmt: skip
        if not 0 <= int(posting.get("min_career_years") or 0) <= 60:
            raise InvalidInputError("min_career_years must be in 0..60", field="min_career_years")
        q = dict(posting)
        q["vector"] = normalise(vector, self.dim)[0]
        return self._results(self._exact(q, k, rules))

    def similar_many(self, requests: list[tuple]) -> list[tuple[bool, object]]:
        """Several queries in one call (the backend coalesces concurrent requests to save
        the per-call overhead of Ray). Each request is ``("id", posting_id, k, rules)`` or
        ``("inline", posting, vector, k, rules)``; each answer is ``(True, [(posting_id,
        score, distance_km, title, company, region)])`` or ``(False, JobrecError)``."""
        out: list[tuple[bool, object]] = []
        for req in requests:
            try:
                if req[0] == "id":
                    recs = self.similar(req[1], req[2], req[3])
                else:
                    recs = self.similar_to(req[1], req[2], req[3], req[4])
            except JobrecError as exc:  # one bad request must not fail its batch-mates
                out.append((False, exc))
                continue
            out.append((True, [tuple(r.values()) for r in recs]))
        return out

    # ------------------------------------------------------------------- batch
    def recommend_owned(
        self, k: int = 10, rules: RuleConfig | None = None, group_res: int | None = None
    ) -> pl.DataFrame:
        """Top-k of every owned posting, as (posting_id, rank, rec_posting_id, score,
        distance_km). Queries sharing a cell share one candidate block, scored by one matmul."""
        rules = self._check_rules(rules)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        n = self._n
        group_res = max(0, self.fine_res - 2) if group_res is None else group_res
        qrows = np.flatnonzero(self._alive[:n] & self._owned[:n])
        cand_ok = self._alive[:n].copy()
        if rules.exclude_expired:
            cand_ok &= self._close[:n] >= date_to_days(rules.effective_ref_date())
        ids_np = np.array(self._ids, dtype=object)
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(np.array(self._ids, dtype=str), kind="stable")] = np.arange(n)
        q_edu = self._edu[qrows].astype(np.int16)
        if rules.education_policy == "lenient_no_requirement":
            q_edu = np.where(q_edu == 0, _NO_EDU_FILTER, q_edu)
        group = parents_np(self._fine[qrows], group_res)
        # fine cell last: consecutive queries of a block are close together
        order = np.lexsort((self._fine[qrows], q_edu, group))
        qrows, q_edu, group = qrows[order], q_edu[order], group[order]
        bounds = np.flatnonzero(np.diff(group)) + 1
        starts = np.concatenate([[0], bounds]).astype(int) if qrows.size else np.zeros(0, int)
        ends = np.concatenate([bounds, [qrows.size]]).astype(int) if qrows.size else starts
        # candidate index: live, unexpired rows sorted by fine cell
        crow_all = np.flatnonzero(cand_ok)
        crow_all = crow_all[np.argsort(self._fine[crow_all], kind="stable")]
        occ_cells, occ_start, occ_count = np.unique(
            self._fine[crow_all], return_index=True, return_counts=True
        )
        out: list[list[np.ndarray]] = [[], [], [], [], []]
        stats = {"groups": len(starts), "blocks": 0, "pairs": 0, "fallback_rows": 0,
                 "fallback_more": 0, "fallback_tie": 0, "rescored_rows": 0, "deeper_rows": 0}
        self._stats = stats
        self._colpos = np.full(n, -1, dtype=np.int64)  # row -> column in the current block
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            g_rows = qrows[a:b]
            g_edu = q_edu[a:b]
            radius = max(radius_for(_A_CAPITAL_SIDO if c else "", rules)
                         for c in np.unique(self._capital[g_rows]).tolist())
            # every fine cell of the group lies within `spread` rings of its centre child
            center = h3n.cell_to_center_child(int(group[a]), self.fine_res)
            spread = max(h3n.grid_distance(center, int(f))
                         for f in np.unique(self._fine[g_rows]).tolist())
            cells = geo.disk_cells(center, geo.rings_for(self.fine_res, radius) + spread)
            pos = np.minimum(np.searchsorted(occ_cells, cells), max(occ_cells.size - 1, 0))
            hit = pos[occ_cells[pos] == cells] if occ_cells.size else pos[:0]
            crows = crow_all[_ranges(occ_start[hit], occ_count[hit])]
            if crows.size == 0:
                continue
            # radius is checked exactly per block; a candidate beyond every query drops there
            if g_rows.size <= _SPLIT_EDU_ABOVE:
                blocks = [(g_rows, crows)]
            else:  # big groups: skip candidates failing the education rule before the matmul
                c_edu = self._edu[crows]
                blocks = [
                    (g_rows[g_edu == e], crows if e == _NO_EDU_FILTER else crows[c_edu <= e])
                    for e in np.unique(g_edu).tolist()
                ]
            for qs_all, cs in blocks:
                for s0 in range(0, qs_all.size, _BLOCK_ROWS):
                    qs = qs_all[s0 : s0 + _BLOCK_ROWS]
                    res = self._block(qs, cs, k, rules, rank, stats)
                    if res is not None:
                        for lst, v in zip(out, res, strict=True):
                            lst.append(v)
        stats["cpu_s"] = time.process_time() - cpu0
        stats["wall_s"] = time.perf_counter() - wall0
        stats["queries"] = int(qrows.size)
        self.last_batch_stats = stats
        if out[0]:
            qv, cv, rk, sc, dk = (np.concatenate(x) for x in out)
        else:
            qv = cv = np.zeros(0, np.int64)
            rk, sc, dk = np.zeros(0, np.int16), np.zeros(0, np.float32), np.zeros(0, np.float32)
        return pl.DataFrame({
            "posting_id": pl.Series(ids_np[qv].tolist() if qv.size else [], dtype=pl.Utf8),
            "rank": pl.Series(rk, dtype=pl.Int16),
            "rec_posting_id": pl.Series(ids_np[cv].tolist() if cv.size else [], dtype=pl.Utf8),
            "score": pl.Series(sc, dtype=pl.Float32),
            "distance_km": pl.Series(dk, dtype=pl.Float32),
        })  # fmt: skip

    def _select(self, S, bad, qs, cs, t, k, cap, rank_c, comp_c):
        """Pick each row's top-k from its best ``t`` scores in ``S`` (masked with -inf).

        Returns (row, column, rank, score) of the picks of the rows that are settled, and
        two masks: ``more`` (the cap skipped too many; look deeper) and ``unsure`` (a tie
        with a score beyond the best t: use the exact path).
        """
        m, n = S.shape
        ps, part = _top_t(S, t)  # FAISS heap: best t per row, score desc; -1 = empty slot
        heap_min = ps[:, t - 1].copy()
        keep = (part >= 0) & (ps > _MASKED)
        part_c = np.where(keep, part, 0)
        ps, part_c, pick = _order_pick(ps, part_c, keep, rank_c, comp_c, k, cap)
        # BLAS float32 scores of equal vectors can differ in the last bits with their position.
        # Rows with a near-tie up to the first unpicked candidate after the last pick are
        # rescored position-independently (float64 dot, as the online path does) and
        # re-selected, so ties are exact and broken by posting_id.
        eps = self._tie_eps
        upto = t - np.argmax(pick[:, ::-1], axis=1) + 1  # last pick + 2
        with np.errstate(invalid="ignore"):  # -inf - -inf in empty slots
            gap = ps[:, :-1] - ps[:, 1:]
        close = (gap < eps) & (np.arange(1, t)[None, :] < upto[:, None])
        fr = np.flatnonzero(close.any(axis=1) & pick.any(axis=1))
        if fr.size:
            self._stats["rescored_rows"] += int(fr.size)
            pc = part_c[fr]
            ok = np.isfinite(ps[fr])
            s64 = exact_scores(
                np.repeat(self._vec[qs[fr]], t, axis=0), self._vec[cs[pc.ravel()]]
            ).reshape(pc.shape)
            s64 = np.where(ok, s64, -np.inf)
            ps[fr], part_c[fr], pick[fr] = _order_pick(s64, pc, ok, rank_c, comp_c, k, cap)
        npick = pick.sum(axis=1)
        more = np.zeros(m, dtype=bool)
        unsure = np.zeros(m, dtype=bool)
        if t < n:
            short = np.flatnonzero(npick < k)
            if short.size:
                more[short] = np.count_nonzero(~bad[short], axis=1) > t
            last = t - 1 - np.argmax(pick[:, ::-1], axis=1)
            unsure = (npick > 0) & (ps[np.arange(m), last] - heap_min < eps) & ~more
            self._stats["fallback_more"] += int(more.sum())
            self._stats["fallback_tie"] += int(unsure.sum())
        ri, ci = np.nonzero(pick & ~(more | unsure)[:, None])
        rk = (np.cumsum(pick, axis=1) - 1)[ri, ci] + 1
        return ri, part_c[ri, ci], rk, ps[ri, ci], more, unsure

    def _block(self, qs, cs, k, rules, rank, stats):
        """Top-k of queries ``qs`` over candidates ``cs`` (live, unexpired, near enough).

        Returns (query rows, rec rows, rank, score, distance_km) arrays, or None.
        """
        radius = np.where(self._capital[qs], rules.capital_radius_km, rules.other_radius_km)
        # Triangle inequality around a centre c of the queries: candidates farther than
        # r_max + spread from c reach no query; those within r_min - spread reach all of them.
        # Only the annulus between needs the per-pair distance test.
        clat, clng = float(self._lat[qs].mean()), float(self._lng[qs].mean())
        spread = float(haversine_km(clat, clng, self._lat[qs], self._lng[qs]).max())
        # compare cosines of central angles (a 3-d dot product, no trigonometry per
        # candidate); the 1 m margins dwarf the rounding of either form
        cdot = self._xyz[cs] @ _xyz(np.array([clat]), np.array([clng]))[0]
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
        stats["pairs"] += m * n
        stats["blocks"] += 1
        # bad[i, j]: candidate j fails a rule for query i
        q_edu = self._edu[qs]
        if rules.education_policy == "lenient_no_requirement":
            q_edu = np.where(q_edu == 0, _NO_EDU_FILTER, q_edu)
        bad = self._edu[cs][None, :] > q_edu[:, None]
        if ns < n:
            thr = np.cos((radius + _DIST_SLACK_KM) / EARTH_RADIUS_KM)
            bad[:, ns:] |= (self._xyz[qs] @ self._xyz[cs[ns:]].T) < thr[:, None]
        if rules.career_filter:
            qc, qy = self._car[qs], self._yrs[qs]
            entry = qc == _CAREER_ENTRY
            if entry.any():
                bad |= entry[:, None] & (self._car[cs] == _CAREER_EXP)[None, :]
            # queries without a stated minimum get a limit no candidate exceeds
            limit = np.where((qc != _CAREER_ANY) & (qy >= 1), qy, np.iinfo(np.int16).max)
            if (limit < np.iinfo(np.int16).max).any():
                bad |= self._yrs[cs][None, :] > limit[:, None].astype(np.int16)
        # not itself
        colpos = self._colpos
        colpos[cs] = np.arange(n)
        col_self = colpos[qs]
        colpos[cs] = -1
        hit = np.flatnonzero(col_self >= 0)
        bad[hit, col_self[hit]] = True
        S = self._vec[qs] @ self._vec[cs].T
        # push failing pairs far down: arithmetic is several times faster than a masked write
        S -= bad.view(np.uint8) * np.float32(_PENALTY)
        rank_c, comp_c = rank[cs], self._comp[cs]
        cap = rules.max_per_company
        t = min(n, max(4 * k, 16))
        ri, col, rk, score, more, fb = self._select(S, bad, qs, cs, t, k, cap, rank_c, comp_c)
        if more.any():
            # the company cap skipped too many of the best t: look deeper for those rows
            rows = np.flatnonzero(more)
            t2 = min(n, 16 * t)
            r2, c2, k2, s2, more2, fb2 = self._select(
                S[rows], bad[rows], qs[rows], cs, t2, k, cap, rank_c, comp_c
            )
            ri, col = np.concatenate([ri, rows[r2]]), np.concatenate([col, c2])
            rk, score = np.concatenate([rk, k2]), np.concatenate([score, s2])
            fb[rows[more2 | fb2]] = True
            stats["deeper_rows"] += int(rows.size)
        qrow, crow = qs[ri], cs[col]
        # the picks are those of the exact scores (rows with near-ties were rescored above);
        # report the exact scores themselves, so both paths return identical values
        score = exact_scores(self._vec[qrow], self._vec[crow])
        dist = haversine_km(self._lat[qrow], self._lng[qrow], self._lat[crow], self._lng[crow])
        # the slack pre-filter may have let in a pair just beyond the radius: redo those rows
        over = dist > radius[ri]
        if over.any():
            fb[np.unique(ri[over])] = True
            okp = ~fb[ri]
            qrow, crow, rk, score, dist = qrow[okp], crow[okp], rk[okp], score[okp], dist[okp]
        out = [qrow, crow, rk.astype(np.int16), score.astype(np.float32), dist.astype(np.float32)]
        if fb.any():
            stats["fallback_rows"] += int(fb.sum())
            extra = [[], [], [], [], []]
            for i in np.flatnonzero(fb).tolist():
                hits = self._exact(self._query_of_row(int(qs[i])), k, rules)
                for j, (r, s, d) in enumerate(hits):
                    for lst, v in zip(extra, (qs[i], r, j + 1, s, d), strict=True):
                        lst.append(v)
            dt = (np.int64, np.int64, np.int16, np.float32, np.float32)
            out = [
                np.concatenate([o_, np.array(e_, dtype=d_)])
                for o_, e_, d_ in zip(out, extra, dt, strict=True)
            ]
        return out

