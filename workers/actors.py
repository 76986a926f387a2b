"""The only module that imports Ray: thin actor wrappers around the plain classes."""

from __future__ import annotations

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from workers.shard import Shard

# A restarted actor runs Shard.__init__ again, which reloads the snapshot from disk.
ShardActor = ray.remote(Shard)


def alive_nodes() -> list[str]:
    """Ids of the cluster's live nodes (stable order)."""
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def start_shard(
    shard_id: int, *, max_restarts: int, spread: bool = True, node_id: str | None = None, **kwargs
):
    """Start one shard actor (0 CPUs reserved so any number fit).

    With ``node_id`` the actor is pinned to that node: its snapshot lives on that node's
    disk, so a restart must happen there (a shard restarted elsewhere would come up empty
    unless ``snapshot_dir`` is shared); if the node dies the shard reports unavailable.
    Soft affinity and SPREAD were measured to fall back to the head node right after a node
    joined. Without ``node_id``, ``spread`` asks Ray to SPREAD (best effort).
    """
    opts = {"num_cpus": 0, "max_restarts": max_restarts, "max_task_retries": 0}
    if node_id is not None:
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
    elif spread:
        opts["scheduling_strategy"] = "SPREAD"
    return ShardActor.options(**opts).remote(shard_id, **kwargs)
