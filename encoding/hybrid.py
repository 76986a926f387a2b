"""The posting vector the shards search: W-BERT and the lexical half, concatenated.

``v = normalise([sqrt(1 - w) * dense, sqrt(w) * lexical])`` with both halves L2-normalised, so
the cosine of two postings is ``(1 - w) * cos_dense + w * cos_lexical``. ``w`` is chosen on a
validation split when the model is trained (``hybrid_weight`` in ``wbert.json``); the lexical
model is fitted on the postings being indexed and saved with the refresh output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import ModelError
from encoding.encoder import Encoder, EncoderConfig, read_meta
from encoding.lexical import LexicalConfig, LexicalModel

# Used when a model directory records no weight (trained before the hybrid existed); the
# middle of the range where bench/quality.py found the hybrid best on the real corpora.
DEFAULT_WEIGHT = 0.7
WEIGHT_GRID: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def combine(dense: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """The hybrid rows of L2-normalised ``dense`` and ``lexical`` halves (float32, unit norm)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    out = np.hstack([np.sqrt(1.0 - weight) * dense, np.sqrt(weight) * lexical]).astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def match_at_k(vectors: np.ndarray, labels: Sequence, query_idx: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-``k`` cosine neighbours (self excluded) sharing the query's label.

    ``labels[i]`` is a label or a set of labels ("shares one" counts); rows are L2-normalised.
    """
    sets = [lab if isinstance(lab, set | frozenset) else {lab} for lab in labels]
    same = total = 0
    for s in range(0, len(query_idx), 512):
        q = np.asarray(query_idx[s : s + 512])
        sims = vectors[q] @ vectors.T
        sims[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        for qi, row in zip(q, top, strict=True):
            same += sum(1 for j in row if sets[qi] & sets[j])
            total += len(row)
    return same / max(total, 1)


def choose_weight(dense: np.ndarray, lexical: np.ndarray, labels: Sequence,
                  val_idx: np.ndarray, grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, dict]:
    """The grid weight with the best validation match@10 (ties: the smaller weight)."""
    scores = {float(w): match_at_k(combine(dense, lexical, w), labels, val_idx) for w in grid}
    best = max(scores, key=lambda w: (scores[w], -w))
    return best, scores


class HybridEncoder:
    """W-BERT + a fitted :class:`LexicalModel`; ``encode(texts)`` gives the searched vectors."""

    def __init__(self, dense: Encoder, lexical: LexicalModel, weight: float) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ModelError(f"hybrid weight must be in [0, 1], got {weight}")
        self.dense = dense
        self.lexical = lexical
        self.weight = float(weight)
        self.dim = dense.dim + lexical.dim
        self.model_id = hashlib.sha256(
            f"{dense.model_id}|{lexical.model_id}|w={self.weight}".encode()
        ).hexdigest()[:24]

    @property
    def texts_encoded(self) -> int:
        return self.dense.texts_encoded

    @staticmethod
    def model_weight(model_dir: str | Path) -> float:
        """The weight the model directory records (``DEFAULT_WEIGHT`` when none)."""
        w = read_meta(model_dir).get("hybrid_weight")
        return DEFAULT_WEIGHT if w is None else float(w)

    @classmethod
    def load(cls, model_dir: str | Path, lexical_dir: str | Path, *,
             config: EncoderConfig | None = None, weight: float | None = None) -> HybridEncoder:
        """W-BERT from ``model_dir`` and the lexical model a refresh saved in ``lexical_dir``."""
        w = cls.model_weight(model_dir) if weight is None else weight
        return cls(Encoder.load(model_dir, config), LexicalModel.load(lexical_dir), w)

    @classmethod
    def fit(cls, model_dir: str | Path, texts: Sequence[str], *,
            config: EncoderConfig | None = None, lexical: LexicalConfig | None = None,
            weight: float | None = None) -> HybridEncoder:
        """W-BERT from ``model_dir`` and a lexical model fitted on ``texts`` (the indexed postings)."""
        w = cls.model_weight(model_dir) if weight is None else weight
        return cls(Encoder.load(model_dir, config), LexicalModel.fit(texts, lexical), w)

    def combine(self, texts: Sequence[str], dense: np.ndarray) -> np.ndarray:
        """Hybrid rows from already computed W-BERT rows of ``texts``."""
        return combine(dense, self.lexical.transform(texts), self.weight)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape ``(len(texts), dim)``, in input order."""
        return self.combine(texts, self.dense.encode(texts))
