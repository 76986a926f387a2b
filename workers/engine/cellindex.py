"""The candidate index of a collection: live rows bucketed by fine H3 cell (CSR), with
each occupied cell's centre and angular radius for exact pruning (arrays in, no store)."""

from __future__ import annotations

import numpy as np

from core.rules import EARTH_RADIUS_KM

MARGIN_KM = 0.01  # slack of the geometric pre-filters (the exact check follows)


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair (vectorised)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return np.arange(total, dtype=np.int64) + offs


class CellIndex:
    """Rows sorted by fine cell, with each occupied cell's centre and angular radius (the
    farthest of its rows from the centre): a point within r of q lies in a cell whose
    centre is within r + radius of q. ``upto`` is the row count when it was built."""

    __slots__ = ("upto", "cells", "start", "count", "rows", "centre", "ang")

    def __init__(self, rows: np.ndarray, fine: np.ndarray, xyz: np.ndarray, upto: int) -> None:
        """Index ``rows`` (their fine cells ``fine[rows]``, unit vectors ``xyz[rows]``)."""
        f = fine[rows]
        o = np.argsort(f, kind="stable")
        self.rows, f = rows[o], f[o]
        self.upto = upto
        if rows.size == 0:
            self.cells = np.zeros(0, np.uint64)
            self.start = self.count = np.zeros(0, np.int64)
            self.centre, self.ang = np.zeros((0, 3)), np.zeros(0)
            return
        self.cells, self.start, self.count = np.unique(f, return_index=True, return_counts=True)
        x = xyz[self.rows]
        c = np.add.reduceat(x, self.start, axis=0)
        self.centre = c / np.linalg.norm(c, axis=1, keepdims=True)
        dots = np.einsum("ij,ij->i", x, np.repeat(self.centre, self.count, axis=0))
        self.ang = np.arccos(np.clip(np.minimum.reduceat(dots, self.start), -1.0, 1.0))

    def cell_rows(self, cell_ids: np.ndarray) -> np.ndarray:
        """Rows bucketed in ``cell_ids`` (live when indexed)."""
        if self.cells.size == 0:
            return np.zeros(0, dtype=np.int64)
        cell_ids = np.asarray(cell_ids, dtype=np.uint64)
        pos = np.minimum(np.searchsorted(self.cells, cell_ids), self.cells.size - 1)
        hit = pos[self.cells[pos] == cell_ids]
        return self.rows[ranges(self.start[hit], self.count[hit])]

    def near_rows(self, qxyz: np.ndarray, radius_km: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the cells that may hold a point within ``radius_km`` of ``qxyz``, split
        into (inner, edge): every row of an inner cell is within the radius (with a
        margin), those of an edge cell need the per-row distance check."""
        if self.cells.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        theta = np.arccos(np.clip(self.centre @ qxyz, -1.0, 1.0))
        near = theta <= self.ang + (radius_km + MARGIN_KM) / EARTH_RADIUS_KM
        inner = theta <= (radius_km - MARGIN_KM) / EARTH_RADIUS_KM - self.ang
        edge = np.flatnonzero(near & ~inner)
        inner = np.flatnonzero(inner)
        return (
            self.rows[ranges(self.start[inner], self.count[inner])],
            self.rows[ranges(self.start[edge], self.count[edge])],
        )
