"""Helpers shared by several test modules."""

from __future__ import annotations

import polars as pl

from core.reference import regions


def coords(*parts: str) -> tuple[float, float]:
    """Centroid of the region with exactly these name parts (sido, sigungu, ...)."""
    padded = list(parts) + [""] * (5 - len(parts))
    cols = ("sido", "sigungu", "gu_or_eupmyeondong", "eupmyeondong", "ri")
    expr = pl.lit(True)
    for c, v in zip(cols, padded, strict=True):
        expr = expr & (pl.col(c) == v)
    row = regions().filter(expr)
    assert row.height == 1
    return row["lat"][0], row["lng"][0]
