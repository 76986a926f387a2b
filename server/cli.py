"""``jobrec serve``: the gRPC frontend over the Ray shard actors."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli_args import iso_date


def register(subparsers) -> None:
    """Add the ``serve`` sub-command."""
    p = subparsers.add_parser(
        "serve",
        help="serve recommendations over gRPC",
        description="Build (or join) the Ray shard actors for a posting table and serve "
        "jobrec.v1.RecommendationService, grpc.health.v1.Health and server reflection.",
    )
    p.add_argument("--postings", required=True, type=Path, help="canonical posting table")
    p.add_argument("--model", required=True, type=Path, help="trained W-BERT model directory")
    p.add_argument("--courses", type=Path, default=None,
                   help="canonical course table (jobrec ingest --kind courses): also serve "
                        "jobrec.v1.CourseService")
    p.add_argument("--port", type=int, default=50051, help="gRPC port (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a pod)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: local)")
    p.add_argument("--shards", type=int, default=None, help="number of geo shards")
    p.add_argument(
        "--ref-date", type=iso_date, default=None,
        help="date expiry is judged against (default: today, at query time)",
    )  # fmt: skip
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics port")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics port")
    p.add_argument(
        "--api-keys-file", type=Path, default=None,
        help="file with one API key per line (also: JOBREC_API_KEYS=k1,k2)",
    )  # fmt: skip
    p.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain")
    p.add_argument("--tls-key", type=Path, default=None, help="PEM private key")
    p.add_argument("--max-in-flight", type=int, default=256, help="RESOURCE_EXHAUSTED beyond")
    p.add_argument(
        "--max-message-bytes", type=int, default=4 * 1024 * 1024, help="request size limit"
    )
    p.add_argument(
        "--embeddings", type=Path, default=None,
        help="precomputed vectors (.npy, rows in posting order, e.g. from `jobrec refresh "
        "--embeddings-out`); default: encode the postings (cached next to the model)",
    )  # fmt: skip
    p.add_argument(
        "--embedding-cache", type=Path, default=None,
        help="SQLite embedding cache for the postings --embeddings does not cover",
    )  # fmt: skip
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Load postings and model, build the shards, serve until SIGINT/SIGTERM."""
    import asyncio
    import logging
    import signal

    from server import logs
    from server.app import JobrecServer, ServerConfig
    from server.auth import load_api_keys
    from server.runtime import build_backend, load_encoder, load_postings, load_vectors

    logs.configure(
        args.log_format, logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    )
    log = logging.getLogger("jobrec.server")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("jobrec serve: --tls-cert and --tls-key go together")
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
    postings = load_postings(args.postings)
    log.info("postings loaded", extra={"postings": postings.height, "path": str(args.postings)})
    encoder = load_encoder(args.model)
    vectors = load_vectors(postings, encoder, args.embeddings, args.embedding_cache)
    backend, rules = build_backend(
        postings, vectors, shards=args.shards, ref_date=args.ref_date, ray_address=args.ray_address
    )
    course_rules = None
    if args.courses is not None:
        from server.runtime import load_courses_into

        course_rules = load_courses_into(backend, args.courses, postings, encoder,
                                         ref_date=args.ref_date)
        log.info("courses loaded", extra={"courses": backend.courses_loaded})
    server = JobrecServer(backend, encoder, rules, config, course_rules=course_rules)

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
