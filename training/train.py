"""W-BERT training logic: data preparation, the MLM and KECO fine-tuning loops, orchestration.

Nothing here imports Ray. A training phase (:func:`run_phase`) runs against a small
:class:`RunContext` interface; :class:`LocalContext` runs it in this process, and
``training.ray_train`` provides the Ray Train context (one per ``TorchTrainer`` worker).

Pipeline of :func:`train_model`:

1. posting text (:func:`training.encoder.posting_text`) -> Kiwi pre-tokenisation -> seeded
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
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch

from core.errors import InvalidInputError, ModelError
from training.model import (
    MODEL_SIZES,
    WBERT_META,
    WBertForKeco,
    bert_config,
)

log = logging.getLogger(__name__)

TRAIN_STATE = "train_state.ckpt"  # not *.pt: transformers 5 would try it as weights
HISTORY = "history.json"
DONE = "DONE"


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``jobrec train`` can set. ``None`` means "pick the default for the setup"."""

    size: str = "tiny"
    base_model: str | None = None
    epochs: int = 3
    mlm_epochs: int | None = None  # None: 1 for a from-scratch model, 0 with a base model
    batch_size: int | None = None  # per worker; None: 32 on CPU, 128 on GPU
    lr: float | None = None  # fine-tuning; None: 1e-3 from scratch, 5e-5 for a base model
    mlm_lr: float = 1e-3
    max_length: int | None = None  # None: the size's max_length
    max_steps: int | None = None  # cap on optimizer steps per phase (smoke runs)
    vocab_size: int | None = None  # None: the size's vocab_size
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    patience: int = 1
    seed: int = 0
    workers: int = 1
    use_gpu: bool = False
    threads_per_worker: int | None = None  # None: CPUs of the machine / workers
    mlm_probability: float = 0.15
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    log_every: int = 50
    max_samples: int | None = None  # use only the first N usable postings

    def __post_init__(self) -> None:
        if self.size not in MODEL_SIZES:
            raise ValueError(f"size must be one of {sorted(MODEL_SIZES)}, got {self.size!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.mlm_epochs is not None and self.mlm_epochs < 0:
            raise ValueError(f"mlm_epochs must be >= 0, got {self.mlm_epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("lr", "mlm_lr"):
            v = getattr(self, name)
            if v is not None and not 0 < v < 1:
                raise ValueError(f"{name} must be in (0, 1), got {v}")
        if self.max_length is not None and not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be in [8, 512], got {self.max_length}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            raise ValueError("val_fraction and test_fraction must be in (0, 0.5)")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {self.threads_per_worker}")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if self.max_samples is not None and self.max_samples < 10:
            raise ValueError(f"max_samples must be >= 10, got {self.max_samples}")

    @property
    def effective_mlm_epochs(self) -> int:
        if self.mlm_epochs is not None:
            return self.mlm_epochs
        return 0 if self.base_model else 1

    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 5e-5 if self.base_model else 1e-3

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size or (128 if self.use_gpu else 32)

    @property
    def effective_max_length(self) -> int:
        return self.max_length or MODEL_SIZES[self.size].max_length

    def effective_threads(self) -> int:
        if self.threads_per_worker:
            return self.threads_per_worker
        return max(1, (os.cpu_count() or 1) // self.workers)


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

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric part, as shipped to training workers."""
        return {
            "input_ids": self.input_ids,
            "lengths": self.lengths,
            "major": self.major,
            "mid": self.mid,
            "train_idx": self.train_idx,
            "val_idx": self.val_idx,
        }


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
    from training.encoder import posting_text
    from training.tokenizer import pretokenize_batch

    raw = [posting_text(r) for r in postings.iter_rows(named=True)]
    return pretokenize_batch(raw) if pretokenized else raw


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

    for col in ("posting_id", "title", "description", "occupation_code"):
        if col not in postings.columns:
            raise InvalidInputError(f"postings lack column {col!r}", field=col)
    codes = postings["occupation_code"].cast(pl.Utf8).fill_null("").to_list()
    major, mid, known, majors, mids = keco_labels(codes)
    skipped = {"unknown_occupation_code": int((~known).sum())}
    keep = np.flatnonzero(known)
    if cfg.max_samples is not None:
        keep = keep[: cfg.max_samples]
    if len(keep) < 10:
        raise InvalidInputError(f"only {len(keep)} postings have a known KECO occupation code")
    df = postings[keep.tolist()]
    major, mid = major[keep], mid[keep]

    pretok = cfg.base_model is None
    t0 = time.perf_counter()
    texts = model_texts(df, pretokenized=pretok)
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
    )
    return data, tokenizer


# ----------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class PhaseSpec:
    """One training phase, as sent to every worker (plain values only)."""

    kind: str  # "mlm" | "finetune"
    phase_dir: str  # rank 0 writes best/, history.json, DONE here
    tokenizer_dir: str
    init_from: str | None  # HF dir or hub name; None: from scratch (mlm only)
    model_config: dict | None  # BertConfig kwargs for a from-scratch model
    epochs: int
    max_steps: int | None
    lr: float
    batch_size: int
    patience: int
    seed: int
    threads: int
    use_gpu: bool
    mlm_probability: float
    warmup_ratio: float
    weight_decay: float
    log_every: int
    pad_id: int
    mask_id: int
    vocab_size: int
    special_ids: tuple[int, ...]
    major_labels: tuple[str, ...]
    mid_labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("mlm", "finetune"):
            raise ValueError(f"kind must be 'mlm' or 'finetune', got {self.kind!r}")
        if self.init_from is None and self.model_config is None:
            raise ValueError("a phase needs init_from or model_config")


class RunContext(Protocol):
    """What a training phase needs from its runtime (local process or Ray Train worker)."""

    rank: int
    world_size: int
    device: torch.device

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def latest_checkpoint(self) -> Path | None: ...

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None: ...

    def all_reduce_sum(self, values: list[float]) -> list[float]: ...


class LocalContext:
    """Single-process context: checkpoints under ``<phase_dir>/checkpoints/epoch_NNNN``."""

    rank = 0
    world_size = 1

    def __init__(self, phase_dir: Path, *, use_gpu: bool = False, resume: bool = True) -> None:
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.ckpt_root = Path(phase_dir) / "checkpoints"
        self.resume = resume
        self.reports: list[dict] = []

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def latest_checkpoint(self) -> Path | None:
        if not self.resume or not self.ckpt_root.exists():
            return None
        found = sorted(p for p in self.ckpt_root.iterdir() if (p / TRAIN_STATE).exists())
        return found[-1] if found else None

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            dest = self.ckpt_root / f"epoch_{int(metrics['epoch']):04d}"
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(checkpoint_dir, dest)
            for old in sorted(self.ckpt_root.iterdir())[:-2]:  # keep the two latest
                shutil.rmtree(old)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        return list(values)


class DistributedMixin:
    """``all_reduce_sum`` over ``torch.distributed`` (gloo or nccl), shared by Ray workers."""

    device: torch.device

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().tolist()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def build_phase_model(spec: PhaseSpec, path: str | None = None) -> torch.nn.Module:
    """The phase's model, from ``path`` (checkpoint), ``spec.init_from`` or from scratch."""
    from transformers import BertConfig

    from training.model import WBertForMlm, quiet_transformers

    quiet_transformers()
    src = path or spec.init_from
    if spec.kind == "mlm":
        if src is not None:
            return WBertForMlm.from_pretrained(src)
        torch.manual_seed(spec.seed)
        return WBertForMlm(BertConfig(**spec.model_config))
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(src)
        config.keco_major_labels = list(spec.major_labels)
        config.keco_mid_labels = list(spec.mid_labels)
        return WBertForKeco.from_pretrained(src, config=config)
    except OSError as exc:
        raise ModelError(f"cannot load base model {src!r}: {exc}") from exc


def mask_tokens(
    ids: torch.Tensor, attn: torch.Tensor, spec: PhaseSpec, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking (80% [MASK], 10% random, 10% kept) of non-special tokens."""
    labels = ids.clone()
    special = torch.isin(ids, torch.tensor(spec.special_ids, dtype=ids.dtype))
    prob = torch.full(ids.shape, spec.mlm_probability)
    chosen = torch.bernoulli(prob, generator=gen).bool() & ~special & attn.bool()
    labels[~chosen] = -100
    inputs = ids.clone()
    replace = torch.bernoulli(torch.full(ids.shape, 0.8), generator=gen).bool() & chosen
    inputs[replace] = spec.mask_id
    rand = torch.bernoulli(torch.full(ids.shape, 0.5), generator=gen).bool() & chosen & ~replace
    inputs[rand] = torch.randint(len(spec.special_ids), spec.vocab_size, ids.shape, generator=gen)[rand]
    return inputs, labels


def _batch(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, torch.Tensor]:
    lengths = arrays["lengths"][idx]
    width = int(lengths.max())
    ids = torch.from_numpy(arrays["input_ids"][idx, :width].astype(np.int64))
    attn = (torch.arange(width)[None, :] < torch.from_numpy(lengths)[:, None]).long()
    return {
        "input_ids": ids,
        "attention_mask": attn,
        "major": torch.from_numpy(arrays["major"][idx]),
        "mid": torch.from_numpy(arrays["mid"][idx]),
    }


def _length_bucketed(
    idx: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Reorder ``idx`` so each batch holds similar lengths (less padding), batches shuffled.

    Sorting happens inside windows of 50 batches, so batches stay random samples of the data.
    """
    window = batch_size * 50
    batches = []
    for s in range(0, len(idx), window):
        chunk = idx[s : s + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return np.concatenate([batches[i] for i in order]) if batches else idx


def _autocast(device: torch.device):
    """bf16 autocast on GPUs that support it (fp16 otherwise); nothing on CPU."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _step_loss(model, spec: PhaseSpec, b: dict, device, gen) -> torch.Tensor:
    ids = b["input_ids"]
    attn = b["attention_mask"]
    with _autocast(device):
        if spec.kind == "mlm":
            inputs, labels = mask_tokens(ids, attn, spec, gen)
            out = model(inputs.to(device), attn.to(device), labels.to(device))
        else:
            out = model(
                ids.to(device), attn.to(device), b["major"].to(device), b["mid"].to(device)
            )
    return out["loss"]


@torch.no_grad()
def evaluate(model, spec: PhaseSpec, arrays: dict, idx: np.ndarray, ctx: RunContext) -> dict:
    """Validation metrics of this worker's shard of ``idx``, summed over all workers."""
    model.eval()
    shard = idx[ctx.rank :: ctx.world_size]
    gen = torch.Generator().manual_seed(spec.seed + 999)  # same masks every epoch
    loss_sum = n = 0.0
    correct_major = correct_mid = 0.0
    bs = spec.batch_size * 2
    for s in range(0, len(shard), bs):
        b = _batch(arrays, shard[s : s + bs])
        ids, attn = b["input_ids"], b["attention_mask"]
        with _autocast(ctx.device):
            if spec.kind == "mlm":
                inputs, labels = mask_tokens(ids, attn, spec, gen)
                out = _unwrap(model)(inputs.to(ctx.device), attn.to(ctx.device), labels.to(ctx.device))
            else:
                out = _unwrap(model)(
                    ids.to(ctx.device), attn.to(ctx.device),
                    b["major"].to(ctx.device), b["mid"].to(ctx.device),
                )
                correct_major += (out["major_logits"].argmax(-1).cpu() == b["major"]).sum().item()
                correct_mid += (out["mid_logits"].argmax(-1).cpu() == b["mid"]).sum().item()
        k = len(ids)
        loss_sum += float(out["loss"]) * k
        n += k
    loss_sum, n, correct_major, correct_mid = ctx.all_reduce_sum([loss_sum, n, correct_major, correct_mid])
    model.train()
    out = {"val_loss": loss_sum / max(n, 1)}
    if spec.kind == "finetune":
        out["val_major_acc"] = correct_major / max(n, 1)
        out["val_mid_acc"] = correct_mid / max(n, 1)
        out["val_score"] = (out["val_major_acc"] + out["val_mid_acc"]) / 2
    else:
        out["val_score"] = -out["val_loss"]
    return out


def _save_hf(model, spec: PhaseSpec, dest: Path) -> None:
    from transformers import AutoTokenizer

    dest.mkdir(parents=True, exist_ok=True)
    _unwrap(model).save_pretrained(str(dest))
    AutoTokenizer.from_pretrained(spec.tokenizer_dir).save_pretrained(str(dest))


def run_phase(
    spec: PhaseSpec,
    arrays: dict[str, np.ndarray],
    ctx: RunContext,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Train one phase; every worker calls this. Returns the per-epoch metrics.

    Resumes from ``ctx.latest_checkpoint()``; stops early when the validation score has not
    improved for ``patience`` epochs; rank 0 keeps the best epoch in ``phase_dir/best``.
    """
    import tempfile

    torch.set_num_threads(spec.threads)
    say = progress or (lambda m: log.info("%s", m))
    phase_dir = Path(spec.phase_dir)
    ckpt = ctx.latest_checkpoint()
    state: dict[str, Any] = {}
    if ckpt is not None:
        state = torch.load(ckpt / TRAIN_STATE, map_location="cpu", weights_only=False)
        model = build_phase_model(spec, str(ckpt))
        if ctx.rank == 0:
            say(f"[{spec.kind}] resuming from {ckpt.name} after epoch {state['epoch'] + 1}")
    else:
        model = build_phase_model(spec)
    model.train()
    model = ctx.prepare_model(model)

    train_idx = arrays["train_idx"]
    per_worker = len(train_idx) // ctx.world_size  # equal step counts keep DDP in lockstep
    steps_per_epoch = max(1, per_worker // spec.batch_size)
    total_steps = spec.epochs * steps_per_epoch
    if spec.max_steps is not None:
        total_steps = min(total_steps, spec.max_steps)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
    )
    warmup = max(1, int(total_steps * spec.warmup_ratio))

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=ctx.device.type == "cuda" and not torch.cuda.is_bf16_supported()
    )
    start_epoch, step = 0, 0
    best, bad = -math.inf, 0
    history: list[dict] = []
    if state:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        best, bad, history = state["best"], state["bad_epochs"], state["history"]
        if state.get("stopped"):
            start_epoch = spec.epochs

    gen = torch.Generator().manual_seed(spec.seed * 1000 + ctx.rank + 17 * start_epoch)
    for epoch in range(start_epoch, spec.epochs):
        if step >= total_steps:
            break
        t0 = time.perf_counter()
        rng = np.random.default_rng(spec.seed + epoch)
        perm = rng.permutation(train_idx)
        mine = _length_bucketed(perm[ctx.rank :: ctx.world_size][:per_worker], arrays["lengths"],
                                spec.batch_size, rng)
        running = 0.0
        seen = 0
        for s in range(steps_per_epoch):
            if step >= total_steps:
                break
            b = _batch(arrays, mine[s * spec.batch_size : (s + 1) * spec.batch_size])
            loss = _step_loss(model, spec, b, ctx.device, gen)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            running += float(loss.detach())
            seen += 1
            if ctx.rank == 0 and spec.log_every and step % spec.log_every == 0:
                rate = seen * spec.batch_size * ctx.world_size / (time.perf_counter() - t0)
                say(
                    f"[{spec.kind}] epoch {epoch + 1}/{spec.epochs} step {step}/{total_steps} "
                    f"loss {running / seen:.4f} {rate:.0f} postings/s"
                )
        train_seconds = time.perf_counter() - t0
        train_loss = sum(ctx.all_reduce_sum([running / max(seen, 1)])) / ctx.world_size
        metrics = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "train_postings_per_s": seen * spec.batch_size * ctx.world_size / max(train_seconds, 1e-9),
        }
        metrics.update(evaluate(model, spec, arrays, arrays["val_idx"], ctx))
        metrics["epoch_seconds"] = time.perf_counter() - t0
        improved = metrics["val_score"] > best
        if improved:
            best, bad = metrics["val_score"], 0
            if ctx.rank == 0:
                _save_hf(model, spec, phase_dir / "best")
        else:
            bad += 1
        stopped = bad > spec.patience
        history.append(metrics)
        if ctx.rank == 0:
            say(
                f"[{spec.kind}] epoch {epoch + 1}/{spec.epochs} done in {metrics['epoch_seconds']:.0f}s: "
                + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("val_", "train_")))
                + (" (best)" if improved else "")
                + (" -> early stop" if stopped else "")
            )
        with tempfile.TemporaryDirectory() as tmp:
            ckpt_dir = None
            if ctx.rank == 0:
                ckpt_dir = Path(tmp)
                _save_hf(model, spec, ckpt_dir)
                torch.save(
                    {
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "epoch": epoch,
                        "step": step,
                        "best": best,
                        "bad_epochs": bad,
                        "history": history,
                        "stopped": stopped,
                    },
                    ckpt_dir / TRAIN_STATE,
                )
            ctx.report(metrics, ckpt_dir)
        if stopped:
            break
    if ctx.rank == 0:
        if not (phase_dir / "best").exists():  # resumed after the last epoch: nothing better
            _save_hf(model, spec, phase_dir / "best")
        (phase_dir / HISTORY).write_text(json.dumps(history, indent=1))
        (phase_dir / DONE).write_text("ok\n")
    return history


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
        f"skipped {data.skipped}",
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
        "train_config": asdict(cfg),
        "n_postings": len(data.posting_ids),
        "history": histories,
    }
    (out / WBERT_META).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    timings["train_total_s"] = time.perf_counter() - t_start
    metrics: dict = {"timings": timings}
    if compute_metrics:
        from training.evaluate import evaluate_model_dir

        t0 = time.perf_counter()
        metrics = evaluate_model_dir(out, data, cfg)
        timings["metrics_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        metrics["timings"] = timings
        from training.model import METRICS_FILE

        (out / METRICS_FILE).write_text(json.dumps(metrics, ensure_ascii=False, indent=1), encoding="utf-8")
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return metrics
