"""The Ray glue of the engine: the shard actor (a thin ``ray.remote`` of the plain
:class:`~workers.shard.Shard`), starting Ray, and the few Ray calls the backend makes.

With :mod:`training.ray_train` (Ray Train), the only modules that import Ray.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from core.errors import JobrecError, UnavailableError
from workers.shard import Shard

# A restarted actor runs Shard.__init__ again, which reloads the snapshot from disk.
ShardActor = ray.remote(Shard)
ActorHandle = ray.actor.ActorHandle
ObjectRef = ray.ObjectRef


def init_ray(
    address: str | None = None, *, num_cpus: int | None = None, log_to_driver: bool = False
) -> bool:
    """Connect to ``address`` (``ray://`` client or a cluster address) or start a local Ray;
    nothing when Ray is initialised already. Returns whether this call started it (the
    caller then owns :func:`shutdown_ray`). ``log_to_driver`` forwards what actors print."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)
    return True


def shutdown_ray() -> None:
    ray.shutdown()


def ray_initialized() -> bool:
    return ray.is_initialized()


def alive_nodes() -> list[str]:
    """Ids of the cluster's live nodes (stable order)."""
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def start_shard(
    shard_id: int, *, max_restarts: int, spread: bool = True, node_id: str | None = None, **kwargs
) -> ActorHandle:
    """Start one shard actor (0 CPUs reserved so any number fit).

    With ``node_id`` the actor is pinned to that node: its snapshot lives on that node's
    disk, so a restart must happen there (a shard restarted elsewhere would come up empty
    unless ``snapshot_dir`` is shared); if the node dies the shard reports unavailable.
    Soft affinity and SPREAD were measured to fall back to the head node right after a node
    joined. Without ``node_id``, ``spread`` asks Ray to SPREAD (best effort).
    """
    opts: dict = {"num_cpus": 0, "max_restarts": max_restarts, "max_task_retries": 0}
    if node_id is not None:
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
    elif spread:
        opts["scheduling_strategy"] = "SPREAD"
    return ShardActor.options(**opts).remote(shard_id, **kwargs)


def map_error(exc: BaseException) -> BaseException:
    """Ray's exceptions -> the jobrec hierarchy (JobrecErrors raised in a shard pass through)."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, JobrecError):
            return cause
        return exc
    if isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.GetTimeoutError):
        return UnavailableError(f"shard unavailable: {exc.__class__.__name__}: {exc}")
    return exc


def get(refs, timeout: float | None = None):
    """``ray.get`` with errors mapped by :func:`map_error`."""
    try:
        return ray.get(refs, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - mapped, re-raised
        mapped = map_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def wait_one(pending: Sequence[ObjectRef]) -> tuple[ObjectRef, list[ObjectRef]]:
    """The first of ``pending`` to finish, and the rest."""
    done, rest = ray.wait(list(pending), num_returns=1)
    return done[0], rest


def kill(actors: Sequence[ActorHandle]) -> None:
    """Kill actors for good (ones already gone are skipped)."""
    for a in actors:
        with contextlib.suppress(Exception):
            ray.kill(a, no_restart=True)
