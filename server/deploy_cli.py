"""``jobrec match-deploy``: a new day's tables (or a new ranker) as the next generation of a
matching root, switched to by every ``jobrec serve --match-root`` frontend without a restart
(:mod:`workers.matching.generations`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli_args import add_store_args
from core.ranker import RankerConfig


def register(subparsers) -> None:
    """Add the ``match-deploy`` sub-command."""
    from workers.jobs.refresh import WEIGHT_LABEL

    p = subparsers.add_parser(
        "match-deploy", help="write the next generation of a matching root (the daily job)",
        description="Write --seekers/--postings/--interactions as the next generation of "
        "--match-root, carrying every write the serving generation acknowledged (posting and "
        "seeker writes, recorded interactions), seal the serving one and flip: the frontends "
        "switch on their next health check. Give the encoder arguments the frontends are "
        "started with (--model, --lexical or --embeddings).")
    p.add_argument("--match-root", required=True, type=Path, help="the root the frontends serve")
    p.add_argument("--postings", required=True, type=Path, help="the day's canonical postings")
    p.add_argument("--seekers", required=True, type=Path, help="the day's canonical seekers")
    p.add_argument("--interactions", type=Path, default=None,
                   help="interactions to add to those the serving generation knows")
    p.add_argument("--model", required=True, type=Path, help="trained W-BERT model directory")
    p.add_argument("--lexical", type=Path, default=None,
                   help="the lexical model and weight of a `jobrec refresh` (as jobrec serve)")
    p.add_argument("--embeddings", type=Path, default=None,
                   help="precomputed posting vectors (as jobrec serve --embeddings)")
    p.add_argument("--embedding-cache", type=Path, default=None,
                   help="SQLite embedding cache for the postings --embeddings does not cover")
    p.add_argument("--weight-label", default=WEIGHT_LABEL,
                   help="as jobrec serve --weight-label ('none': the model's weight)")
    add_store_args(p)  # the posting store whose generation's lexical half the frontends use
    p.add_argument("--shards", type=int, default=2, help="match shards of the new generation")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--ranker", type=Path, default=None,
                       help="learned ranker the new generation orders RecommendJobs by "
                            "(default: the serving generation's, if it has one)")
    which.add_argument("--formula", action="store_true",
                       help="order by the formula, even if the serving generation has a ranker")
    p.add_argument("--ranker-pool", type=int, default=None,
                   help=f"rule-passing candidates per signal the ranker orders (default: the "
                        f"serving generation's, else {RankerConfig.pool})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Encode the day's tables and deploy them as the next generation."""
    import json
    import time

    from server.runtime import (
        _matching_inputs,
        deploy_encoders,
        load_postings,
        open_store,
        store_serving_encoding,
    )
    from workers.matching.generations import KEEP, deploy_generation
    from workers.matching.ranker_store import load_ranker

    t0 = time.perf_counter()
    label = None if args.weight_label.lower() == "none" else args.weight_label
    ranker = None if args.formula else KEEP if args.ranker is None else load_ranker(args.ranker)
    postings = load_postings(args.postings, keep=(label,) if label else ())
    chosen = store_serving_encoding(  # the encoder the frontends build, the same way
        args.model, postings, open_store(args.store, args.store_endpoint), lexical=args.lexical,
        embeddings=args.embeddings, cache_path=args.embedding_cache, weight_label=label)
    if chosen.warning:
        print(f"jobrec match-deploy: {chosen.warning}", flush=True)
    seekers, seeker_vectors, inter = _matching_inputs(args.seekers, args.interactions,
                                                      chosen.encoder)
    enc_p, enc_s = deploy_encoders(chosen.encoder)
    gen = deploy_generation(args.match_root, postings, chosen.vectors, seekers, seeker_vectors,
                            inter, encode_postings=enc_p, encode_seekers=enc_s,
                            shards=args.shards, ranker=ranker, ranker_pool=args.ranker_pool)
    print(json.dumps({"match_root": str(args.match_root), "generation": gen,
                      "postings": postings.height, "seekers": seekers.height,
                      "seconds": round(time.perf_counter() - t0, 2)}), flush=True)
    return 0
