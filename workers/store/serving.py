"""Serving a store's generation: the shard actors (private, or detached and named so every
frontend shares them) behind a :class:`workers.store.stored.StoredBackend`.

Shared actors are named ``<generation>-shard-<i>`` in the current Ray namespace. The first
frontend (or the first to switch after a refresh) creates them from the store; the others
attach to them. With a local-directory store their snapshots live inside the store, which
every node of a local cluster reaches, so Ray restarts a shard on any node and it reloads
there; with an S3 store a shard that restarts without its snapshot is reloaded from the
store by :meth:`StoredBackend.heal`. Either way no node affinity is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.errors import InvalidInputError
from core.rules import RuleConfig
from workers.engine.sharding import ShardingConfig, shard_names
from workers.store.store import ShardStore

log = logging.getLogger(__name__)


def _snapshot_dir(store: ShardStore, generation: str) -> Path | None:
    # a local store is reachable from every node of a local cluster: keep the actors'
    # snapshots in it; on S3 each actor keeps a local snapshot and heal() covers the rest
    if store.config.is_s3:
        return None
    return Path(store.root) / "actors" / generation


def _build(df, vec, n: int, rules: RuleConfig, names: list[str] | None, snap: Path | None,
           resources: tuple[tuple[str, float], ...] = ()):
    from workers.backend import RecommendationBackend

    return RecommendationBackend.build(
        df, vec, sharding=ShardingConfig(num_shards=n, resources=resources), rules=rules,
        snapshot_dir=snap,
        actor_names=names, pin_nodes=names is None,
    )  # fmt: skip


def open_generation(store: ShardStore, generation: str, rules: RuleConfig, *, shared: bool,
                    resources: tuple[tuple[str, float], ...] = ()):
    """A backend over ``generation``: attached to its named actors when they exist (shared),
    else new actors (requiring the custom Ray ``resources``) loaded from the store."""
    from workers.backend import RecommendationBackend
    from workers.store.generation import read_frame, read_plan

    meta = store.meta(generation)
    n = int(meta["num_shards"])
    names = shard_names(generation, n) if shared else None
    if shared:
        from workers.actors import find_shards

        handles = find_shards(names)
        if handles is not None:
            where = store.id_map(generation, n)
            snap = _snapshot_dir(store, generation) or Path("/nonexistent")
            backend = RecommendationBackend(
                handles, read_plan(store, generation), rules, int(meta["dim"]), where, snap, False
            )
            log.info("attached to the shards of %s", generation)
            return backend
    df, vec, _ = read_frame(store, generation)
    snap = _snapshot_dir(store, generation) if shared else None
    return _build(df, vec, n, rules, names, snap, resources)


def serve_store(
    store: ShardStore,
    rules: RuleConfig,
    *,
    shared: bool = False,
    postings: pl.DataFrame | None = None,
    vectors: np.ndarray | None = None,
    shards: int | None = None,
    resources: tuple[tuple[str, float], ...] = (),
) -> Any:
    """A :class:`StoredBackend` over the store's serving generation (seeded with
    ``postings`` when the store is empty); its shard actors require the custom Ray
    ``resources``, also after a generation switch."""
    from workers.store.generation import seed_store
    from workers.store.stored import StoredBackend

    manifest = store.manifest()
    if manifest is None:
        if postings is None or vectors is None:
            raise InvalidInputError(
                "no postings: give --postings, or a --store with a generation (jobrec refresh)",
                field="postings",
            )
        n = shards or ShardingConfig().num_shards
        gen = store.next_generation()
        names = shard_names(gen, n) if shared else None
        backend = _build(
            postings, vectors, n, rules, names, _snapshot_dir(store, gen) if shared else None,
            resources,
        )
        seed_store(store, backend.plan, postings, vectors, generation=gen)
    else:
        gen = manifest.generation
        backend = open_generation(store, gen, rules, shared=shared, resources=resources)

    def factory(generation: str):
        return open_generation(store, generation, rules, shared=shared, resources=resources)

    return StoredBackend(backend, store, gen, factory=factory, shared=shared)
