"""Posting-vector quality: neighbour-label match@10 (and match@k, k=1..50) per corpus and method.

Corpora: a generated one (label: 6-digit KECO code) and the two real corpora in
``../shared/data/real`` (``--real-dir``; the repo's 300-row samples with ``--sample``), ingested
through the column maps as ``jobrec ingest`` does. Methods: the default hybrid (weight chosen
on a validation half of the labelled postings, as ``jobrec refresh`` chooses it), the hybrid
with the model's recorded weight, W-BERT alone, the lexical half alone, TF-IDF char 2-4,
TF-IDF word unigrams, random, all measured on the other (test) half. Prints JSON; ``--html``
writes the report with plots.

    nice -n 10 python bench/quality.py --model .jobrec/demo/model --html quality.html
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = ROOT / "tests" / "fixtures" / "real"
REAL = {  # file, repo sample, column map, label column
    "wanted": ("wanted_job_groups.csv", "wanted_sample.csv", "wanted.json", "job_group"),
    "worknet": ("worknet_list_crawl.csv", "worknet_list_sample.csv", "worknet_list.json",
                "occupation_groups"),
}


def real_corpus(name: str, real_dir: Path | None) -> tuple[pl.DataFrame, str, dict]:
    """A real corpus ingested as a user would (``jobrec ingest --format csv --column-map
    core/ingest/maps/<map>``): the accepted postings, the label column and the counts."""
    from core.ingest import ingest

    full, sample, cmap, label = REAL[name]
    path = (real_dir / full) if real_dir is not None else SAMPLES / sample
    res = ingest([path], "csv", column_map=ROOT / "core" / "ingest" / "maps" / cmap)
    return res.postings, label, {k: v for k, v in res.counts.items() if k != "by_reason"}


def main(argv: list[str] | None = None) -> int:
    from encoding.quality import evaluate_frame, write_html

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--real-dir", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--sample", action="store_true", help="use the repo's 300-row samples")
    ap.add_argument("--generated", type=int, default=2000, help="generated postings (0: skip)")
    ap.add_argument("--weight", type=float, default=None)
    ap.add_argument("--html", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results: dict[str, dict] = {}
    if args.generated:
        from core.synth import generate_postings

        gen = generate_postings(args.generated, seed=7)
        results["generated"] = evaluate_frame(gen, args.model, "occupation_code", label_sep=None,
                                              weight=args.weight)
    real_dir = None if args.sample or not args.real_dir.is_dir() else args.real_dir
    for name in REAL:
        df, label, counts = real_corpus(name, real_dir)
        results[name] = evaluate_frame(df, args.model, label, weight=args.weight)
        results[name]["ingest"] = counts
    if args.html:
        write_html(results, args.html)
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "match_at_k"}
                      for k, v in results.items()}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
