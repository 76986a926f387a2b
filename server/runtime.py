"""Assembling a serving process: postings, encoder, vectors, Ray and the shard backend.

Shared by ``jobrec serve``, ``jobrec demo`` and ``bench/serve.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.errors import AlreadyExistsError, InvalidInputError, ModelError
from workers.jobs.refresh import WEIGHT_LABEL
from workers.store.generation import open_store

__all__ = [
    "ServingEncoding",
    "build_backend",
    "load_encoder",
    "load_postings",
    "load_vectors",
    "open_store",
    "serving_encoding",
]

log = logging.getLogger("jobrec.server")


def load_postings(path: str | Path, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """A canonical posting table (parquet, CSV or JSON lines), read as the refresh reads it
    (``keep``: extra columns kept when the file has them, e.g. the weight label)."""
    from core.postings_io import read_postings

    return read_postings(path, keep=keep)


def load_encoder(
    model_dir: str | Path,
    *,
    lexical: str | Path | None = None,
    postings: pl.DataFrame | None = None,
):
    """The hybrid encoder of a trained model directory (W-BERT + lexical half).

    The lexical half is loaded from ``lexical`` (what ``jobrec refresh`` saved next to its
    output, so inline postings get the refresh's transform) or fitted on ``postings``.
    """
    from encoding.hybrid import HybridEncoder
    from encoding.text import posting_text

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist (train one: jobrec train)")
    if lexical is not None:
        return HybridEncoder.load(model_dir, lexical)
    if postings is None:
        raise ModelError("the encoder needs a lexical model (--lexical) or the postings to fit one")
    return HybridEncoder.fit(model_dir, [posting_text(r) for r in postings.iter_rows(named=True)])


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
    return _vectors(postings, encoder, embeddings, cache_path)[0]


def _vectors(postings: pl.DataFrame, encoder: Any, embeddings: str | Path | None,
             cache_path: str | Path | None, computed: np.ndarray | None = None,
             ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`load_vectors` and the mask of the rows taken from ``embeddings``; ``computed``
    (the encoder's vectors of every posting, when already known) fills the others."""
    n = postings.height
    out = np.zeros((n, encoder.dim), dtype=np.float32)
    todo = np.ones(n, dtype=bool)
    if embeddings is not None:
        from encoding.vectors import read_embeddings

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
            return vecs, np.ones(n, dtype=bool)
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
        if computed is not None:
            out[todo] = computed[todo]
        else:
            out[todo] = encode_postings(postings.filter(pl.Series(todo)), encoder, cache_path)
    return out, ~todo


@dataclass(frozen=True)
class ServingEncoding:
    """The encoder a server uses, the vectors it serves and why (:func:`serving_encoding`).

    ``warning`` is one line when the served answers cannot be those of the refresh that
    made ``--embeddings`` (another model, lexical half or weight)."""

    encoder: Any
    vectors: np.ndarray | None  # one row per posting (None: the shards load from a store)
    source: str
    warning: str | None = None


def _refresh_lexical(lexical, store_lexical, embeddings, provenance) -> tuple[Path | None, str]:
    """The lexical directory of the refresh to match, and where it was found (or why not)."""
    from encoding.lexical import LEXICAL_JSON
    from encoding.vectors import lexical_dir_for

    if lexical is not None:
        lexical = Path(lexical)
        # the refresh's --out names its lexical model (RECS.lexical beside it)
        d = lexical_dir_for(lexical) if lexical.suffix == ".parquet" else lexical
        return d, f"lexical model {d} (--lexical)"
    if store_lexical is not None:
        return Path(store_lexical), "lexical model of the store's generation"
    if provenance and provenance.get("lexical_dir"):
        for d in (Path(embeddings).parent / provenance["lexical_dir"],
                  Path(provenance.get("lexical_dir_abs") or provenance["lexical_dir"])):
            if (d / LEXICAL_JSON).is_file():
                return d, f"the refresh's lexical model {d} (recorded in {embeddings})"
        return None, f"the lexical model recorded in {embeddings} is missing"
    return None, ""


def _check_rows(covered: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` covered rows spread evenly over the table (deterministic)."""
    rows = np.flatnonzero(covered)
    if len(rows) <= limit:
        return rows
    return rows[np.unique(np.linspace(0, len(rows) - 1, limit).round().astype(int))]


def serving_encoding(
    model_dir: str | Path,
    postings: pl.DataFrame | None = None,
    *,
    lexical: str | Path | None = None,
    store_lexical: str | Path | None = None,
    embeddings: str | Path | None = None,
    cache_path: str | Path | None = None,
    weight_label: str | None = WEIGHT_LABEL,
    check_rows: int = 64,
) -> ServingEncoding:
    """The hybrid encoder and vectors that serve what the refresh wrote.

    The lexical half and weight are the refresh's: ``lexical`` (its directory, or the
    refresh's ``--out``), ``store_lexical`` (the store generation's), or the directory that
    ``embeddings`` records (``jobrec refresh --embeddings-out``). Without any, they are chosen
    on ``postings`` by the refresh's own rule (:func:`encoding.vectors.fit_hybrid`, the weight
    on ``weight_label``), which gives the refresh's encoder for the same postings and model.
    Vectors from ``embeddings`` are served as they are; up to ``check_rows`` of them are
    encoded again to check that they are this encoder's (else ``warning`` says so).
    """
    from encoding.cache import encode_postings as encode_rows
    from encoding.hybrid import HybridEncoder
    from encoding.vectors import fit_hybrid, read_provenance

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist (train one: jobrec train)")
    provenance = read_provenance(embeddings) if embeddings is not None else None
    found, source = _refresh_lexical(lexical, store_lexical, embeddings, provenance)
    fitted = None
    if found is not None:
        encoder = HybridEncoder.load(model_dir, found)
    elif postings is None:
        raise ModelError("the encoder needs a lexical model (--lexical) or the postings to fit one")
    else:
        label = weight_label if weight_label and weight_label in postings.columns else None
        fitted = fit_hybrid(postings, model_dir, cache_path, weight_label=label)
        encoder = fitted.encoder
        source = "; ".join(x for x in (source, (
            f"lexical half fitted on the {postings.height} postings, weight {encoder.weight} "
            f"({fitted.source}): the refresh's rule")) if x)
    if postings is None:
        return ServingEncoding(encoder, None, source)
    vectors, covered = _vectors(postings, encoder, embeddings, cache_path,
                                None if fitted is None else fitted.vectors)
    warning = None
    if covered.any():
        rows = np.flatnonzero(covered) if fitted is not None else _check_rows(covered, check_rows)
        own = (fitted.vectors[rows] if fitted is not None
               else encode_rows(postings[rows.tolist()], encoder))
        recorded = (provenance or {}).get("model_id")
        if not np.allclose(vectors[rows], own, atol=1e-4) or recorded not in (None, encoder.model_id):
            warning = (
                f"the vectors in {embeddings} were made by another encoder than this one "
                f"({source}): they are served as they are, but inline postings and the "
                "postings they lack are encoded otherwise than by the refresh that wrote them "
                "(serve with that refresh's --model and --lexical RECS.lexical to match it)"
            )
    return ServingEncoding(encoder, vectors, source, warning)



def store_serving_encoding(model_dir: str | Path, postings: pl.DataFrame | None, store, *,
                           lexical: str | Path | None = None,
                           embeddings: str | Path | None = None,
                           cache_path: str | Path | None = None,
                           weight_label: str | None = WEIGHT_LABEL) -> ServingEncoding:
    """:func:`serving_encoding` with the lexical half of ``store``'s generation when
    ``lexical`` is not given: the encoder every ``jobrec serve`` of that store builds (and
    ``jobrec match-deploy``, so a generation's vectors are the frontends')."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store_lexical = None
        if lexical is None and store is not None and store.manifest() is not None:
            from workers.store.generation import lexical_from_store

            store_lexical = lexical_from_store(store, store.manifest().generation, tmp)
        return serving_encoding(model_dir, postings, lexical=lexical,
                                store_lexical=store_lexical, embeddings=embeddings,
                                cache_path=cache_path, weight_label=weight_label)

def encode_postings(postings: pl.DataFrame, encoder: Any, cache_path: str | Path | None = None):
    """Encode a posting frame with the W-BERT encoder (through the cache when one is given)."""
    from encoding.cache import EmbeddingCache
    from encoding.cache import encode_postings as _encode

    if cache_path is None:
        return np.asarray(_encode(postings, encoder), dtype=np.float32)
    with EmbeddingCache(cache_path) as cache:
        return np.asarray(_encode(postings, encoder, cache=cache), dtype=np.float32)


def build_backend(
    postings: pl.DataFrame | None,
    vectors: np.ndarray | None,
    *,
    shards: int | None = None,
    ref_date: dt.date | None = None,
    ray_address: str | None = None,
    snapshot_dir: Path | None = None,
    store: Any = None,
    ray_namespace: str | None = None,
    shared: bool = False,
    shard_resources: tuple[tuple[str, float], ...] = (),
):
    """Start (or join) the shard actors; return ``(backend, rules)``.

    With a ``store``: the shards serve the store's generation (base + log) and every write
    is logged there before it is acknowledged; an empty store is seeded with ``postings``.
    ``shared``: the shards are detached named actors in ``ray_namespace`` that every
    frontend of that namespace serves (see :mod:`workers.store.serving`). ``shard_resources``:
    custom Ray resources every shard actor requires (placement on the nodes advertising them).
    """
    from core.rules import RuleConfig
    from workers.actors import init_ray
    from workers.backend import RecommendationBackend
    from workers.engine.sharding import ShardingConfig

    init_ray(ray_address, namespace=ray_namespace)
    rules = RuleConfig(ref_date=ref_date)
    if store is not None:
        from workers.store.serving import serve_store

        backend = serve_store(
            store, rules, shared=shared, postings=postings, vectors=vectors, shards=shards,
            resources=shard_resources,
        )
        return backend, rules
    if shared:
        raise InvalidInputError("shared shard actors need a --store", field="store")
    if postings is None or vectors is None:
        raise InvalidInputError("no postings: give --postings or a --store", field="postings")
    sharding = ShardingConfig(num_shards=shards or ShardingConfig.num_shards,
                              resources=shard_resources)
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


def _matching_inputs(seekers_path: str | Path, interactions_path: str | Path | None, encoder):
    """The seeker table (validated), its vectors and the interactions (or None)."""
    from core.seekers import seeker_text, validate_interactions, validate_seekers
    from workers.matching.interaction_log import is_interaction_log, read_interactions

    paths = {"seekers": Path(seekers_path)}
    if interactions_path is not None:
        paths["interactions"] = Path(interactions_path)
    for field, path in paths.items():
        if not (path.is_file() or field == "interactions" and is_interaction_log(path)):
            raise InvalidInputError(f"{field} table {path} does not exist", field=field)
    seekers = pl.read_parquet(paths["seekers"])
    validate_seekers(seekers)
    inter = None
    if "interactions" in paths:
        inter = read_interactions(paths["interactions"])
        validate_interactions(inter)
    vecs = np.asarray(
        encoder.encode([seeker_text(r) for r in seekers.iter_rows(named=True)]), dtype=np.float32
    )
    return seekers, vecs, inter


def load_sharded_matching(
    root: str | Path, seekers_path: str | Path | None, interactions_path: str | Path | None,
    postings: pl.DataFrame | None, posting_vectors: np.ndarray | None, encoder: Any, *,
    shards: int | None = None, ref_date: dt.date | None = None,
    ranker: str | Path | None = None, ranker_pool: int | None = None, wait: bool = False,
    resources: dict[str, float] | None = None,
):
    """Matching answered by named, detached shard actors that every frontend shares: the
    first frontend writes the root's first generation from the tables (``seekers_path``,
    ``postings``); every frontend (this one included) then attaches to the serving
    generation's shards, creating those that are not running, and follows the generations
    ``jobrec match-deploy`` writes (:mod:`workers.matching.generations`). A root written as a
    single deployment (no generations) is served as it is. The returned frontend holds
    nothing per seeker or posting. ``ranker``: a ranker directory the first generation's
    shards order RecommendJobs by (a later frontend naming another one is refused: a new
    ranker is a new generation). ``wait``: a root with no generation and no tables is
    served from the first generation written (UNAVAILABLE until then). ``resources``:
    custom Ray resources each shard actor requires."""
    from workers.matching.deployment import deployed_manifest, deployment_ranked
    from workers.matching.generations import (
        GenerationalMatchService,
        current_generation,
        deploy_generation,
        serving_dir,
    )
    from workers.matching.ranker_store import load_ranker

    root = Path(root)
    rk = None if ranker is None else load_ranker(Path(ranker))  # refuses another version
    dep = serving_dir(root)

    def attach(d: Path):
        return attach_match_shards(d, encoder, ref_date, resources=resources)

    if dep is None and wait and seekers_path is None:
        log.warning("%s has no matching generation yet: MatchingService is UNAVAILABLE until "
                    "jobrec match-deploy writes the first", root)
        return GenerationalMatchService(root, attach, retire=_retire_shards, wait=True)
    if dep is None:
        if seekers_path is None or postings is None or posting_vectors is None:
            raise InvalidInputError(f"{root} holds no matching deployment: give --seekers and "
                                    "--postings to write one", field="match_root")
        seekers, vecs, inter = _matching_inputs(seekers_path, interactions_path, encoder)
        enc_p, enc_s = deploy_encoders(encoder)
        try:
            deploy_generation(root, postings, posting_vectors, seekers, vecs, inter,
                              encode_postings=enc_p, encode_seekers=enc_s, shards=shards or 2,
                              ranker=rk, ranker_pool=ranker_pool)
        except AlreadyExistsError:  # another frontend started with us writes it: wait
            _wait_for_generation(root)
    elif rk is not None and rk.manifest != deployed_manifest(dep):
        which = "with another" if deployment_ranked(dep) else "without a"
        raise InvalidInputError(f"{dep} was deployed {which} ranker: the shards' ranker is "
                                "fixed with the generation (deploy a new one: jobrec "
                                "match-deploy --ranker)", field="ranker")

    if current_generation(root) is None:  # a single deployment
        return attach(root)
    return GenerationalMatchService(root, attach, retire=_retire_shards)


def _retire_shards(service) -> None:
    """Kill a superseded generation's shard actors (other frontends have switched by now)."""
    import ray

    if ray.is_initialized():
        try:
            service.calls.close()
        except Exception as exc:  # noqa: BLE001 - already gone, or Ray going down
            log.warning("retiring the old matching generation's shards: %s", exc)


def _wait_for_generation(root: Path, timeout_s: float = 1800.0) -> None:
    import time

    from workers.matching.generations import current_generation

    log.info("another frontend is writing %s's first generation: waiting for it", root)
    deadline = time.monotonic() + timeout_s
    while current_generation(root) is None:
        if not any(root.glob("gen-*")):
            raise InvalidInputError(f"{root}: the other frontend's deployment failed (see its "
                                    "log); start again", field="match_root")
        if time.monotonic() > deadline:
            raise InvalidInputError(f"{root}: no generation after {timeout_s:.0f} s",
                                    field="match_root")
        time.sleep(1.0)


def deploy_encoders(encoder: Any):
    """(postings, seekers) frame -> vectors by ``encoder``: what a new generation encodes
    the rows it carries with."""
    from core.seekers import seeker_text
    from encoding.text import posting_text

    def postings(df: pl.DataFrame) -> np.ndarray:
        return np.asarray(encoder.encode([posting_text(r) for r in df.iter_rows(named=True)]),
                          np.float32)

    def seekers(df: pl.DataFrame) -> np.ndarray:
        return np.asarray(encoder.encode([seeker_text(r) for r in df.iter_rows(named=True)]),
                          np.float32)

    return postings, seekers


def attach_match_shards(deployment: str | Path, encoder: Any, ref_date: dt.date | None = None,
                        *, resources: dict[str, float] | None = None):
    """A :class:`~workers.matching.frontend.ShardedMatchService` over the named shard actors
    of one deployment (started if not running)."""
    from core.matching import MatchConfig
    from workers.matching.deployment import deployment_ranked, read_plan
    from workers.matching.frontend import ShardedMatchService
    from workers.matching.shard_actors import RayShardCalls, match_shard_names, start_match_shards

    d = Path(deployment)
    plan = read_plan(d)
    names = match_shard_names(f"jobrec-match-{_root_tag(d)}", plan.num_shards)
    calls = RayShardCalls(start_match_shards(str(d), plan.num_shards, names=names,
                                             resources=resources), names=names)
    return ShardedMatchService(calls, plan, encoder, MatchConfig(ref_date=ref_date),
                               ranked=deployment_ranked(d))


def _root_tag(root: Path) -> str:
    """A short name for a deployment root (two roots never share shard actors)."""
    import hashlib

    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]


def load_matching(
    seekers_path: str | Path, interactions_path: str | Path | None, postings: pl.DataFrame,
    posting_vectors: np.ndarray, encoder: Any, *, shards: int | None = None,
    ref_date: dt.date | None = None, ranker: Any = None, ranker_pool: int | None = None,
    interaction_log: str | Path | None = None,
):
    """The two-sided matching service over ``postings`` (their serving vectors) and the
    seekers of a canonical seeker table, encoded by the same encoder; ``ranker`` (a
    ``Ranker`` or ``RankerSlot``) orders RecommendJobs, else the formula does;
    ``interaction_log``: the directory RecordInteractions writes to (read back at start)."""
    from core.matching import MatchConfig
    from workers.matching.interaction_log import InteractionLog
    from workers.matching.service import MatchService

    seekers, vecs, inter = _matching_inputs(seekers_path, interactions_path, encoder)
    return MatchService(postings, posting_vectors, seekers, vecs, encoder, interactions=inter,
                        num_shards=shards or 2, config=MatchConfig(ref_date=ref_date),
                        ranker=ranker, interaction_log=None if interaction_log is None else
                        InteractionLog(interaction_log),
                        **({} if ranker_pool is None else {"ranker_pool": ranker_pool}))


def settle_for_serving() -> None:
    """Once everything is loaded, before serving: numpy's OpenBLAS keeps one thread (the
    frontend's products are one query each, where extra BLAS threads only spin against the
    gRPC threads: twice the CPU per RecommendJobs call, measured by bench/matching_serve.py),
    and the loaded objects leave the cyclic collector (a full collection over millions of
    index objects is a pause in the latency tail)."""
    import gc

    from threadpoolctl import threadpool_info, threadpool_limits

    blas = {i["prefix"]: 1 for i in threadpool_info() if i.get("internal_api") == "openblas"}
    if blas:
        threadpool_limits(limits=blas)
    gc.collect()
    gc.freeze()
