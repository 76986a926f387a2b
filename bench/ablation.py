"""Which fine-tuning objectives make W-BERT find "the same job": an ablation; prints JSON.

    nice python bench/ablation.py [--generated 2000] [--max-steps 60] [--seeds 3] [--html a.html]

For each corpus a tiny W-BERT is trained per objective set (``training.objectives``) and scored by
neighbour-label match@10 (``encoding.hybrid.match_at_k``, self excluded) of W-BERT alone. The
model trains on a seeded half of the corpus (``train_model``'s own train/val split inside it);
the other half, never seen in training, is both the queries and the postings searched:

* generated postings (``core.synth``; label: 6-digit ``occupation_code``): every set, labels
  used for training where the set asks for them, plus the label-free set with codes removed;
* the real corpora in ``../shared/data/real`` (wanted: ``job_group``; Worknet list:
  ``occupation_groups``, "shares one"), ingested with ``core.ingest.ingest(..., "csv", column_map=...)``
  and their column maps; they carry no KECO codes, so only the label-free sets train on them (labels
  are used for evaluation only).

Next to them, on the same queries: MLM only (the MLM phase's model of the same run), TF-IDF
character 2-4-grams (sublinear, min_df 2) and the demo-style model (the default recipe trained on
the generated corpus) applied to the real corpus. Then ``--seeds`` seeds of the default recipe
per real corpus: match@10 min/median/max, the validation title->body accuracy (chance 1/n_val)
and the share of the most common label among the neighbours (a collapsed model puts one
posting's neighbours everywhere: share near the corpus majority, accuracy near chance).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REAL = {  # file, column map, label column
    "wanted": ("wanted_job_groups.csv", "wanted.json", "job_group"),
    "worknet": ("worknet_list_crawl.csv", "worknet_list.json", "occupation_groups"),
}
SETS = {  # name -> objectives ("mlm_only" is the MLM phase of the run of the first set)
    "keco (today)": ("keco",),
    "keco+title": ("keco", "title"),
    "keco+dropout": ("keco", "dropout"),
    "keco+supcon": ("keco", "supcon"),
    "all": ("keco", "title", "dropout", "supcon"),
    "title+supcon": ("title", "supcon"),
    "label-free (title+dropout)": ("title", "dropout"),
}
LABEL_FREE_SETS = {"title": ("title",), "dropout": ("dropout",), "title+dropout": ("title", "dropout")}


def ingest_real(name: str, real_dir: Path) -> tuple[pl.DataFrame, str]:
    """A real corpus as a user gets it: ``jobrec ingest --format csv --column-map ...``."""
    from core.ingest import ingest

    file, cmap, label = REAL[name]
    res = ingest([real_dir / file], "csv", column_map=str(ROOT / "core" / "ingest" / "maps" / cmap))
    return res.postings, label


def label_list(df: pl.DataFrame, column: str) -> list:
    """encoding.quality.label_sets; a posting without a label matches nothing (its own id)."""
    from encoding.quality import label_sets

    sets = label_sets(df[column].cast(pl.Utf8).to_list())
    return [s or frozenset({f"none-{i}"}) for i, s in enumerate(sets)]


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded half to train on and the other half to query (and search) in."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def neighbour_stats(vectors, labels: list, queries: np.ndarray, k: int = 10) -> dict:
    """match@k (encoding.hybrid.match_at_k) and the share of the most common neighbour label."""
    from encoding.hybrid import match_at_k

    sims = vectors[queries] @ vectors.T
    sims = np.asarray(sims.toarray() if hasattr(sims, "toarray") else sims, dtype=np.float32)
    sims[np.arange(len(queries)), queries] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    counts = Counter(lab for row in top for j in row for lab in labels[j])
    if hasattr(vectors, "toarray"):  # sparse TF-IDF: the same count from the same top-k
        match = sum(bool(labels[q] & labels[j]) for q, row in zip(queries, top, strict=True) for j in row) / top.size
    else:
        match = match_at_k(vectors, labels, queries, k)
    return {"match_at_10": round(match, 4),
            "top_neighbour_label_share": round(counts.most_common(1)[0][1] / top.size, 4)}


def tfidf(texts: list[str]):
    from encoding.quality import baseline_vectors

    return baseline_vectors("tfidf_char2_4", texts)


def encode(model_dir: Path, texts: list[str], pretokenize: bool | None = None) -> np.ndarray:
    from encoding.encoder import Encoder, EncoderConfig

    return Encoder.load(model_dir, EncoderConfig(pretokenize=pretokenize)).encode(texts)


def train(df: pl.DataFrame, out: Path, cfg) -> dict:
    from training.train import run_local, train_model

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        train_model(df, out, cfg, runner=run_local, keep_work=True, compute_metrics=False)
    meta = json.loads((out / "wbert.json").read_text())
    hist = meta["history"]["finetune"]
    best = max(hist, key=lambda h: h["val_score"])
    return {"seconds": round(time.perf_counter() - t0, 1), "epochs": len(hist),
            "objectives": meta["objectives"],
            "val_title_body_acc": round(best.get("val_title_body_acc", float("nan")), 4),
            "n_val": int(round(meta["n_postings"] * cfg.val_fraction))}


def run_corpus(name: str, df: pl.DataFrame, labels: list, sets: dict, cfg, work: Path,
               demo: Path | None, drop_codes_for: tuple[str, ...] = ()) -> dict:
    """Train one model per objective set on a seeded half of ``df``; match@10 on the other half."""
    from encoding.text import posting_text

    texts = [posting_text(r) for r in df.iter_rows(named=True)]
    train_half, held = halves(len(texts), cfg.seed)
    held_texts = [texts[i] for i in held]
    res: dict[str, dict] = {"tfidf_char2_4": evaluate_half_rows(tfidf(held_texts), labels, held)}
    first = True
    for set_name, objectives in sets.items():
        out = work / f"{name}-{len(res)}"
        part = df[train_half.tolist()]
        if set_name in drop_codes_for and "occupation_code" in part.columns:
            part = part.drop("occupation_code")
        info = train(part, out, replace(cfg, objectives=objectives))
        info.update(evaluate_half_rows(encode(out, held_texts), labels, held))
        res[set_name] = info
        print(name, set_name, info, file=sys.stderr, flush=True)
        if first:
            first = False
            res["mlm only"] = evaluate_half_rows(
                encode(out / ".work" / "mlm" / "best", held_texts, True), labels, held)
    if demo is not None:
        res["demo model (generated only)"] = evaluate_half_rows(encode(demo, held_texts), labels, held)
    res["_queries"] = int(len(held))
    res["_postings"] = len(texts)
    return res


def evaluate_half_rows(vectors, labels: list, held: np.ndarray) -> dict:
    """Neighbour stats of vectors of the held-out rows only (row i = posting ``held[i]``)."""
    return neighbour_stats(vectors, [labels[i] for i in held], np.arange(len(held)))


def write_html(report: dict, path: Path) -> None:
    import html

    parts = ["<html><head><meta charset='utf-8'><title>W-BERT objective ablation</title></head><body>",
             "<h1>W-BERT objective ablation: match@10 (W-BERT alone, held-out queries)</h1>"]
    for corpus, res in report["corpora"].items():
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v['match_at_10']:.3f}</td>"
            f"<td>{v.get('top_neighbour_label_share', '')}</td><td>{v.get('val_title_body_acc', '')}</td>"
            f"<td>{v.get('seconds', '')}</td></tr>"
            for k, v in res.items() if not k.startswith("_"))
        parts.append(f"<h2>{html.escape(corpus)}</h2><table border=1><tr><th>set</th><th>match@10</th>"
                     f"<th>top label share</th><th>val title-body acc</th><th>s</th></tr>{rows}</table>")
    parts.append(f"<pre>{html.escape(json.dumps(report['seeds'], indent=1))}</pre></body></html>")
    path.write_text("".join(parts), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generated", type=int, default=2000)
    ap.add_argument("--real-dir", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--max-steps", type=int, default=60, help="optimizer steps per phase")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--corpora", default="generated,wanted,worknet")
    ap.add_argument("--html", type=Path, default=None)
    args = ap.parse_args()

    from core.synth import generate_postings
    from training.config import TrainConfig

    cfg = TrainConfig(epochs=args.epochs, mlm_epochs=1, max_steps=args.max_steps, log_every=0,
                      threads_per_worker=os.cpu_count() or 1)
    corpora = args.corpora.split(",")
    report: dict = {"conditions": {"max_steps_per_phase": args.max_steps, "epochs": args.epochs,
                                   "mlm_epochs": 1, "size": cfg.size, "batch_size": cfg.effective_batch_size,
                                   "runner": "in-process (training.train.run_local), same loop as Ray Train",
                                   "cpu_count": os.cpu_count(), "default_objectives": list(TrainConfig.objectives)},
                    "corpora": {}, "seeds": {}}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ablation-") as tmp:
        work = Path(tmp)
        demo = None
        if "generated" in corpora:
            gen = generate_postings(args.generated, seed=7)
            labels = [frozenset({c}) for c in gen["occupation_code"].to_list()]
            sets = {**SETS, "label-free (title+dropout), codes removed": SETS["label-free (title+dropout)"]}
            del sets["label-free (title+dropout)"]
            report["corpora"]["generated"] = run_corpus(
                "generated", gen, labels, sets, cfg, work, None,
                drop_codes_for=("label-free (title+dropout), codes removed",))
            demo = work / "generated-demo"
            train(gen, demo, replace(cfg, objectives=TrainConfig.objectives))
        for name in (c for c in corpora if c in REAL):
            from encoding.text import posting_text

            df, label = ingest_real(name, args.real_dir)
            labels = label_list(df, label)
            report["corpora"][name] = run_corpus(name, df, labels, LABEL_FREE_SETS, cfg, work, demo)
            texts = [posting_text(r) for r in df.iter_rows(named=True)]
            runs = []
            for seed in range(args.seeds):
                train_half, held = halves(len(texts), seed)
                held_texts = [texts[i] for i in held]
                out = work / f"{name}-seed{seed}"
                info = train(df[train_half.tolist()], out,
                             replace(cfg, seed=seed, objectives=TrainConfig.objectives))
                info.update(evaluate_half_rows(encode(out, held_texts), labels, held))
                info["tfidf_char2_4"] = evaluate_half_rows(tfidf(held_texts), labels, held)["match_at_10"]
                info["val_chance"] = round(1 / max(info["n_val"], 1), 4)
                runs.append(info)
                print(name, "seed", seed, info, file=sys.stderr, flush=True)
            m = [r["match_at_10"] for r in runs]
            report["seeds"][name] = {
                "match_at_10": {"min": min(m), "median": statistics.median(m), "max": max(m)},
                "collapsed": [r["val_title_body_acc"] < 5 * r["val_chance"] for r in runs],
                "runs": runs,
            }
    report["conditions"]["total_seconds"] = round(time.perf_counter() - t_all, 1)
    report["conditions"]["load_average_1m_end"] = os.getloadavg()[0]
    if args.html:
        write_html(report, args.html)
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
