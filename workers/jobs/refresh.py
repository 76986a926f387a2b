"""The batch refresh: encode every posting, build the shards on Ray, recommend for all.

``jobrec refresh`` and the demo call :func:`run_refresh`. Stages (each timed): read the
postings, get vectors (from ``--vectors`` or through the W-BERT embedding cache), build the
shard actors, compute the recommendations of every posting in parallel, write the output.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from core.errors import InvalidInputError
from core.postings_io import read_postings
from core.rules import DEFAULT_K, RuleConfig, check_k
from encoding.vectors import encode, lexical_dir_for, read_vectors, write_vectors
from workers.engine.sharding import ShardingConfig
from workers.engine.types import RECS_SCHEMA, RefreshReport

log = logging.getLogger(__name__)

REFRESH_SHARDS = 2  # the batch refresh's default shard count (one per core of a small box)
# Worknet postings carry their KECO code: the hybrid weight is chosen on it at every refresh
# (encoding.vectors.encode), so a model trained elsewhere is weighed on the corpus it serves.
WEIGHT_LABEL = "occupation_code"


def _encode_courses(
    courses_path: str | Path, model_dir: str | Path, lexical_dir: Path
) -> tuple[pl.DataFrame, np.ndarray]:
    """A canonical course table and its vectors by the posting encoder (same hybrid space:
    W-BERT plus the lexical model this refresh fitted on the postings)."""
    from core.courses import conform_courses, course_text
    from encoding.hybrid import HybridEncoder

    path = Path(courses_path)
    if not path.is_file():
        raise InvalidInputError(f"course table {path} does not exist", field="courses")
    courses = conform_courses(pl.read_parquet(path))
    encoder = HybridEncoder.load(model_dir, lexical_dir)
    texts = [course_text(r) for r in courses.iter_rows(named=True)]
    return courses, np.asarray(encoder.encode(texts), dtype=np.float32)


def _reencode_carried(df, vectors: np.ndarray, ids: list[str], fresh: dict, model_dir,
                      lexical_dir: Path) -> None:
    """Encode again, in place, the rows the log carried over (new ids or changed vectors):
    their logged vectors carry the serving generation's lexical half, not this refresh's."""
    from encoding.hybrid import HybridEncoder
    from encoding.text import posting_text

    rows = [i for i, pid in enumerate(ids)
            if pid not in fresh or not np.array_equal(fresh[pid], vectors[i])]
    if not rows:
        return
    enc = HybridEncoder.load(model_dir, lexical_dir)
    texts = [posting_text(df.row(i, named=True)) for i in rows]
    vectors[rows] = np.asarray(enc.encode(texts), dtype=np.float32)


def _provenance(info: dict | None, embeddings_out: str | Path) -> dict | None:
    """What the vector file records of its encoder: `jobrec serve --embeddings` finds this
    refresh's lexical model through it (relative path first: the two may move together)."""
    if info is None:  # vectors given, not encoded: nothing to point at
        return None
    import os

    lex = Path(info["lexical_dir"]).resolve()
    return {"model_id": info["model_id"], "hybrid_weight": info["hybrid_weight"],
            "weight_source": info["weight_source"],
            "lexical_dir": os.path.relpath(lex, Path(embeddings_out).resolve().parent),
            "lexical_dir_abs": str(lex)}


def _lexical_objects(lexical_dir: Path) -> dict[str, bytes]:
    from encoding.hybrid import HYBRID_JSON
    from encoding.lexical import LEXICAL_JSON, LEXICAL_NPZ

    names = [n for n in (LEXICAL_JSON, LEXICAL_NPZ, HYBRID_JSON) if (lexical_dir / n).is_file()]
    return {f"lexical-{n}": (lexical_dir / n).read_bytes() for n in names}


def run_refresh(
    postings_path: str | Path,
    model_dir: str | Path | None,
    out_path: str | Path,
    *,
    k: int = DEFAULT_K,
    ref_date: date | None = None,
    num_shards: int = REFRESH_SHARDS,
    embeddings_out: str | Path | None = None,
    ray_address: str | None = None,
    vectors_path: str | Path | None = None,
    cache_path: str | Path | None = None,
    threads_per_shard: int = 1,
    shard_resources: tuple[tuple[str, float], ...] = (),
    rules: RuleConfig | None = None,
    progress: bool = True,
    store=None,
    courses_path: str | Path | None = None,
    courses_out: str | Path | None = None,
    course_k: int = 5,
    weight_label: str | None = WEIGHT_LABEL,
) -> RefreshReport:
    """Recommendations of every posting in ``postings_path`` written to ``out_path``.

    Vectors come from ``vectors_path`` when given, else from the model in ``model_dir``
    through the embedding cache at ``cache_path`` (default: next to ``out_path``). Ray is
    started locally unless already initialised or ``ray_address`` names a cluster. The
    hybrid weight is chosen on the postings' ``weight_label`` column when enough of them carry
    one (None: the model's weight).

    With a ``store`` (:class:`workers.store.store.ShardStore`) the shards are also written as the
    store's next generation, beside the serving one: the writes logged on the serving
    generation are carried over first, the manifest is flipped, and writes that raced the
    flip are re-logged on the new generation. With
    ``courses_path`` (a canonical course table, encoded by the same hybrid encoder) the top
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
    df = read_postings(postings_path, keep=[weight_label] if weight_label else ())
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
        vectors, info = encode(
            df, model_dir, cache, lambda d, n: bar.update(d - bar.n), lexical_dir_for(out_path),
            weight_label=weight_label if weight_label in df.columns else None,
        )
        bar.close()
        log.info("refresh: encoder %s", info)
    stage("encode", t0)
    if embeddings_out is not None:
        write_vectors(embeddings_out, ids, vectors, _provenance(info, embeddings_out))

    serving = store.manifest() if store is not None else None
    carried, last = 0, {}
    if serving is not None:
        from workers.store.generation import carry_log

        before, fresh = df.height, dict(zip(ids, vectors, strict=True))
        df, vectors, last, carried = carry_log(store, serving.generation, df, vectors)
        ids = df["posting_id"].to_list()
        if info is not None:  # the logged vectors are in the serving generation's space
            _reencode_carried(df, vectors, ids, fresh, model_dir, lexical_dir_for(out_path))
        log.info("refresh: carried %d logged writes (%d → %d postings)", carried, before, df.height)
    course_df = course_vec = None
    if courses_path is not None:
        if model_dir is None or courses_out is None or vectors_path is not None:
            # course vectors must share the postings' space: the model and the lexical
            # model this refresh fits (with --vectors there is none)
            raise InvalidInputError(
                "courses need --model (not --vectors) and a courses output path", field="courses"
            )
        t0 = time.perf_counter()
        course_df, course_vec = _encode_courses(courses_path, model_dir, lexical_dir_for(out_path))
        stage("encode_courses", t0)

    started_ray = init_ray(ray_address)
    backend = None
    try:
        t0 = time.perf_counter()
        rules = rules or RuleConfig(ref_date=ref_date)
        sharding = ShardingConfig(num_shards=num_shards, threads_per_shard=threads_per_shard,
                                  resources=shard_resources)
        backend = RecommendationBackend.build(df, vectors, sharding=sharding, rules=rules)
        stage("build_shards", t0)

        t0 = time.perf_counter()
        bar = _bar(num_shards, "shards", progress)
        recs = backend.recommend_all(k, rules, on_shard_done=lambda s, f: bar.update(1))
        bar.close()
        stage("filter_search", t0)
        generation = None
        if store is not None:
            t0 = time.perf_counter()
            from workers.store.generation import carry_stragglers, seed_store

            # the frontends replay what was logged on the serving generation after `last`
            extra = {"carried_from": serving.generation, "carried_until": last} if serving else None
            # the lexical half these vectors were made with goes with the generation: a
            # frontend switching to it encodes inline postings in the same space
            objects = _lexical_objects(lexical_dir_for(out_path)) if info is not None else None
            generation = seed_store(store, backend.plan, df, vectors, extra, objects=objects)
            if serving is not None:
                carried += carry_stragglers(
                    store, serving.generation, generation, last, backend.plan
                )
            stage("store", t0)
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
        generation=generation,
        carried_writes=carried,
    )


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="", leave=False)
