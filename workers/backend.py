"""The recommendation backend used by the gRPC server and the batch refresh.

A plain class holding handles to the Ray shard actors (:mod:`workers.actors`) and the
:class:`~workers.engine.sharding.ShardPlan`. Every query goes to exactly one shard: the owner of
the query's coarse H3 cell, whose halo holds every posting within the largest radius.
Writes go to the owner and to every shard whose halo the posting falls in.

Sync methods block on the actor calls; the ``a``-prefixed twins await the ObjectRefs so
an asyncio server never blocks its event loop. Concurrent async queries to one shard are
coalesced into one actor call (:class:`workers.coalesce.Coalescer`): a Ray call costs about as much CPU as
the search itself, so under load this is most of the per-query cost saved.

Validation happens here, once: ``k`` (:func:`core.rules.check_k`), the rules against the
halo, inline items (``kind.check_item``) and vectors; the shards trust the queries
(:class:`~workers.engine.types.ByIdQuery`, :class:`~workers.engine.types.InlineQuery`) they are sent.
Postings have the ``similar``/``upsert``/... methods; any registered collection kind is
loaded with :meth:`RecommendationBackend.load_collection` and queried with
:meth:`RecommendationBackend.search` / :meth:`RecommendationBackend.asearch`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from core.course_rank import CertificateDemand, CourseQuery, posting_query
from core.course_rules import CourseRuleConfig
from core.errors import InvalidInputError, NotFoundError, UnavailableError
from core.rules import RuleConfig, check_k
from workers import actors
from workers.coalesce import Coalescer
from workers.engine.collection import CollectionKind, kind_by_name
from workers.engine.scoring import normalise
from workers.engine.sharding import ShardingConfig, ShardPlan, partition
from workers.engine.types import (
    RECS_SCHEMA,
    ByIdQuery,
    DeleteResult,
    InlineQuery,
    Query,
    Recommendation,
    UpsertResult,
)
from workers.kinds import COURSES, POSTINGS
from workers.kinds.courses import course_partition, merge_answers

log = logging.getLogger(__name__)

Where = dict[str, tuple[int, tuple[int, ...]]]
"""item id -> (owner shard, shards storing it)."""


class RecommendationBackend:
    """Geo-sharded exact filtered retrieval over Ray shard actors."""

    def __init__(
        self,
        shard_actors: list[actors.ActorHandle],
        plan: ShardPlan,
        rules: RuleConfig,
        dim: int,
        where: Where,
        snapshot_dir: Path,
        owns_snapshot_dir: bool,
    ) -> None:
        self._actors = shard_actors
        self.plan = plan
        self.rules = rules
        self.dim = dim
        self._where = where  # postings: posting_id -> (owner shard, shards storing it)
        self._where_in: dict[str, Where] = {POSTINGS: where}  # every collection
        self.snapshot_dir = snapshot_dir
        self._owns_dir = owns_snapshot_dir
        self.courses_loaded = 0  # courses stored (load_courses)
        self.certificate_demand: CertificateDemand | None = None
        # per event loop (futures belong to one loop): {loop: {shard: Coalescer}}
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
        :mod:`workers.store.serving`); ``pin_nodes=False`` when a restarted shard can reload from a
        store every node reaches (no node affinity needed for correctness).

        Requires Ray to be initialised (:func:`workers.actors.init_ray`). Without
        ``snapshot_dir`` a temporary directory holds the shard snapshots (removed by
        :meth:`shutdown`).
        """
        if not actors.ray_initialized():
            raise UnavailableError("Ray is not initialised: call workers.actors.init_ray() first")
        kind = kind_by_name(POSTINGS)
        df, vec = _checked_items(kind, postings, vectors, None)
        if actor_names is not None and len(actor_names) != sharding.num_shards:
            raise InvalidInputError(
                f"{len(actor_names)} actor names for {sharding.num_shards} shards",
                field="actor_names",
            )
        halo = float(sharding.halo_km) if sharding.halo_km is not None else rules.max_radius_km
        rules.check_halo(halo)
        owns = snapshot_dir is None
        snap = Path(tempfile.mkdtemp(prefix="jobrec-shards-")) if owns else Path(snapshot_dir)
        q = kind.encode(df)
        radius = kind.rules.radius_km(q, rules) if df.height else np.zeros(0)
        plan = ShardPlan.build(df["lat"].to_numpy(), df["lng"].to_numpy(), sharding, halo, radius)
        # shards round-robin over the nodes: deterministic spreading (SPREAD is best effort)
        nodes = actors.alive_nodes()
        shard_actors = [
            actors.start_shard(
                s,
                max_restarts=sharding.max_restarts,
                node_id=nodes[s % len(nodes)] if pin_nodes and len(nodes) > 1 else None,
                name=actor_names[s] if actor_names else None,
                resources=sharding.resources,
                dim=vec.shape[1],
                fine_res=sharding.fine_res,
                halo_km=halo,
                rules=rules,
                snapshot_dir=str(snap),
                threads=sharding.threads_per_shard,
            )
            for s in range(sharding.num_shards)
        ]
        backend = cls(shard_actors, plan, rules, vec.shape[1], {}, snap, owns)
        backend._load(kind, df, vec)
        return backend

    def load_collection(self, name: str, items: pl.DataFrame, vectors: np.ndarray) -> int:
        """Load (replace) collection ``name`` (a registered kind) on every shard, partitioned
        like the postings (owner + halos); returns the number of items."""
        kind = kind_by_name(name)
        df, vec = _checked_items(kind, items, vectors, self.dim)
        self._load(kind, df, vec)
        return df.height

    def _load(self, kind: CollectionKind, df: pl.DataFrame, vec: np.ndarray) -> None:
        owner, parts = partition(self.plan, df["lat"].to_numpy(), df["lng"].to_numpy())
        refs = [
            a.load.remote(df[idx], vec[idx], owned, kind.name)
            for a, (idx, owned) in zip(self._actors, parts, strict=True)
        ]
        ids = df[kind.id_column].to_list()
        stored: list[list[int]] = [[] for _ in ids]
        for s, (idx, _) in enumerate(parts):
            for i in idx.tolist():
                stored[i].append(s)
        where = self._where_in.setdefault(kind.name, {})
        where.clear()
        where.update(
            (pid, (int(o), tuple(r))) for pid, o, r in zip(ids, owner.tolist(), stored, strict=True)
        )
        self._get(refs)

    # --------------------------------------------------------------- courses
    def load_courses(
        self, courses: pl.DataFrame, vectors: np.ndarray, demand: CertificateDemand | None = None
    ) -> int:
        """Load (replace) the ``courses`` collection: each course on the shard owning its
        place and the shards whose halo covers it, online courses on every shard
        (:func:`workers.kinds.courses.course_partition`). ``demand``: which certificates postings
        of each occupation ask for (the seekers' skill gap)."""
        kind = kind_by_name(COURSES)
        df, vec = _checked_items(kind, courses, vectors, self.dim)
        parts = course_partition(self.plan, df)
        refs = [a.load.remote(df[idx], vec[idx], owned, COURSES)
                for a, (idx, owned) in zip(self._actors, parts, strict=True)]
        self._get(refs)
        self.certificate_demand = demand
        self.courses_loaded = df.height
        return df.height

    def _check_course_query(self, k: int, rules: CourseRuleConfig) -> int:
        if not self.courses_loaded:
            raise UnavailableError("no training courses are loaded (load_courses)")
        if not isinstance(rules, CourseRuleConfig):
            raise InvalidInputError("rules must be a CourseRuleConfig", field="rules")
        if rules.max_radius_km > self.plan.halo_km + 1e-9:
            field = ("capital_radius_km" if rules.capital_radius_km > self.plan.halo_km
                     else "other_radius_km")
            raise InvalidInputError(
                f"a course radius of {rules.max_radius_km} km exceeds the shards' halo of "
                f"{self.plan.halo_km} km", field=field)
        return check_k(k)

    def _course_shards(self, query: CourseQuery) -> list[int]:
        lat, lng, _ = zip(*query.anchors, strict=True)
        _, owner, _ = self.plan.assign(np.array(lat, dtype=np.float64), np.array(lng, dtype=np.float64))
        return sorted({int(o) for o in owner})

    async def acourses_for_posting(
        self, posting_id: str, *, k: int, rules: CourseRuleConfig, held: Sequence[str] = ()
    ) -> tuple[list, list[str]]:
        """(courses, skill gap) for a stored posting, answered by its owner shard."""
        k = self._check_course_query(k, rules)
        ref = self._actors[self._owner(posting_id)].courses_for_posting.remote(
            posting_id, k, rules, list(held))
        return await self._await(ref)

    async def acourses_for_item(
        self, posting: Mapping, vector: np.ndarray, *, k: int, rules: CourseRuleConfig,
        held: Sequence[str] = (),
    ) -> tuple[list, list[str]]:
        """(courses, skill gap) for an inline posting (not stored)."""
        kind_by_name(POSTINGS).check_item(posting)
        q = posting_query(posting, normalise(vector, self.dim)[0], held)
        return await self.acourses_for_query(q, k=k, rules=rules), list(q.gap.values())

    async def acourses_for_query(self, query: CourseQuery, *, k: int, rules: CourseRuleConfig) -> list:
        """Courses for a query of one or more places: each place's owner shard answers
        (its halo holds every course within the radius), the answers are merged."""
        k = self._check_course_query(k, rules)
        if query.vector is not None:
            query = dataclasses.replace(query, vector=normalise(query.vector, self.dim)[0])
        refs = [self._actors[s].courses.remote(query, k, rules) for s in self._course_shards(query)]
        answers = await asyncio.gather(*(self._await(r) for r in refs))
        return merge_answers(answers, k)

    def recommend_courses_all(self, k: int, rules: CourseRuleConfig) -> pl.DataFrame:
        """The top-``k`` courses of every posting (each shard answers for those it owns)."""
        k = self._check_course_query(k, rules)
        frames = self._get([a.courses_for_owned.remote(k, rules) for a in self._actors])
        return pl.concat(frames, how="vertical").sort("posting_id", "rank")

    def courses_for_posting(self, posting_id: str, *, k: int, rules: CourseRuleConfig,
                            held: Sequence[str] = ()) -> tuple[list, list[str]]:
        """Blocking :meth:`acourses_for_posting`."""
        k = self._check_course_query(k, rules)
        return self._get(self._actors[self._owner(posting_id)].courses_for_posting.remote(
            posting_id, k, rules, list(held)))

    def courses_for_query(self, query: CourseQuery, *, k: int, rules: CourseRuleConfig) -> list:
        """Blocking :meth:`acourses_for_query`."""
        k = self._check_course_query(k, rules)
        if query.vector is not None:
            query = dataclasses.replace(query, vector=normalise(query.vector, self.dim)[0])
        refs = [self._actors[s].courses.remote(query, k, rules) for s in self._course_shards(query)]
        return merge_answers(self._get(refs), k)

    # --------------------------------------------------------------- helpers
    def _get(self, refs, timeout: float | None = None):
        return actors.get(refs, timeout)

    async def _await(self, ref):
        try:
            return await ref
        except Exception as exc:  # noqa: BLE001
            mapped = actors.map_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _check_rules(self, rules: RuleConfig | None) -> RuleConfig | None:
        """``rules`` checked against the halo, as sent to a shard: None for the backend's own
        rules (the shard has them), which saves pickling them on every call."""
        if rules is None or rules == self.rules:
            return None
        if not isinstance(rules, RuleConfig):
            raise InvalidInputError("rules must be a RuleConfig", field="rules")
        rules.check_halo(self.plan.halo_km)
        return rules

    def _route(self, query: Query) -> tuple[int, Query]:
        """Validate ``query`` (the one place: shards trust it) and find its shard."""
        kind = kind_by_name(query.collection)
        k = check_k(query.k)
        rules = self._check_rules(query.rules)
        if isinstance(query, ByIdQuery):
            w = self._where_in.get(query.collection, {}).get(query.item_id)
            if w is None:
                raise NotFoundError(f"unknown {kind.id_column} {query.item_id!r}")
            return w[0], ByIdQuery(query.item_id, k, rules, query.collection)
        kind.check_item(query.item)
        vec = normalise(query.vector, self.dim)[0]
        lat, lng = np.array([float(query.item["lat"])]), np.array([float(query.item["lng"])])
        _, owner, _ = self.plan.assign(lat, lng)
        return int(owner[0]), InlineQuery(dict(query.item), vec, k, rules, query.collection)

    def _owner(self, posting_id: str) -> int:
        w = self._where.get(posting_id)
        if w is None:
            raise NotFoundError(f"unknown posting_id {posting_id!r}")
        return w[0]

    def _plan_upsert(self, items: pl.DataFrame, vectors: np.ndarray, collection: str):
        kind = kind_by_name(collection)
        df, vec = _checked_items(kind, items, vectors, self.dim)
        _, owner, routes = self.plan.assign(df["lat"].to_numpy(), df["lng"].to_numpy())
        ids = df[kind.id_column].to_list()
        where = self._where_in.setdefault(collection, {})
        ups: dict[int, list[int]] = {}
        dels: dict[int, list[str]] = {}
        updated = 0
        for i, (pid, r) in enumerate(zip(ids, routes, strict=True)):
            old = where.get(pid)
            if old is not None:
                updated += 1
                for s in set(old[1]) - set(r.tolist()):
                    dels.setdefault(s, []).append(pid)
            for s in r.tolist():
                ups.setdefault(s, []).append(i)
        calls = []
        for s, idx in ups.items():
            ix = np.array(idx)
            calls.append(self._actors[s].upsert.remote(df[ix], vec[ix], owner[ix] == s, collection))
        for s, pids in dels.items():
            calls.append(self._actors[s].delete.remote(pids, collection))
        new_where = {
            pid: (int(o), tuple(int(x) for x in r))
            for pid, o, r in zip(ids, owner.tolist(), routes, strict=True)
        }

        def commit() -> None:
            where.update(new_where)

        return calls, commit, UpsertResult(inserted=df.height - updated, updated=updated)

    def _plan_delete(self, item_ids: Sequence[str], collection: str):
        if isinstance(item_ids, str):
            item_ids = [item_ids]
        where = self._where_in.setdefault(collection, {})
        found, missing = [], []
        per: dict[int, list[str]] = {}
        for pid in dict.fromkeys(item_ids):
            w = where.get(pid)
            if w is None:
                missing.append(pid)
                continue
            found.append(pid)
            for s in w[1]:
                per.setdefault(s, []).append(pid)
        calls = [self._actors[s].delete.remote(p, collection) for s, p in per.items()]

        def commit() -> None:
            for pid in found:
                where.pop(pid, None)

        return calls, commit, DeleteResult(deleted=len(found), not_found=missing)

    # ------------------------------------------------------------------ sync
    def search(self, query: Query) -> list:
        """Top-k of any query (any collection): the kind's result objects."""
        shard, q = self._route(query)
        return self._get(self._actors[shard].search.remote(q))

    def similar(
        self, posting_id: str, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]:
        """Top-k recommendations of an indexed posting."""
        return self.search(ByIdQuery(posting_id, k, rules))

    def similar_to(
        self, posting: Mapping, vector: np.ndarray, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]:
        """Top-k for an inline posting that is not indexed (``vector`` is normalised here)."""
        return self.search(InlineQuery(posting, vector, k, rules))

    def upsert(
        self, postings: pl.DataFrame, vectors: np.ndarray, collection: str = POSTINGS
    ) -> UpsertResult:
        """Insert or replace items; searchable (and durable) when this returns."""
        calls, commit, res = self._plan_upsert(postings, vectors, collection)
        self._get(calls)
        commit()
        return res

    def delete(self, posting_ids: Sequence[str], collection: str = POSTINGS) -> DeleteResult:
        """Delete items; unknown ids are reported in ``not_found``."""
        calls, commit, res = self._plan_delete(posting_ids, collection)
        self._get(calls)
        commit()
        return res

    def get(self, posting_id: str) -> dict:
        """The canonical row of an indexed posting."""
        return self._get(self._actors[self._owner(posting_id)].get.remote(posting_id))

    def recommend_all(
        self,
        k: int = 10,
        rules: RuleConfig | None = None,
        *,
        on_shard_done: Callable[[int, pl.DataFrame], None] | None = None,
    ) -> pl.DataFrame:
        """Recommendations of every posting, computed by all shards in parallel.

        ``on_shard_done(shard_id, frame)`` is called as each shard finishes (progress).
        """
        k = check_k(k)
        rules = self._check_rules(rules)
        refs = [a.recommend_owned.remote(k, rules) for a in self._actors]
        shard_of = {r: s for s, r in enumerate(refs)}
        pending, parts = list(refs), {}
        while pending:
            done, pending = actors.wait_one(pending)
            s = shard_of[done]
            parts[s] = self._get(done)
            if on_shard_done is not None:
                on_shard_done(s, parts[s])
        parts = [parts[s] for s in sorted(parts) if parts[s].height]
        if not parts:
            return pl.DataFrame(schema=RECS_SCHEMA)
        return pl.concat(parts).sort(["posting_id", "rank"])

    def size(self, collection: str = POSTINGS) -> int:
        """Number of items indexed."""
        return len(self._where_in.get(collection, {}))

    def batch_stats(self) -> list[dict]:
        """Per-shard counters of the last ``recommend_all`` (pairs, CPU seconds, ...)."""
        return self._get([a.batch_stats.remote() for a in self._actors])

    def shard_stats(self) -> list[dict]:
        """Per-shard counts and memory figures."""
        return self._get([a.stats.remote() for a in self._actors])

    def health(self, timeout: float = 10.0) -> dict:
        """Ping every shard: ``{"ok": bool, "postings": n, "shards": [...]}``."""
        shards = []
        refs = [a.stats.remote() for a in self._actors]
        for s, ref in enumerate(refs):
            try:
                st = actors.get(ref, timeout)
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
        actors.kill(self._actors)
        self._actors = []
        if self._owns_dir:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)

    # ----------------------------------------------------------------- async
    async def asearch(self, query: Query) -> list:
        """:meth:`search` without blocking the event loop (coalesced per shard)."""
        shard, q = self._route(query)
        loop = asyncio.get_running_loop()
        per_loop = self._coalescers.get(loop)
        if per_loop is None:
            per_loop = self._coalescers[loop] = {}
        co = per_loop.get(shard)
        if co is None:
            co = per_loop[shard] = Coalescer(
                # the handle is read per call: a shard replaced after a failure is called
                lambda qs, s=shard: self._await(self._actors[s].search_many.remote(qs)))
        return await co.submit(q)

    async def asimilar(
        self, posting_id: str, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]:
        return await self.asearch(ByIdQuery(posting_id, k, rules))

    async def asimilar_to(
        self, posting: Mapping, vector: np.ndarray, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]:
        return await self.asearch(InlineQuery(posting, vector, k, rules))

    async def aupsert(
        self, postings: pl.DataFrame, vectors: np.ndarray, collection: str = POSTINGS
    ) -> UpsertResult:
        calls, commit, res = self._plan_upsert(postings, vectors, collection)
        for c in calls:
            await self._await(c)
        commit()
        return res

    async def adelete(self, posting_ids: Sequence[str], collection: str = POSTINGS) -> DeleteResult:
        calls, commit, res = self._plan_delete(posting_ids, collection)
        for c in calls:
            await self._await(c)
        commit()
        return res

    async def aget(self, posting_id: str) -> dict:
        return await self._await(self._actors[self._owner(posting_id)].get.remote(posting_id))


def _checked_items(
    kind: CollectionKind, items: pl.DataFrame, vectors: np.ndarray, dim: int | None
) -> tuple[pl.DataFrame, np.ndarray]:
    """Conformed, validated items and their normalised vectors (one per item)."""
    df = kind.conform(items)
    kind.validate(df)
    vec = normalise(vectors, dim)
    if vec.shape[0] != df.height:
        raise InvalidInputError(f"{df.height} items but {vec.shape[0]} vectors", field="vectors")
    return df, vec
