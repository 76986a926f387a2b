"""``jobrec generate``: write a synthetic corpus (postings, optional seekers/courses/XML)."""

from __future__ import annotations

import argparse

from core.cli_args import iso_date


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def register(subparsers) -> None:
    """Add the ``generate`` sub-command."""
    p = subparsers.add_parser(
        "generate",
        help="write a realistic synthetic Worknet corpus",
        description="Write DIR/postings.parquet (canonical schema) and, when asked, "
        "seekers.parquet, courses.parquet (+ courses_truth.parquet: the KECO occupation each "
        "course was generated for, for evaluation only) and DIR/worknet/*.xml (Worknet list + "
        "detail XML; with --courses also DIR/hrd/*.xml, HRD-Net list + detail XML).",
    )
    p.add_argument("--postings", type=_count, required=True, metavar="N", help="number of postings")
    p.add_argument("--seekers", type=_count, default=0, metavar="M", help="number of job seekers")
    p.add_argument("--courses", type=_count, default=0, metavar="C", help="number of training courses")
    p.add_argument("--days", type=_count, default=7, metavar="D",
                   help="days of seeker interactions before the ref date (default 7)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--xml", action="store_true", help="also write the postings as Worknet XML")
    p.add_argument("--per-file", type=_count, default=1000, metavar="K",
                   help="postings per XML file (default 1000)")
    p.add_argument("--ref-date", type=iso_date, default=None, metavar="YYYY-MM-DD",
                   help="date the corpus is 'as of' (default: core.synth.DEFAULT_REF_DATE)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from core.synth import (
        DEFAULT_REF_DATE,
        generate_course_corpus,
        generate_interactions,
        generate_postings,
        generate_seekers,
        write_hrd_xml,
        write_worknet_xml,
    )

    if args.xml and args.per_file < 1:
        raise SystemExit("jobrec generate: --per-file must be >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ref = args.ref_date or DEFAULT_REF_DATE
    t0 = time.perf_counter()
    postings = generate_postings(args.postings, args.seed, ref_date=ref)
    postings.write_parquet(out / "postings.parquet")
    print(f"postings: {postings.height} -> {out / 'postings.parquet'} "
          f"({time.perf_counter() - t0:.1f} s, ref date {ref})")
    if args.seekers:
        seekers = generate_seekers(args.seekers, args.seed, postings=postings, ref_date=ref)
        seekers.write_parquet(out / "seekers.parquet")
        print(f"seekers: {seekers.height} -> {out / 'seekers.parquet'}")
        inter = generate_interactions(seekers, postings, args.seed, days=args.days, ref_date=ref)
        inter.write_parquet(out / "interactions.parquet")
        print(f"interactions: {inter.height} over {args.days} days -> "
              f"{out / 'interactions.parquet'}")
    if args.courses:
        corpus = generate_course_corpus(args.courses, args.seed, ref_date=ref)
        corpus.courses.write_parquet(out / "courses.parquet")
        corpus.truth.write_parquet(out / "courses_truth.parquet")
        print(f"courses: {corpus.courses.height} -> {out / 'courses.parquet'} "
              f"(truth: {out / 'courses_truth.parquet'})")
        if args.xml:
            paths = write_hrd_xml(corpus.courses, out / "hrd", per_file=min(100, args.per_file))
            print(f"hrd xml: {len(paths)} files -> {out / 'hrd'}")
    if args.xml:
        paths = write_worknet_xml(postings, out / "worknet", per_file=args.per_file,
                                  seed=args.seed)
        print(f"worknet xml: {len(paths)} files -> {out / 'worknet'}")
    return 0
