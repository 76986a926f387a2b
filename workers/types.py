"""Result types of the retrieval backend (plain frozen dataclasses, no Ray or gRPC)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

# columns of recommend_all / the refresh output
RECS_SCHEMA: dict[str, pl.DataType] = {
    "posting_id": pl.Utf8(),
    "rank": pl.Int16(),
    "rec_posting_id": pl.Utf8(),
    "score": pl.Float32(),
    "distance_km": pl.Float32(),
}


@dataclass(frozen=True)
class Recommendation:
    """One recommended posting: cosine ``score`` and great-circle ``distance_km`` to the query."""

    posting_id: str
    score: float
    distance_km: float
    title: str
    company: str
    region: str


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int


@dataclass(frozen=True)
class DeleteResult:
    deleted: int
    not_found: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RefreshReport:
    """What ``jobrec refresh`` did: counts, per-stage seconds and the files written."""

    postings: int
    recommendations: int
    short_postings: int  # postings with fewer than k recommendations
    k: int
    num_shards: int
    timings_s: dict[str, float]
    out_path: str
    embeddings_out: str | None = None
    encoder: dict | None = None  # model_id, dim, cache hits/misses when encoding ran
    generation: str | None = None  # the store generation written and flipped (--store)
    carried_writes: int = 0  # logged upserts/deletes of the serving generation carried over
