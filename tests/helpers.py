"""Helpers shared by several test modules."""

from __future__ import annotations

import polars as pl

from core.reference import regions


def matching_files(d, n_postings: int, n_seekers: int, seed: int, days: int, ref_date):
    """Write generated postings, seekers and interactions under ``d`` (``postings.parquet``,
    ``seekers.parquet``, ``interactions.parquet``) and a briefly trained model
    (``d / "model"``) for the CLI tests of matching; returns the three tables."""
    from core.synth import generate_postings
    from core.synth.seekers import generate_interactions, generate_seekers
    from training.train import TrainConfig, run_local, train_model

    postings = generate_postings(n_postings, seed, ref_date=ref_date)
    seekers = generate_seekers(n_seekers, seed, postings=postings, ref_date=ref_date)
    inter = generate_interactions(seekers, postings, seed, days=days, ref_date=ref_date)
    postings.write_parquet(d / "postings.parquet")
    seekers.write_parquet(d / "seekers.parquet")
    inter.write_parquet(d / "interactions.parquet")
    cfg = TrainConfig(epochs=1, mlm_epochs=1, max_steps=4, vocab_size=1500, max_length=48,
                      log_every=0)
    train_model(postings.head(300), d / "model", cfg, runner=run_local, compute_metrics=False)
    return postings, seekers, inter


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


def same_matches(a, b) -> None:
    """Two match lists are equal: ids, scores and reasons, in order."""
    assert [m.item_id for m in a] == [m.item_id for m in b]
    assert [m.score for m in a] == [m.score for m in b]
    assert [m.reasons for m in a] == [m.reasons for m in b]


def seeker_profile(row, **kw) -> dict:
    """An UpsertSeekers profile from a canonical seeker row, with ``kw`` changed."""
    keys = ("seeker_id", "desired_occupations", "desired_regions", "home_lat", "home_lng",
            "max_commute_km", "education_level", "career_years", "career_history",
            "certificates", "desired_monthly_wage", "resume_text")
    return {**{k: row[k] for k in keys}, **kw}
