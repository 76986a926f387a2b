"""Contracts of the retrieval engine: queries (backend -> shard), results, and the
:class:`Backend` protocol the server uses (plain dataclasses and protocols, no Ray or gRPC)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import polars as pl

from core.rules import RuleConfig

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


@dataclass(frozen=True)
class ByIdQuery:
    """Top-``k`` for the stored item ``item_id`` of ``collection``. ``rules`` None means
    the shard's own rules. The backend validates (k, rules, halo); the shard trusts it."""

    item_id: str
    k: int
    rules: RuleConfig | None = None
    collection: str = "postings"


@dataclass(frozen=True)
class InlineQuery:
    """Top-``k`` for an item that is not stored (``item``: a canonical row dict of the
    collection's kind, checked by ``kind.check_item``; ``vector``: its unit vector)."""

    item: Mapping[str, object]
    vector: np.ndarray
    k: int
    rules: RuleConfig | None = None
    collection: str = "postings"


Query = ByIdQuery | InlineQuery


class Backend(Protocol):
    """What the gRPC server needs of a backend (:class:`workers.backend.RecommendationBackend`)."""

    async def asimilar(
        self, posting_id: str, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]: ...

    async def asimilar_to(
        self, posting: Mapping, vector: np.ndarray, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]: ...

    async def aupsert(self, postings: pl.DataFrame, vectors: np.ndarray) -> UpsertResult: ...

    async def adelete(self, posting_ids: Sequence[str]) -> DeleteResult: ...

    async def aget(self, posting_id: str) -> dict: ...

    def health(self, timeout: float = 10.0) -> dict: ...


class TextEncoder(Protocol):
    """A text encoder (W-BERT's ``Encoder``): ``encode`` gives one float32 row per text."""

    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...
