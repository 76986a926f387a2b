"""How large a learnt WordPiece vocabulary W-BERT should have: a measurement; prints JSON.

    nice python bench/vocab.py [--sizes 2000,4000,8000,12000,16000,24000] [--train-sizes 4000,12000,24000]

The tokenizer is learnt as ``jobrec train`` learns it (Kiwi-pre-tokenised training split of the
generated corpus, :func:`training.tokenizer.train_tokenizer`, the no-[UNK] alphabet added on
top). For each learnt size, on held-out generated postings and on both real corpora in
``../shared/data/real`` (ingested with their column maps):

* tokens per posting (before truncation) and the share of postings cut at the model's
  ``max_length`` (what the model never sees);
* the share of word pieces that are a single character (the alphabet fallback: a word the
  vocabulary does not know is spelt out);
* [UNK] count (the alphabet makes it 0 whatever the size);
* total vocabulary and the embedding matrix's share of the model's parameters (it is most of a
  tiny model, and the MLM softmax is over all of it).

Then, for ``--train-sizes``, a tiny W-BERT is trained with the default recipe at a small step
budget on a seeded half of the generated corpus and on a seeded half of each real corpus
(label-free there), and scored by neighbour-label match@10 of W-BERT alone on the other half;
the training time is reported too. The sizes and budget are those of ``bench/ablation.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from bench.ablation import REAL, encode, evaluate_half_rows, halves, ingest_real, label_list, train  # noqa: E402


def token_stats(tokenizer, texts: list[str], max_length: int) -> dict:
    """Length, truncation, single-character pieces and [UNK] of pre-tokenised ``texts``."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    single = np.array([len(t.removeprefix("##")) == 1 for t in vocab])
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids if x]) if len(ids) else np.zeros(0, int)
    return {
        "tokens_per_posting": round(float(lengths.mean()), 1),
        "truncated_share": round(float(np.mean(lengths > max_length - 2)), 4),  # [CLS] + [SEP]
        "single_char_piece_share": round(float(single[flat].mean()), 4) if flat.size else 0.0,
        "unk_tokens": int((flat == tokenizer.unk_token_id).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,4000,8000,12000,16000,24000")
    ap.add_argument("--train-sizes", default="4000,12000,24000")
    ap.add_argument("--generated", type=int, default=2000)
    ap.add_argument("--real-dir", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()

    from core.synth import generate_postings
    from encoding.text import posting_text
    from training.config import TrainConfig
    from training.model import MODEL_SIZES
    from training.tokenizer import train_tokenizer
    from training.train import model_texts

    spec = MODEL_SIZES[TrainConfig.size]
    gen = generate_postings(args.generated, seed=7)
    corpora = {"generated": (gen, [frozenset({c}) for c in gen["occupation_code"].to_list()])}
    for name in REAL:
        df, label = ingest_real(name, args.real_dir)
        corpora[name] = (df, label_list(df, label))
    texts = {name: model_texts(df, pretokenized=True) for name, (df, _) in corpora.items()}
    splits = {name: halves(len(t), 0) for name, t in texts.items()}
    layers = spec.num_layers * (4 * spec.hidden_size ** 2 + 2 * spec.hidden_size * spec.intermediate_size)
    report: dict = {"conditions": {"size": TrainConfig.size, "hidden_size": spec.hidden_size,
                                   "max_length": spec.max_length, "default_learnt_vocab": spec.vocab_size,
                                   "learnt_on": "a seeded half of each corpus (Kiwi), measured on "
                                   "the other half; 'generated -> X': learnt on generated, "
                                   "measured on all of X (the demo model on real text)",
                                   "cpu_count": os.cpu_count()},
                    "tokenizer": {}, "training": {}}
    for size in (int(s) for s in args.sizes.split(",") if s):
        row: dict = {}
        for learn, t in texts.items():
            train_half, held = splits[learn]
            t0 = time.perf_counter()
            tok = train_tokenizer(iter([t[i] for i in train_half]), vocab_size=size)
            emb = len(tok) * spec.hidden_size
            row[learn] = {"vocab_total": len(tok), "learn_s": round(time.perf_counter() - t0, 1),
                          "embedding_param_share": round(emb / (emb + layers), 3),
                          **token_stats(tok, [t[i] for i in held], spec.max_length)}
            if learn == "generated":
                for other in (n for n in texts if n != learn):
                    row[f"generated -> {other}"] = token_stats(tok, texts[other], spec.max_length)
        report["tokenizer"][str(size)] = row
        print("tokenizer", size, row, file=sys.stderr, flush=True)

    cfg = TrainConfig(epochs=args.epochs, mlm_epochs=1, max_steps=args.max_steps, log_every=0,
                      threads_per_worker=os.cpu_count() or 1)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-vocab-") as tmp:
        for size in (int(s) for s in args.train_sizes.split(",") if s):
            row = {}
            for name, (df, labels) in corpora.items():
                tr, hd = halves(df.height, cfg.seed)
                out = Path(tmp) / f"{name}-{size}"
                info = train(df[tr.tolist()], out, replace(cfg, vocab_size=size))
                held_texts = [posting_text(r) for r in df[hd.tolist()].iter_rows(named=True)]
                info.update(evaluate_half_rows(encode(out, held_texts), labels, hd))
                row[name] = {k: info[k] for k in ("match_at_10", "seconds", "objectives")}
                print("train", size, name, row[name], file=sys.stderr, flush=True)
            report["training"][str(size)] = row
    report["conditions"]["training_seconds"] = round(time.perf_counter() - t_all, 1)
    report["conditions"]["load_average_1m_end"] = os.getloadavg()[0]
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
