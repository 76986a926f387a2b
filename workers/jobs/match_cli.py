"""``jobrec match``: jobs for every active seeker, or candidates for every posting."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli_args import iso_date
from core.matching import MATCH_MAX_K, MatchConfig
from core.ranker import RankerConfig
from workers.jobs.match_stream import StreamConfig

_DEFAULTS = MatchConfig()
_STREAM = StreamConfig()


def register(subparsers) -> None:
    """Add the ``match`` sub-command."""
    p = subparsers.add_parser(
        "match", help="recommend jobs to every seeker (or seekers to every posting)",
        description="Write OUT.parquet with seeker_id, rank, posting_id, score, reasons "
        "(JSON) and reason_text (추천기준); --candidates writes posting_id, rank, seeker_id…")
    p.add_argument("--seekers", required=True, type=Path, help="canonical seekers (Parquet)")
    p.add_argument("--postings", required=True, type=Path, help="canonical postings")
    p.add_argument("--model", required=True, type=Path, help="trained encoder directory")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--interactions", type=Path, default=None,
                   help="interaction log: applied/hidden postings are never recommended again")
    p.add_argument("--k", type=int, default=_DEFAULTS.k, help=f"per list (1..{MATCH_MAX_K})")
    p.add_argument("--max-per-company", type=int, default=_DEFAULTS.max_per_company)
    p.add_argument("--wage-hard", action="store_true", help="desired wage as a hard rule")
    p.add_argument("--ref-date", type=iso_date, default=None, metavar="YYYY-MM-DD")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--candidates", action="store_true", help="seekers for every posting")
    p.add_argument("--ray-address", default=None)
    p.add_argument("--stream", action="store_true",
                   help="write OUT as a Parquet dataset (a local directory or s3://…), one part "
                        "per chunk of seekers: bounded memory, and running the same command "
                        "again resumes where a killed run stopped")
    p.add_argument("--chunk-seekers", type=int, default=_STREAM.chunk_seekers,
                   help="active seekers per part (--stream)")
    p.add_argument("--in-flight", type=int, default=_STREAM.in_flight,
                   help="chunks matched at once (--stream, and the --ranker batch)")
    p.add_argument("--ranker", type=Path, default=None,
                   help="learned ranker (jobrec train-ranker --out): orders the jobs that pass "
                        "the rules; without it the formula does")
    p.add_argument("--ranker-pool", type=int, default=RankerConfig.pool,
                   help="rule-passing candidates per seeker the ranker orders")
    p.set_defaults(func=run)


def read_inputs(args: argparse.Namespace):
    """(seekers, postings, interactions or None) of ``--seekers/--postings/--interactions``,
    validated."""
    import polars as pl

    from core.errors import InvalidInputError
    from core.postings_io import read_postings
    from core.seekers import validate_seekers
    from workers.matching.interaction_log import read_interactions

    try:
        seekers = pl.read_parquet(args.seekers)
    except OSError as exc:
        raise InvalidInputError(f"{args.seekers}: cannot read: {exc}", field="seekers") from None
    validate_seekers(seekers)
    postings = read_postings(args.postings)
    inter = None
    if args.interactions:
        try:
            inter = read_interactions(args.interactions)
        except OSError as exc:
            raise InvalidInputError(f"{args.interactions}: cannot read: {exc}",
                                    field="interactions") from None
        missing = {"seeker_id", "posting_id", "event", "at"} - set(inter.columns)
        if missing:
            raise InvalidInputError(f"{args.interactions}: not an interaction table (no "
                                    f"{', '.join(sorted(missing))}); ingest it with jobrec "
                                    "ingest --kind interactions", field="interactions")
    return seekers, postings, inter


def encode_sides(model: Path, seekers, postings):
    """Posting and seeker vectors in one space, by the refresh's rule on the postings being
    matched (:func:`encoding.vectors.fit_hybrid`: lexical half fitted on them, weight chosen on
    their occupation labels): ``jobrec serve`` with the same model and postings encodes the
    same, so batch and online lists agree, and train-ranker sees the same vectors."""
    import numpy as np

    from core.seekers import seeker_text
    from encoding.vectors import fit_hybrid
    from workers.jobs.refresh import WEIGHT_LABEL

    label = WEIGHT_LABEL if WEIGHT_LABEL in postings.columns else None
    fitted = fit_hybrid(postings, model, None, weight_label=label)
    sv = fitted.encoder.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    return sv.astype(np.float32), np.asarray(fitted.vectors, np.float32)


def run(args: argparse.Namespace) -> int:
    """Encode both sides with the model, match on Ray, write the table."""
    import time

    from core.errors import InvalidInputError

    try:
        cfg = MatchConfig(k=args.k, max_per_company=args.max_per_company,
                          wage_hard=args.wage_hard, ref_date=args.ref_date)
        stream = StreamConfig(chunk_seekers=args.chunk_seekers, in_flight=args.in_flight) \
            if args.stream else None
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="config") from None
    if stream is not None and args.candidates:
        raise InvalidInputError("--stream writes jobs for seekers; --candidates writes one "
                                "table (drop --stream)", field="stream")
    ranker = None
    if args.ranker is not None:
        from workers.matching.ranker_store import load_ranker

        if args.candidates:
            raise InvalidInputError("--ranker orders jobs for seekers; --candidates has no "
                                    "learned ranker", field="ranker")
        if args.stream:
            raise InvalidInputError("--stream writes the formula's lists; the learned ranker "
                                    "writes one table (drop --stream)", field="ranker")
        ranker = load_ranker(args.ranker)  # refused before any encoding if of another version
    seekers, postings, inter = read_inputs(args)
    t0 = time.perf_counter()
    sv, pv = encode_sides(args.model, seekers, postings)
    print(f"encoded {postings.height} postings, {seekers.height} seekers "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    if ranker is not None:
        from workers.actors import init_ray, shutdown_ray
        from workers.jobs.rank import RankWorld

        started = init_ray(args.ray_address)
        try:
            t0 = time.perf_counter()
            frame = RankWorld(seekers, postings, sv, pv).match_frame(
                ranker, inter, cfg, args.ranker_pool, use_ray=True, tasks=args.in_flight)
            timings = {"ranked_match": time.perf_counter() - t0}
        finally:
            if started:
                shutdown_ray()
    elif stream is not None:
        from workers.actors import init_ray, shutdown_ray
        from workers.jobs.match_stream import run_match_stream

        started = init_ray(args.ray_address)
        try:
            rep = run_match_stream(seekers, postings, sv, pv, cfg, str(args.out),
                                   num_shards=args.shards, interactions=inter, use_ray=True,
                                   stream=stream)
        finally:
            if started:
                shutdown_ray()
        print(f"{rep.rows} rows in {rep.chunks - rep.skipped} parts -> {args.out} "
              f"({rep.skipped} of {rep.chunks} parts were already written) "
              + " ".join(f"{k}={v:.1f}s" for k, v in rep.timings_s.items()))
        return 0
    elif args.candidates:
        from workers.jobs.match import candidates_all

        frame = candidates_all(seekers, postings, sv, pv, cfg, interactions=inter)
        timings = {}
    else:
        from workers.actors import init_ray, shutdown_ray
        from workers.jobs.match import run_match

        started = init_ray(args.ray_address)
        try:
            frame, timings = run_match(seekers, postings, sv, pv, cfg, num_shards=args.shards,
                                       interactions=inter, use_ray=True)
        finally:
            if started:
                shutdown_ray()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(args.out)
    print(f"{frame.height} rows -> {args.out} " + " ".join(f"{k}={v:.1f}s" for k, v in timings.items()))
    return 0
