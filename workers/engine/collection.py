"""A named collection of one shard: the items of one kind (postings; seekers and courses
next) with their columns, vectors, cell index, rule set and write log.

A kind is declared once (:class:`CollectionKind`: canonical schema, rule columns, labels,
rule set, result type) and registered with :func:`register_kind`; every shard can then
hold a collection of it (:meth:`workers.engine.shard.Shard.collection`) without code of its own.
Single-query search lives here; the batch path is :mod:`workers.engine.batch`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import polars as pl

from core.colviews import Columns, RowView
from core.errors import InvalidInputError, NotFoundError
from core.rules import RuleSet, haversine_km, unit_xyz
from workers.engine import geo
from workers.engine.cellindex import CellIndex
from workers.engine.columns import ColumnSpec, ColumnStore, Labels
from workers.engine.persist import DELETE, UPSERT, SnapshotLog
from workers.engine.scoring import dots, normalise, pick_one, tie_eps

log = logging.getLogger(__name__)

R = TypeVar("R")  # the result type of a kind (Recommendation for postings)

COMPACT_LOG_EVERY = 64  # log entries folded into a new base snapshot
DELTA_MAX = 2048  # rows appended after the cell index was built are scanned directly
GEO_COLUMNS: ColumnSpec = {
    "lat": (np.float64, ()),
    "lng": (np.float64, ()),
    "xyz": (np.float64, (3,)),
    "fine": (np.uint64, ()),
}
KERNEL_GEO = ("lat", "lng", "xyz")  # what the rule kernel's distance rule reads


class Hit(NamedTuple):
    """One search result inside a shard: ``row`` of the collection, exact float32 score and
    distance."""

    row: int
    score: float
    distance_km: float


@dataclass(frozen=True)
class QuerySide:
    """One query as the rule kernel and the scorer see it: 1-row rule columns (with
    ``lat``, ``lng``, ``xyz``, ``row``; row -1 = not stored) and a unit vector."""

    columns: Columns
    vector: np.ndarray


@dataclass(frozen=True)
class CollectionKind(Generic[R]):
    """Everything a shard needs to store and search one kind of item.

    - ``schema`` / ``conform`` / ``validate``: the canonical frame (kept for
      :meth:`Collection.get` and snapshots; must have ``id_column``, ``lat``, ``lng``);
      ``validate`` raises :class:`InvalidInputError` for a bad conformed frame (the
      backend calls it once per write; the shard trusts it);
    - ``rule_columns`` / ``encode``: the numeric columns the rule set reads, from a frame;
    - ``labels``: string columns stored dictionary-encoded (int32 codes in the store under
      the same name; ``rules.group_column`` must be one of them) for results and caps;
    - ``query_columns``: an inline query item (a dict) as 1-row rule columns;
      ``check_item`` raises :class:`InvalidInputError` for an item that cannot be a query;
    - ``result``: builds the result object from (id, score, distance, label values in
      ``labels`` order).
    """

    name: str
    id_column: str
    schema: Mapping[str, pl.DataType]
    conform: Callable[[pl.DataFrame], pl.DataFrame]
    validate: Callable[[pl.DataFrame], None]
    rules: RuleSet
    rule_columns: ColumnSpec
    encode: Callable[[pl.DataFrame], dict[str, np.ndarray]]
    labels: tuple[str, ...]
    query_columns: Callable[[Mapping[str, object]], dict[str, np.ndarray]]
    check_item: Callable[[Mapping[str, object]], None]
    result: Callable[[str, float, float, tuple], R]
    kernel_columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.rules.group_column is not None and self.rules.group_column not in self.labels:
            raise ValueError(f"group column {self.rules.group_column!r} must be a label")
        object.__setattr__(
            self, "kernel_columns", (*self.rule_columns, *KERNEL_GEO)
        )


_KINDS: dict[str, CollectionKind] = {}


def register_kind(kind: CollectionKind[R]) -> CollectionKind[R]:
    """Make ``kind`` available to every shard of this process under ``kind.name``."""
    old = _KINDS.get(kind.name)
    if old is not None and old is not kind:
        raise ValueError(f"collection kind {kind.name!r} is registered already")
    _KINDS[kind.name] = kind
    return kind


def kind_by_name(name: str) -> CollectionKind:
    """The registered kind ``name`` (import :mod:`workers.kinds` to register the built-ins)."""
    kind = _KINDS.get(name)
    if kind is None:
        raise NotFoundError(f"unknown collection {name!r} (known: {sorted(_KINDS)})")
    return kind


class Collection(Generic[R]):
    """The items of one kind in one shard: columns, vectors, cell index, log."""

    def __init__(
        self, kind: CollectionKind[R], *, dim: int, fine_res: int, directory: Path | None
    ) -> None:
        self.kind = kind
        self.dim = int(dim)
        self.fine_res = int(fine_res)
        self.eps = tie_eps(self.dim)
        self.log = SnapshotLog(directory) if directory is not None else None
        self._reset()
        self.restored = False
        if self.log is not None and self.log.has_base():
            self._restore()
            self.restored = True

    # ------------------------------------------------------------------ storage
    def _reset(self) -> None:
        spec = {
            "vector": (np.float32, (self.dim,)),
            **GEO_COLUMNS,
            "alive": (np.bool_, ()),
            "owned": (np.bool_, ()),
            **self.kind.rule_columns,
            **{name: (np.int32, ()) for name in self.kind.labels},
        }
        self.store = ColumnStore(spec)
        self.labels = {name: Labels() for name in self.kind.labels}
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self._meta: list[pl.DataFrame] = []  # canonical rows (+ _owned), aligned with rows
        self._meta_df: pl.DataFrame | None = None
        self._index: CellIndex | None = None  # built lazily by cell_index()

    @property
    def n(self) -> int:
        """Rows stored, deleted ones included."""
        return self.store.n

    def _append(self, df: pl.DataFrame, vectors: np.ndarray, owned: np.ndarray) -> None:
        """Append rows (ids must not be alive already)."""
        n = df.height
        if n == 0:
            return
        lat = df["lat"].to_numpy().astype(np.float64)
        lng = df["lng"].to_numpy().astype(np.float64)
        values = {
            "vector": vectors, "lat": lat, "lng": lng, "xyz": unit_xyz(lat, lng),
            "fine": geo.cells(lat, lng, self.fine_res), "alive": True, "owned": owned,
            **self.kind.encode(df),
            **{name: lab.encode(df[name].to_list()) for name, lab in self.labels.items()},
        }  # fmt: skip
        start = self.store.n
        self.store.append(values, n)
        ids = df[self.kind.id_column].to_list()
        self.row_of.update(zip(ids, range(start, start + n), strict=True))
        self.ids.extend(ids)
        self._meta.append(df.with_columns(pl.Series("_owned", owned, dtype=pl.Boolean)))
        self._meta_df = None

    def _append_by_cell(self, df: pl.DataFrame, vec: np.ndarray, owned: np.ndarray) -> None:
        """Append in fine-cell order: a query's candidates (whole nearby cells) then lie in
        contiguous runs of memory, which makes scoring them ~1.5x faster than reading
        vectors scattered in input order."""
        if df.height == 0:
            return
        order = np.argsort(geo.cells(df["lat"].to_numpy(), df["lng"].to_numpy(), self.fine_res),
                           kind="stable")  # fmt: skip
        self._append(df[order], vec[order], owned[order])

    def _kill(self, item_id: str) -> bool:
        r = self.row_of.pop(item_id, None)
        if r is None:
            return False
        self.store["alive"][r] = False  # the cell index skips dead rows until it is rebuilt
        return True

    def _meta_frame(self) -> pl.DataFrame | None:
        if self._meta_df is None:
            self._meta_df = pl.concat(self._meta, how="vertical") if self._meta else None
            self._meta = [self._meta_df] if self._meta_df is not None else []
        return self._meta_df

    def _alive_state(self) -> tuple[pl.DataFrame, np.ndarray]:
        alive = np.flatnonzero(self.store["alive"])
        meta = self._meta_frame()
        if meta is None:
            df = pl.DataFrame(schema={**self.kind.schema, "_owned": pl.Boolean()})
            return df, np.zeros((0, self.dim), np.float32)
        return meta[alive], self.store["vector"][alive]

    def _compact(self) -> None:
        df, vec = self._alive_state()
        self._reset()
        self._append_by_cell(df.drop("_owned"), vec, df["_owned"].to_numpy())

    def _write_base(self) -> None:
        if self.log is not None:
            self.log.write_base(*self._alive_state())

    def _restore(self) -> None:
        base, vec = self.log.read_base()
        self._append(base.drop("_owned"), vec, base["_owned"].to_numpy())
        entries = 0
        for e in self.log.replay():
            entries += 1
            if e.kind == UPSERT:
                self._apply_upsert(e.frame.drop("_owned"), e.vectors, e.frame["_owned"].to_numpy())
            else:
                self._apply_delete(e.frame[self.kind.id_column].to_list())
        log.info("collection %s restored %d items (+%d log entries)", self.kind.name,
                 len(self.row_of), entries)  # fmt: skip

    # ------------------------------------------------------------------ writes
    def load(self, df: pl.DataFrame, vectors: np.ndarray, owned: np.ndarray) -> int:
        """Replace the content (bulk build) and write the base snapshot."""
        df = self.kind.conform(df)
        vec = normalise(vectors, self.dim)
        if vec.shape[0] != df.height:
            raise InvalidInputError("items and vectors differ in length", field="vectors")
        self._reset()
        self._append_by_cell(df, vec, np.asarray(owned, dtype=bool))
        self._write_base()
        return len(self.row_of)

    def _apply_upsert(self, df, vec, owned) -> tuple[int, int]:
        updated = 0
        for pid in df[self.kind.id_column].to_list():
            updated += self._kill(pid)
        self._append(df, vec, owned)
        return df.height - updated, updated

    def _apply_delete(self, ids) -> list[str]:
        return [pid for pid in ids if not self._kill(pid)]

    def upsert(self, df: pl.DataFrame, vectors: np.ndarray, owned: np.ndarray) -> tuple[int, int]:
        """Insert or replace items; durable (logged) before returning (inserted, updated)."""
        df = self.kind.conform(df)
        vec = normalise(vectors, self.dim)
        owned = np.asarray(owned, dtype=bool)
        idc = self.kind.id_column
        if df[idc].n_unique() != df.height:
            raise InvalidInputError(f"duplicate {idc} in one upsert", field=idc)
        if self.log is not None:
            self.log.append(UPSERT, df.with_columns(pl.Series("_owned", owned)), vec)
        res = self._apply_upsert(df, vec, owned)
        self._maybe_compact()
        return res

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Delete items; returns the ids that were not here. Durable before returning."""
        ids = list(ids)
        if self.log is not None:
            idc = self.kind.id_column
            self.log.append(DELETE, pl.DataFrame({idc: ids}, schema={idc: pl.Utf8}), None)
        missing = self._apply_delete(ids)
        self._maybe_compact()
        return missing

    def _maybe_compact(self) -> None:
        dead = self.n - len(self.row_of)
        if dead > 1024 and dead > self.n // 4:
            self._compact()
            self._write_base()
        elif self.log is not None and self.log.seq >= COMPACT_LOG_EVERY:
            self._write_base()

    # ------------------------------------------------------------------- reads
    def size(self) -> int:
        return len(self.row_of)

    def item_ids(self) -> list[str]:
        """Ids stored (owned and halo)."""
        return list(self.row_of)

    def owned_ids(self) -> list[str]:
        owned = self.store["owned"]
        return [p for p, r in self.row_of.items() if owned[r]]

    def row(self, item_id: str) -> int:
        """Row of a stored item (NotFoundError otherwise)."""
        r = self.row_of.get(item_id)
        if r is None:
            raise NotFoundError(f"unknown {self.kind.id_column} {item_id!r}")
        return r

    def alive_items(self) -> tuple[pl.DataFrame, np.ndarray]:
        """The live items (canonical frame, in row order) and their unit vectors."""
        df, vec = self._alive_state()
        return df.drop("_owned"), vec

    def get(self, item_id: str) -> dict:
        """The canonical row of a stored item."""
        row = self._meta_frame().row(self.row(item_id), named=True)
        row.pop("_owned")
        return row

    def stats(self) -> dict:
        """Counts and memory figures."""
        meta = self._meta_frame()
        st = self.store
        return {
            "items": len(self.row_of),
            "owned": int(st["owned"][st["alive"]].sum()),
            "rows_incl_deleted": self.n,
            "vector_bytes": int(st["vector"].nbytes),
            "metadata_bytes": st.nbytes(exclude=("vector",))
            + (meta.estimated_size() if meta is not None else 0),
            "restored": self.restored,
        }

    # ------------------------------------------------------------------ search
    def cell_index(self) -> CellIndex:
        """The cell index, rebuilt when too many rows were appended since it was built."""
        ix = self._index
        if ix is None or self.n - ix.upto > DELTA_MAX or ix.upto > self.n:
            st = self.store
            ix = self._index = CellIndex(np.flatnonzero(st["alive"]), st["fine"], st["xyz"], self.n)
        return ix

    def cell_rows(self, cell_ids: np.ndarray) -> np.ndarray:
        """Live rows bucketed in the fine cells ``cell_ids``."""
        ix = self.cell_index()
        rows = ix.cell_rows(cell_ids)
        recent = np.arange(ix.upto, self.n, dtype=np.int64)
        if recent.size:
            fine = self.store["fine"]
            recent = recent[np.isin(fine[recent], np.asarray(cell_ids, dtype=np.uint64))]
            rows = np.concatenate([rows, recent])
        return rows[self.store["alive"][rows]]

    def candidates(self, rows: np.ndarray) -> RowView:
        """The rule kernel's columns of ``rows`` (gathered lazily, plus ``row``)."""
        return RowView(self.store, rows, {"row": rows})

    def query_of_row(self, r: int) -> QuerySide:
        """A stored item as a query."""
        st = self.store
        cols = {name: st[name][r : r + 1] for name in self.kind.kernel_columns}  # views
        cols["row"] = np.array([r], dtype=np.int64)
        return QuerySide(cols, st["vector"][r])

    def query_of_item(self, item: Mapping[str, object], vector: np.ndarray) -> QuerySide:
        """An inline item (checked by the caller with ``kind.check_item``; ``vector``
        normalised) as a query; a stored item of the same id is excluded from its results."""
        cols = self.kind.query_columns(item)
        lat = np.array([float(item["lat"])])
        lng = np.array([float(item["lng"])])
        cols.update(lat=lat, lng=lng, xyz=unit_xyz(lat, lng))
        me = self.row_of.get(item.get(self.kind.id_column))
        cols["row"] = np.array([-1 if me is None else me], dtype=np.int64)
        return QuerySide(cols, np.ascontiguousarray(vector, dtype=np.float32))

    def search(self, q: QuerySide, k: int, cfg: object) -> list[Hit]:
        """Exact top-k of one query.

        Candidates: the rows of every fine cell whose centre lies within the radius plus
        the cell's own radius (a superset of the radius disk by the triangle inequality),
        plus rows appended since the cell index was built. The rule kernel checks every
        rule (rows of cells wholly inside the radius skip the distance); survivors are
        scored in float32 in place and only those within the float32 error bound of the
        k-th pick are rescored exactly (:func:`workers.engine.scoring.pick_one`).
        """
        rules = self.kind.rules
        radius = rules.radius_one(q.columns, cfg)
        ix = self.cell_index()
        inner, edge = ix.near_rows(q.columns["xyz"][0], radius)
        alive = self.store["alive"]
        inner = inner[alive[inner]]
        rest = np.concatenate([edge, np.arange(ix.upto, self.n, dtype=np.int64)])
        rows = np.concatenate([inner, rest[alive[rest]]])
        if rows.size == 0:
            return []
        ok = rules.pair_mask(q.columns, self.candidates(rows), cfg, known_within=inner.size)[0]
        rows = rows[ok]
        if rows.size == 0:
            return []
        st = self.store
        vec = st["vector"]
        qv = np.ascontiguousarray(q.vector, dtype=np.float32)
        groups = st[rules.group_column] if rules.group_column else np.zeros(self.n, np.int32)
        picked, scores = pick_one(
            rows, dots(vec, qv, rows), qv, k, rules.cap(cfg),
            vectors=vec, groups=groups, ids=self.ids, eps=self.eps,
        )  # fmt: skip
        lat, lng = q.columns["lat"][0], q.columns["lng"][0]
        # float32 like the batch output, so both paths return identical values
        d = haversine_km(lat, lng, st["lat"][picked], st["lng"][picked]).astype(np.float32)
        return [Hit(r, s, di) for r, s, di in zip(picked.tolist(), scores.tolist(), d.tolist(),
                                                 strict=True)]  # fmt: skip

    def results(self, hits: Sequence[Hit]) -> list[R]:
        """The kind's result objects of ``hits``."""
        rows = np.array([h.row for h in hits], dtype=np.int64)
        cols = [
            [lab.names[c] for c in self.store[name][rows].tolist()]
            for name, lab in self.labels.items()
        ]
        make, ids = self.kind.result, self.ids
        return [
            make(ids[h.row], h.score, h.distance_km, lab)
            for h, lab in zip(hits, zip(*cols, strict=True) if cols else [()] * len(hits),
                              strict=True)
        ]  # fmt: skip
