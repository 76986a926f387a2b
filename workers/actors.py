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
    shard_id: int,
    *,
    max_restarts: int,
    spread: bool = True,
    node_id: str | None = None,
    name: str | None = None,
    **kwargs,
):
    """Start one shard actor (0 CPUs reserved so any number fit).

    With ``node_id`` the actor is pinned to that node: its snapshot lives on that node's
    disk, so a restart must happen there (a shard restarted elsewhere would come up empty
    unless ``snapshot_dir`` is shared); if the node dies the shard reports unavailable.
    Soft affinity and SPREAD were measured to fall back to the head node right after a node
    joined. Without ``node_id``, ``spread`` asks Ray to SPREAD (best effort).

    With ``name`` the actor is detached and named in the current Ray namespace: it outlives
    the process that started it and any frontend finds it (:func:`find_shards`); an actor of
    that name that exists already is returned as it is.
    """
    opts: dict = {"num_cpus": 0, "max_restarts": max_restarts, "max_task_retries": 0}
    if name is not None:
        opts.update(name=name, lifetime="detached", get_if_exists=True)
    if node_id is not None:
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
    elif spread:
        opts["scheduling_strategy"] = "SPREAD"
    return ShardActor.options(**opts).remote(shard_id, **kwargs)


def find_shards(names: list[str]) -> list | None:
    """Handles of the named shard actors in the current namespace; None if any is missing."""
    try:
        return [ray.get_actor(n) for n in names]
    except ValueError:
        return None


def kill_named(names: list[str]) -> None:
    """Kill named shard actors for good (those already gone are skipped)."""
    for n in names:
        try:
            ray.kill(ray.get_actor(n), no_restart=True)
        except ValueError:
            continue
