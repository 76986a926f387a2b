"""A backend whose writes are in the shard store before they are acknowledged.

:class:`StoredBackend` wraps a ``RecommendationBackend``: an upsert or delete is first
appended to the serving generation's log (one object per shard it touches, halo copies
included), then applied to the shard actors. A shard, a frontend or a whole cluster
restarted later reloads ``base + log`` (:func:`workers.store.generation.read_frame`) and finds
every acknowledged write. Reads go straight to the wrapped backend.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from core.errors import InvalidInputError, NotFoundError
from core.schema import conform, validate_postings
from workers.engine.sharding import partition, shard_names
from workers.store.generation import rows_table
from workers.store.store import ShardStore

log = logging.getLogger(__name__)


class _Served:
    """One generation being served: its backend and what this process knows of its ids."""

    def __init__(self, backend: Any, store: ShardStore, generation: str) -> None:
        self.backend = backend
        self.generation = generation
        self.num_shards = int(store.meta(generation)["num_shards"])
        # posting_id -> shards holding it, as far as this process knows (deletes of ids it
        # does not know are logged on every shard: a delete of an absent id replays as no-op)
        self.shards = {
            pid: set(s) for pid, (_, s) in store.id_map(generation, self.num_shards).items()
        }


class StoredBackend:
    """``backend`` with a durable append log in ``store`` (generation ``generation``).

    ``factory(generation)`` builds a backend for another generation: :meth:`maybe_switch`
    uses it when the refresh has flipped the store's manifest (zero-downtime switch-over).
    """

    def __init__(
        self,
        backend: Any,
        store: ShardStore,
        generation: str,
        *,
        factory: Callable[[str], Any] | None = None,
        retire_after_s: float | None = None,
        shared: bool = False,
    ) -> None:
        self.store = store
        self._served = _Served(backend, store, generation)
        self._factory = factory
        self._switch_lock = threading.Lock()
        self.shared = shared
        # shared actors serve other frontends too: they are retired only once every frontend
        # has had time to notice the flip (health interval + building the new generation)
        self.retire_after_s = (
            retire_after_s if retire_after_s is not None else (60.0 if shared else 10.0)
        )
        self.switches = 0
        self.on_append = None  # called with the seconds each durable write took (metrics)
        self.on_switch = None  # called with the new generation's name after a switch-over

    @property
    def backend(self) -> Any:
        return self._served.backend

    @property
    def generation(self) -> str:
        return self._served.generation

    @property
    def num_shards(self) -> int:
        return self._served.num_shards

    def __getattr__(self, name: str) -> Any:
        return getattr(self._served.backend, name)

    # -- what is logged ----------------------------------------------------------------------
    @staticmethod
    def _upsert_batches(served: _Served, postings: pl.DataFrame, vectors: np.ndarray):
        """(shard → log records, posting_id → shards holding it afterwards)."""
        df = conform(postings)
        validate_postings(df)
        vec = np.asarray(vectors, dtype=np.float32)
        if vec.ndim != 2 or vec.shape[0] != df.height:
            raise InvalidInputError(f"{df.height} postings but {len(vec)} vectors", field="vectors")
        plan = served.backend.plan
        _, parts = partition(plan, df["lat"].to_numpy(), df["lng"].to_numpy())
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
            for s in served.shards.get(pid, set()) - now[pid]:
                gone.setdefault(s, []).append(pid)
        for s, pids in gone.items():
            dels = _delete_rows(pids, rows.schema)
            out[s] = pa.concat_tables([out[s], dels]) if s in out else dels
        return out, now

    @staticmethod
    def _delete_batches(served: _Served, posting_ids: Sequence[str]) -> dict[int, pa.Table]:
        per: dict[int, list[str]] = {}
        for pid in dict.fromkeys(posting_ids):
            for s in served.shards.get(pid) or range(served.num_shards):
                per.setdefault(s, []).append(pid)
        return {s: _delete_rows(p) for s, p in per.items()}

    def _append(self, served: _Served, batches: dict[int, pa.Table]) -> None:
        t0 = time.perf_counter()
        for s, t in sorted(batches.items()):
            self.store.append(served.generation, s, t)
        if self.on_append is not None:
            self.on_append(time.perf_counter() - t0)

    # -- writes ------------------------------------------------------------------------------
    def upsert(self, postings: pl.DataFrame, vectors: np.ndarray):
        """Log, then apply (see the module docstring)."""
        served = self._served
        batches, now = self._upsert_batches(served, postings, vectors)
        self._append(served, batches)
        result = served.backend.upsert(postings, vectors)
        served.shards.update(now)
        if self._served is not served:  # switched meanwhile: the new generation gets it too
            return self.upsert(postings, vectors)
        return result

    def delete(self, posting_ids: Sequence[str]):
        """Log, then apply."""
        ids = [posting_ids] if isinstance(posting_ids, str) else list(posting_ids)
        served = self._served
        self._append(served, self._delete_batches(served, ids))
        result = served.backend.delete(ids)
        for pid in ids:
            served.shards.pop(pid, None)
        if self._served is not served:
            return self.delete(ids)
        return result

    async def aupsert(self, postings: pl.DataFrame, vectors: np.ndarray):
        """Async :meth:`upsert`: the store write runs in a thread, off the event loop."""
        loop = asyncio.get_running_loop()
        served = self._served
        batches, now = self._upsert_batches(served, postings, vectors)
        await loop.run_in_executor(None, self._append, served, batches)
        result = await served.backend.aupsert(postings, vectors)
        served.shards.update(now)
        if self._served is not served:
            return await self.aupsert(postings, vectors)
        return result

    async def adelete(self, posting_ids: Sequence[str]):
        """Async :meth:`delete`."""
        loop = asyncio.get_running_loop()
        ids = list(posting_ids)
        served = self._served
        await loop.run_in_executor(None, self._append, served, self._delete_batches(served, ids))
        result = await served.backend.adelete(ids)
        for pid in ids:
            served.shards.pop(pid, None)
        if self._served is not served:
            return await self.adelete(ids)
        return result

    # -- reads: the shards are the truth, this process's id map a cache ----------------------
    def _locate(self, posting_id: str) -> bool:
        """Find ``posting_id`` on the shards (another frontend may have written it) and
        route it from now on; False if no shard holds it."""
        from workers.actors import first_answer

        backend = self._served.backend
        row = first_answer([a.get.remote(posting_id) for a in backend._actors])  # noqa: SLF001
        if row is None:
            return False
        _, owner, routes = backend.plan.assign(np.array([row["lat"]]), np.array([row["lng"]]))
        backend._where[posting_id] = (int(owner[0]), tuple(int(x) for x in routes[0]))  # noqa: SLF001
        self._served.shards[posting_id] = set(int(x) for x in routes[0])
        return True

    def _known(self, posting_id: str) -> bool:
        return posting_id in self._served.backend._where  # noqa: SLF001

    def similar(self, posting_id: str, *args, **kwargs):
        """By-id recommendations; an id written through another frontend is located first."""
        if not self._known(posting_id):
            self._locate(posting_id)
        try:
            return self._served.backend.similar(posting_id, *args, **kwargs)
        except NotFoundError:
            if self._locate(posting_id):  # moved or re-added through another frontend
                return self._served.backend.similar(posting_id, *args, **kwargs)
            raise

    def get(self, posting_id: str):
        """The canonical row (located on the shards if this process has not seen it)."""
        if not self._known(posting_id):
            self._locate(posting_id)
        return self._served.backend.get(posting_id)

    async def asimilar(self, posting_id: str, *args, **kwargs):
        """Async :meth:`similar`."""
        loop = asyncio.get_running_loop()
        if not self._known(posting_id):
            await loop.run_in_executor(None, self._locate, posting_id)
        try:
            return await self._served.backend.asimilar(posting_id, *args, **kwargs)
        except NotFoundError:
            if await loop.run_in_executor(None, self._locate, posting_id):
                return await self._served.backend.asimilar(posting_id, *args, **kwargs)
            raise

    async def aget(self, posting_id: str):
        """Async :meth:`get`."""
        if not self._known(posting_id):
            await asyncio.get_running_loop().run_in_executor(None, self._locate, posting_id)
        return await self._served.backend.aget(posting_id)

    # -- switch-over -------------------------------------------------------------------------
    def maybe_switch(self) -> bool:
        """Serve the store's new generation if the manifest moved on; True if it switched.

        Builds the new backend beside the serving one (requests keep going to the old one),
        swaps in one assignment, then replays onto the new generation the writes logged on
        the old one after the refresh's carry point (``carried_until`` in the manifest).
        A write that straddles the swap applies itself to the new generation as well. The
        old backend is shut down ``retire_after_s`` later, once its in-flight calls are done.
        """
        m = self.store.manifest()
        if m is None or m.generation == self._served.generation or self._factory is None:
            return False
        with self._switch_lock:
            old = self._served
            if m.generation == old.generation:
                return False
            new = _Served(self._factory(m.generation), self.store, m.generation)
            self._served = new
            replayed = 0
            if m.extra.get("carried_from") == old.generation:
                replayed = self._replay(old, new, m.extra.get("carried_until", {}))
            self.switches += 1
            if self.on_switch is not None:
                self.on_switch(new.generation)
            log.info(
                "switched %s -> %s (%d writes replayed)", old.generation, new.generation, replayed
            )
            timer = threading.Timer(self.retire_after_s, self._retire, (old,))
            timer.daemon = True
            timer.start()
            return True

    def _retire(self, old: _Served) -> None:
        if not self.shared:
            old.backend.shutdown()
            return
        from workers.actors import kill_named

        kill_named(shard_names(old.generation, old.num_shards))

    def shutdown(self) -> None:
        """Stop serving: private actors are killed, shared ones stay for other frontends."""
        if not self.shared:
            self._served.backend.shutdown()

    def shutdown_shared(self) -> None:
        """Kill the shared actors of the serving generation (the last frontend, or tests)."""
        self._retire(self._served) if self.shared else self.shutdown()

    def heal(self) -> list[int]:
        """Reload from the store every shard that came back empty after a restart (its
        snapshot was on a node that is gone); returns the shards reloaded."""
        from workers.actors import get, timed_answers
        from workers.store.generation import frame_of

        served = self._served
        backend = served.backend
        healed = []
        stats = timed_answers([a.stats.remote() for a in backend._actors], 10.0)  # noqa: SLF001
        for s, (actor, (ok, st, _)) in enumerate(zip(backend._actors, stats, strict=True)):  # noqa: SLF001
            # down: Ray restarts it and the next check heals it; non-empty: nothing to do
            if not ok or st.get("postings", 0) > 0:
                continue
            state, _ = self.store.shard_state(served.generation, s)
            if state.num_rows == 0:
                continue
            df, vec = frame_of(state)
            owned = np.asarray(state["owned"].to_pylist(), dtype=bool)
            get(actor.load.remote(df, vec, owned), timeout=120)
            healed.append(s)
            log.warning("shard %d of %s came back empty: reloaded %d rows from the store",
                        s, served.generation, state.num_rows)  # fmt: skip
        return healed

    def _replay(self, old: _Served, new: _Served, after: dict) -> int:
        from workers.store.generation import frame_of

        batches = [
            (key, t)
            for s in range(old.num_shards)
            for key, t in self.store.log(old.generation, s, after.get(str(s), after.get(s)))
        ]
        n = 0
        for _key, t in sorted(batches, key=lambda kt: kt[0]):
            if "owned" in t.column_names:
                t = t.filter(pa.compute.invert(pa.compute.equal(t["owned"], False)))
            ups = t.filter(pa.compute.equal(t["op"], "upsert"))
            dels = t.filter(pa.compute.equal(t["op"], "delete"))
            if ups.num_rows:
                df, vec = frame_of(ups)
                batches_new, now = self._upsert_batches(new, df, vec)
                self._append(new, batches_new)
                new.backend.upsert(df, vec)
                new.shards.update(now)
            if dels.num_rows:
                ids = dels["posting_id"].to_pylist()
                self._append(new, self._delete_batches(new, ids))
                new.backend.delete(ids)
            n += t.num_rows
        return n

    def health(self, timeout: float = 10.0) -> dict:
        """Ping every shard (``stats``): ``{"ok", "postings", "shards": [{"shard_id", "ok",
        "postings", "latency_s"}]}``, the round trip of each shard measured on its own."""
        from workers.actors import timed_answers

        backend = self._served.backend
        answers = timed_answers([a.stats.remote() for a in backend._actors], timeout)  # noqa: SLF001
        out = [
            {"shard_id": s, "ok": True, "postings": v["postings"], "latency_s": secs}
            if ok
            else {"shard_id": s, "ok": False, "error": v}
            for s, (ok, v, secs) in enumerate(answers)
        ]
        return {
            "ok": all(x["ok"] for x in out),
            "postings": backend.size(),
            "num_shards": len(out),
            "generation": self._served.generation,
            "shards": out,
        }

    def store_lag(self) -> dict[str, float]:
        """Log objects not yet folded into a base snapshot, and the oldest one's age."""
        served = self._served
        return self.store.log_lag(served.generation, served.num_shards)


def _delete_rows(posting_ids: list[str], schema: pa.Schema | None = None) -> pa.Table:
    t = pa.table({"posting_id": posting_ids, "op": ["delete"] * len(posting_ids),
                  "owned": [True] * len(posting_ids)})  # fmt: skip
    if schema is None:
        return t
    cols = {}
    for f in schema:
        cols[f.name] = t[f.name] if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
    return pa.table(cols, schema=schema)
