"""H3 bucketing and the measured ring counts that make the candidate search exact.

A query at point p with radius r needs every posting within r km. Postings are bucketed by
H3 cell at a fine resolution; the candidates of p are the postings in ``grid_disk(cell(p),
k)``. ``k`` is *measured* over Korea (:func:`measure_ring_need`): for thousands of points
spread like Korean regions, and points on and inside the r-disk around each, the largest
grid distance between the two cells. Average-edge formulas under-cover here because cells
in Korea are smaller than the global average (measured: 0.73x the average area at res 6/7,
so edges are ~15% shorter) and because hexagon rings reach less far along their corners.
One extra ring is added as margin, and every candidate is then confirmed with the exact
distance.

Run ``python -m workers.engine.geo`` to print the measurement table.
"""

from __future__ import annotations

import json
import math
from functools import cache

import h3.api.numpy_int as h3n
import numpy as np

from core.rules import EARTH_RADIUS_KM

RING_MARGIN = 1  # extra rings beyond the measured need


def cells(lat: np.ndarray, lng: np.ndarray, res: int) -> np.ndarray:
    """H3 cell (uint64) of each point at resolution ``res``."""
    lat = np.asarray(lat, dtype=np.float64)
    lng = np.asarray(lng, dtype=np.float64)
    out = np.empty(lat.shape, dtype=np.uint64)
    f = h3n.latlng_to_cell
    for i, (a, b) in enumerate(zip(lat.tolist(), lng.tolist(), strict=True)):
        out[i] = f(a, b, res)
    return out


def destination(lat, lng, bearing_rad, dist_km):
    """Point reached from (lat, lng) going ``dist_km`` along ``bearing_rad`` (vectorised)."""
    p1, l1 = np.radians(lat), np.radians(lng)
    d = np.asarray(dist_km) / EARTH_RADIUS_KM
    p2 = np.arcsin(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(bearing_rad))
    l2 = l1 + np.arctan2(
        np.sin(bearing_rad) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2)
    )
    return np.degrees(p2), np.degrees(l2)


def korea_sample_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points spread like Korean administrative regions (centroids jittered by <= 3 km)."""
    from core.reference import regions

    reg = regions().drop_nulls(["lat", "lng"])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, reg.height, n)
    lat = reg["lat"].to_numpy()[idx]
    lng = reg["lng"].to_numpy()[idx]
    return destination(lat, lng, rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 3.0, n))


def measure_ring_need(
    res: int,
    radius_km: float,
    *,
    n_points: int = 1500,
    n_bearings: int = 36,
    seed: int = 0,
) -> dict:
    """Measure the grid distance needed to cover ``radius_km`` disks at ``res`` over Korea.

    Returns ``max_grid_distance`` (the measured need), a histogram of the needs per
    sampled disk point, and the naive ring count an average-edge formula would give.
    """
    lat, lng = korea_sample_points(n_points, seed)
    rng = np.random.default_rng(seed + 1)
    fracs = np.array([1.0, 1.0 - 1e-9, 0.75, 0.4])
    b = rng.uniform(0, 2 * np.pi, (n_points, n_bearings, 1))
    la = np.broadcast_to(lat[:, None, None], b.shape)
    lo = np.broadcast_to(lng[:, None, None], b.shape)
    dlat, dlng = destination(la, lo, b, radius_km * fracs[None, None, :])
    c0 = cells(lat, lng, res)
    cx = cells(dlat.ravel(), dlng.ravel(), res).reshape(dlat.shape)
    gd = h3n.grid_distance
    need = np.empty(cx.shape, dtype=np.int32)
    for i in range(n_points):
        a = int(c0[i])
        need[i] = np.array([gd(a, int(c)) for c in cx[i].ravel().tolist()]).reshape(need[i].shape)
    avg_edge = h3n.average_hexagon_edge_length(res, unit="km")
    # centres of neighbouring hexagons are sqrt(3) * edge apart on average
    naive = math.ceil(radius_km / (math.sqrt(3) * avg_edge))
    hist = np.bincount(need.ravel())
    c0_area = np.array([h3n.cell_area(int(c), unit="km^2") for c in np.unique(c0)[:500]])
    return {
        "res": res,
        "radius_km": radius_km,
        "max_grid_distance": int(need.max()),
        "rings_used": int(need.max()) + RING_MARGIN,
        "naive_average_edge_rings": naive,
        "naive_covered_share": float((need <= naive).mean()),
        "need_histogram": {str(i): int(v) for i, v in enumerate(hist) if v},
        "korea_cell_area_vs_average": float(
            c0_area.mean() / h3n.average_hexagon_area(res, unit="km^2")
        ),
        "samples": int(need.size),
    }


# measure_ring_need(res, r)["max_grid_distance"] for the default radii, measured with the
# defaults above (tests/test_retrieval_oracle.py re-measures and compares); other radii are
# measured on first use.
MEASURED_NEED: dict[tuple[int, float], int] = {
    (4, 20.0): 1, (4, 40.0): 2,
    (5, 20.0): 2, (5, 40.0): 4,
    (6, 20.0): 5, (6, 40.0): 10,
    (7, 20.0): 13, (7, 40.0): 26,
    (8, 20.0): 33, (8, 40.0): 65,
}  # fmt: skip


@cache
def rings_for(res: int, radius_km: float) -> int:
    """Ring count ``k`` used for radius ``radius_km`` at ``res``: measured need + margin."""
    # a ring count that covers a larger radius covers a smaller one too
    known = [v for (r, rad), v in MEASURED_NEED.items() if r == res and rad >= radius_km]
    need = min(known) if known else None
    if need is None:
        need = measure_ring_need(res, float(radius_km))["max_grid_distance"]
    return need + RING_MARGIN


def coverage_share(
    res: int, radius_km: float, k: int, *, n_points: int = 1000, seed: int = 12345
) -> float:
    """Share of sampled disk points (fresh sample) whose cell lies within ``k`` rings."""
    m = measure_ring_need(res, radius_km, n_points=n_points, seed=seed)
    hist = {int(a): b for a, b in m["need_histogram"].items()}
    return sum(v for d, v in hist.items() if d <= k) / m["samples"]


def disk_cells(cell: int, k: int) -> np.ndarray:
    """Cells within ``k`` rings of ``cell`` (uint64)."""
    return np.asarray(h3n.grid_disk(int(cell), k), dtype=np.uint64)


def main() -> None:  # pragma: no cover - measurement printout
    out = [measure_ring_need(res, r) for res in (5, 6, 7) for r in (20.0, 40.0)]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
