"""Shard generations in the store: written from a posting frame and its vectors, read back
(base snapshots + append log) as the frame a backend is built from.

A generation's base rows are the canonical posting columns plus ``vector`` (float32 list)
and ``owned`` (True on the posting's owner shard, False on shards holding a halo copy).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from core.errors import InvalidInputError, NotFoundError
from core.schema import POSTING_SCHEMA, conform
from workers.store.store import ShardStore, StoreConfig, replay

log = logging.getLogger(__name__)
PLAN_OBJECT = "plan.pkl"


def open_store(uri: str | None, endpoint: str | None = None) -> ShardStore | None:
    """The shard store at ``uri`` (None: no store)."""
    if not uri:
        return None
    store = ShardStore(StoreConfig(uri, endpoint=endpoint or None))
    store.ensure()
    return store


def seed_store(
    store: ShardStore,
    plan: Any,
    postings: pl.DataFrame,
    vectors: np.ndarray,
    extra: Mapping[str, Any] | None = None,
    generation: str | None = None,
    objects: Mapping[str, bytes] | None = None,
) -> str:
    """Write ``postings`` as the store's next generation (partitioned by ``plan``), flip to it
    and return its name. ``objects`` (name -> bytes, e.g. the generation's lexical model) are
    written before the flip, so a frontend that sees the flip finds them. Fails if another
    writer flipped the store meanwhile."""
    from workers.engine.sharding import partition

    current = store.manifest()
    gen = generation or store.next_generation()
    owner, parts = partition(plan, postings["lat"].to_numpy(), postings["lng"].to_numpy())
    write_from_frame(store, gen, postings, np.asarray(vectors, np.float32), parts, owner, plan=plan)
    for name, data in (objects or {}).items():
        store.write_object(gen, name, data)
    store.flip(gen, expect=current.generation if current else None, extra=extra)
    log.info("store generation %s written and flipped (%d postings)", gen, postings.height)
    return gen


def _vector_array(vectors: np.ndarray) -> pa.Array:
    dim = int(vectors.shape[1])
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def rows_table(df: pl.DataFrame, vectors: np.ndarray, owned: np.ndarray | bool) -> pa.Table:
    """Canonical rows + ``vector`` + ``owned`` as one arrow table (the store's row format)."""
    if vectors.shape[0] != df.height:
        raise InvalidInputError(
            f"{df.height} postings but {vectors.shape[0]} vectors", field="vectors"
        )
    t = conform(df).to_arrow()
    owned_arr = np.broadcast_to(np.asarray(owned, dtype=bool), (df.height,))
    return t.append_column("vector", _vector_array(vectors)).append_column(
        "owned", pa.array(owned_arr.tolist(), pa.bool_())
    )


def write_from_frame(
    store: ShardStore,
    gen: str,
    df: pl.DataFrame,
    vectors: np.ndarray,
    parts: list[tuple[np.ndarray, np.ndarray]],
    owner: np.ndarray,
    meta: Mapping[str, Any] | None = None,
    plan: Any = None,
) -> None:
    """Write generation ``gen``: shard ``s`` holds rows ``parts[s][0]`` (owned mask
    ``parts[s][1]``), as :func:`workers.engine.sharding.partition` splits them."""
    df = conform(df)
    bases = {}
    stored: list[list[int]] = [[] for _ in range(df.height)]
    for s, (idx, owned) in enumerate(parts):
        idx = np.asarray(idx, dtype=np.int64)
        bases[s] = rows_table(df[idx], vectors[idx], np.asarray(owned, dtype=bool))
        for i in idx.tolist():
            stored[i].append(s)
    id_map = pa.table({
        "posting_id": df["posting_id"].to_list(),
        "owner": pa.array(np.asarray(owner).astype(np.int32)),
        "shards": pa.array(stored, pa.list_(pa.int32())),
    })  # fmt: skip
    if plan is not None:  # before meta.json: a complete generation always has its plan
        store.write_object(gen, PLAN_OBJECT, pickle.dumps(plan))
    store.write_generation(gen, bases, id_map, {"dim": int(vectors.shape[1]), **dict(meta or {})})


def read_plan(store: ShardStore, gen: str) -> Any:
    """The shard plan a generation was partitioned with (frontends attaching need it)."""
    return pickle.loads(store.read_object(gen, PLAN_OBJECT))  # noqa: S301  (our own store)


def read_frame(store: ShardStore, gen: str | None = None) -> tuple[pl.DataFrame, np.ndarray, str]:
    """Every posting of a generation (default: the serving one) after its log, with vectors.

    Owned rows only: halo copies are rebuilt by whoever partitions the frame again.
    Returns ``(postings, vectors, generation)``.
    """
    if gen is None:
        m = store.manifest()
        if m is None:
            raise NotFoundError(f"shard store {store.config.uri} has no serving generation")
        gen = m.generation
    n = int(store.meta(gen)["num_shards"])
    tables = []
    for s in range(n):
        state, _ = store.shard_state(gen, s)
        tables.append(state.filter(pa.compute.equal(state["owned"], True)))
    table = pa.concat_tables(tables, promote_options="permissive")
    vec = table["vector"].combine_chunks()
    dim = int(store.meta(gen)["dim"])
    vectors = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    df = conform(pl.from_arrow(table.select(list(POSTING_SCHEMA))))
    return df, vectors, gen


def carry_log(store: ShardStore, src: str, df: pl.DataFrame, vectors: np.ndarray):
    """``df``/``vectors`` with every write logged on generation ``src`` applied on top.

    The refresh uses it so upserts and deletes acknowledged while it built the next
    generation are not lost (they are newer than the export it read).
    Returns ``(postings, vectors, last log key per shard, log rows applied)``.
    """
    n = int(store.meta(src)["num_shards"])
    base = rows_table(df, vectors, True)
    batches, last = [], {}
    keyed = []
    for s in range(n):
        for key, t in store.log(src, s):
            keyed.append((key, t))
            last[s] = key
    batches = [t for _, t in sorted(keyed, key=lambda kt: kt[0])]
    # owned rows only: a halo copy logged on another shard carries the same row
    batches = [
        b.filter(pa.compute.invert(pa.compute.equal(b["owned"], False)))
        if "owned" in b.column_names
        else b
        for b in batches
    ]
    merged = replay(base, batches)
    vec = merged["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    out = conform(pl.from_arrow(merged.select(list(POSTING_SCHEMA))))
    rows = sum(b.num_rows for b in batches)
    return out, vec.astype(np.float32).reshape(-1, vectors.shape[1]), last, rows


def carry_stragglers(
    store: ShardStore, src: str, dst: str, after: Mapping[int, str], plan: Any
) -> int:
    """Re-log on ``dst`` the writes logged on ``src`` after ``after`` (per shard), routed by
    ``dst``'s shard plan. Called after the flip, for writes that raced the refresh."""
    from workers.engine.sharding import partition

    n_src = int(store.meta(src)["num_shards"])
    n_dst = int(store.meta(dst)["num_shards"])
    moved = 0
    keyed = [(k, t) for s in range(n_src) for k, t in store.log(src, s, after.get(s))]
    for _key, t in sorted(keyed, key=lambda kt: kt[0]):
        if "owned" in t.column_names:
            t = t.filter(pa.compute.invert(pa.compute.equal(t["owned"], False)))
        ups = t.filter(pa.compute.equal(t["op"], "upsert"))
        dels = t.filter(pa.compute.equal(t["op"], "delete"))
        if ups.num_rows:
            lat = ups["lat"].to_numpy(zero_copy_only=False)
            lng = ups["lng"].to_numpy(zero_copy_only=False)
            _, parts = partition(plan, lat, lng)
            for s, (idx, owned) in enumerate(parts):
                if len(idx):
                    part = ups.take(pa.array(idx, pa.int64()))
                    col = part.column_names.index("owned")
                    store.append(dst, s, part.set_column(col, "owned", pa.array(owned.tolist())))
        if dels.num_rows:
            for s in range(n_dst):
                store.append(dst, s, dels)
        moved += t.num_rows
    return moved


def frame_of(table: pa.Table) -> tuple[pl.DataFrame, np.ndarray]:
    """Canonical postings and their vectors from store rows (base or logged upserts)."""
    vec = table["vector"].combine_chunks()
    dim = vec.type.list_size
    vectors = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    return conform(pl.from_arrow(table.select(list(POSTING_SCHEMA)))), vectors


def lexical_from_store(store: ShardStore, gen: str, into: str | Path) -> Path | None:
    """Write generation ``gen``'s lexical model (saved by the refresh) into the directory
    ``into`` and return it; None when the generation has none (vectors given, not encoded)."""
    from encoding.hybrid import HYBRID_JSON
    from encoding.lexical import LEXICAL_JSON, LEXICAL_NPZ

    d = Path(into)
    try:
        data = {n: store.read_object(gen, f"lexical-{n}") for n in (LEXICAL_JSON, LEXICAL_NPZ)}
    except NotFoundError:
        return None
    with contextlib.suppress(NotFoundError):  # generations written before it carry none
        data[HYBRID_JSON] = store.read_object(gen, f"lexical-{HYBRID_JSON}")
    d.mkdir(parents=True, exist_ok=True)
    for n, b in data.items():
        (d / n).write_bytes(b)
    return d
