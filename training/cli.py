"""``jobrec train``: build the W-BERT model directory from a postings file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.errors import InvalidInputError
from core.postings_io import read_postings
from training.config import TrainConfig
from training.objectives import OBJECTIVES

# bench/train.py (2k postings, 2 cores): 2 one-thread DDP workers process ~1.3-1.6x more
# postings/s than one two-thread worker, but the effective batch doubles, so an epoch makes
# half the optimizer steps and reaches lower accuracy; 1 worker is the validated default.
DEFAULT_WORKERS = 1


def register(subparsers) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train",
        help="train W-BERT (Kiwi+WordPiece tokenizer, MLM, KECO fine-tuning) under Ray Train",
        description=(
            "Train the W-BERT posting encoder. From scratch (default): Kiwi + WordPiece "
            "tokenizer, masked-language-model domain pre-training, then multi-task KECO "
            "major/mid fine-tuning, all under Ray Train TorchTrainer. With --base-model a "
            "pretrained checkpoint (hub name or local path) is fine-tuned instead. Writes a "
            "Hugging Face model directory with wbert.json and metrics.json (held-out split, "
            "next to a TF-IDF + logistic-regression baseline)."
        ),
    )
    p.add_argument("--postings", required=True, help="postings file (parquet, csv, jsonl)")
    p.add_argument("--out", default=None, help="model directory (default: jobrec's default model dir)")
    p.add_argument("--base-model", default=None, help="HF hub name or local path to start from")
    p.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    p.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS,
        help="Ray Train workers (default %(default)s; more workers = more postings/s but a "
        "larger effective batch, see bench/train.py)",
    )
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16/fp16 autocast")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (early stopping)")
    p.add_argument("--mlm-epochs", type=int, default=None,
                   help="MLM epochs (default: 1 from scratch, 0 with --base-model)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps per phase")
    p.add_argument("--batch-size", type=int, default=None, help="per worker (default 32 CPU, 128 GPU)")
    p.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate")
    p.add_argument("--max-length", type=int, default=None, help="max tokens per posting")
    p.add_argument("--max-samples", type=int, default=None, help="use only the first N postings")
    p.add_argument("--threads-per-worker", type=int, default=None)
    p.add_argument("--patience", type=int, default=1, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--objectives", default=",".join(TrainConfig.objectives),
        help="fine-tuning objectives, comma-separated, from " + ",".join(OBJECTIVES)
        + " (default %(default)s; without KECO codes only title,dropout run)",
    )
    p.add_argument("--temperature", type=float, default=TrainConfig.temperature,
                   help="contrastive temperature (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--keep-work", action="store_true", help="keep checkpoints under OUT/.work")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import os
    import time

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from encoding.encoder import default_model_dir
    from training.train import train_model

    try:
        cfg = TrainConfig(
            size=args.size,
            base_model=args.base_model,
            epochs=args.epochs,
            mlm_epochs=args.mlm_epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            max_length=args.max_length,
            max_steps=args.max_steps,
            patience=args.patience,
            seed=args.seed,
            workers=args.workers,
            use_gpu=args.gpu,
            threads_per_worker=args.threads_per_worker,
            max_samples=args.max_samples,
            objectives=tuple(o.strip() for o in args.objectives.split(",") if o.strip()),
            temperature=args.temperature,
        )
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    out = Path(args.out) if args.out else default_model_dir()
    postings = read_postings(args.postings, canonical=False)
    t0 = time.perf_counter()
    metrics = train_model(postings, out, cfg, resume=args.resume, keep_work=args.keep_work)
    summary = {
        "model_dir": str(out),
        "minutes": round((time.perf_counter() - t0) / 60, 2),
        "wbert": metrics.get("wbert"),
        "tfidf_logreg": metrics.get("tfidf_logreg"),
        "labels_absent": metrics.get("labels_absent"),
        "objectives": metrics.get("objectives"),
        "title_body_retrieval": metrics.get("title_body_retrieval"),
        "neighbours_same_mid_top10": {
            "wbert": metrics.get("neighbours", {}).get("wbert_same_mid_share"),
            "tfidf": metrics.get("neighbours", {}).get("tfidf_same_mid_share"),
        },
    }
    print(json.dumps(summary, ensure_ascii=False, indent=1))
    return 0
