"""Thin Ray wrappers for matching in the shards: named, detached
:class:`~workers.matching.deployment.StoredMatchShard` actors and the calls a
:class:`~workers.matching.frontend.ShardedMatchService` makes on them."""

from __future__ import annotations

import asyncio
import time

import ray

from workers.matching.deployment import StoredMatchShard

# created from a deployment path, never from tables in the object store (Ray cannot restart
# an actor whose constructor arguments went out of scope, ray-project/ray#53727): a restarted
# shard opens its start-up tables, posting writes and interaction log again; calls in flight
# are retried on it (a retried write is logged twice, which reads back once)
MatchShardActor = ray.remote(StoredMatchShard)


def match_shard_names(prefix: str, num_shards: int) -> list[str]:
    """The actor names of a deployment's matching shards."""
    return [f"{prefix}-{s:03d}" for s in range(num_shards)]


def start_match_shards(root: str, num_shards: int, *, names: list[str] | None = None,
                       max_restarts: int = 3, tries: int = 20,
                       resources: dict[str, float] | None = None) -> list:
    """One :class:`~workers.matching.deployment.StoredMatchShard` actor per shard of the
    deployment at ``root`` (0 CPUs reserved); with ``names`` detached and named in the
    current namespace (an actor of that name that exists is returned as it is), so other
    frontends find them (:func:`find_match_shards`). Returns once every shard has opened;
    a named actor just killed may still hold its name for a moment, so one found dead is
    started again (``tries`` times). ``resources``: custom Ray resources each shard
    requires (``jobrec serve --shard-resource``: the worker group that hosts shards)."""
    out = []
    for i in range(num_shards):
        opts: dict = {"num_cpus": 0, "max_restarts": max_restarts, "max_task_retries": 3}
        if resources:
            opts["resources"] = dict(resources)
        if names is not None:
            opts.update(name=names[i], lifetime="detached", get_if_exists=True)
        for attempt in range(tries):
            actor = MatchShardActor.options(**opts).remote(str(root), i)
            try:
                ray.get(actor.area_plan.remote())  # opened (or its open failed: raised)
                break
            except ray.exceptions.RayActorError:
                if attempt == tries - 1:
                    raise
                time.sleep(0.5)
        out.append(actor)
    return out


def find_match_shards(names: list[str]) -> list | None:
    """Handles of the named matching shards; None if any is missing."""
    try:
        return [ray.get_actor(n) for n in names]
    except ValueError:
        return None


class RayShardCalls:
    """:class:`~workers.matching.frontend.LocalShardCalls`' calls on shard actors; a shard
    that does not answer within ``timeout`` s is UNAVAILABLE. With ``names``, a shard found
    dead is looked up again by name and the call retried once on the actor that replaced it
    (another frontend may have started it again from the deployment)."""

    def __init__(self, actors: list, timeout: float = 30.0,
                 names: list[str] | None = None) -> None:
        self.actors, self.timeout, self.names = list(actors), timeout, names

    def __len__(self) -> int:
        return len(self.actors)

    def call(self, shard_ids, method: str, *args) -> list:
        from core.errors import UnavailableError
        from workers.actors import get

        if len(shard_ids) > 1 and args:
            args = tuple(ray.put(a) if _big(a) else a for a in args)
        used = list(self.actors)
        try:
            return get([getattr(used[s], method).remote(*args) for s in shard_ids],
                       timeout=self.timeout)
        except UnavailableError:
            if not self._renew(used, shard_ids):
                raise
            return get([getattr(self.actors[s], method).remote(*args) for s in shard_ids],
                       timeout=self.timeout)

    async def asend(self, shard: int, method: str, *args):
        """``method(*args)`` on one shard actor, awaited (errors mapped as :meth:`call`'s)."""
        from core.errors import UnavailableError

        used = list(self.actors)
        try:
            return await self._asend(used[shard], shard, method, *args)
        except UnavailableError:
            if not self._renew(used, [shard]):
                raise
            return await self._asend(self.actors[shard], shard, method, *args)

    async def _asend(self, actor, shard: int, method: str, *args):
        from core.errors import UnavailableError
        from workers.actors import map_error

        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(getattr(actor, method).remote(*args).future()),
                self.timeout)
        except Exception as exc:  # noqa: BLE001 - mapped, re-raised
            mapped = map_error(exc)
            if isinstance(exc, TimeoutError):
                mapped = UnavailableError(f"shard {shard} did not answer in {self.timeout} s")
            if mapped is exc:
                raise
            raise mapped from exc

    def _renew(self, used: list, shard_ids) -> bool:
        """Handles of the named shards looked up again; whether a shard of ``shard_ids`` is
        now another actor than the one in ``used`` (a concurrent call may have renewed)."""
        if self.names is None:
            return False
        found = find_match_shards(self.names)
        if found is None:
            return False
        self.actors = found
        return any(found[s]._actor_id != used[s]._actor_id for s in shard_ids)

    def plan(self):
        """The deployment's area plan (every shard holds it)."""
        from workers.actors import get

        return get(self.actors[0].area_plan.remote(), timeout=self.timeout)

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)


def _big(a) -> bool:
    return hasattr(a, "height") or (hasattr(a, "nbytes") and a.nbytes > 100_000)
