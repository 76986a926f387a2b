"""``jobrec serve``: the gRPC frontend over the Ray shard actors."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli_args import add_store_args, iso_date


def register(subparsers) -> None:
    """Add the ``serve`` sub-command (defaults from :class:`server.app.ServerConfig`)."""
    from core.ranker import RankerConfig
    from server.app import ServerConfig
    from workers.jobs.refresh import WEIGHT_LABEL

    d = ServerConfig()
    p = subparsers.add_parser(
        "serve",
        help="serve recommendations over gRPC",
        description="Build (or join) the Ray shard actors for a posting table and serve "
        "jobrec.v1.RecommendationService, grpc.health.v1.Health and server reflection.",
    )
    p.add_argument(
        "--postings", type=Path, default=None,
        help="canonical posting table (optional with a --store that has a generation)",
    )  # fmt: skip
    p.add_argument("--model", required=True, type=Path, help="trained W-BERT model directory")
    p.add_argument("--courses", type=Path, default=None,
                   help="canonical course table (jobrec ingest --kind courses): also serve "
                        "jobrec.v1.CourseService")
    p.add_argument("--seekers", type=Path, default=None,
                   help="canonical seeker table (jobrec ingest --kind seekers): also serve "
                        "jobrec.v1.MatchingService (RecommendJobs, RecommendCandidates)")
    p.add_argument("--interactions", type=Path, default=None,
                   help="seeker interactions (applied/hidden postings are not recommended again)")
    p.add_argument("--interaction-log", type=Path, default=None,
                   help="directory RecordInteractions writes to, durably (read back at start, "
                        "on top of --interactions; usable as --interactions of jobrec "
                        "train-ranker). Without it RecordInteractions is FAILED_PRECONDITION")
    p.add_argument("--ranker", type=Path, default=None,
                   help="learned ranker directory (jobrec train-ranker --out, needs --seekers): "
                        "orders the jobs of RecommendJobs; a newly promoted version is served "
                        "without a restart. Default: the formula")
    p.add_argument("--ranker-pool", type=int, default=RankerConfig.pool,
                   help="rule-passing candidates per seeker the ranker orders")
    p.add_argument("--match-root", type=Path, default=None,
                   help="serve matching from named shard actors that every frontend of the "
                        "Ray cluster shares: the deployment directory (start-up tables, "
                        "posting writes, the shards' interaction logs). Written from "
                        "--seekers/--postings/--interactions on the first start (its first "
                        "generation); later frontends need only --match-root, and switch "
                        "to each generation jobrec match-deploy writes. The frontend holds "
                        "no seeker. With --ranker the shards order RecommendJobs by it "
                        "(fixed with the generation)")
    p.add_argument("--match-wait", action="store_true",
                   help="with --match-root and no generation there yet (and no --seekers): "
                        "serve at once, and matching from the first generation jobrec "
                        "match-deploy writes (MatchingService NOT_SERVING until then)")
    p.add_argument("--port", type=int, default=d.port, help="gRPC port (0 = any free port)")
    p.add_argument("--host", default=d.host, help="address to bind (0.0.0.0 in a pod)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: local)")
    p.add_argument(
        "--ray-namespace", default=None,
        help="Ray namespace of the shard actors: with --store, every frontend of the "
        "namespace serves the same detached named shards",
    )  # fmt: skip
    p.add_argument("--shards", type=int, default=None, help="number of geo shards")
    p.add_argument("--shard-resource", action="append", default=None, metavar="NAME=AMOUNT",
                   help="a custom Ray resource every shard actor requires (repeatable), e.g. "
                   "jobrec_shard=1 with a KubeRay worker group advertising it")
    add_store_args(p)
    p.add_argument(
        "--ref-date", type=iso_date, default=None,
        help="date expiry is judged against (default: today, at query time)",
    )  # fmt: skip
    p.add_argument(
        "--metrics-port", type=int, default=d.metrics_port, help="Prometheus /metrics port"
    )
    p.add_argument("--metrics-host", default=d.metrics_host, help="address of the metrics port")
    p.add_argument(
        "--api-keys-file", type=Path, default=None,
        help="file with one API key per line (also: JOBREC_API_KEYS=k1,k2)",
    )  # fmt: skip
    p.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain")
    p.add_argument("--tls-key", type=Path, default=None, help="PEM private key")
    p.add_argument(
        "--max-in-flight", type=int, default=d.max_in_flight, help="RESOURCE_EXHAUSTED beyond"
    )
    p.add_argument(
        "--max-message-bytes", type=int, default=d.max_receive_message_bytes,
        help="request size limit",
    )  # fmt: skip
    p.add_argument(
        "--embeddings", type=Path, default=None,
        help="precomputed vectors: a (posting_id, vector) parquet as `jobrec refresh "
        "--embeddings-out` writes, or .npy rows in posting order; postings it does not "
        "cover are encoded (through --embedding-cache when given)",
    )  # fmt: skip
    p.add_argument(
        "--embedding-cache", type=Path, default=None,
        help="SQLite embedding cache for the postings --embeddings does not cover",
    )  # fmt: skip
    p.add_argument(
        "--lexical", type=Path, default=None,
        help="the lexical model and hybrid weight of a `jobrec refresh` (RECS.lexical next to "
        "its --out, or that --out itself); default: the store generation's, the one "
        "--embeddings records, else chosen on --postings by the refresh's rule",
    )  # fmt: skip
    p.add_argument(
        "--weight-label", default=WEIGHT_LABEL,
        help="with neither: the column the hybrid weight is chosen on, as `jobrec refresh "
        "--weight-label` (default %(default)s; 'none': the model's weight)",
    )  # fmt: skip
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Load postings and model, build the shards, serve until SIGINT/SIGTERM."""
    import asyncio
    import logging
    import signal

    from server import logs
    from server.runtime import settle_for_serving

    logs.configure(
        args.log_format, logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    )
    log = logging.getLogger("jobrec.server")
    server, backend, config = build_server(args)
    settle_for_serving()

    async def main() -> None:
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        metrics = f", metrics on :{server.metrics_port}" if server.metrics_port else ""
        print(f"jobrec serve: listening on {config.host}:{server.port}{metrics}", flush=True)
        await stop.wait()
        log.info("shutting down")
        await server.stop()

    try:
        asyncio.run(main())
    finally:
        backend.shutdown()
    return 0


def _check_match_root(args: argparse.Namespace) -> None:
    """The flags ``--match-root`` cannot go with, refused clearly."""
    if args.match_root is None:
        return
    from workers.matching.generations import serving_dir

    if args.interaction_log is not None:
        raise SystemExit("jobrec serve: with --match-root the shards log RecordInteractions "
                         "in the deployment's interactions/: drop --interaction-log")
    if serving_dir(args.match_root) is None and args.seekers is None and not args.match_wait:
        raise SystemExit(f"jobrec serve: {args.match_root} holds no matching deployment: "
                         "give --seekers (and --postings) to write one, or --match-wait to "
                         "serve the first generation jobrec match-deploy writes")


def build_server(args: argparse.Namespace):
    """Everything `jobrec serve` does before it listens: ``(server, backend, config)``, the
    server not started yet (tests start it in-process)."""
    import logging

    from server.app import JobrecServer, ServerConfig
    from server.auth import load_api_keys, load_key_scopes
    from server.runtime import (
        build_backend,
        load_matching,
        load_postings,
        load_vectors,
        open_store,
        store_serving_encoding,
    )
    from workers.engine.sharding import parse_resources

    log = logging.getLogger("jobrec.server")
    try:  # ServerConfig validates (e.g. --tls-cert and --tls-key go together)
        config = ServerConfig(
            host=args.host,
            port=args.port,
            max_in_flight=args.max_in_flight,
            max_receive_message_bytes=args.max_message_bytes,
            api_keys=load_api_keys(args.api_keys_file),
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        )
        shard_resources = parse_resources(args.shard_resource)
    except ValueError as exc:
        raise SystemExit(f"jobrec serve: {exc}") from exc
    _check_match_root(args)  # before any actor starts
    label = None if args.weight_label.lower() == "none" else args.weight_label
    store = open_store(args.store, args.store_endpoint)
    postings = None
    if store is None or store.manifest() is None:  # else the shards load from the store
        if args.postings is None:
            raise SystemExit("jobrec serve: give --postings (or a --store with a generation)")
        postings = load_postings(args.postings, keep=(label,) if label else ())
        log.info("postings loaded", extra={"postings": postings.height, "path": str(args.postings)})
    # the refresh's lexical half and weight: --lexical, the store generation's, the one
    # --embeddings records, or chosen on the postings by the refresh's rule
    chosen = store_serving_encoding(
        args.model, postings, store, lexical=args.lexical, embeddings=args.embeddings,
        cache_path=args.embedding_cache, weight_label=label,
    )  # fmt: skip
    encoder, vectors = chosen.encoder, chosen.vectors
    log.info("encoder: %s", chosen.source, extra={"hybrid_weight": encoder.weight})
    if chosen.warning:
        log.warning(chosen.warning)
    backend, rules = build_backend(
        postings, vectors, shards=args.shards, ref_date=args.ref_date,
        ray_address=args.ray_address, store=store, ray_namespace=args.ray_namespace,
        # with a store and a namespace every `jobrec serve` shares the same named shards
        shared=store is not None and args.ray_namespace is not None,
        shard_resources=shard_resources,
    )  # fmt: skip
    course_rules = None
    if args.courses is not None:
        from server.runtime import load_courses_into

        course_rules = load_courses_into(backend, args.courses, postings, encoder,
                                         ref_date=args.ref_date)
        log.info("courses loaded", extra={"courses": backend.courses_loaded})
    matching, scopes = None, None
    if args.ranker is not None and args.seekers is None and args.match_root is None:
        raise SystemExit("jobrec serve: --ranker orders RecommendJobs: give --seekers (or "
                         "--match-root) too")
    if args.interaction_log is not None and args.seekers is None:
        raise SystemExit("jobrec serve: --interaction-log is where RecordInteractions writes: "
                         "give --seekers too")
    def matching_tables():
        if postings is not None:
            return postings, vectors
        if args.postings is None:  # the shards load from the store; matching needs the table
            raise SystemExit("jobrec serve: --seekers needs --postings (the matching shards "
                             "are built from the posting table)")
        mp = load_postings(args.postings)
        return mp, load_vectors(mp, encoder, args.embeddings, args.embedding_cache)

    if args.match_root is not None:
        from server.runtime import load_sharded_matching
        from workers.matching.generations import serving_dir

        fresh = serving_dir(args.match_root) is None
        if not fresh and args.seekers is not None:
            log.warning("%s holds a deployment: --seekers is not read again (jobrec "
                        "match-deploy writes a new day's tables)", args.match_root)
        mp, mv = matching_tables() if fresh and args.seekers is not None else (None, None)
        matching = load_sharded_matching(args.match_root, args.seekers, args.interactions, mp, mv,
                                         encoder, shards=args.shards, ref_date=args.ref_date,
                                         ranker=args.ranker, ranker_pool=args.ranker_pool,
                                         wait=args.match_wait, resources=shard_resources)
        scopes = load_key_scopes(args.api_keys_file)
        log.info("matching shards attached", extra={"seekers": matching.seeker_count()})
    elif args.seekers is not None:
        match_postings, match_vectors = matching_tables()
        ranker = None
        if args.ranker is not None:
            from workers.matching.ranker_store import RankerSlot

            ranker = RankerSlot(args.ranker)  # refuses another feature version, clearly
            log.info("ranker loaded", extra={"ranker": str(args.ranker),
                                             "version": ranker.version})
        matching = load_matching(args.seekers, args.interactions, match_postings, match_vectors,
                                 encoder,
                                 shards=args.shards, ref_date=args.ref_date, ranker=ranker,
                                 ranker_pool=args.ranker_pool,
                                 interaction_log=args.interaction_log)
        scopes = load_key_scopes(args.api_keys_file)
        log.info("seekers loaded", extra={"seekers": matching.seeker_count()})
    server = JobrecServer(backend, encoder, rules, config, course_rules=course_rules,
                          matching=matching, key_scopes=scopes)
    return server, backend, config
