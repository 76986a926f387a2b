"""Training throughput per runtime layout and the accuracy it reaches; prints JSON.

    .venv/bin/python bench/train.py [--n 3000] [--epochs 1] [--layouts ray1x2,ray2x1,local]

Layouts: ``ray1x2`` one Ray Train worker with 2 torch threads, ``ray2x1`` two DDP workers
with 1 thread each, ``local`` the same loop in-process without Ray. Each runs the default
"tiny" pipeline (MLM, then KECO fine-tuning) on ``--n`` generated postings and reports
postings/s per phase, minutes per epoch extrapolated to 20k postings (16k training rows),
wall time, and the held-out accuracy next to TF-IDF + logistic regression.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    ap.add_argument("--mlm-epochs", type=int, default=1)
    ap.add_argument("--layouts", default="ray1x2,ray2x1,local")
    args = ap.parse_args()

    from core.synth import generate_postings
    from training.train import TrainConfig, run_local, train_model

    cpus = os.cpu_count() or 1
    df = generate_postings(args.n, seed=0)
    out: dict[str, dict] = {}
    for layout in args.layouts.split(","):
        if layout == "ray1x2":
            cfg = TrainConfig(workers=1, threads_per_worker=cpus)
        elif layout == "ray2x1":
            cfg = TrainConfig(workers=2, threads_per_worker=max(1, cpus // 2))
        elif layout == "local":
            cfg = TrainConfig(workers=1, threads_per_worker=cpus)
        else:
            raise SystemExit(f"unknown layout {layout!r}")
        from dataclasses import replace

        cfg = replace(cfg, epochs=args.epochs, mlm_epochs=args.mlm_epochs, log_every=0)
        runner = run_local
        if layout.startswith("ray"):
            import ray

            from training.ray_train import run_phase_ray

            if not ray.is_initialized():
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            runner = run_phase_ray
        with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # progress lines; stdout is the JSON
                metrics = train_model(df, Path(tmp) / "m", cfg, runner=runner, keep_work=False)
            wall = time.perf_counter() - t0
            meta = json.loads((Path(tmp) / "m" / "wbert.json").read_text())
        phases = {}
        for phase, hist in meta["history"].items():
            rate = sum(h["train_postings_per_s"] for h in hist) / len(hist)
            phases[phase] = {
                "postings_per_s": round(rate, 1),
                "minutes_per_epoch_at_16k_train": round(16000 / rate / 60, 2),
                "epoch_seconds_here": [round(h["epoch_seconds"], 1) for h in hist],
            }
        out[layout] = {
            "workers": cfg.workers,
            "threads_per_worker": cfg.threads_per_worker,
            "phases": phases,
            "wall_seconds": round(wall, 1),
            "timings": {k: round(v, 1) for k, v in metrics["timings"].items()},
            "wbert_major_acc": metrics["wbert"]["major"]["accuracy"],
            "wbert_mid_acc": metrics["wbert"]["mid"]["accuracy"],
            "tfidf_major_acc": metrics["tfidf_logreg"]["major"]["accuracy"],
            "tfidf_mid_acc": metrics["tfidf_logreg"]["mid"]["accuracy"],
        }
        print(layout, out[layout], file=sys.stderr, flush=True)
    print(json.dumps({
        "n_postings": args.n,
        "cpu_count": cpus,
        "load_average_1m": os.getloadavg()[0],
        "layouts": out,
    }, indent=1))


if __name__ == "__main__":
    main()
