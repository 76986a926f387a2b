"""Vector files: (``posting_id``, ``vector``) parquet tables, and chunked encoding of a frame."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from core.errors import InvalidInputError

ENCODE_CHUNK = 2048


def read_vectors(path: str | Path, posting_ids: list[str]) -> np.ndarray:
    """Vectors of ``posting_ids`` (in that order) from a parquet of (posting_id, vector)."""
    vf = pl.read_parquet(path)
    for col in ("posting_id", "vector"):
        if col not in vf.columns:
            raise InvalidInputError(f"{path} lacks column {col!r}", field="vectors")
    order = pl.DataFrame({"posting_id": posting_ids}).join(
        vf.select("posting_id", "vector"), on="posting_id", how="left", maintain_order="left"
    )
    missing = order.filter(pl.col("vector").is_null())["posting_id"]
    if missing.len():
        raise InvalidInputError(
            f"{missing.len()} postings have no vector in {path}, e.g. {missing[0]!r}",
            field="vectors",
        )
    return np.asarray(order["vector"].to_list(), dtype=np.float32)


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


# Parquet key-value metadata of a vector file: which encoder made the vectors and where its
# lexical half lives, so that `jobrec serve --embeddings F` encodes inline postings the same way.
PROVENANCE_KEY = "jobrec.encoder"


def write_vectors(path: str | Path, posting_ids: list[str], vectors: np.ndarray,
                  provenance: dict | None = None) -> None:
    """Write (posting_id, vector) as parquet (vector: list of float32).

    ``provenance`` (JSON-able: the encoder's ``model_id``, weight, lexical directory) is kept
    in the file's metadata; :func:`read_provenance` reads it back.
    """
    import json

    dim = int(vectors.shape[1])
    meta = {PROVENANCE_KEY: json.dumps(provenance, ensure_ascii=False)} if provenance else None
    pl.DataFrame(
        {
            "posting_id": posting_ids,
            "vector": pl.Series(vectors.astype(np.float32).tolist(), dtype=pl.Array(pl.Float32, dim)),
        }
    ).write_parquet(path, metadata=meta)


def read_provenance(path: str | Path) -> dict | None:
    """What :func:`write_vectors` recorded about the encoder of a vector file (None: nothing,
    or not a parquet file)."""
    import json

    import pyarrow.parquet as pq

    p = Path(path)
    if p.suffix != ".parquet" or not p.is_file():
        return None
    raw = (pq.ParquetFile(p).metadata.metadata or {}).get(PROVENANCE_KEY.encode())
    return None if raw is None else json.loads(raw)


def lexical_dir_for(out_path: str | Path) -> Path:
    """Where a refresh writing ``out_path`` saves its fitted lexical model."""
    p = Path(out_path)
    return p.with_name(p.stem + ".lexical")


class FittedHybrid(NamedTuple):
    """What :func:`fit_hybrid` returns: the encoder, the vectors of the frame, how the weight
    was chosen (``source``, the grid's validation scores) and the cache's counts."""

    encoder: Any  # encoding.hybrid.HybridEncoder
    vectors: np.ndarray
    source: str
    scores: dict | None
    cache_hits: int | None
    cache_misses: int | None


def fit_hybrid(
    df: pl.DataFrame,
    model_dir: str | Path,
    cache_path: str | Path | None,
    progress: Callable[[int, int], None] | None = None,
    weight_label: str | None = None,
) -> FittedHybrid:
    """The refresh's rule for the hybrid encoder of ``df``: W-BERT through its embedding cache
    (only misses are encoded), a lexical model fitted on ``df``'s postings and, with
    ``weight_label`` (a column of ``df``) carried by enough postings, the weight chosen on
    them (:func:`encoding.hybrid.choose_weight`, a seeded sample of queries); else the model's.

    Deterministic: the same postings and model give the same encoder and vectors, which is
    how ``jobrec serve`` reproduces a refresh it has no saved lexical model of.
    """
    from encoding.cache import EmbeddingCache, encode_postings
    from encoding.hybrid import HybridEncoder, choose_weight, combine, labelled_queries
    from encoding.text import posting_text

    if weight_label is not None and weight_label not in df.columns:
        raise InvalidInputError(f"postings lack the weight label column {weight_label!r}",
                                field="weight_label")
    texts = [posting_text(r) for r in df.iter_rows(named=True)]
    encoder = HybridEncoder.fit(model_dir, texts)
    cache = EmbeddingCache(cache_path) if cache_path is not None else None
    dense = np.zeros((df.height, encoder.dense.dim), dtype=np.float32)
    try:
        for s in range(0, df.height, ENCODE_CHUNK):
            dense[s : s + ENCODE_CHUNK] = encode_postings(df[s : s + ENCODE_CHUNK], encoder.dense, cache)
            if progress is not None:
                progress(min(s + ENCODE_CHUNK, df.height), df.height)
        hits, misses = (cache.hits, cache.misses) if cache is not None else (None, None)
    finally:
        if cache is not None:
            cache.close()
    lexical = encoder.lexical.transform(texts)
    source, scores = "model", None
    if weight_label is not None:
        labels = df[weight_label].cast(pl.Utf8).to_list()
        queries = labelled_queries(labels)
        if queries is not None:
            w, scores = choose_weight(dense, lexical, labels, queries)
            encoder = encoder.reweighted(w)
            source = f"label:{weight_label} ({len(queries)} queries)"
    return FittedHybrid(encoder, combine(dense, lexical, encoder.weight), source, scores, hits,
                        misses)


def encode(
    df: pl.DataFrame,
    model_dir: str | Path,
    cache_path: str | Path | None,
    progress: Callable[[int, int], None] | None = None,
    lexical_dir: str | Path | None = None,
    weight_label: str | None = None,
) -> tuple[np.ndarray, dict]:
    """Hybrid vectors of ``df`` by :func:`fit_hybrid`; the lexical model and the weight are
    saved in ``lexical_dir`` when given (the server loads them from there so inline postings
    get the same transform)."""
    from encoding.hybrid import save_weight

    fit = fit_hybrid(df, model_dir, cache_path, progress, weight_label)
    encoder = fit.encoder
    if lexical_dir is not None:
        encoder.lexical.save(lexical_dir)
        save_weight(lexical_dir, encoder.weight, fit.source, fit.scores)
    info = {"model_id": encoder.model_id, "dim": encoder.dim, "wbert_dim": encoder.dense.dim,
            "lexical_dim": encoder.lexical.dim, "hybrid_weight": encoder.weight,
            "weight_source": fit.source,
            "lexical_dir": str(lexical_dir) if lexical_dir is not None else None}
    if fit.cache_hits is not None:
        info.update(cache_hits=fit.cache_hits, cache_misses=fit.cache_misses)
    return fit.vectors, info
