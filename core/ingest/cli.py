"""``jobrec ingest``: read postings (Worknet XML, CSV, Parquet, the Work24 API), job seekers,
interaction logs (``--kind interactions``) or training courses (``--kind courses``: HRD-Net
XML, CSV, Parquet, the HRD-Net API)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from core.cli_args import iso_date

FORMAT_CHOICES = ("worknet-xml", "csv", "parquet", "work24-api", "hrd-xml", "hrd-api")
KIND_FORMATS = {
    "postings": ("worknet-xml", "csv", "parquet", "work24-api"),
    "seekers": ("csv", "parquet"),
    "interactions": ("csv", "parquet"),
    "courses": ("hrd-xml", "csv", "parquet", "hrd-api"),
}
API_FORMATS = ("work24-api", "hrd-api")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ingest`` sub-command."""
    p = subparsers.add_parser(
        "ingest",
        help="ingest postings or training courses into a canonical Parquet table",
        description=(
            "Read postings (or, with --kind courses, HRD-Net training courses) into the "
            "canonical schema. Every record read ends in --out or in --rejects (with a "
            "reason); the counts printed satisfy read = accepted + rejected."
        ),
    )
    p.add_argument("--kind", choices=tuple(KIND_FORMATS), default="postings",
                   help="what the sources hold (default postings; seekers and interactions: "
                        "csv or parquet; courses: HRD-Net XML/API, csv or parquet)")
    p.add_argument("sources", nargs="*", type=Path, metavar="SOURCE",
                   help="files, or directories of *.xml / *.csv / *.parquet files")
    p.add_argument("--format", required=True, choices=FORMAT_CHOICES, dest="fmt")
    p.add_argument("--out", required=True, type=Path, help="accepted postings (Parquet)")
    p.add_argument("--rejects", type=Path, default=None,
                   help="rejected records (Parquet); default: OUT with .rejects.parquet")
    p.add_argument("--column-map", type=Path, default=None,
                   help="JSON column map laid over the default CSV/Parquet mapping: {header: field}, "
                        "or {columns, keep, defaults, accept_unclassified} (core/ingest/maps/)")
    p.add_argument("--seekers", type=Path, default=None,
                   help="interactions: canonical seekers (Parquet); rows naming other seekers "
                        "are rejected as unknown_seeker")
    p.add_argument("--postings", type=Path, default=None,
                   help="interactions: canonical postings (Parquet); rows naming other postings "
                        "are rejected as unknown_posting")
    p.add_argument("--ref-date", default=None,
                   help="YYYY-MM-DD: the date two-digit years are read against (default today)")
    p.add_argument("--api-key", default=None,
                   help="API key (default: $WORK24_API_KEY for work24-api, $HRD_API_KEY for "
                        "hrd-api)")
    p.add_argument("--api-url", default=None,
                   help="list-call URL (default: the Work24 / HRD-Net list endpoint)")
    p.add_argument("--detail-url", default=None,
                   help="detail-call URL (default: --api-url when given, else the Work24 "
                        "detail endpoint)")
    p.add_argument("--max-pages", type=int, default=None, help="stop after N list pages")
    p.add_argument("--start", type=iso_date, default=None, metavar="YYYY-MM-DD",
                   help="hrd-api: first training start date to fetch (default --ref-date/today)")
    p.add_argument("--end", type=iso_date, default=None, metavar="YYYY-MM-DD",
                   help="hrd-api: last training start date to fetch (default start + 90 days)")
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
    from core.errors import InvalidInputError

    if args.fmt not in KIND_FORMATS[args.kind]:
        raise InvalidInputError(
            f"--kind {args.kind} reads formats {', '.join(KIND_FORMATS[args.kind])}, "
            f"not {args.fmt}", field="format")
    if args.fmt not in API_FORMATS and not args.sources:
        raise InvalidInputError(f"--format {args.fmt} needs at least one SOURCE", field="source")
    if args.fmt in API_FORMATS and args.sources:
        raise InvalidInputError(f"--format {args.fmt} fetches from --api-url; give no SOURCE",
                                field="source")
    ref_date = None
    if args.ref_date:
        try:
            ref_date = dt.date.fromisoformat(args.ref_date)
        except ValueError:
            raise InvalidInputError(f"--ref-date {args.ref_date!r} is not YYYY-MM-DD",
                                    field="ref_date") from None
    rejects = args.rejects or args.out.with_name(args.out.stem + ".rejects.parquet")
    if (args.seekers or args.postings) and args.kind != "interactions":
        raise InvalidInputError("--seekers/--postings check the ids of --kind interactions only",
                                field="kind")
    if args.kind == "seekers":
        return _run_seekers(args, ref_date, rejects)
    if args.kind == "interactions":
        return _run_interactions(args, rejects)
    if args.kind == "courses":
        result = _ingest_courses(args, ref_date)
        what = "courses"
    else:
        from core.ingest.pipeline import ingest

        result = ingest(
            args.sources, args.fmt, column_map=args.column_map, ref_date=ref_date,
            api_key=args.api_key or os.environ.get("WORK24_API_KEY"), api_url=args.api_url,
            detail_url=args.detail_url, max_pages=args.max_pages,
        )
        what = "postings"
    result.write(args.out, rejects)
    print(format_counts(result.counts))
    print(f"{what} -> {args.out}\nrejects  -> {rejects}", file=sys.stderr)
    return 0


def _json_map(path: Path | None) -> dict | None:
    import json

    from core.errors import InvalidInputError

    if path is None:
        return None
    try:
        column_map = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: unreadable column map: {exc}",
                                field="column_map") from None
    if not isinstance(column_map, dict):
        raise InvalidInputError(f"{path}: column map must be a JSON object", field="column_map")
    return column_map


def _run_interactions(args: argparse.Namespace, rejects: Path) -> int:
    import polars as pl

    from core.errors import InvalidInputError
    from core.ingest.interactions import ingest_interactions

    refs = {}
    for name in ("seekers", "postings"):
        path = getattr(args, name)
        if path is not None:
            try:
                refs[name] = pl.read_parquet(path, columns=[name[:-1] + "_id"])
            except Exception as exc:  # polars raises several types for missing/corrupt files
                raise InvalidInputError(f"--{name} {path}: cannot read {name[:-1]}_id: {exc}",
                                        field=name) from None
    result = ingest_interactions(args.sources, args.fmt, column_map=_json_map(args.column_map),
                                 **refs)
    result.write(args.out, rejects)
    print(format_counts(result.counts))
    if not result.counts["timed"]:
        print("the log has no times: `at` is null; train-ranker validates by seeker only",
              file=sys.stderr)
    print(f"interactions -> {args.out}\nrejects      -> {rejects}", file=sys.stderr)
    return 0


def _run_seekers(args: argparse.Namespace, ref_date, rejects: Path) -> int:
    from core.ingest.seekers import ingest_seekers

    result = ingest_seekers(args.sources, args.fmt, column_map=_json_map(args.column_map),
                            ref_date=ref_date)
    result.write(args.out, rejects)
    print(format_counts(result.counts))
    print(f"seekers -> {args.out}\nrejects -> {rejects}", file=sys.stderr)
    return 0


def _ingest_courses(args: argparse.Namespace, ref_date):
    from core.errors import InvalidInputError
    from core.ingest.courses import ingest_courses

    if args.fmt != "hrd-api":
        return ingest_courses(args.sources, args.fmt, column_map=args.column_map, ref_date=ref_date)
    from core.ingest.hrd_api import HrdClient, HrdConfig

    options = {}
    if args.api_url:
        options["list_url"] = args.api_url
    if args.detail_url:
        options["detail_url"] = args.detail_url
    start = args.start or ref_date or dt.date.today()
    end = args.end or start + dt.timedelta(days=90)
    try:
        client = HrdClient(HrdConfig.from_env(args.api_key, **options))
        if args.max_pages is not None and args.max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {args.max_pages}")
        if end < start:
            raise ValueError(f"--end {end} is before --start {start}")
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="api") from None
    return ingest_courses([], "hrd-api", ref_date=ref_date, client=client, window=(start, end),
                          max_pages=args.max_pages)
