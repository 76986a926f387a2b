"""The recommendation backend used by the gRPC server and the batch refresh.

A plain class holding handles to the Ray shard actors (:mod:`workers.actors`) and the
:class:`~workers.sharding.ShardPlan`. Every query goes to exactly one shard: the owner of
the query's coarse H3 cell, whose halo holds every posting within the largest radius.
Writes go to the owner and to every shard whose halo the posting falls in.

Sync methods block on ``ray.get``; the ``a``-prefixed twins await the ObjectRefs so an
asyncio server never blocks its event loop. Concurrent async queries to one shard are
coalesced into one actor call (:class:`_Coalescer`): a Ray call costs about as much CPU as
the search itself, so under load this is most of the per-query cost saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from core.errors import InvalidInputError, JobrecError, NotFoundError, UnavailableError
from core.rules import RuleConfig
from core.schema import CAPITAL_AREA_SIDO, conform, validate_postings
from workers.shard import normalise
from workers.sharding import ShardingConfig, ShardPlan, partition
from workers.types import RECS_SCHEMA, DeleteResult, Recommendation, UpsertResult

log = logging.getLogger(__name__)

MAX_K = 1000
_CALLS_PER_SHARD = 2  # coalesced calls in flight per shard: the actor never waits for a batch
_MAX_BATCH = 32  # queries per coalesced call


def _ray():
    import ray

    return ray


def _map_error(exc: BaseException) -> BaseException:
    """Ray's exceptions -> the jobrec hierarchy (JobrecErrors raised in a shard pass through)."""
    ray = _ray()
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, JobrecError):
            return cause
        return exc
    if isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.GetTimeoutError):
        return UnavailableError(f"shard unavailable: {exc.__class__.__name__}: {exc}")
    return exc


def _recs(rows: list[dict]) -> list[Recommendation]:
    return [Recommendation(**r) for r in rows]


class _Coalescer:
    """Queries for one shard from one event loop, sent together as ``similar_many`` calls.

    A query goes out at once when fewer than ``_CALLS_PER_SHARD`` calls are in flight;
    otherwise it waits for the next call, together with every query that arrives meanwhile.
    Nothing waits for a timer, so an idle system answers each query with one call.
    """

    def __init__(self, backend: RecommendationBackend, shard: int) -> None:
        self.backend = backend
        self.shard = shard
        self.pending: list[tuple[tuple, asyncio.Future]] = []
        self.in_flight = 0
        self.calls = 0  # actor calls made (tests, stats)

    async def submit(self, request: tuple):
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((request, fut))
        if self.in_flight < _CALLS_PER_SHARD:
            self._launch()
        ok, value = await fut
        if not ok:
            raise value
        return value

    def _launch(self) -> None:
        # callers that gave up (deadline, cancellation) are not sent
        batch = [(r, f) for r, f in self.pending[:_MAX_BATCH] if not f.done()]
        del self.pending[:_MAX_BATCH]
        if not batch:
            return
        self.in_flight += 1
        self.calls += 1
        asyncio.get_running_loop().create_task(self._call(batch))

    async def _call(self, batch) -> None:
        try:
            actor = self.backend._actors[self.shard]
            answers = await self.backend._await(
                actor.similar_many.remote([r for r, _ in batch])
            )
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
            answers = [(False, exc)] * len(batch)
        finally:
            self.in_flight -= 1
            if self.pending:
                self._launch()
        for (_, fut), answer in zip(batch, answers, strict=True):
            if not fut.done():
                fut.set_result(answer)


class RecommendationBackend:
    """Geo-sharded exact filtered retrieval over Ray shard actors."""

    def __init__(
        self,
        actors: list,
        plan: ShardPlan,
        rules: RuleConfig,
        dim: int,
        where: dict[str, tuple[int, tuple[int, ...]]],
        snapshot_dir: Path,
        owns_snapshot_dir: bool,
    ) -> None:
        self._actors = actors
        self.plan = plan
        self.rules = rules
        self.dim = dim
        self._where = where  # posting_id -> (owner shard, shards storing it)
        self.snapshot_dir = snapshot_dir
        self._owns_dir = owns_snapshot_dir
        # per event loop (futures belong to one loop): {loop: {shard: _Coalescer}}
        self._coalescers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        postings: pl.DataFrame,
        vectors: np.ndarray,
        *,
        sharding: ShardingConfig,
        rules: RuleConfig,
        snapshot_dir: Path | None = None,
        actor_names: list[str] | None = None,
        pin_nodes: bool = True,
    ) -> RecommendationBackend:
        """Partition ``postings`` (canonical frame) with their ``vectors`` over shard actors.

        ``actor_names``: detached named actors (shared by every frontend, see
        :mod:`workers.stored`); ``pin_nodes=False`` when a restarted shard can reload from a
        store every node reaches (no node affinity needed for correctness).

        Requires ``ray.init`` to have been called. Without ``snapshot_dir`` a temporary
        directory holds the shard snapshots (removed by :meth:`shutdown`).
        """
        ray = _ray()
        from workers.actors import alive_nodes, start_shard

        if actor_names is not None and len(actor_names) != sharding.num_shards:
            raise InvalidInputError(
                f"{len(actor_names)} actor names for {sharding.num_shards} shards",
                field="actor_names",
            )

        if not ray.is_initialized():
            raise UnavailableError("Ray is not initialised: call ray.init() first")
        df = conform(postings)
        validate_postings(df)
        vec = normalise(vectors)
        if vec.shape[0] != df.height:
            raise InvalidInputError(
                f"{df.height} postings but {vec.shape[0]} vectors", field="vectors"
            )
        halo = float(sharding.halo_km) if sharding.halo_km is not None else rules.max_radius_km
        if rules.max_radius_km > halo:
            raise InvalidInputError(
                f"the rules' radius {rules.max_radius_km} km exceeds halo_km {halo}",
                field="halo_km",
            )
        owns = snapshot_dir is None
        snap = Path(tempfile.mkdtemp(prefix="jobrec-shards-")) if owns else Path(snapshot_dir)
        radius = np.where(
            df["sido"].is_in(list(CAPITAL_AREA_SIDO)).to_numpy(),
            rules.capital_radius_km,
            rules.other_radius_km,
        )
        plan = ShardPlan.build(df["lat"].to_numpy(), df["lng"].to_numpy(), sharding, halo, radius)
        owner, parts = partition(plan, df["lat"].to_numpy(), df["lng"].to_numpy())
        # shards round-robin over the nodes: deterministic spreading (SPREAD is best effort)
        nodes = alive_nodes()
        actors = [
            start_shard(
                s,
                max_restarts=sharding.max_restarts,
                node_id=nodes[s % len(nodes)] if pin_nodes and len(nodes) > 1 else None,
                name=actor_names[s] if actor_names else None,
                dim=vec.shape[1],
                fine_res=sharding.fine_res,
                halo_km=halo,
                rules=rules,
                snapshot_dir=str(snap),
                threads=sharding.threads_per_shard,
            )
            for s in range(sharding.num_shards)
        ]
        refs = [
            a.load.remote(df[idx], vec[idx], owned)
            for a, (idx, owned) in zip(actors, parts, strict=True)
        ]
        ids = df["posting_id"].to_list()
        stored: list[list[int]] = [[] for _ in ids]
        for s, (idx, _) in enumerate(parts):
            for i in idx.tolist():
                stored[i].append(s)
        where = {
            pid: (int(o), tuple(r)) for pid, o, r in zip(ids, owner.tolist(), stored, strict=True)
        }
        backend = cls(actors, plan, rules, vec.shape[1], where, snap, owns)
        backend._get(refs)
        return backend

    # --------------------------------------------------------------- helpers
    def _get(self, refs, timeout: float | None = None):
        try:
            return _ray().get(refs, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - mapped, re-raised
            mapped = _map_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def _await(self, ref):
        try:
            return await ref
        except Exception as exc:  # noqa: BLE001
            mapped = _map_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _check(self, k: int, rules: RuleConfig | None) -> RuleConfig:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
            raise InvalidInputError(f"k must be an int in 1..{MAX_K}, got {k!r}", field="k")
        if rules is None:
            return self.rules
        if not isinstance(rules, RuleConfig):
            raise InvalidInputError("rules must be a RuleConfig", field="rules")
        for name in ("capital_radius_km", "other_radius_km"):
            if getattr(rules, name) > self.plan.halo_km:
                raise InvalidInputError(
                    f"{name}={getattr(rules, name)} km exceeds the shard halo of "
                    f"{self.plan.halo_km} km",
                    field=name,
                )
        return rules

    def _wire(self, rules: RuleConfig) -> RuleConfig | None:
        """What to send to a shard: None for the backend's own rules (the shard has them),
        which saves pickling them on every call."""
        return None if rules == self.rules else rules

    async def _coalesced(self, shard: int, request: tuple) -> list[Recommendation]:
        loop = asyncio.get_running_loop()
        per_loop = self._coalescers.get(loop)
        if per_loop is None:
            per_loop = self._coalescers[loop] = {}
        co = per_loop.get(shard)
        if co is None:
            co = per_loop[shard] = _Coalescer(self, shard)
        return [Recommendation(*r) for r in await co.submit(request)]

    def _owner(self, posting_id: str) -> int:
        w = self._where.get(posting_id)
        if w is None:
            raise NotFoundError(f"unknown posting_id {posting_id!r}")
        return w[0]

    def _owner_at(self, posting: Mapping) -> int:
        for f in ("lat", "lng"):
            v = posting.get(f)
            if v is None or not np.isfinite(float(v)):
                raise InvalidInputError(f"posting lacks a valid {f!r}", field=f)
        _, owner, _ = self.plan.assign(np.array([posting["lat"]]), np.array([posting["lng"]]))
        return int(owner[0])

    def _plan_upsert(self, postings: pl.DataFrame, vectors: np.ndarray):
        df = conform(postings)
        validate_postings(df)
        vec = normalise(vectors, self.dim)
        if vec.shape[0] != df.height:
            raise InvalidInputError(
                f"{df.height} postings but {vec.shape[0]} vectors", field="vectors"
            )
        _, owner, routes = self.plan.assign(df["lat"].to_numpy(), df["lng"].to_numpy())
        ids = df["posting_id"].to_list()
        ups: dict[int, list[int]] = {}
        dels: dict[int, list[str]] = {}
        updated = 0
        for i, (pid, r) in enumerate(zip(ids, routes, strict=True)):
            old = self._where.get(pid)
            if old is not None:
                updated += 1
                for s in set(old[1]) - set(r.tolist()):
                    dels.setdefault(s, []).append(pid)
            for s in r.tolist():
                ups.setdefault(s, []).append(i)
        calls = []
        for s, idx in ups.items():
            ix = np.array(idx)
            calls.append(self._actors[s].upsert.remote(df[ix], vec[ix], owner[ix] == s))
        for s, pids in dels.items():
            calls.append(self._actors[s].delete.remote(pids))
        new_where = {
            pid: (int(o), tuple(int(x) for x in r))
            for pid, o, r in zip(ids, owner.tolist(), routes, strict=True)
        }
        return calls, new_where, UpsertResult(inserted=df.height - updated, updated=updated)

    def _plan_delete(self, posting_ids: Sequence[str]):
        if isinstance(posting_ids, str):
            posting_ids = [posting_ids]
        found, missing = [], []
        per: dict[int, list[str]] = {}
        for pid in dict.fromkeys(posting_ids):
            w = self._where.get(pid)
            if w is None:
                missing.append(pid)
                continue
            found.append(pid)
            for s in w[1]:
                per.setdefault(s, []).append(pid)
        calls = [self._actors[s].delete.remote(p) for s, p in per.items()]
        return calls, found, DeleteResult(deleted=len(found), not_found=missing)

    # ------------------------------------------------------------------ sync
    def similar(self, posting_id: str, k: int = 10, rules: RuleConfig | None = None):
        """Top-k recommendations of an indexed posting."""
        rules = self._check(k, rules)
        actor = self._actors[self._owner(posting_id)]
        return _recs(self._get(actor.similar.remote(posting_id, int(k), self._wire(rules))))

    def similar_to(
        self, posting: Mapping, vector: np.ndarray, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]:
        """Top-k for an inline posting that is not indexed (``vector`` is normalised here)."""
        rules = self._check(k, rules)
        actor = self._actors[self._owner_at(posting)]
        vec = normalise(vector, self.dim)[0]
        ref = actor.similar_to.remote(dict(posting), vec, int(k), self._wire(rules))
        return _recs(self._get(ref))

    def upsert(self, postings: pl.DataFrame, vectors: np.ndarray) -> UpsertResult:
        """Insert or replace postings; searchable (and durable) when this returns."""
        calls, new_where, res = self._plan_upsert(postings, vectors)
        self._get(calls)
        self._where.update(new_where)
        return res

    def delete(self, posting_ids: Sequence[str]) -> DeleteResult:
        """Delete postings; unknown ids are reported in ``not_found``."""
        calls, found, res = self._plan_delete(posting_ids)
        self._get(calls)
        for pid in found:
            self._where.pop(pid, None)
        return res

    def get(self, posting_id: str) -> dict:
        """The canonical row of an indexed posting."""
        return self._get(self._actors[self._owner(posting_id)].get.remote(posting_id))

    def recommend_all(
        self, k: int = 10, rules: RuleConfig | None = None, *, on_shard_done=None
    ) -> pl.DataFrame:
        """Recommendations of every posting, computed by all shards in parallel.

        ``on_shard_done(shard_id, frame)`` is called as each shard finishes (progress).
        """
        ray = _ray()
        rules = self._check(k, rules)
        refs = [a.recommend_owned.remote(int(k), rules) for a in self._actors]
        shard_of = {r: s for s, r in enumerate(refs)}
        pending, parts = list(refs), {}
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            s = shard_of[done[0]]
            parts[s] = self._get(done[0])
            if on_shard_done is not None:
                on_shard_done(s, parts[s])
        parts = [parts[s] for s in sorted(parts) if parts[s].height]
        if not parts:
            return pl.DataFrame(schema=RECS_SCHEMA)
        return pl.concat(parts).sort(["posting_id", "rank"])

    def size(self) -> int:
        """Number of postings indexed."""
        return len(self._where)

    def batch_stats(self) -> list[dict]:
        """Per-shard counters of the last ``recommend_all`` (pairs, CPU seconds, ...)."""
        return self._get([a.batch_stats.remote() for a in self._actors])

    def shard_stats(self) -> list[dict]:
        """Per-shard counts and memory figures."""
        return self._get([a.stats.remote() for a in self._actors])

    def health(self, timeout: float = 10.0) -> dict:
        """Ping every shard: ``{"ok": bool, "postings": n, "shards": [...]}``."""
        ray = _ray()
        shards = []
        refs = [a.stats.remote() for a in self._actors]
        for s, ref in enumerate(refs):
            try:
                st = ray.get(ref, timeout=timeout)
                shards.append({"shard_id": s, "ok": True, "postings": st["postings"]})
            except Exception as exc:  # noqa: BLE001 - health reports, never raises
                shards.append({"shard_id": s, "ok": False, "error": repr(exc)[:200]})
        return {
            "ok": all(x["ok"] for x in shards),
            "postings": self.size(),
            "num_shards": len(self._actors),
            "shards": shards,
        }

    def shutdown(self) -> None:
        """Kill the shard actors (and remove a temporary snapshot directory)."""
        ray = _ray()
        for a in self._actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(a, no_restart=True)
        self._actors = []
        if self._owns_dir:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)

    # ----------------------------------------------------------------- async
    async def asimilar(self, posting_id: str, k: int = 10, rules: RuleConfig | None = None):
        rules = self._check(k, rules)
        shard = self._owner(posting_id)
        return await self._coalesced(shard, ("id", posting_id, int(k), self._wire(rules)))

    async def asimilar_to(
        self, posting: Mapping, vector: np.ndarray, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]:
        rules = self._check(k, rules)
        shard = self._owner_at(posting)
        vec = normalise(vector, self.dim)[0]
        request = ("inline", dict(posting), vec, int(k), self._wire(rules))
        return await self._coalesced(shard, request)

    async def aupsert(self, postings: pl.DataFrame, vectors: np.ndarray) -> UpsertResult:
        calls, new_where, res = self._plan_upsert(postings, vectors)
        for c in calls:
            await self._await(c)
        self._where.update(new_where)
        return res

    async def adelete(self, posting_ids: Sequence[str]) -> DeleteResult:
        calls, found, res = self._plan_delete(posting_ids)
        for c in calls:
            await self._await(c)
        for pid in found:
            self._where.pop(pid, None)
        return res

    async def aget(self, posting_id: str) -> dict:
        return await self._await(self._actors[self._owner(posting_id)].get.remote(posting_id))
