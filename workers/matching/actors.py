"""Thin Ray wrappers for matching: the batch's :class:`~workers.matching.index.JobIndex` shard
actors and chunk tasks, and the serving :class:`~workers.matching.sharded.MatchShard` actors."""

from __future__ import annotations

import os

import ray

from workers.matching.index import JobIndex
from workers.matching.sharded import StoredMatchShard

# a restarted shard runs JobIndex.__init__ again on the same postings; calls in flight are
# retried on it
JobIndexActor = ray.remote(JobIndex)
FAULT_ENV = "JOBREC_FAULT_CHUNK_EXIT"  # fault injection (tests): a marker file path


class RayShards:
    """The :class:`~workers.jobs.match.LocalShards` calls, answered by shard actors."""

    def __init__(self, parts) -> None:
        self.actors = [JobIndexActor.options(num_cpus=0, max_restarts=3, max_task_retries=3)
                       .remote(df, vec) for df, vec in parts]

    def many(self, calls, cfg, k):
        refs = {s: self.actors[s].recommend_many.remote(qs, cfg, k) for s, qs in calls.items()}
        return dict(zip(refs, ray.get(list(refs.values())), strict=True))

    def many_block(self, calls, cfg, k):
        refs = {s: self.actors[s].top_block.remote(qs, cfg, k) for s, qs in calls.items()}
        return dict(zip(refs, ray.get(list(refs.values())), strict=True))

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)


def _chunk_task(fn, shared, marker, *args):
    out = fn(shared, *args)
    if marker:  # the first task to take the marker dies after its work, before reporting it
        try:
            os.remove(marker)
        except FileNotFoundError:
            pass
        else:
            os._exit(1)
    return out


_ChunkTask = ray.remote(_chunk_task)


def ray_runner(in_flight: int, max_retries: int):
    """A :data:`workers.jobs.match_stream.Runner` on Ray: each item one task (1 CPU), at
    most ``in_flight`` at once, re-run by Ray up to ``max_retries`` times if its worker dies;
    results in completion order."""

    def run(fn, shared, items):
        ref = ray.put(shared)
        task = _ChunkTask.options(max_retries=max_retries)
        marker = os.environ.get(FAULT_ENV)  # read here: workers may predate the variable
        pending: list = []
        for item in items:
            if len(pending) >= in_flight:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
            pending.append(task.remote(fn, ref, marker, *item))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    return run


# ---------------------------------------------------------------- matching in the shards
# created from a deployment path, never from tables in the object store (Ray cannot restart
# an actor whose constructor arguments went out of scope, ray-project/ray#53727): a restarted
# shard opens its start-up tables, posting writes and interaction log again; calls in flight
# are retried on it (a retried write is logged twice, which reads back once)
MatchShardActor = ray.remote(StoredMatchShard)


def match_shard_names(prefix: str, num_shards: int) -> list[str]:
    """The actor names of a deployment's matching shards."""
    return [f"{prefix}-{s:03d}" for s in range(num_shards)]


def start_match_shards(root: str, num_shards: int, *, names: list[str] | None = None,
                       max_restarts: int = 3) -> list:
    """One :class:`~workers.matching.sharded.StoredMatchShard` actor per shard of the
    deployment at ``root`` (0 CPUs reserved); with ``names`` detached and named in the
    current namespace (an actor of that name that exists is returned as it is), so other
    frontends find them (:func:`find_match_shards`)."""
    out = []
    for i in range(num_shards):
        opts: dict = {"num_cpus": 0, "max_restarts": max_restarts, "max_task_retries": 3}
        if names is not None:
            opts.update(name=names[i], lifetime="detached", get_if_exists=True)
        out.append(MatchShardActor.options(**opts).remote(str(root), i))
    return out


def find_match_shards(names: list[str]) -> list | None:
    """Handles of the named matching shards; None if any is missing."""
    try:
        return [ray.get_actor(n) for n in names]
    except ValueError:
        return None


class RayShardCalls:
    """:class:`~workers.matching.frontend.LocalShardCalls`' calls on shard actors; a shard
    that does not answer within ``timeout`` s is UNAVAILABLE."""

    def __init__(self, actors: list, timeout: float = 30.0) -> None:
        self.actors, self.timeout = list(actors), timeout

    def __len__(self) -> int:
        return len(self.actors)

    def call(self, shard_ids, method: str, *args) -> list:
        from workers.actors import get

        if len(shard_ids) > 1 and args:
            args = tuple(ray.put(a) if _big(a) else a for a in args)
        return get([getattr(self.actors[s], method).remote(*args) for s in shard_ids],
                   timeout=self.timeout)

    def plan(self):
        """The deployment's area plan (every shard holds it)."""
        from workers.actors import get

        return get(self.actors[0].area_plan.remote(), timeout=self.timeout)

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)


def _big(a) -> bool:
    return hasattr(a, "height") or (hasattr(a, "nbytes") and a.nbytes > 100_000)
