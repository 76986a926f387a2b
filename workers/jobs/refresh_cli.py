"""``jobrec refresh``: the batch refresh of every posting's recommendations."""

from __future__ import annotations

import json
from pathlib import Path

from core.cli_args import add_store_args, iso_date


def register(subparsers) -> None:
    """Add the ``refresh`` sub-command (defaults from the configs)."""
    from core.rules import DEFAULT_K
    from workers.engine.sharding import ShardingConfig
    from workers.jobs.refresh import REFRESH_SHARDS, WEIGHT_LABEL

    threads = ShardingConfig().threads_per_shard
    p = subparsers.add_parser(
        "refresh",
        help="recompute every posting's recommendations (Ray, geo-sharded exact search)",
        description="Encode postings (through the embedding cache), build the geo shards on "
        "Ray and write posting_id, rank, rec_posting_id, score, distance_km.",
    )
    p.add_argument("--postings", required=True, help="canonical postings (parquet/csv/jsonl)")
    p.add_argument("--model", help="W-BERT model directory (not needed with --vectors)")
    p.add_argument("--out", required=True, help="output parquet of recommendations")
    p.add_argument("--k", type=int, default=DEFAULT_K,
                   help=f"recommendations per posting (default {DEFAULT_K})")  # fmt: skip
    p.add_argument("--ref-date", type=iso_date, default=None, help="expiry reference date (today)")
    p.add_argument("--shards", type=int, default=REFRESH_SHARDS,
                   help=f"number of geo shards (default {REFRESH_SHARDS})")  # fmt: skip
    p.add_argument("--threads-per-shard", type=int, default=threads, help="BLAS threads per shard")
    p.add_argument("--shard-resource", action="append", default=None, metavar="NAME=AMOUNT",
                   help="a custom Ray resource every shard actor requires (repeatable)")
    p.add_argument("--embeddings-out", default=None, help="write the vectors used (parquet)")
    p.add_argument("--vectors", default=None, help="parquet (posting_id, vector): skip encoding")
    p.add_argument("--cache", default=None, help="embedding cache file (default: next to --out)")
    p.add_argument("--ray-address", default=None, help="address of a running Ray cluster")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_store_args(p)
    p.add_argument("--courses", default=None,
                   help="canonical course table: also write each posting's training courses")
    p.add_argument("--courses-out", default=None,
                   help="output parquet of courses per posting (default: OUT with .courses)")
    p.add_argument("--course-k", type=int, default=5, help="courses per posting (default 5)")
    p.add_argument("--weight-label", default=WEIGHT_LABEL,
                   help="column the hybrid weight is chosen on when enough postings carry it "
                   "(default %(default)s; 'none': the model's weight)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from workers.engine.sharding import parse_resources
    from workers.jobs.refresh import run_refresh
    from workers.store.generation import open_store

    try:
        shard_resources = parse_resources(args.shard_resource)
    except ValueError as exc:
        raise SystemExit(f"jobrec refresh: {exc}") from exc
    report = run_refresh(
        args.postings,
        args.model,
        args.out,
        k=args.k,
        ref_date=args.ref_date,
        num_shards=args.shards,
        embeddings_out=args.embeddings_out,
        ray_address=args.ray_address,
        vectors_path=args.vectors,
        cache_path=args.cache,
        threads_per_shard=args.threads_per_shard,
        shard_resources=shard_resources,
        progress=not args.no_progress,
        store=open_store(args.store, args.store_endpoint),
        courses_path=args.courses,
        courses_out=args.courses_out or (
            str(Path(args.out).with_suffix(".courses.parquet")) if args.courses else None),
        course_k=args.course_k,
        weight_label=None if args.weight_label.lower() == "none" else args.weight_label,
    )
    for stage, secs in report.timings_s.items():
        print(f"{stage:>14s}: {secs:8.2f} s")
    print(json.dumps({
        "postings": report.postings,
        "recommendations": report.recommendations,
        "postings_with_fewer_than_k": report.short_postings,
        "out": report.out_path,
        "embeddings_out": report.embeddings_out,
        "generation": report.generation,
        "carried_writes": report.carried_writes,
    }, ensure_ascii=False))  # fmt: skip
    return 0
