"""The batch refresh: encode every posting, build the shards on Ray, recommend for all.

``jobrec refresh`` and the demo call :func:`run_refresh`. Stages (each timed): read the
postings, get vectors (from ``--vectors`` or through the W-BERT embedding cache), build the
shard actors, compute the recommendations of every posting in parallel, write the output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from core.errors import InvalidInputError, MalformedSourceError
from core.rules import RuleConfig, check_k
from core.schema import conform, validate_postings
from workers.sharding import ShardingConfig
from workers.types import RECS_SCHEMA, RefreshReport

log = logging.getLogger(__name__)

ENCODE_CHUNK = 2048


def read_postings(path: str | Path) -> pl.DataFrame:
    """A canonical posting table from a parquet, CSV or JSON-lines file."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"postings file not found: {path}", field="postings")
    try:
        if path.suffix == ".parquet":
            df = pl.read_parquet(path)
        elif path.suffix == ".csv":
            df = pl.read_csv(path, try_parse_dates=True)
        elif path.suffix in (".jsonl", ".ndjson"):
            df = pl.read_ndjson(path)
        else:
            raise InvalidInputError(
                f"unsupported postings format {path.suffix!r} (parquet, csv, jsonl)",
                field="postings",
            )
    except pl.exceptions.PolarsError as exc:
        raise MalformedSourceError(f"cannot read {path}: {exc}") from exc
    df = conform(df)
    validate_postings(df)
    return df


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


def write_vectors(path: str | Path, posting_ids: list[str], vectors: np.ndarray) -> None:
    """Write (posting_id, vector) as parquet (vector: list of float32)."""
    dim = int(vectors.shape[1])
    pl.DataFrame(
        {
            "posting_id": posting_ids,
            "vector": pl.Series(vectors.astype(np.float32).tolist(), dtype=pl.Array(pl.Float32, dim)),
        }
    ).write_parquet(path)


def encode(
    df: pl.DataFrame,
    model_dir: str | Path,
    cache_path: str | Path | None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Vectors of ``df`` through W-BERT and its embedding cache (only misses are encoded)."""
    from training.encoder import EmbeddingCache, Encoder, encode_postings

    encoder = Encoder.load(model_dir)
    cache = EmbeddingCache(cache_path) if cache_path is not None else None
    out = np.zeros((df.height, encoder.dim), dtype=np.float32)
    try:
        for s in range(0, df.height, ENCODE_CHUNK):
            out[s : s + ENCODE_CHUNK] = encode_postings(df[s : s + ENCODE_CHUNK], encoder, cache)
            if progress is not None:
                progress(min(s + ENCODE_CHUNK, df.height), df.height)
        info = {"model_id": encoder.model_id, "dim": encoder.dim}
        if cache is not None:
            info.update(cache_hits=cache.hits, cache_misses=cache.misses)
    finally:
        if cache is not None:
            cache.close()
    return out, info


def _encode_courses(courses_path: str | Path, model_dir: str | Path) -> tuple[pl.DataFrame, np.ndarray]:
    """A canonical course table and its vectors by the posting encoder."""
    from core.courses import conform_courses, course_text
    from training.encoder import Encoder

    path = Path(courses_path)
    if not path.is_file():
        raise InvalidInputError(f"course table {path} does not exist", field="courses")
    courses = conform_courses(pl.read_parquet(path))
    encoder = Encoder.load(model_dir)
    texts = [course_text(r) for r in courses.iter_rows(named=True)]
    return courses, np.asarray(encoder.encode(texts), dtype=np.float32)


def run_refresh(
    postings_path: str | Path,
    model_dir: str | Path | None,
    out_path: str | Path,
    *,
    k: int = 10,
    ref_date: date | None = None,
    num_shards: int = 2,
    embeddings_out: str | Path | None = None,
    ray_address: str | None = None,
    vectors_path: str | Path | None = None,
    cache_path: str | Path | None = None,
    threads_per_shard: int = 1,
    rules: RuleConfig | None = None,
    progress: bool = True,
    courses_path: str | Path | None = None,
    courses_out: str | Path | None = None,
    course_k: int = 5,
) -> RefreshReport:
    """Recommendations of every posting in ``postings_path`` written to ``out_path``.

    Vectors come from ``vectors_path`` when given, else from the model in ``model_dir``
    through the embedding cache at ``cache_path`` (default: next to ``out_path``). Ray is
    started locally unless already initialised or ``ray_address`` names a cluster. With
    ``courses_path`` (a canonical course table, encoded by the same model) the top
    ``course_k`` courses of every posting go to ``courses_out`` as a second table.
    """
    from workers.actors import init_ray, shutdown_ray
    from workers.backend import RecommendationBackend

    k = check_k(k)  # before the (long) encode stage
    out_path = Path(out_path)
    timings: dict[str, float] = {}

    def stage(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 3)
        log.info("refresh: %s done in %.2f s", name, timings[name])

    t0 = time.perf_counter()
    df = read_postings(postings_path)
    stage("read", t0)
    log.info("refresh: %d postings", df.height)

    t0 = time.perf_counter()
    ids = df["posting_id"].to_list()
    info = None
    if vectors_path is not None:
        vectors = read_vectors(vectors_path, ids)
    else:
        if model_dir is None:
            raise InvalidInputError("give --model or --vectors", field="model")
        cache = cache_path if cache_path is not None else out_path.parent / "embedding_cache.sqlite"
        bar = _bar(df.height, "encode", progress)
        vectors, info = encode(df, model_dir, cache, lambda d, n: bar.update(d - bar.n))
        bar.close()
        log.info("refresh: encoder %s", info)
    stage("encode", t0)
    if embeddings_out is not None:
        write_vectors(embeddings_out, ids, vectors)

    course_df = course_vec = None
    if courses_path is not None:
        if model_dir is None or courses_out is None:
            raise InvalidInputError("courses need --model and a courses output path", field="courses")
        t0 = time.perf_counter()
        course_df, course_vec = _encode_courses(courses_path, model_dir)
        stage("encode_courses", t0)

    started_ray = init_ray(ray_address)
    backend = None
    try:
        t0 = time.perf_counter()
        rules = rules or RuleConfig(ref_date=ref_date)
        sharding = ShardingConfig(num_shards=num_shards, threads_per_shard=threads_per_shard)
        backend = RecommendationBackend.build(df, vectors, sharding=sharding, rules=rules)
        stage("build_shards", t0)

        t0 = time.perf_counter()
        bar = _bar(num_shards, "shards", progress)
        recs = backend.recommend_all(k, rules, on_shard_done=lambda s, f: bar.update(1))
        bar.close()
        stage("filter_search", t0)
        if course_df is not None:
            from core.course_rank import CertificateDemand
            from core.course_rules import CourseRuleConfig

            t0 = time.perf_counter()
            backend.load_courses(course_df, course_vec, CertificateDemand.from_postings(df))
            course_recs = backend.recommend_courses_all(course_k, CourseRuleConfig(ref_date=ref_date))
            Path(courses_out).parent.mkdir(parents=True, exist_ok=True)
            course_recs.write_parquet(courses_out)
            stage("courses", t0)
    finally:
        if backend is not None:
            backend.shutdown()
        if started_ray:
            shutdown_ray()

    t0 = time.perf_counter()
    recs = recs.cast(RECS_SCHEMA)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    recs.write_parquet(out_path)
    stage("write", t0)
    counts = recs.group_by("posting_id").len()
    short = df.height - int((counts["len"] >= k).sum())
    timings["total"] = round(sum(timings.values()), 3)
    return RefreshReport(
        postings=df.height,
        recommendations=recs.height,
        short_postings=short,
        k=k,
        num_shards=num_shards,
        timings_s=timings,
        out_path=str(out_path),
        embeddings_out=str(embeddings_out) if embeddings_out is not None else None,
        encoder=info,
    )


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="", leave=False)
