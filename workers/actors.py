"""The Ray glue of the engine: the shard actor (a thin ``ray.remote`` of the plain
:class:`~workers.engine.shard.Shard`), starting Ray, and the few Ray calls the backend makes.

With :mod:`training.ray_train` (Ray Train), the only modules that import Ray.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from core.errors import JobrecError, UnavailableError
from workers.engine.shard import Shard

# A restarted actor runs Shard.__init__ again, which reloads the snapshot from disk.
ShardActor = ray.remote(Shard)
ActorHandle = ray.actor.ActorHandle
ObjectRef = ray.ObjectRef


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    log_to_driver: bool = False,
    namespace: str | None = None,
) -> bool:
    """Connect to ``address`` (``ray://`` client or a cluster address) or start a local Ray;
    nothing when Ray is initialised already. Returns whether this call started it (the
    caller then owns :func:`shutdown_ray`). ``log_to_driver`` forwards what actors print;
    ``namespace`` is the Ray namespace of the named shard actors (shared by frontends)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver, namespace=namespace)
    else:
        # "local": a new local Ray even if another one runs on this machine (without it
        # ray.init joins that one, and refuses num_cpus)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 log_to_driver=log_to_driver, namespace=namespace)  # fmt: skip
    return True


def shutdown_ray() -> None:
    ray.shutdown()


def ray_initialized() -> bool:
    return ray.is_initialized()


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
    resources: tuple[tuple[str, float], ...] = (),
    **kwargs,
) -> ActorHandle:
    """Start one shard actor (0 CPUs reserved so any number fit).

    With ``node_id`` the actor is pinned to that node: its snapshot lives on that node's
    disk, so a restart must happen there (a shard restarted elsewhere would come up empty
    unless ``snapshot_dir`` is shared); if the node dies the shard reports unavailable.
    Soft affinity and SPREAD were measured to fall back to the head node right after a node
    joined. Without ``node_id``, ``spread`` asks Ray to SPREAD (best effort).

    With ``name`` the actor is detached and named in the current Ray namespace: it outlives
    the process that started it and any frontend finds it (:func:`find_shards`); an actor of
    that name that exists already is returned as it is. ``resources``: custom Ray resources
    the actor requires (:class:`workers.engine.sharding.ShardingConfig`).
    """
    opts: dict = {"num_cpus": 0, "max_restarts": max_restarts, "max_task_retries": 0}
    if resources:
        opts["resources"] = dict(resources)
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


def first_answer(refs: Sequence[ObjectRef], timeout: float = 10.0):
    """The first successful value among ``refs`` (None if none succeeds). Every ref is
    fetched: Ray reports errors nobody retrieved."""
    found = None
    for ref in refs:
        try:
            value = ray.get(ref, timeout=timeout)
        except Exception:  # noqa: BLE001  (not there, or the actor is down)
            continue
        if found is None:
            found = value
    return found


def timed_answers(refs: Sequence[ObjectRef], timeout: float) -> list[tuple[bool, object, float]]:
    """For each of ``refs``: (ok, value or error text, seconds until it answered), each
    measured on its own (``ray.wait``); those not done within ``timeout`` are (False,
    "timeout", timeout)."""
    import time

    t0 = time.perf_counter()
    out: dict[int, tuple[bool, object, float]] = {}
    index = {ref: i for i, ref in enumerate(refs)}
    pending = list(refs)
    while pending:
        left = timeout - (time.perf_counter() - t0)
        done, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, left))
        if not done:
            break
        i = index[done[0]]
        try:
            out[i] = (True, ray.get(done[0]), time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001  (reported, never raised)
            out[i] = (False, repr(exc)[:200], time.perf_counter() - t0)
    return [out.get(i, (False, "timeout", timeout)) for i in range(len(refs))]


def session_log_dir() -> str:
    """The log directory of this process's Ray session (actors' stdout/stderr live there)."""
    try:
        from ray._private import worker

        node = worker._global_node  # noqa: SLF001  (no public accessor for the session dir)
        if node is not None:
            return os.path.join(node.get_session_dir_path(), "logs")
    except Exception:  # noqa: BLE001  (only a hint in the output)
        pass
    return "/tmp/ray/session_latest/logs"
