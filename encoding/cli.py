"""``jobrec evaluate``: neighbour-label match@10 of the posting vectors against baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser(
        "evaluate",
        help="neighbour-label match@k of the default vectors vs W-BERT, lexical, TF-IDF, random",
        description="For every labelled posting, the share of its 10 nearest neighbours (cosine, "
        "itself excluded) sharing its label, for the default hybrid representation, W-BERT "
        "alone, the lexical half alone, TF-IDF char 2-4, TF-IDF word unigrams and random "
        "vectors. Prints JSON; --html writes a report with plots.",
    )
    p.add_argument("--postings", required=True, type=Path, help="postings file (parquet, csv, jsonl)")
    p.add_argument("--model", required=True, type=Path, help="trained W-BERT model directory")
    p.add_argument("--label-column", required=True, help="column holding the label")
    p.add_argument("--label-sep", default="|", help="separator of several labels in one cell")
    p.add_argument(
        "--text-columns", default=None,
        help="comma-separated columns joined into the description (default: description)",
    )  # fmt: skip
    p.add_argument("--weight", type=float, default=None, help="hybrid weight (default: the model's)")
    p.add_argument("--html", type=Path, default=None, help="write an HTML report here")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import polars as pl

    from core.postings_io import read_postings
    from encoding.quality import evaluate_frame, write_html

    df = read_postings(args.postings, canonical=False)
    if args.text_columns:
        cols = [c.strip() for c in args.text_columns.split(",") if c.strip()]
        df = df.with_columns(
            description=pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("") for c in cols],
                                      separator="\n")
        )
    res = evaluate_frame(df, args.model, args.label_column, label_sep=args.label_sep or None,
                         weight=args.weight)
    if args.html:
        write_html({Path(args.postings).stem: res}, args.html)
    res.pop("match_at_k")
    print(json.dumps(res, ensure_ascii=False, indent=1))
    return 0
