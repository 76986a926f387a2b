"""The posting encoder every part of jobrec uses: text -> L2-normalised float32 vector.

``Encoder.load(model_dir)`` reads a trained W-BERT directory (standard Hugging Face files plus
``wbert.json``); ``encode(texts)`` mean-pools the last hidden state over the attention mask.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ModelError

WBERT_META = "wbert.json"
DEFAULT_MODEL_NAME = "wbert-tiny"


def default_models_root() -> Path:
    """``$JOBREC_HOME/models`` (default ``./.jobrec/models``; git ignores ``/.jobrec/``)."""
    home = os.environ.get("JOBREC_HOME")
    return (Path(home) if home else Path.cwd() / ".jobrec") / "models"


def default_model_dir() -> Path:
    """The trained model ``jobrec demo`` and ``jobrec refresh`` use unless told otherwise.

    ``$JOBREC_MODEL_DIR`` overrides it; otherwise ``default_models_root() / "wbert-tiny"``.
    """
    explicit = os.environ.get("JOBREC_MODEL_DIR")
    return Path(explicit) if explicit else default_models_root() / DEFAULT_MODEL_NAME


def is_trained_model_dir(model_dir: str | Path) -> bool:
    """True when ``model_dir`` holds a complete trained W-BERT (weights, tokenizer, meta)."""
    d = Path(model_dir)
    has_weights = (d / "model.safetensors").exists() or (d / "pytorch_model.bin").exists()
    return (
        has_weights
        and (d / "config.json").exists()
        and (d / "tokenizer.json").exists()
        and (d / WBERT_META).exists()
    )


def read_meta(model_dir: str | Path) -> dict:
    """The ``wbert.json`` of a trained model directory (empty for a plain HF directory)."""
    path = Path(model_dir) / WBERT_META
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def quiet_transformers() -> None:
    """Silence transformers' load reports and progress bars (head/pooler mismatches are expected)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def mean_pool(last_hidden, attention_mask):
    """Mean of the token vectors the attention mask keeps ([CLS] and [SEP] included)."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    summed = (last_hidden * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1.0)


@dataclass(frozen=True)
class EncoderConfig:
    """How to run the encoder.

    ``quantize``: dynamic int8 quantisation of the linear layers (CPU only); ``None`` picks the
    default for the device (see the benchmark in ``bench/encode.py``).
    ``max_length``: ``None`` uses the length the model was trained with.
    ``pretokenize``: ``None`` follows the model directory's ``wbert.json``.
    """

    max_length: int | None = None
    batch_size: int = 64
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    quantize: bool | None = None
    num_threads: int | None = None
    gpu_dtype: str = "bf16"  # "bf16" | "fp16" | "fp32" autocast on GPU
    pretokenize: bool | None = None

    def __post_init__(self) -> None:
        if self.max_length is not None and not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be in [8, 512], got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.gpu_dtype not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"gpu_dtype must be bf16, fp16 or fp32, got {self.gpu_dtype!r}")


# Default CPU choice, from bench/encode.py: see DEFAULT_CPU_QUANTIZE's use in Encoder.load.
DEFAULT_CPU_QUANTIZE = False

_MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "wbert.json")


def _model_hash(model_dir: Path) -> str:
    h = hashlib.sha256()
    for name in _MODEL_FILES:
        p = model_dir / name
        if p.exists():
            h.update(name.encode())
            with p.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


# bench/encode.py --real: at 2.5 characters per token the cut texts of 2,000 real (wanted)
# postings gave the same first 64 ids as the full ones but for 1 (re-analysed), and Kiwi took
# 1.4 s instead of 5.6 s.
KIWI_CHARS_PER_TOKEN = 2.5


def _cut_at_space(text: str, n: int) -> str:
    """``text`` cut to at most ``n`` characters, at the last space when one is near the end."""
    if len(text) <= n:
        return text
    sp = text.rfind(" ", 0, n + 1)
    return text[: sp if sp > n // 2 else n]


class Encoder:
    """Batched W-BERT encoder; build it with :meth:`load`."""

    def __init__(self, model, tokenizer, *, model_id: str, dim: int, max_length: int,
                 config: EncoderConfig, device, pretokenize: bool, quantized: bool) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.dim = dim
        self.max_length = max_length
        self.config = config
        self.device = device
        self.pretokenize = pretokenize
        self.quantized = quantized
        self.texts_encoded = 0  # how many inputs went through the model (cache tests, stats)

    @classmethod
    def load(cls, model_dir: str | Path, config: EncoderConfig | None = None) -> Encoder:
        """Load a trained model directory (``AutoModel`` + ``AutoTokenizer``)."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        quiet_transformers()
        cfg = config or EncoderConfig()
        d = Path(model_dir)
        if not (d / "config.json").exists():
            raise ModelError(f"{d} is not a model directory (no config.json); run `jobrec train`")
        meta = read_meta(d)
        if cfg.device == "auto":
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            device = torch.device(cfg.device)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(d))
            model = AutoModel.from_pretrained(str(d))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load model from {d}: {exc}") from exc
        model.eval()
        quantize = cfg.quantize if cfg.quantize is not None else DEFAULT_CPU_QUANTIZE
        quantize = quantize and device.type == "cpu"
        if quantize:
            import warnings

            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():  # eager dynamic quantisation is deprecated, still works
                warnings.simplefilter("ignore")
                model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        model.to(device)
        max_length = cfg.max_length or int(meta.get("max_length") or model.config.max_position_embeddings)
        max_length = min(max_length, int(model.config.max_position_embeddings))
        pretok = cfg.pretokenize if cfg.pretokenize is not None else meta.get("pretokenizer") == "kiwi"
        # The id covers what changes the vectors: weights, tokenizer, length, quantisation.
        variant = f"|max_length={max_length}|int8={quantize}|pretok={pretok}|pool=mean"
        model_id = hashlib.sha256((_model_hash(d) + variant).encode()).hexdigest()[:24]
        return cls(
            model, tokenizer, model_id=model_id, dim=int(model.config.hidden_size),
            max_length=max_length, config=cfg, device=device, pretokenize=pretok,
            quantized=quantize,
        )

    def prepare(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (after Kiwi pre-tokenisation when the model expects it).

        Kiwi, the slow step on real text, only sees the first ``max_length * KIWI_CHARS_PER_TOKEN``
        characters of a text (cut at a space): the model reads ``max_length`` tokens and real
        Korean text has ~1.8 characters per token. A cut text that then yields fewer than
        ``max_length`` tokens is analysed again in full, so the ids equal the uncut ones.
        """
        from encoding.pretokenize import pretokenize_batch

        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return []
        if not self.pretokenize:
            return self.tokenizer(texts, truncation=True, max_length=self.max_length,
                                  padding=False)["input_ids"]
        budget = int(self.max_length * KIWI_CHARS_PER_TOKEN)
        cut = [_cut_at_space(t, budget) for t in texts]
        ids = self.tokenizer(pretokenize_batch(cut), truncation=True, max_length=self.max_length,
                             padding=False)["input_ids"]
        redo = [i for i, (t, c) in enumerate(zip(texts, cut, strict=True))
                if len(c) < len(t) and len(ids[i]) < self.max_length]
        if redo:
            again = self.tokenizer(pretokenize_batch([texts[i] for i in redo]), truncation=True,
                                   max_length=self.max_length, padding=False)["input_ids"]
            for i, seq in zip(redo, again, strict=True):
                ids[i] = seq
        return ids

    def encode_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Vectors for already tokenised inputs (length-sorted batches, original order kept)."""
        import torch

        n = len(ids)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        self.texts_encoded += n
        order = np.argsort([len(x) for x in ids], kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        bs = self.config.batch_size
        use_amp = self.device.type == "cuda" and self.config.gpu_dtype != "fp32"
        amp_dtype = torch.bfloat16 if self.config.gpu_dtype == "bf16" else torch.float16
        with torch.inference_mode():
            for s in range(0, n, bs):
                idx = order[s : s + bs]
                width = max(len(ids[i]) for i in idx)
                batch = np.full((len(idx), width), pad, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for r, i in enumerate(idx):
                    batch[r, : len(ids[i])] = ids[i]
                    mask[r, : len(ids[i])] = 1
                bt = torch.from_numpy(batch).to(self.device, non_blocking=True)
                mt = torch.from_numpy(mask).to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp):
                    hidden = self.model(input_ids=bt, attention_mask=mt).last_hidden_state
                pooled = mean_pool(hidden.float(), mt)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.cpu().numpy()
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape ``(len(texts), dim)``, in input order."""
        return self.encode_ids(self.prepare(texts))


