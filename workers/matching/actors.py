"""Thin Ray wrappers for the matching batch: one :class:`~workers.matching.index.JobIndex` actor
per shard, and the chunk tasks (the serving shards are :mod:`workers.matching.shard_actors`)."""

from __future__ import annotations

import os

import ray

from workers.matching.index import JobIndex

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
