"""Assembling a serving process: postings, encoder, vectors, Ray and the shard backend.

Shared by ``jobrec serve``, ``jobrec demo`` and ``bench/serve.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.errors import InvalidInputError, ModelError

log = logging.getLogger("jobrec.server")


def load_postings(path: str | Path) -> pl.DataFrame:
    """A canonical posting table (parquet, CSV or JSON lines), read as the refresh reads it."""
    from workers.refresh import read_postings

    return read_postings(path)


def load_encoder(model_dir: str | Path):
    """The W-BERT ``Encoder`` of a trained model directory."""
    from training.encoder import Encoder

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist (train one: jobrec train)")
    return Encoder.load(model_dir)


def read_embeddings(path: str | Path) -> tuple[list[str] | None, np.ndarray]:
    """Vectors from ``.npy`` (rows in posting order) or a (``posting_id``, ``vector``) table."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"embeddings file {path} does not exist", field="embeddings")
    if path.suffix == ".npy":
        return None, np.load(path).astype(np.float32, copy=False)
    df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_ipc(path)
    if not {"posting_id", "vector"} <= set(df.columns):
        raise InvalidInputError(
            f"embeddings table {path} needs columns posting_id and vector", field="embeddings"
        )
    vecs = np.asarray(df["vector"].to_list(), dtype=np.float32)
    return df["posting_id"].to_list(), vecs


def load_vectors(
    postings: pl.DataFrame,
    encoder: Any,
    embeddings: str | Path | None = None,
    cache_path: str | Path | None = None,
) -> np.ndarray:
    """One vector per posting (rows in ``postings`` order).

    Vectors from ``embeddings`` are reused for the postings they cover; the rest are encoded
    (through the embedding cache at ``cache_path`` when given).
    """
    n = postings.height
    out = np.zeros((n, encoder.dim), dtype=np.float32)
    todo = np.ones(n, dtype=bool)
    if embeddings is not None:
        ids, vecs = read_embeddings(embeddings)
        if vecs.ndim != 2 or vecs.shape[1] != encoder.dim:
            raise InvalidInputError(
                f"embeddings have shape {vecs.shape}, the model's dimension is {encoder.dim}",
                field="embeddings",
            )
        if ids is None:
            if vecs.shape[0] != n:
                raise InvalidInputError(
                    f"{vecs.shape[0]} vectors for {n} postings", field="embeddings"
                )
            return vecs
        pos = {pid: i for i, pid in enumerate(ids)}
        for i, pid in enumerate(postings["posting_id"].to_list()):
            j = pos.get(pid)
            if j is not None:
                out[i] = vecs[j]
                todo[i] = False
        log.info(
            "embeddings reused",
            extra={"reused": int((~todo).sum()), "to_encode": int(todo.sum())},
        )
    if todo.any():
        out[todo] = encode_postings(postings.filter(pl.Series(todo)), encoder, cache_path)
    return out


def encode_postings(postings: pl.DataFrame, encoder: Any, cache_path: str | Path | None = None):
    """Encode a posting frame with the W-BERT encoder (through the cache when one is given)."""
    from training.encoder import EmbeddingCache
    from training.encoder import encode_postings as _encode

    if cache_path is None:
        return np.asarray(_encode(postings, encoder), dtype=np.float32)
    with EmbeddingCache(cache_path) as cache:
        return np.asarray(_encode(postings, encoder, cache=cache), dtype=np.float32)


def build_backend(
    postings: pl.DataFrame,
    vectors: np.ndarray,
    *,
    shards: int | None = None,
    ref_date: dt.date | None = None,
    ray_address: str | None = None,
    snapshot_dir: Path | None = None,
):
    """Start the shard actors for ``postings``; return ``(backend, rules)``."""
    from core.rules import RuleConfig
    from workers.actors import init_ray
    from workers.backend import RecommendationBackend
    from workers.sharding import ShardingConfig

    init_ray(ray_address)
    rules = RuleConfig(ref_date=ref_date)
    sharding = ShardingConfig(num_shards=shards) if shards else ShardingConfig()
    backend = RecommendationBackend.build(
        postings, vectors, sharding=sharding, rules=rules, snapshot_dir=snapshot_dir
    )
    return backend, rules


def load_courses_into(
    backend: Any, courses_path: str | Path, postings: pl.DataFrame, encoder: Any,
    *, ref_date: dt.date | None = None,
):
    """Read a canonical course table, encode it with the posting encoder (title, NCS name,
    description, certificates) and load it into the shards; returns the course rules."""
    from core.course_rank import CertificateDemand
    from core.course_rules import CourseRuleConfig
    from core.courses import conform_courses, course_text

    path = Path(courses_path)
    if not path.is_file():
        raise InvalidInputError(f"course table {path} does not exist", field="courses")
    courses = conform_courses(pl.read_parquet(path))
    vectors = np.asarray(encoder.encode([course_text(r) for r in courses.iter_rows(named=True)]),
                         dtype=np.float32)
    backend.load_courses(courses, vectors, CertificateDemand.from_postings(postings))
    return CourseRuleConfig(ref_date=ref_date)
