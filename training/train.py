"""W-BERT training logic: data preparation, the MLM and KECO fine-tuning loops, orchestration.

Nothing here imports Ray at import time. A training phase (:func:`training.phase.run_phase`)
runs against a small :class:`training.phase.RunContext` interface; :func:`run_local` runs it
in this process, ``training.ray_train.run_phase_ray`` under Ray Train (the default runner).

Pipeline of :func:`train_model`:

1. posting text (:func:`encoding.text.posting_text`) -> Kiwi pre-tokenisation -> seeded
   train / validation / test split; labels are the primary KECO group of the occupation code.
2. a WordPiece tokenizer trained on the training split (or the base model's tokenizer).
3. phase ``mlm``: masked-language-model domain pre-training of a from-scratch BERT.
4. phase ``finetune``: multi-task KECO major + mid classification, starting from the MLM
   result or from ``--base-model`` (the same ``from_pretrained`` call in both cases).
5. the best validation epoch of each phase is kept (early stopping), the final model is saved
   in Hugging Face format with ``wbert.json`` and ``metrics.json`` (held-out test split,
   next to the TF-IDF baseline on the same split).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.errors import InvalidInputError
from encoding.encoder import WBERT_META
from training.config import TrainConfig
from training.model import MODEL_SIZES, bert_config
from training.phase import DONE, HISTORY, LocalContext, PhaseSpec, run_phase

log = logging.getLogger(__name__)



# ----------------------------------------------------------------------------- data


@dataclass
class PreparedData:
    """Token ids and labels of every usable posting, and the seeded split."""

    posting_ids: list[str]
    texts: list[str]  # model input text (pre-tokenised when the tokenizer expects it)
    input_ids: np.ndarray  # (n, max_length) int32, padded with pad_id
    lengths: np.ndarray  # (n,) int32
    major: np.ndarray  # (n,) int64 index into major_labels
    mid: np.ndarray  # (n,) int64 index into mid_labels
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    major_labels: list[str]
    mid_labels: list[str]
    pad_id: int
    special_ids: list[int]
    mask_id: int
    vocab_size: int
    skipped: dict[str, int] = field(default_factory=dict)
    # title and the rest of the text (duties, qualifications ...) apart, for the title objective
    title_ids: np.ndarray | None = None  # (n, title_max_length) int32
    title_lengths: np.ndarray | None = None
    body_ids: np.ndarray | None = None  # (n, max_length) int32
    body_lengths: np.ndarray | None = None
    fine: np.ndarray | None = None  # (n,) int64 index of the 6-digit occupation code, -1 unknown
    labelled: bool = True  # False: no posting has a known KECO code (major/mid/fine are -1)
    labels_absent: list[str] = field(default_factory=list)
    title_texts: list[str] = field(default_factory=list)
    body_texts: list[str] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric part, as shipped to training workers."""
        out = {
            "input_ids": self.input_ids,
            "lengths": self.lengths,
            "major": self.major,
            "mid": self.mid,
            "train_idx": self.train_idx,
            "val_idx": self.val_idx,
        }
        if self.title_ids is not None:
            out.update(title_input_ids=self.title_ids, title_lengths=self.title_lengths,
                       body_input_ids=self.body_ids, body_lengths=self.body_lengths, fine=self.fine)
        return out


def keco_labels(codes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """Primary KECO (major, mid) indices per occupation code, and a mask of known codes."""
    from core.reference import major_codes, mid_codes, occupations

    occ = occupations()
    majors, mids = list(major_codes()), list(mid_codes())
    mi = {c: i for i, c in enumerate(majors)}
    di = {c: i for i, c in enumerate(mids)}
    known = np.array([c in occ for c in codes], dtype=bool)
    major = np.array([mi[occ[c].major_code] if c in occ else -1 for c in codes], dtype=np.int64)
    mid = np.array([di[occ[c].mid_code] if c in occ else -1 for c in codes], dtype=np.int64)
    return major, mid, known, majors, mids


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random train / validation / test split of ``range(n)``."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_test - n_val < 2:
        raise InvalidInputError(f"too few postings ({n}) to split into train/validation/test")
    test = np.sort(perm[:n_test])
    val = np.sort(perm[n_test : n_test + n_val])
    train = np.sort(perm[n_test + n_val :])
    return train, val, test


def model_texts(postings: pl.DataFrame, pretokenized: bool) -> list[str]:
    """The text the model sees for each posting, pre-tokenised when asked."""
    return model_text_parts(postings, pretokenized)[0]


def model_text_parts(postings: pl.DataFrame, pretokenized: bool) -> tuple[list[str], list[str], list[str]]:
    """(full text, title, body) per posting as the model sees them; body is the full text
    without its title (the full text when nothing else is left)."""
    from encoding.pretokenize import pretokenize_batch
    from encoding.text import posting_text

    rows = list(postings.iter_rows(named=True))
    full = [posting_text(r) for r in rows]
    title = [posting_text({"title": r.get("title")}) for r in rows]
    body = [posting_text({**r, "title": ""}) or f for r, f in zip(rows, full, strict=True)]
    if pretokenized:
        # the segment cache makes the title and body passes almost free after the full one
        full, title, body = pretokenize_batch(full), pretokenize_batch(title), pretokenize_batch(body)
    return full, title, body


def tokenize_to_arrays(tokenizer, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded to ``max_length`` (int32) and the true lengths."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    ids = np.full((len(texts), max_length), tokenizer.pad_token_id, dtype=np.int32)
    lengths = np.zeros(len(texts), dtype=np.int32)
    for i, seq in enumerate(enc["input_ids"]):
        ids[i, : len(seq)] = seq
        lengths[i] = len(seq)
    return ids, lengths


def prepare_data(postings: pl.DataFrame, cfg: TrainConfig, work_dir: Path) -> tuple[PreparedData, Any]:
    """Texts, labels, split and tokenizer (trained on the training split, or the base model's).

    The tokenizer is saved to ``work_dir/tokenizer`` and reused when it exists (resume).
    """
    from training.tokenizer import load_tokenizer, train_tokenizer

    for col in ("posting_id", "title", "description"):
        if col not in postings.columns:
            raise InvalidInputError(f"postings lack column {col!r}", field=col)
    if "occupation_code" in postings.columns:
        codes = postings["occupation_code"].cast(pl.Utf8).fill_null("").to_list()
    else:
        codes = [""] * postings.height
    major, mid, known, majors, mids = keco_labels(codes)
    # labelled when enough postings carry a known code (then only those are used, as before);
    # otherwise every posting with text trains the self-supervised objectives
    labelled = int(known.sum()) >= 10
    if labelled:
        skipped = {"unknown_occupation_code": int((~known).sum())}
        keep = np.flatnonzero(known)
        labels_absent: list[str] = []
    else:
        has_text = np.array([bool((t or "").strip()) for t in postings["title"].cast(pl.Utf8).to_list()])
        skipped = {"no_title": int((~has_text).sum())}
        keep = np.flatnonzero(has_text)
        labels_absent = ["occupation_code (KECO major, mid and 6-digit)"]
        major = np.full(len(codes), -1, dtype=np.int64)
        mid = major.copy()
    if cfg.max_samples is not None:
        keep = keep[: cfg.max_samples]
    if len(keep) < 10:
        raise InvalidInputError(f"only {len(keep)} usable postings (a known KECO code or a title)")
    df = postings[keep.tolist()]
    major, mid = major[keep], mid[keep]
    kept_codes = [codes[i] if known[i] else "" for i in keep]
    fine_labels = sorted({c for c in kept_codes if c})
    fi = {c: i for i, c in enumerate(fine_labels)}
    fine = np.array([fi.get(c, -1) for c in kept_codes], dtype=np.int64)

    pretok = cfg.base_model is None
    t0 = time.perf_counter()
    texts, titles, bodies = model_text_parts(df, pretokenized=pretok)
    log.info("prepared %d texts in %.1fs (kiwi=%s)", len(texts), time.perf_counter() - t0, pretok)
    train_idx, val_idx, test_idx = split_indices(len(texts), cfg.val_fraction, cfg.test_fraction, cfg.seed)

    tok_dir = work_dir / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        tokenizer = load_tokenizer(tok_dir)
    elif cfg.base_model:
        tokenizer = load_tokenizer(cfg.base_model)
        tokenizer.save_pretrained(str(tok_dir))
    else:
        vocab = cfg.vocab_size or MODEL_SIZES[cfg.size].vocab_size
        tokenizer = train_tokenizer((texts[i] for i in train_idx), vocab_size=vocab)
        tokenizer.save_pretrained(str(tok_dir))
    ids, lengths = tokenize_to_arrays(tokenizer, texts, cfg.effective_max_length)
    title_ids, title_lengths = tokenize_to_arrays(tokenizer, titles, cfg.title_max_length)
    body_ids, body_lengths = tokenize_to_arrays(tokenizer, bodies, cfg.effective_max_length)
    data = PreparedData(
        posting_ids=df["posting_id"].cast(pl.Utf8).to_list(),
        texts=texts,
        input_ids=ids,
        lengths=lengths,
        major=major,
        mid=mid,
        train_idx=train_idx,
        val_idx=val_idx,
        test_idx=test_idx,
        major_labels=majors,
        mid_labels=mids,
        pad_id=int(tokenizer.pad_token_id),
        special_ids=sorted(int(i) for i in tokenizer.all_special_ids),
        mask_id=int(tokenizer.mask_token_id),
        vocab_size=len(tokenizer),
        skipped=skipped,
        title_ids=title_ids,
        title_lengths=title_lengths,
        body_ids=body_ids,
        body_lengths=body_lengths,
        fine=fine,
        labelled=labelled,
        labels_absent=labels_absent,
        title_texts=titles,
        body_texts=bodies,
    )
    return data, tokenizer


# ----------------------------------------------------------------------------- orchestration

PhaseRunner = Callable[[PhaseSpec, dict, TrainConfig, bool], list[dict]]


def run_local(spec: PhaseSpec, arrays: dict, cfg: TrainConfig, resume: bool) -> list[dict]:
    """Run a phase in this process (no Ray): benchmarks and quick experiments."""
    ctx = LocalContext(Path(spec.phase_dir), use_gpu=cfg.use_gpu, resume=resume)
    return run_phase(spec, arrays, ctx, progress=print)


def _phase_spec(kind: str, cfg: TrainConfig, data: PreparedData, work: Path, init_from: str | None) -> PhaseSpec:
    model_config = None
    if init_from is None:
        model_config = bert_config(cfg.size, vocab_size=data.vocab_size).to_dict()
        model_config["max_position_embeddings"] = max(cfg.effective_max_length, 64)
        model_config["pad_token_id"] = data.pad_id
    return PhaseSpec(
        kind=kind,
        phase_dir=str(work / kind),
        tokenizer_dir=str(work / "tokenizer"),
        init_from=init_from,
        model_config=model_config,
        epochs=cfg.effective_mlm_epochs if kind == "mlm" else cfg.epochs,
        max_steps=cfg.max_steps,
        lr=cfg.mlm_lr if kind == "mlm" else cfg.effective_lr,
        batch_size=cfg.effective_batch_size,
        patience=cfg.patience,
        seed=cfg.seed,
        threads=cfg.effective_threads(),
        use_gpu=cfg.use_gpu,
        mlm_probability=cfg.mlm_probability,
        warmup_ratio=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        log_every=cfg.log_every,
        pad_id=data.pad_id,
        mask_id=data.mask_id,
        vocab_size=data.vocab_size,
        special_ids=tuple(data.special_ids),
        major_labels=tuple(data.major_labels),
        mid_labels=tuple(data.mid_labels),
        objectives=cfg.effective_objectives(data.labelled),
        temperature=cfg.temperature,
    )


def train_model(
    postings: pl.DataFrame,
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    runner: PhaseRunner | None = None,
    resume: bool = False,
    keep_work: bool = False,
    compute_metrics: bool = True,
) -> dict:
    """Train W-BERT on ``postings`` into ``out_dir``; return the metrics written there.

    ``runner`` runs one phase (default: Ray Train, :func:`training.ray_train.run_phase_ray`).
    With ``resume`` the phases already finished are skipped and the running one continues
    from its latest checkpoint; without it, earlier work in ``out_dir`` is discarded.
    """
    if runner is None:
        from training.ray_train import run_phase_ray

        runner = run_phase_ray
    # Ray workers run in their own working directory: hand them absolute paths only
    out = Path(out_dir).resolve()
    work = out / ".work"
    if not resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    data, tokenizer = prepare_data(postings, cfg, work)
    timings["prepare_s"] = time.perf_counter() - t0
    print(
        f"data: {len(data.posting_ids)} postings (train {len(data.train_idx)}, "
        f"val {len(data.val_idx)}, test {len(data.test_idx)}), vocab {data.vocab_size}, "
        f"skipped {data.skipped}, objectives {','.join(cfg.effective_objectives(data.labelled))}"
        + ("" if data.labelled else " (no KECO codes: self-supervised only)"),
        flush=True,
    )
    arrays = data.arrays()
    histories: dict[str, list[dict]] = {}
    init_from = cfg.base_model

    def run_or_reuse(kind: str, init: str | None) -> None:
        # a phase finished by an earlier (resumed) run is not trained again
        spec = _phase_spec(kind, cfg, data, work, init)
        t0 = time.perf_counter()
        if (work / kind / DONE).exists():
            histories[kind] = json.loads((work / kind / HISTORY).read_text())
        else:
            histories[kind] = runner(spec, arrays, cfg, resume)
        timings[f"{kind}_s"] = time.perf_counter() - t0

    if cfg.effective_mlm_epochs > 0:
        run_or_reuse("mlm", init_from)
        init_from = str(work / "mlm" / "best")
    if init_from is None:
        raise InvalidInputError("nothing to fine-tune: no base model and mlm_epochs is 0")
    run_or_reuse("finetune", init_from)

    best = work / "finetune" / "best"
    for f in best.iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)
    meta = {
        "format": 1,
        "pretokenizer": "kiwi" if cfg.base_model is None else "none",
        "max_length": cfg.effective_max_length,
        "pooling": "mean",
        "size": cfg.size if cfg.base_model is None else None,
        "base_model": cfg.base_model,
        "major_labels": data.major_labels,
        "mid_labels": data.mid_labels,
        "label_source": "core.reference.occupations() primary group",
        "labelled": data.labelled,
        "labels_absent": data.labels_absent,
        "objectives": list(cfg.effective_objectives(data.labelled)),
        "train_config": asdict(cfg),
        "n_postings": len(data.posting_ids),
        "history": histories,
    }
    (out / WBERT_META).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    timings["train_total_s"] = time.perf_counter() - t_start
    metrics: dict = {"timings": timings}
    if compute_metrics:
        from training.evaluate import (
            choose_hybrid_weight,
            evaluate_model_dir,
            record_no_hybrid_weight,
        )

        t0 = time.perf_counter()
        metrics = evaluate_model_dir(out, data, cfg)
        if data.labelled:
            metrics["hybrid"] = choose_hybrid_weight(out, postings, data)
        else:
            metrics["hybrid"] = record_no_hybrid_weight(out)
        timings["metrics_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        metrics["timings"] = timings
        from training.model import METRICS_FILE

        (out / METRICS_FILE).write_text(json.dumps(metrics, ensure_ascii=False, indent=1), encoding="utf-8")
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return metrics
