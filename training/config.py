"""``TrainConfig``: everything ``jobrec train`` can set (the CLI reads its defaults here)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from training.model import MODEL_SIZES
from training.objectives import NEEDS_LABELS, OBJECTIVES, SELF_SUPERVISED

# Fine-tuning objectives of the default recipe (training.objectives), chosen by bench/ablation.py.
DEFAULT_OBJECTIVES: tuple[str, ...] = ("keco", "title", "dropout", "supcon")


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
    # fine-tuning objectives; without occupation codes only the self-supervised ones run
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    temperature: float = 0.05  # InfoNCE / SupCon temperature
    title_max_length: int = 16  # tokens of a title in the title <-> body objective

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
        if isinstance(self.objectives, str) or not self.objectives:
            raise ValueError(f"objectives must be a non-empty tuple, got {self.objectives!r}")
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives must be distinct names from {OBJECTIVES}, got {self.objectives}")
        if not 0.005 <= self.temperature <= 1.0:
            raise ValueError(f"temperature must be in [0.005, 1], got {self.temperature}")
        if not 4 <= self.title_max_length <= 512:
            raise ValueError(f"title_max_length must be in [4, 512], got {self.title_max_length}")

    def effective_objectives(self, labelled: bool) -> tuple[str, ...]:
        """The objectives that run: without labels the self-supervised ones (both if none chosen)."""
        if labelled:
            return tuple(self.objectives)
        own = tuple(o for o in self.objectives if o not in NEEDS_LABELS)
        return own or SELF_SUPERVISED

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
