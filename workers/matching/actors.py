"""Thin Ray wrappers for matching: one :class:`~workers.matching.index.JobIndex` actor per shard."""

from __future__ import annotations

import ray

from workers.matching.index import JobIndex

JobIndexActor = ray.remote(JobIndex)


class RayShards:
    """The :class:`~workers.jobs.match.LocalShards` calls, answered by shard actors."""

    def __init__(self, parts) -> None:
        self.actors = [JobIndexActor.options(num_cpus=0).remote(df, vec) for df, vec in parts]

    def many(self, calls, cfg, k):
        refs = {s: self.actors[s].recommend_many.remote(qs, cfg, k) for s, qs in calls.items()}
        return dict(zip(refs, ray.get(list(refs.values())), strict=True))

    def many_block(self, calls, cfg, k):
        refs = {s: self.actors[s].top_block.remote(qs, cfg, k) for s, qs in calls.items()}
        return dict(zip(refs, ray.get(list(refs.values())), strict=True))

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)
