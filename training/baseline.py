"""The competing approach: TF-IDF features, logistic regression and TF-IDF cosine neighbours.

Scored on exactly the split W-BERT is scored on, so ``metrics.json`` compares like with like.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BaselineConfig:
    """TF-IDF over whitespace tokens (Kiwi morphemes) with uni- and bi-grams."""

    ngram_max: int = 2
    min_df: int = 2
    max_features: int | None = 200_000
    C: float = 20.0
    max_iter: int = 300

    def __post_init__(self) -> None:
        if self.ngram_max < 1:
            raise ValueError(f"ngram_max must be >= 1, got {self.ngram_max}")
        if self.min_df < 1:
            raise ValueError(f"min_df must be >= 1, got {self.min_df}")
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")


def fit_vectorizer(train_texts: Sequence[str], cfg: BaselineConfig):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        analyzer="word",
        token_pattern=r"(?u)\S+",
        lowercase=True,
        ngram_range=(1, cfg.ngram_max),
        min_df=cfg.min_df,
        max_features=cfg.max_features,
        sublinear_tf=True,
        dtype=np.float32,
    )
    vec.fit(train_texts)
    return vec


def classify_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (over the classes present in truth or prediction)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def tfidf_logreg(
    texts: Sequence[str],
    labels: dict[str, np.ndarray],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    cfg: BaselineConfig | None = None,
) -> tuple[dict[str, dict[str, float]], object]:
    """Fit TF-IDF + logistic regression per label level on ``train_idx``, score ``test_idx``.

    Returns ``({level: {accuracy, macro_f1}}, fitted vectorizer)``.
    """
    from sklearn.linear_model import LogisticRegression

    cfg = cfg or BaselineConfig()
    t0 = time.perf_counter()
    vec = fit_vectorizer([texts[i] for i in train_idx], cfg)
    x_train = vec.transform([texts[i] for i in train_idx])
    x_test = vec.transform([texts[i] for i in test_idx])
    out: dict[str, dict[str, float]] = {}
    for level, y in labels.items():
        clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter, solver="lbfgs")
        clf.fit(x_train, y[train_idx])
        out[level] = classify_scores(y[test_idx], clf.predict(x_test))
    out["fit_seconds"] = time.perf_counter() - t0  # type: ignore[assignment]
    return out, vec


def neighbour_same_label_share(
    vectors, labels: np.ndarray, query_idx: np.ndarray, k: int = 10, chunk: int = 512
) -> float:
    """Share of the exact top-``k`` cosine neighbours (self excluded) sharing the query's label.

    ``vectors`` are L2-normalised rows (dense ``ndarray`` or scipy sparse); the search is
    brute force over every row, so the figure has no approximation error.
    """
    same = total = 0
    is_sparse = hasattr(vectors, "tocsr")
    for s in range(0, len(query_idx), chunk):
        q = query_idx[s : s + chunk]
        sims = vectors[q] @ vectors.T
        sims = sims.toarray() if is_sparse else np.asarray(sims)
        sims = sims.astype(np.float32, copy=False)
        sims[np.arange(len(q)), q] = -np.inf  # never count the query itself
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        same += int((labels[top] == labels[q][:, None]).sum())
        total += top.size
    return same / max(total, 1)
