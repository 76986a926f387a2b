"""Encoder throughput and quality cost per CPU configuration; prints JSON.

    .venv/bin/python bench/encode.py [--model-dir DIR] [--n 2000] [--threads 2] [--real-dir D]

Cold encoding: a fresh Kiwi segment cache, no embedding cache; postings/s counts text
preparation (Kiwi + WordPiece) and the model. Quality per configuration, against the fp32
full-length reference: mean overlap of the top-10 cosine neighbour sets, and the share of
top-10 neighbours with the query's KECO mid group (same figure as metrics.json). Without a
trained model (``--model-dir`` or the default model dir) a small one is trained first.

Real text (``real``): the real corpora of ``--real-dir`` (the repo's samples when absent),
ingested through their column maps, encoded cold with the default configuration, with Kiwi
seeing only the characters the model can read (the default) and seeing whole texts (the
earlier behaviour): postings/s of each and the share of postings whose token ids differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402


def _topk(emb: np.ndarray, q: np.ndarray, k: int = 10) -> np.ndarray:
    sims = emb[q] @ emb.T
    sims[np.arange(len(q)), q] = -np.inf
    return np.argpartition(-sims, k, axis=1)[:, :k]


def _ensure_model(model_dir: Path | None) -> Path:
    from encoding.encoder import default_model_dir, is_trained_model_dir

    d = model_dir or default_model_dir()
    if is_trained_model_dir(d):
        return d
    from core.synth import generate_postings
    from training.train import TrainConfig, run_local, train_model

    d = Path(tempfile.mkdtemp(prefix="bench-wbert-")) / "model"
    print(f"no trained model found; training a small one in {d}", file=sys.stderr)
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # progress lines; stdout is the JSON
        train_model(generate_postings(3000, seed=0), d, TrainConfig(epochs=2, mlm_epochs=1),
                    runner=run_local, compute_metrics=False)
    return d


REAL = {"wanted": ("wanted_job_groups.csv", "wanted_sample.csv", "wanted.json"),
        "worknet": ("worknet_list_crawl.csv", "worknet_list_sample.csv", "worknet_list.json")}


def real_text(model_dir: Path, real_dir: Path | None, n: int) -> dict:
    """Cold encoding of real postings, Kiwi on the readable prefix vs on whole texts."""
    import encoding.encoder as E
    from core.ingest import ingest
    from encoding.pretokenize import _get_kiwi, clear_cache
    from encoding.text import posting_text

    root = Path(__file__).resolve().parents[1]
    enc = E.Encoder.load(model_dir, E.EncoderConfig(batch_size=64))
    # Kiwi's first analysis sets up its language model (~3 CPU-s): set-up, not throughput
    _get_kiwi().tokenize(["형태소 분석기를 준비합니다. 워밍업 문장입니다."] * 4)
    out = {}
    for name, (full, sample, cmap) in REAL.items():
        path = real_dir / full if real_dir is not None and (real_dir / full).is_file() \
            else root / "tests" / "fixtures" / "real" / sample
        df = ingest([path], "csv", column_map=root / "core" / "ingest" / "maps" / cmap).postings
        texts = [posting_text(r) for r in df.head(n).iter_rows(named=True)]
        res, ids = {}, {}
        for mode, factor in (("prefix", E.KIWI_CHARS_PER_TOKEN), ("whole", 1e9)):
            saved, E.KIWI_CHARS_PER_TOKEN = E.KIWI_CHARS_PER_TOKEN, factor
            try:
                clear_cache()
                t0 = time.perf_counter()
                ids[mode] = enc.prepare(texts)
                prep = time.perf_counter() - t0
                t0 = time.perf_counter()
                enc.encode_ids(ids[mode])
                model = time.perf_counter() - t0
            finally:
                E.KIWI_CHARS_PER_TOKEN = saved
            res[mode] = {"postings_per_s_cold": round(len(texts) / (prep + model), 1),
                         "prep_seconds": round(prep, 2), "model_seconds": round(model, 2)}
        res["postings"] = len(texts)
        res["source"] = str(path.name)
        res["mean_chars"] = round(float(np.mean([len(t) for t in texts])), 1)
        res["ids_differ"] = sum(a != b for a, b in zip(ids["prefix"], ids["whole"], strict=True))
        out[name] = res
        print(name, res, file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--n", type=int, default=2000, help="postings to encode per configuration")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--real-dir", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data" / "real")
    ap.add_argument("--real-only", action="store_true", help="only the real-text section")
    args = ap.parse_args()

    import torch

    from core.reference import occupations
    from core.synth import generate_postings
    from encoding.encoder import Encoder, EncoderConfig, read_meta
    from encoding.pretokenize import clear_cache, pretokenize_batch
    from encoding.text import posting_text

    model_dir = _ensure_model(args.model_dir)
    torch.set_num_threads(args.threads)
    real = real_text(model_dir, args.real_dir if args.real_dir.is_dir() else None, args.n)
    if args.real_only:
        print(json.dumps({"model_dir": str(model_dir), "cpu_count": os.cpu_count(),
                          "load_average_1m": os.getloadavg()[0], "real": real}, indent=1))
        return
    meta = read_meta(model_dir)
    full = int(meta.get("max_length") or 64)
    df = generate_postings(args.n, seed=7)  # not the training corpus (seed 0)
    texts = [posting_text(r) for r in df.iter_rows(named=True)]
    occ = occupations()
    mid = np.array([occ[c].mid_code if c in occ else "" for c in df["occupation_code"]])
    queries = np.arange(0, len(texts), max(1, len(texts) // 500))

    # Kiwi alone, cold and without the segment cache's help (every segment distinct)
    clear_cache()
    sample = texts[:300]
    from encoding.pretokenize import _get_kiwi

    _get_kiwi()  # model load (~1.5 s) is not throughput
    t0 = time.perf_counter()
    pretokenize_batch([f"{t} {i}" for i, t in enumerate(sample)])
    kiwi_uncached = len(sample) / (time.perf_counter() - t0)

    configs = [
        ("fp32", dict(quantize=False, max_length=full)),
        ("int8", dict(quantize=True, max_length=full)),
        (f"fp32_len{full // 2}", dict(quantize=False, max_length=full // 2)),
        (f"int8_len{full // 2}", dict(quantize=True, max_length=full // 2)),
        ("fp32_1thread", dict(quantize=False, max_length=full, num_threads=1)),
    ]
    results: dict[str, dict] = {}
    ref_top = None
    for name, kw in configs:
        torch.set_num_threads(kw.pop("num_threads", args.threads))
        clear_cache()
        t0 = time.perf_counter()
        enc = Encoder.load(model_dir, EncoderConfig(batch_size=64, **kw))
        enc.encode_ids(enc.prepare(["워밍업 문장입니다"] * 8))  # first-call kernel set-up
        load_s = time.perf_counter() - t0
        clear_cache()
        t0 = time.perf_counter()
        ids = enc.prepare(texts)
        prep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = enc.encode_ids(ids)
        model_s = time.perf_counter() - t0
        top = _topk(emb, queries)
        if ref_top is None:
            ref_top = top
        overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref_top, strict=True)]))
        results[name] = {
            "postings_per_s_cold": round(len(texts) / (prep_s + model_s), 1),
            "model_only_postings_per_s": round(len(texts) / model_s, 1),
            "prep_seconds": round(prep_s, 2),
            "model_seconds": round(model_s, 2),
            "load_seconds": round(load_s, 2),
            "threads": torch.get_num_threads(),
            "top10_overlap_vs_fp32": round(overlap, 4),
            "same_mid_share_top10": round(float(np.mean(mid[top] == mid[queries][:, None])), 4),
        }
        print(name, results[name], file=sys.stderr, flush=True)
    print(json.dumps({
        "model_dir": str(model_dir),
        "n_postings": len(texts),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "kiwi_uncached_texts_per_s": round(kiwi_uncached, 1),
        "configs": results,
        "real": real,
    }, indent=1))


if __name__ == "__main__":
    main()
