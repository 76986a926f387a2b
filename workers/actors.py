"""The only module that imports Ray: thin actor wrappers around the plain classes."""

from __future__ import annotations

import ray

from workers.shard import Shard

# A restarted actor runs Shard.__init__ again, which reloads the snapshot from disk.
ShardActor = ray.remote(Shard)


def start_shard(shard_id: int, *, max_restarts: int, spread: bool = True, **kwargs):
    """Start one shard actor (0 CPUs reserved so any number fit; SPREAD over the nodes)."""
    opts = {"num_cpus": 0, "max_restarts": max_restarts, "max_task_retries": 0}
    if spread:
        opts["scheduling_strategy"] = "SPREAD"
    return ShardActor.options(**opts).remote(shard_id, **kwargs)
