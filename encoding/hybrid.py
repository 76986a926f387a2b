"""The posting vector the shards search: W-BERT and the lexical half, concatenated.

``v = normalise([sqrt(1 - w) * dense, sqrt(w) * lexical])`` with both halves L2-normalised, so
the cosine of two postings is ``(1 - w) * cos_dense + w * cos_lexical``. ``w`` is chosen on a
validation split when the model is trained (``hybrid_weight`` in ``wbert.json``); the lexical
model is fitted on the postings being indexed and saved with the refresh output.
"""

from __future__ import annotations

import hashlib
from collections import Counter
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


def _label_sets(labels: Sequence) -> list[frozenset]:
    return [frozenset(lab) if isinstance(lab, set | frozenset) else frozenset([lab]) for lab in labels]


def _shared_label_hits(sims: np.ndarray, q: np.ndarray, sets: Sequence[frozenset], k: int) -> int:
    """How many of each query row's top-``k`` (itself excluded) share one of its labels."""
    sims[np.arange(len(q)), q] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    return sum(1 for qi, row in zip(q, top, strict=True) for j in row if sets[qi] & sets[j])


def match_at_k(vectors: np.ndarray, labels: Sequence, query_idx: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-``k`` cosine neighbours (self excluded) sharing the query's label.

    ``labels[i]`` is a label or a set of labels ("shares one" counts); rows are L2-normalised.
    """
    sets = _label_sets(labels)
    same = 0
    for s in range(0, len(query_idx), 512):
        q = np.asarray(query_idx[s : s + 512])
        same += _shared_label_hits(vectors[q] @ vectors.T, q, sets, k)
    return same / max(len(query_idx) * k, 1)


def weight_scores(dense: np.ndarray, lexical: np.ndarray, labels: Sequence, query_idx: np.ndarray,
                  grid: Sequence[float] = WEIGHT_GRID, k: int = 10) -> dict[float, float]:
    """match@``k`` of the hybrid for every weight of ``grid`` (queries ``query_idx``, candidates all).

    The hybrid cosine is ``(1 - w) * cos_dense + w * cos_lexical`` (both halves unit norm), so
    the two similarity blocks are computed once per query block and only mixed per weight.
    """
    sets = _label_sets(labels)
    same = {float(w): 0 for w in grid}
    for s in range(0, len(query_idx), 256):
        q = np.asarray(query_idx[s : s + 256])
        sd = dense[q] @ dense.T
        sl = lexical[q] @ lexical.T
        for w in grid:
            same[float(w)] += _shared_label_hits((1.0 - w) * sd + w * sl, q, sets, k)
    return {w: n / max(len(query_idx) * k, 1) for w, n in same.items()}


def choose_weight(dense: np.ndarray, lexical: np.ndarray, labels: Sequence,
                  val_idx: np.ndarray, grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, dict]:
    """The grid weight with the best validation match@10 (ties: the smaller weight)."""
    scores = weight_scores(dense, lexical, labels, val_idx, grid)
    best = max(scores, key=lambda w: (scores[w], -w))
    return best, scores


# At refresh time the weight is chosen again on the indexed postings when they carry a label
# (Worknet postings have their KECO code): the W-BERT half was trained on another corpus, the
# lexical half on this one, and how much each is worth here is measured, not assumed.
MIN_LABELLED = 200
MAX_WEIGHT_QUERIES = 2000
HYBRID_JSON = "hybrid.json"


def labelled_queries(labels: Sequence, seed: int = 0,
                     max_queries: int = MAX_WEIGHT_QUERIES) -> np.ndarray | None:
    """Rows usable as weight-choice queries (a label another row shares), seeded sample; None
    when fewer than ``MIN_LABELLED`` such rows exist."""
    sets = [st - {None, ""} for st in _label_sets(labels)]
    counts = Counter(lab for st in sets for lab in st)
    ok = np.array([any(counts[lab] > 1 for lab in st) for st in sets])
    rows = np.flatnonzero(ok)
    if len(rows) < MIN_LABELLED:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, size=min(max_queries, len(rows)), replace=False))


def save_weight(lexical_dir: str | Path, weight: float, source: str, scores: dict | None = None) -> Path:
    """Record the weight chosen for an index next to its lexical model (``hybrid.json``)."""
    import json

    d = Path(lexical_dir)
    d.mkdir(parents=True, exist_ok=True)
    body = {"weight": float(weight), "source": source,
            "validation_match_at_10_by_weight": {str(w): round(v, 4) for w, v in (scores or {}).items()}}
    (d / HYBRID_JSON).write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
    return d / HYBRID_JSON


def saved_weight(lexical_dir: str | Path) -> float | None:
    """The weight a refresh recorded next to its lexical model, or None."""
    import json

    f = Path(lexical_dir) / HYBRID_JSON
    if not f.is_file():
        return None
    w = json.loads(f.read_text(encoding="utf-8")).get("weight")
    return None if w is None else float(w)


class HybridEncoder:
    """W-BERT + a fitted :class:`LexicalModel`; ``encode(texts)`` gives the searched vectors."""

    def __init__(self, dense: Encoder, lexical: LexicalModel, weight: float) -> None:
        self.dense = dense
        self._state = self._half(lexical, weight)

    def _half(self, lexical: LexicalModel, weight: float) -> tuple[LexicalModel, float, str]:
        if not 0.0 <= weight <= 1.0:
            raise ModelError(f"hybrid weight must be in [0, 1], got {weight}")
        model_id = hashlib.sha256(
            f"{self.dense.model_id}|{lexical.model_id}|w={float(weight)}".encode()
        ).hexdigest()[:24]
        return lexical, float(weight), model_id

    # (lexical, weight, model_id) is one tuple so that a frontend following a new generation
    # swaps all three in one assignment: a concurrent encode sees the old or the new, not a mix
    @property
    def lexical(self) -> LexicalModel:
        return self._state[0]

    @property
    def weight(self) -> float:
        return self._state[1]

    @property
    def model_id(self) -> str:
        return self._state[2]

    @property
    def dim(self) -> int:
        return self.dense.dim + self._state[0].dim

    def follow(self, lexical: LexicalModel, weight: float | None = None) -> None:
        """Use another lexical model (and weight; default: keep it) from now on."""
        self._state = self._half(lexical, self.weight if weight is None else weight)

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
        """W-BERT from ``model_dir`` and the lexical model a refresh saved in ``lexical_dir``.

        Weight: ``weight``, else the one the refresh recorded there, else the model's."""
        w = weight if weight is not None else saved_weight(lexical_dir)
        w = cls.model_weight(model_dir) if w is None else w
        return cls(Encoder.load(model_dir, config), LexicalModel.load(lexical_dir), w)

    @classmethod
    def fit(cls, model_dir: str | Path, texts: Sequence[str], *,
            config: EncoderConfig | None = None, lexical: LexicalConfig | None = None,
            weight: float | None = None) -> HybridEncoder:
        """W-BERT from ``model_dir`` and a lexical model fitted on ``texts`` (the indexed postings)."""
        w = cls.model_weight(model_dir) if weight is None else weight
        return cls(Encoder.load(model_dir, config), LexicalModel.fit(texts, lexical), w)

    def reweighted(self, weight: float) -> HybridEncoder:
        """The same halves with another weight."""
        return HybridEncoder(self.dense, self.lexical, weight)

    def combine(self, texts: Sequence[str], dense: np.ndarray) -> np.ndarray:
        """Hybrid rows from already computed W-BERT rows of ``texts``."""
        lexical, weight, _ = self._state
        return combine(dense, lexical.transform(texts), weight)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape ``(len(texts), dim)``, in input order."""
        return self.combine(texts, self.dense.encode(texts))
