"""One training phase (MLM or fine-tuning) against a small :class:`RunContext` interface.

Nothing here imports Ray: :class:`LocalContext` runs a phase in this process and
``training.ray_train`` provides the Ray Train context (one per ``TorchTrainer`` worker).
``training.train`` (orchestration) and ``training.ray_train`` both import this module, never
each other at import time.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from core.errors import ModelError
from training.model import WBertForKeco
from training.progress import epoch_done_line, finished_line, plan_line

log = logging.getLogger(__name__)

TRAIN_STATE = "train_state.ckpt"  # not *.pt: transformers 5 would try it as weights
HISTORY = "history.json"
DONE = "DONE"


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
    objectives: tuple[str, ...] = ("keco",)  # finetune only, see training.objectives
    temperature: float = 0.05

    def __post_init__(self) -> None:
        from training.objectives import OBJECTIVES

        if self.kind not in ("mlm", "finetune"):
            raise ValueError(f"kind must be 'mlm' or 'finetune', got {self.kind!r}")
        if self.kind == "finetune" and (not self.objectives or set(self.objectives) - set(OBJECTIVES)):
            raise ValueError(f"objectives must be a non-empty subset of {OBJECTIVES}, got {self.objectives}")
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

    from encoding.encoder import quiet_transformers
    from training.model import WBertForMlm

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


def mlm_collator(spec: PhaseSpec):
    """transformers' MLM collator (80% [MASK], 10% random, 10% kept) for this phase's tokenizer."""
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(spec.tokenizer_dir)
    return DataCollatorForLanguageModeling(tok, mlm_probability=spec.mlm_probability)


def mask_tokens(
    ids: torch.Tensor, attn: torch.Tensor, spec: PhaseSpec, collator, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked inputs and labels of a padded batch; special and padding tokens are never chosen."""
    collator.generator = gen  # our seeded generator: reproducible masks, fixed ones for validation
    keep = torch.isin(ids, torch.tensor(spec.special_ids, dtype=ids.dtype)) | ~attn.bool()
    return collator.torch_mask_tokens(ids.clone(), special_tokens_mask=keep)


def _ids(arrays: dict[str, np.ndarray], idx: np.ndarray, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = arrays[f"{prefix}lengths"][idx]
    width = max(1, int(lengths.max()))
    ids = torch.from_numpy(arrays[f"{prefix}input_ids"][idx, :width].astype(np.int64))
    attn = (torch.arange(width)[None, :] < torch.from_numpy(lengths)[:, None]).long()
    return ids, attn


def _batch(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, torch.Tensor]:
    ids, attn = _ids(arrays, idx, "")
    out = {
        "input_ids": ids,
        "attention_mask": attn,
        "major": torch.from_numpy(arrays["major"][idx]),
        "mid": torch.from_numpy(arrays["mid"][idx]),
    }
    if "title_input_ids" in arrays:  # contrastive objectives (training.objectives)
        out["title_ids"], out["title_mask"] = _ids(arrays, idx, "title_")
        out["body_ids"], out["body_mask"] = _ids(arrays, idx, "body_")
        out["fine"] = torch.from_numpy(arrays["fine"][idx])
    return out


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


def _step_losses(model, spec: PhaseSpec, b: dict, device, gen, collator) -> dict[str, torch.Tensor]:
    """The loss of each objective of this step (``{"mlm": ...}`` in the MLM phase)."""
    from training.objectives import objective_losses

    ids = b["input_ids"]
    attn = b["attention_mask"]
    with _autocast(device):
        if spec.kind == "mlm":
            inputs, labels = mask_tokens(ids, attn, spec, collator, gen)
            return {"mlm": model(inputs.to(device), attn.to(device), labels.to(device))["loss"]}
        return objective_losses(model, b, spec.objectives, spec.temperature, spec.pad_id, device)


def _step_loss(model, spec: PhaseSpec, b: dict, device, gen, collator) -> torch.Tensor:
    return sum(_step_losses(model, spec, b, device, gen, collator).values())


@torch.no_grad()
def evaluate(
    model, spec: PhaseSpec, arrays: dict, idx: np.ndarray, ctx: RunContext, collator=None
) -> dict:
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
                inputs, labels = mask_tokens(ids, attn, spec, collator, gen)
                loss = _unwrap(model)(inputs.to(ctx.device), attn.to(ctx.device), labels.to(ctx.device))["loss"]
            else:
                loss = _step_loss(_unwrap(model), spec, b, ctx.device, gen, collator)
                if "keco" in spec.objectives:
                    out = _unwrap(model)(ids.to(ctx.device), attn.to(ctx.device))
                    correct_major += (out["major_logits"].argmax(-1).cpu() == b["major"]).sum().item()
                    correct_mid += (out["mid_logits"].argmax(-1).cpu() == b["mid"]).sum().item()
        k = len(ids)
        loss_sum += float(loss) * k
        n += k
    loss_sum, n, correct_major, correct_mid = ctx.all_reduce_sum([loss_sum, n, correct_major, correct_mid])
    result = {"val_loss": loss_sum / max(n, 1)}
    if spec.kind == "finetune" and "title_input_ids" in arrays:
        from training.objectives import title_retrieval_accuracy

        # every rank scores the whole validation split (deterministic in eval mode): a
        # label-free score, chance is 1 / len(idx)
        with _autocast(ctx.device):
            t_ids, t_mask = _ids(arrays, idx, "title_")
            d_ids, d_mask = _ids(arrays, idx, "body_")
            result["val_title_body_acc"] = title_retrieval_accuracy(
                _unwrap(model), t_ids, t_mask, d_ids, d_mask, ctx.device)
    model.train()
    if spec.kind == "finetune" and "keco" in spec.objectives:
        result["val_major_acc"] = correct_major / max(n, 1)
        result["val_mid_acc"] = correct_mid / max(n, 1)
        result["val_score"] = (result["val_major_acc"] + result["val_mid_acc"]) / 2
    elif spec.kind == "finetune" and "val_title_body_acc" in result:
        result["val_score"] = result["val_title_body_acc"]
    else:
        result["val_score"] = -result["val_loss"]
    return result


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

    from transformers import get_linear_schedule_with_warmup

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

    sched = get_linear_schedule_with_warmup(opt, warmup, total_steps)
    collator = mlm_collator(spec) if spec.kind == "mlm" else None
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

    if ctx.rank == 0:
        say(plan_line(spec.kind, spec.epochs, steps_per_epoch, total_steps))
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
        part_sums: dict[str, float] = {}
        for s in range(steps_per_epoch):
            if step >= total_steps:
                break
            b = _batch(arrays, mine[s * spec.batch_size : (s + 1) * spec.batch_size])
            parts = _step_losses(model, spec, b, ctx.device, gen, collator)
            loss = sum(parts.values())
            for name, v in parts.items():
                if name != "heads_unused":
                    part_sums[name] = part_sums.get(name, 0.0) + float(v.detach())
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
        names = sorted(part_sums)
        reduced = ctx.all_reduce_sum([part_sums[k] / max(seen, 1) for k in names])
        metrics = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "train_postings_per_s": seen * spec.batch_size * ctx.world_size / max(train_seconds, 1e-9),
        }
        # per-objective mean training loss of the epoch, over all workers
        metrics.update({f"train_loss_{k}": v / ctx.world_size for k, v in zip(names, reduced, strict=True)})
        metrics.update(evaluate(model, spec, arrays, arrays["val_idx"], ctx, collator))
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
            say(epoch_done_line(
                spec.kind, epoch, spec.epochs, metrics["epoch_seconds"],
                ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("val_", "train_")))
                + (" (best)" if improved else "")
                + (" -> early stop" if stopped else "")))
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
        say(finished_line(spec.kind, len(history), step))
    return history
