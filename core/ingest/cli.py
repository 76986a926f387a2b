"""``jobrec ingest``: read postings from Worknet XML, CSV, Parquet or the Work24 API."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

FORMAT_CHOICES = ("worknet-xml", "csv", "parquet", "work24-api")
KIND_CHOICES = ("postings", "seekers")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ingest`` sub-command."""
    p = subparsers.add_parser(
        "ingest",
        help="ingest postings into the canonical Parquet table",
        description=(
            "Read postings into the canonical schema. Every record read ends in --out or in "
            "--rejects (with a reason); the counts printed satisfy read = accepted + rejected."
        ),
    )
    p.add_argument("sources", nargs="*", type=Path, metavar="SOURCE",
                   help="files, or directories of *.xml / *.csv / *.parquet files")
    p.add_argument("--kind", choices=KIND_CHOICES, default="postings",
                   help="what the sources hold (default postings; seekers: csv or parquet)")
    p.add_argument("--format", required=True, choices=FORMAT_CHOICES, dest="fmt")
    p.add_argument("--out", required=True, type=Path, help="accepted postings (Parquet)")
    p.add_argument("--rejects", type=Path, default=None,
                   help="rejected records (Parquet); default: OUT with .rejects.parquet")
    p.add_argument("--column-map", type=Path, default=None,
                   help="JSON column map laid over the default CSV/Parquet mapping: {header: field}, "
                        "or {columns, keep, defaults, accept_unclassified} (core/ingest/maps/)")
    p.add_argument("--ref-date", default=None,
                   help="YYYY-MM-DD: the date two-digit years are read against (default today)")
    p.add_argument("--api-key", default=os.environ.get("WORK24_API_KEY"),
                   help="Work24 API key (work24-api; default: $WORK24_API_KEY)")
    p.add_argument("--api-url", default=None,
                   help="list-call URL (work24-api; default: the Work24 list endpoint)")
    p.add_argument("--detail-url", default=None,
                   help="detail-call URL (default: --api-url when given, else the Work24 "
                        "detail endpoint)")
    p.add_argument("--max-pages", type=int, default=None, help="stop after N list pages")
    p.set_defaults(func=run)


def format_counts(counts: dict) -> str:
    """The counts as a small aligned table."""
    rows = [("read", counts["read"]), ("accepted", counts["accepted"]),
            ("rejected", counts["rejected"])]
    rows += [(f"  {reason}", n) for reason, n in counts["by_reason"].items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:>9,}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    """Run the ingestion and print the counts."""
    import datetime as dt

    from core.errors import InvalidInputError
    from core.ingest.pipeline import ingest

    if args.fmt != "work24-api" and not args.sources:
        raise InvalidInputError(f"--format {args.fmt} needs at least one SOURCE", field="source")
    if args.fmt == "work24-api" and args.sources:
        raise InvalidInputError("--format work24-api fetches from --api-url; give no SOURCE",
                                field="source")
    ref_date = None
    if args.ref_date:
        try:
            ref_date = dt.date.fromisoformat(args.ref_date)
        except ValueError:
            raise InvalidInputError(f"--ref-date {args.ref_date!r} is not YYYY-MM-DD",
                                    field="ref_date") from None
    rejects = args.rejects or args.out.with_name(args.out.stem + ".rejects.parquet")
    if args.kind == "seekers":
        return _run_seekers(args, ref_date, rejects)
    result = ingest(
        args.sources, args.fmt, column_map=args.column_map, ref_date=ref_date,
        api_key=args.api_key, api_url=args.api_url, detail_url=args.detail_url,
        max_pages=args.max_pages,
    )
    result.write(args.out, rejects)
    print(format_counts(result.counts))
    print(f"postings -> {args.out}\nrejects  -> {rejects}", file=sys.stderr)
    return 0


def _run_seekers(args: argparse.Namespace, ref_date, rejects: Path) -> int:
    import json

    from core.errors import InvalidInputError
    from core.ingest.seekers import ingest_seekers

    column_map = None
    if args.column_map is not None:
        try:
            column_map = json.loads(args.column_map.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"{args.column_map}: unreadable column map: {exc}",
                                    field="column_map") from None
        if not isinstance(column_map, dict):
            raise InvalidInputError(f"{args.column_map}: column map must be a JSON object",
                                    field="column_map")
    result = ingest_seekers(args.sources, args.fmt, column_map=column_map, ref_date=ref_date)
    result.write(args.out, rejects)
    print(format_counts(result.counts))
    print(f"seekers -> {args.out}\nrejects -> {rejects}", file=sys.stderr)
    return 0
