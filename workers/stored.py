"""A backend whose writes are in the shard store before they are acknowledged.

:class:`StoredBackend` wraps a ``RecommendationBackend``: an upsert or delete is first
appended to the serving generation's log (one object per shard it touches, halo copies
included), then applied to the shard actors. A shard, a frontend or a whole cluster
restarted later reloads ``base + log`` (:func:`workers.generation.read_frame`) and finds
every acknowledged write. Reads go straight to the wrapped backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from core.errors import InvalidInputError
from core.schema import conform, validate_postings
from workers.generation import rows_table
from workers.sharding import partition
from workers.store import ShardStore

log = logging.getLogger(__name__)


class StoredBackend:
    """``backend`` with a durable append log in ``store`` (generation ``generation``)."""

    def __init__(self, backend: Any, store: ShardStore, generation: str) -> None:
        self.backend = backend
        self.store = store
        self.generation = generation
        self.num_shards = int(store.meta(generation)["num_shards"])
        # posting_id -> shards holding it, as far as this process knows (deletes of ids it
        # does not know are logged on every shard: a delete of an absent id replays as no-op)
        self._shards = {
            pid: set(s) for pid, (_, s) in store.id_map(generation, self.num_shards).items()
        }
        self.on_append = None  # called with the seconds each durable write took (metrics)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    # -- what is logged ----------------------------------------------------------------------
    def _upsert_batches(self, postings: pl.DataFrame, vectors: np.ndarray):
        """(shard → log records, posting_id → shards holding it afterwards)."""
        df = conform(postings)
        validate_postings(df)
        vec = np.asarray(vectors, dtype=np.float32)
        if vec.ndim != 2 or vec.shape[0] != df.height:
            raise InvalidInputError(f"{df.height} postings but {len(vec)} vectors", field="vectors")
        _, parts = partition(self.backend.plan, df["lat"].to_numpy(), df["lng"].to_numpy())
        rows = rows_table(df, vec, False).append_column("op", pa.array(["upsert"] * df.height))
        ids = df["posting_id"].to_list()
        now: dict[str, set[int]] = {pid: set() for pid in ids}
        out: dict[int, pa.Table] = {}
        for s, (idx, owned) in enumerate(parts):
            if len(idx):
                t = rows.take(pa.array(idx, pa.int64()))
                out[s] = t.set_column(
                    t.column_names.index("owned"), "owned", pa.array(owned.tolist())
                )
                for pid in t["posting_id"].to_pylist():
                    now[pid].add(s)
        # a posting that moved away from a shard is deleted there
        gone: dict[int, list[str]] = {}
        for pid in ids:
            for s in self._shards.get(pid, set()) - now[pid]:
                gone.setdefault(s, []).append(pid)
        for s, pids in gone.items():
            dels = _delete_rows(pids, rows.schema)
            out[s] = pa.concat_tables([out[s], dels]) if s in out else dels
        return out, now

    def _delete_batches(self, posting_ids: Sequence[str]) -> dict[int, pa.Table]:
        if isinstance(posting_ids, str):
            posting_ids = [posting_ids]
        per: dict[int, list[str]] = {}
        for pid in dict.fromkeys(posting_ids):
            for s in self._shards.get(pid) or range(self.num_shards):
                per.setdefault(s, []).append(pid)
        return {s: _delete_rows(p) for s, p in per.items()}

    def _append(self, batches: dict[int, pa.Table]) -> None:
        t0 = time.perf_counter()
        for s, t in sorted(batches.items()):
            self.store.append(self.generation, s, t)
        if self.on_append is not None:
            self.on_append(time.perf_counter() - t0)

    # -- writes ------------------------------------------------------------------------------
    def upsert(self, postings: pl.DataFrame, vectors: np.ndarray):
        """Log, then apply (see the module docstring)."""
        batches, now = self._upsert_batches(postings, vectors)
        self._append(batches)
        result = self.backend.upsert(postings, vectors)
        self._shards.update(now)
        return result

    def delete(self, posting_ids: Sequence[str]):
        """Log, then apply."""
        self._append(self._delete_batches(posting_ids))
        result = self.backend.delete(posting_ids)
        for pid in [posting_ids] if isinstance(posting_ids, str) else posting_ids:
            self._shards.pop(pid, None)
        return result

    async def aupsert(self, postings: pl.DataFrame, vectors: np.ndarray):
        """Async :meth:`upsert`: the store write runs in a thread, off the event loop."""
        loop = asyncio.get_running_loop()
        batches, now = self._upsert_batches(postings, vectors)
        await loop.run_in_executor(None, self._append, batches)
        result = await self.backend.aupsert(postings, vectors)
        self._shards.update(now)
        return result

    async def adelete(self, posting_ids: Sequence[str]):
        """Async :meth:`delete`."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._append, self._delete_batches(posting_ids))
        result = await self.backend.adelete(posting_ids)
        for pid in posting_ids:
            self._shards.pop(pid, None)
        return result

    def store_lag(self) -> dict[str, float]:
        """Log objects not yet folded into a base snapshot, and the oldest one's age."""
        return self.store.log_lag(self.generation, self.num_shards)


def _delete_rows(posting_ids: list[str], schema: pa.Schema | None = None) -> pa.Table:
    t = pa.table({"posting_id": posting_ids, "op": ["delete"] * len(posting_ids),
                  "owned": [True] * len(posting_ids)})  # fmt: skip
    if schema is None:
        return t
    cols = {}
    for f in schema:
        cols[f.name] = t[f.name] if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
    return pa.table(cols, schema=schema)
