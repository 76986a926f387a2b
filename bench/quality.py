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


def trained_on_corpus(df: pl.DataFrame, label: str, out: Path, seed: int) -> dict:
    """Train on a seeded half of ``df`` (labels unused), evaluate with the other half as queries."""
    import contextlib
    import time

    import numpy as np

    from encoding.quality import evaluate_frame
    from training.config import TrainConfig
    from training.train import run_local, train_model

    perm = np.random.default_rng(1000 + seed).permutation(df.height)
    train = df[np.sort(perm[: df.height // 2]).tolist()]
    held = df[np.sort(perm[df.height // 2 :]).tolist()]["posting_id"].to_list()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # training progress; stdout is the JSON
        metrics = train_model(train.drop(label), out, TrainConfig(seed=seed), runner=run_local)
    res = evaluate_frame(df, out, label, query_ids=held, seed=seed)
    res["train"] = {"postings": train.height, "seed": seed, "minutes": round((time.perf_counter() - t0) / 60, 2),
                    "metrics": {k: metrics.get(k) for k in ("labels", "validation", "timings") if k in metrics}}
    return res


def seed_spread(results: dict) -> dict:
    """min / median / max of match@10 (default and W-BERT alone) over the seeds of each corpus."""
    import numpy as np

    out = {}
    for name in REAL:
        runs = [r for k, r in results.items() if k.startswith(f"{name}_trained_seed")]
        if runs:
            out[name] = {}
            for m in ("default", "wbert", "tfidf_char2_4"):
                v = [r["match_at_10"][m] for r in runs]
                out[name][m] = {"min": min(v), "median": float(np.median(v)), "max": max(v)}
    return out


def main(argv: list[str] | None = None) -> int:
    from encoding.quality import evaluate_frame, write_html

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--real-dir", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--sample", action="store_true", help="use the repo's 300-row samples")
    ap.add_argument("--generated", type=int, default=2000, help="generated postings (0: skip)")
    ap.add_argument("--weight", type=float, default=None)
    ap.add_argument("--train-real", type=Path, default=None, metavar="DIR",
                    help="also train a model (jobrec train's default recipe) on a seeded half "
                    "of each real corpus into DIR/<corpus> and measure it on the other half")
    ap.add_argument("--seeds", type=int, default=1, help="with --train-real: seeds per corpus")
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
        if args.train_real:
            for seed in range(args.seeds):
                key = f"{name}_trained" + (f"_seed{seed}" if args.seeds > 1 else "")
                results[key] = trained_on_corpus(df, label, args.train_real / key, seed)
                results[key]["ingest"] = counts
    if args.train_real and args.seeds > 1:
        results["seed_spread"] = seed_spread(results)
    if args.html:
        write_html({k: v for k, v in results.items() if "match_at_10" in v}, args.html)
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "match_at_k"}
                      for k, v in results.items()}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
