"""Partitioning of Korea into shards: coarse H3 cells balanced by posting count, plus halos.

A posting at point p lives in fine cell ``f = cell(p, fine_res)`` and is *owned* by the
shard that owns ``parent(f, coarse_res)``. A shard also stores every posting within
``halo_km`` of its territory (its halo), so any query whose radius is at most ``halo_km`` is
answered by the owner of the query's coarse cell alone. Halo membership is computed with
fine cells and the measured ring count of :mod:`workers.engine.geo`: posting p is stored by shard
s iff some fine cell within ``rings_for(fine_res, halo_km)`` rings of ``f`` belongs to s
(grid distance is symmetric, so this covers every query point of s within the halo).
"""

from __future__ import annotations

from dataclasses import dataclass

import h3.api.numpy_int as h3n
import numpy as np

from core.rules import haversine_km
from workers.engine import geo

# calibrated on core.synth postings (72k, 2 shards): shard CPU times within 5% of each other
_QUERY_COST_PAIRS = 16000.0
_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(0xF) << _RES_SHIFT


@dataclass(frozen=True)
class ShardingConfig:
    """How postings are bucketed and split into shards.

    ``halo_km`` None means the largest radius of the backend's rules. ``threads_per_shard``
    is the BLAS/FAISS thread count inside each shard actor. ``max_restarts`` is passed to
    the shard actors. ``resources``: custom Ray resources each shard actor requires, so the
    shards land on the nodes that advertise them (a KubeRay worker group's
    ``rayStartParams.resources``) and never on a head that does not.
    """

    num_shards: int = 1
    fine_res: int = 7
    coarse_res: int = 5
    halo_km: float | None = None
    threads_per_shard: int = 1
    max_restarts: int = 3
    resources: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        check_resources(self.resources)
        if isinstance(self.num_shards, bool) or not isinstance(self.num_shards, int):
            raise ValueError(f"num_shards must be an int, got {self.num_shards!r}")
        if not 1 <= self.num_shards <= 256:
            raise ValueError(f"num_shards must be in 1..256, got {self.num_shards}")
        if not (isinstance(self.fine_res, int) and 4 <= self.fine_res <= 9):
            raise ValueError(f"fine_res must be an int in 4..9, got {self.fine_res!r}")
        if not (isinstance(self.coarse_res, int) and 1 <= self.coarse_res <= self.fine_res):
            raise ValueError(
                f"coarse_res must be an int in 1..fine_res ({self.fine_res}), "
                f"got {self.coarse_res!r}"
            )
        if self.halo_km is not None and not (
            isinstance(self.halo_km, int | float) and 0 < self.halo_km <= 200
        ):
            raise ValueError(f"halo_km must be in (0, 200] km or None, got {self.halo_km!r}")
        if not (isinstance(self.threads_per_shard, int) and 1 <= self.threads_per_shard <= 64):
            raise ValueError(f"threads_per_shard must be in 1..64, got {self.threads_per_shard!r}")
        if not (isinstance(self.max_restarts, int) and self.max_restarts >= -1):
            raise ValueError(f"max_restarts must be an int >= -1, got {self.max_restarts!r}")


def check_resources(resources: tuple[tuple[str, float], ...]) -> None:
    """Custom Ray resources as ``((name, amount), ...)``: names distinct, not CPU/GPU/memory
    (a shard reserves none of those), amounts > 0."""
    if not isinstance(resources, tuple):
        raise ValueError(f"resources must be a tuple of (name, amount) pairs, got {resources!r}")
    names = [r[0] if isinstance(r, tuple) and len(r) == 2 else None for r in resources]
    for r, name in zip(resources, names, strict=True):
        if not (isinstance(name, str) and name) or name in ("CPU", "GPU", "memory"):
            raise ValueError(f"a shard resource needs a custom name, got {r!r}")
        if isinstance(r[1], bool) or not isinstance(r[1], int | float) or not r[1] > 0:
            raise ValueError(f"shard resource {name!r} needs an amount > 0, got {r[1]!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"shard resources must be named once each, got {resources!r}")


def parse_resources(specs: list[str] | None) -> tuple[tuple[str, float], ...]:
    """``["name=amount", ...]`` (the CLI's ``--shard-resource``) as checked resource pairs."""
    pairs = []
    for spec in specs or []:
        name, sep, amount = spec.partition("=")
        try:
            pairs.append((name.strip(), float(amount) if sep else 1.0))
        except ValueError:
            raise ValueError(f"shard resource {spec!r} is not NAME=AMOUNT") from None
    out = tuple(pairs)
    check_resources(out)
    return out


def parents_np(cell_ids: np.ndarray, res: int) -> np.ndarray:
    """Vectorised ``cell_to_parent`` (bit arithmetic on the H3 index layout)."""
    c = np.asarray(cell_ids, dtype=np.uint64)
    out = (c & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT)
    # digits finer than res are set to 7 ("unused")
    return out | np.uint64((1 << ((15 - res) * 3)) - 1)


def _bisect(centers: np.ndarray, weights: np.ndarray, idx: np.ndarray, parts: int, out, base):
    """Recursive weighted bisection along the longer axis: compact, balanced territories."""
    if parts == 1:
        out[idx] = base
        return
    left_parts = parts // 2
    pts = centers[idx]
    # longer extent in km (1 deg lat ~ 111 km, 1 deg lng ~ 88 km in Korea)
    ext = (np.ptp(pts[:, 0]) * 111.0, np.ptp(pts[:, 1]) * 88.0) if len(idx) else (0, 0)
    axis = 0 if ext[0] >= ext[1] else 1
    order = idx[np.lexsort((idx, pts[:, axis]))]
    cum = np.cumsum(weights[order])
    target = cum[-1] * left_parts / parts if len(cum) else 0
    cut = int(np.searchsorted(cum, target, side="left")) + 1
    cut = min(max(cut, 1), max(len(order) - 1, 1)) if len(order) > 1 else len(order)
    _bisect(centers, weights, order[:cut], left_parts, out, base)
    _bisect(centers, weights, order[cut:], parts - left_parts, out, base + left_parts)


class ShardPlan:
    """Which shard owns which coarse cell, and which shards store a posting (owner + halos)."""

    def __init__(self, config: ShardingConfig, halo_km: float, coarse: np.ndarray, owner: np.ndarray):
        self.config = config
        self.halo_km = float(halo_km)
        self.halo_rings = geo.rings_for(config.fine_res, self.halo_km)
        order = np.argsort(coarse)
        self._known = np.asarray(coarse, dtype=np.uint64)[order]
        self._known_owner = np.asarray(owner, dtype=np.int32)[order]
        lat_lng = [h3n.cell_to_latlng(int(c)) for c in self._known.tolist()]
        self._known_center = np.array(lat_lng, dtype=np.float64).reshape(-1, 2)
        self._extra: dict[int, int] = {}  # coarse cells first seen after the build
        self._route_cache: dict[int, np.ndarray] = {}

    @classmethod
    def build(
        cls,
        lat: np.ndarray,
        lng: np.ndarray,
        config: ShardingConfig,
        halo_km: float,
        radius_km: np.ndarray | None = None,
    ):
        """Split the coarse cells holding the given postings over ``config.num_shards``
        (recursive bisection, balanced by estimated search work)."""
        fine = geo.cells(lat, lng, config.fine_res)
        coarse, inv, counts = np.unique(
            parents_np(fine, config.coarse_res), return_inverse=True, return_counts=True
        )
        # each cell's query radius: the mean of its postings' radii (the halo when unknown)
        if radius_km is None or coarse.size == 0:
            cell_r = np.full(coarse.size, float(halo_km))
        else:
            cell_r = np.bincount(inv, weights=radius_km, minlength=coarse.size) / counts
        if coarse.size == 0:  # empty build: one well-known cell so lookups work
            coarse = np.array([h3n.latlng_to_cell(37.5665, 126.978, config.coarse_res)], np.uint64)
            counts = np.ones(1, dtype=np.int64)
            cell_r = np.full(1, float(halo_km))
        centers = np.array([h3n.cell_to_latlng(int(c)) for c in coarse.tolist()], np.float64)
        # balance the work, not the count: each query scores the postings within its radius
        # (plus a fixed per-query cost, measured as about that of _QUERY_COST_PAIRS pairs)
        d = haversine_km(centers[:, None, 0], centers[:, None, 1], centers[None, :, 0],
                         centers[None, :, 1])  # fmt: skip
        near = (d <= cell_r[:, None]) @ counts.astype(np.float64)
        work = counts * (near + _QUERY_COST_PAIRS)
        owner = np.zeros(coarse.size, dtype=np.int32)
        parts = min(config.num_shards, coarse.size)
        _bisect(centers, work.astype(np.float64), np.arange(coarse.size), parts, owner, 0)
        return cls(config, halo_km, coarse, owner)

    @property
    def num_shards(self) -> int:
        return self.config.num_shards

    def owner_of_coarse(self, coarse: np.ndarray) -> np.ndarray:
        """Owner shard of each coarse cell; cells unseen at build go to the nearest known one."""
        coarse = np.asarray(coarse, dtype=np.uint64)
        pos = np.searchsorted(self._known, coarse)
        pos_c = np.minimum(pos, self._known.size - 1)
        hit = self._known[pos_c] == coarse
        out = np.where(hit, self._known_owner[pos_c], -1).astype(np.int32)
        for i in np.flatnonzero(~hit).tolist():
            c = int(coarse[i])
            if c not in self._extra:
                la, lo = h3n.cell_to_latlng(c)
                d = haversine_km(la, lo, self._known_center[:, 0], self._known_center[:, 1])
                # nearest centre, ties to the smaller cell id: deterministic
                self._extra[c] = int(self._known_owner[np.lexsort((self._known, d))[0]])
            out[i] = self._extra[c]
        return out

    def owners(self, fine: np.ndarray) -> np.ndarray:
        """Owner shard of postings in fine cells ``fine``."""
        return self.owner_of_coarse(parents_np(fine, self.config.coarse_res))

    def route_cell(self, fine_cell: int) -> np.ndarray:
        """Sorted shard ids that must store a posting in ``fine_cell`` (owner and halos)."""
        r = self._route_cache.get(fine_cell)
        if r is None:
            disk = geo.disk_cells(fine_cell, self.halo_rings)
            r = np.unique(self.owners(disk))
            self._route_cache[fine_cell] = r
        return r

    def assign(self, lat, lng) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """For postings at (lat, lng): fine cells, owner shards, and shard sets storing each."""
        fine = geo.cells(lat, lng, self.config.fine_res)
        owner = self.owners(fine)
        routes = [self.route_cell(int(f)) for f in fine.tolist()]
        return fine, owner, routes


def partition(plan: ShardPlan, lat: np.ndarray, lng: np.ndarray) -> tuple[np.ndarray, list]:
    """Owner of each posting and, per shard, (row indices stored, owned flags of those rows)."""
    _, owner, routes = plan.assign(lat, lng)
    member = np.zeros((len(owner), plan.num_shards), dtype=bool)
    for i, r in enumerate(routes):
        member[i, r] = True
    parts = []
    for s in range(plan.num_shards):
        idx = np.flatnonzero(member[:, s])
        parts.append((idx, owner[idx] == s))
    return owner, parts


def shard_names(generation: str, num_shards: int) -> list[str]:
    """Ray actor names of a generation's shards."""
    return [f"jobrec-{generation}-shard-{s}" for s in range(num_shards)]
