"""Neighbour-label quality of posting representations (``jobrec evaluate``, ``bench/quality.py``).

match@k: for each query posting, the share of its ``k`` exact cosine nearest neighbours (itself
excluded) that share its label (or, for multi-label postings, at least one label). Compared
methods: the default hybrid, W-BERT alone, the lexical half alone, TF-IDF character 2-4-grams,
TF-IDF word unigrams and random vectors, all on the same texts.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from core.errors import InvalidInputError

K_MAX = 50
METHODS = ("default", "model_weight", "wbert", "lexical", "tfidf_char2_4", "tfidf_word1", "random")


def label_sets(values: Sequence, sep: str | None = "|") -> list[frozenset]:
    """One label set per posting (``"a|b"`` -> {a, b}); empty for a missing label."""
    out = []
    for v in values:
        s = "" if v is None else str(v).strip()
        parts = s.split(sep) if sep else [s]
        out.append(frozenset(p.strip() for p in parts if p.strip()))
    return out


def match_curve(vectors, labels: Sequence[frozenset], query_idx: np.ndarray,
                k_max: int = K_MAX) -> np.ndarray:
    """match@k for k = 1..k_max (exact brute-force cosine; rows L2-normalised, dense or sparse)."""
    n = vectors.shape[0]
    k_max = min(k_max, n - 1)
    hits = np.zeros(k_max)
    is_sparse = hasattr(vectors, "tocsr")
    for s in range(0, len(query_idx), 256):
        q = np.asarray(query_idx[s : s + 256])
        sims = vectors[q] @ vectors.T
        sims = np.asarray(sims.toarray() if is_sparse else sims, dtype=np.float32)
        sims[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-sims, k_max - 1, axis=1)[:, :k_max]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        for qi, row in zip(q, top, strict=True):
            hits += np.cumsum([bool(labels[qi] & labels[j]) for j in row])
    return hits / (len(query_idx) * np.arange(1, k_max + 1))


def baseline_vectors(method: str, texts: Sequence[str], seed: int = 0):
    """The non-W-BERT reference representations (rows L2-normalised)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if method == "tfidf_char2_4":  # the figure the real corpora's README quotes
        vec = TfidfVectorizer(analyzer="char", ngram_range=(2, 4), sublinear_tf=True, min_df=2)
        return vec.fit_transform(texts)
    if method == "tfidf_word1":
        vec = TfidfVectorizer(analyzer="word", token_pattern=r"(?u)\S+", sublinear_tf=True)
        return vec.fit_transform(texts)
    if method == "random":
        z = np.random.default_rng(seed).standard_normal((len(texts), 64)).astype(np.float32)
        return z / np.linalg.norm(z, axis=1, keepdims=True)
    raise ValueError(f"unknown baseline {method!r}")


def _is_hanja(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\u3400" <= ch <= "\u4dbf"


def count_unk(tokenizer, texts: Sequence[str]) -> int:
    """How many ``[UNK]`` tokens the tokenizer produces on ``texts``."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return 0
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return int(sum(seq.count(unk) for seq in ids))


def split_queries(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded halves of ``range(n)``: validation queries (the weight is chosen on them) and
    test queries (every method is measured on them)."""
    perm = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


def evaluate_frame(df: pl.DataFrame, model_dir: str | Path, label_column: str, *,
                   label_sep: str | None = "|", weight: float | None = None, seed: int = 0,
                   extra_text: Sequence[str] = ("preferences",),
                   query_ids: Sequence[str] | None = None) -> dict:
    """match@10 and match@k curves of every method on the postings of ``df``.

    ``df`` needs ``title``, ``description`` and ``label_column``; postings without a label are
    left out. Candidates: every posting. The labelled postings are split in two seeded halves:
    the default representation's weight is chosen on the validation half exactly as
    ``jobrec refresh`` chooses it on the postings' labels (``weight`` overrides it) and every
    method is measured on the test half. ``model_weight`` is the hybrid with the weight the
    model recorded (what a refresh without labels serves). The TF-IDF and word baselines see
    ``title``, ``description`` and the ``extra_text`` columns present. ``query_ids``: only
    these postings are queries (those a model under test was not trained on).
    """
    from encoding.hybrid import HybridEncoder, choose_weight, combine
    from encoding.text import posting_text

    for col in ("title", "description", label_column):
        if col not in df.columns:
            raise InvalidInputError(f"postings lack column {col!r}", field=col)
    labels = label_sets(df[label_column].cast(pl.Utf8).to_list(), label_sep)
    keep = np.array([bool(s) for s in labels])
    if keep.sum() < 12:
        raise InvalidInputError(f"only {int(keep.sum())} postings have a label in {label_column!r}")
    df = df.filter(pl.Series(keep))
    labels = [s for s in labels if s]
    rows = list(df.iter_rows(named=True))
    texts = [posting_text(r) for r in rows]
    extra = [c for c in extra_text if c in df.columns]
    plain = [" ".join(str(r[c] or "") for c in ("title", "description", *extra)) for r in rows]
    if query_ids is None:
        pool = np.arange(len(texts))
    else:
        wanted = set(map(str, query_ids))
        pool = np.array([i for i, pid in enumerate(df["posting_id"].cast(pl.Utf8)) if pid in wanted])
        if len(pool) < 4:
            raise InvalidInputError(f"only {len(pool)} labelled postings among the query ids")
    v, t = split_queries(len(pool), seed)
    val_q, test_q = pool[v], pool[t]

    enc = HybridEncoder.fit(model_dir, texts)
    model_weight = enc.weight
    t0 = time.perf_counter()
    dense = enc.dense.encode(texts)
    dense_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lex = enc.lexical.transform(texts)
    lex_s = time.perf_counter() - t0
    if weight is None:
        chosen, val_scores = choose_weight(dense, lex, labels, val_q)
        source = "validation half"
    else:
        chosen, val_scores, source = float(weight), {}, "given"
    reps = {"default": combine(dense, lex, chosen), "model_weight": combine(dense, lex, model_weight),
            "wbert": dense, "lexical": lex}
    for m in ("tfidf_char2_4", "tfidf_word1", "random"):
        reps[m] = baseline_vectors(m, plain, seed)
    curves = {m: match_curve(v, labels, test_q) for m, v in reps.items()}
    from encoding.pretokenize import pretokenize_batch

    tok_texts = pretokenize_batch(texts) if enc.dense.pretokenize else texts
    return {
        "postings": len(texts),
        "queries": {"validation": int(len(val_q)), "test": int(len(test_q))},
        "labels": len(set().union(*labels)),
        "label_column": label_column,
        "model_dir": str(model_dir),
        "hybrid_weight": chosen,
        "weight_source": source,
        "model_weight": model_weight,
        "validation_match_at_10_by_weight": {str(w): round(v, 4) for w, v in val_scores.items()},
        "dims": {"wbert": enc.dense.dim, "lexical": enc.lexical.dim},
        "match_at_10": {m: round(float(c[9]), 4) for m, c in curves.items()},
        "match_at_k": {m: [round(float(x), 4) for x in c] for m, c in curves.items()},
        "default_vs_tfidf_char2_4": round(float(curves["default"][9] / max(curves["tfidf_char2_4"][9], 1e-9)), 3),
        "model_weight_vs_tfidf_char2_4": round(float(curves["model_weight"][9] / max(curves["tfidf_char2_4"][9], 1e-9)), 3),
        "unk_tokens": count_unk(enc.dense.tokenizer, tok_texts),
        # characters no jobrec vocabulary covers (Hanja): the only ones that may become [UNK]
        "hanja_chars": sum(1 for t in texts for ch in t if _is_hanja(ch)),
        "tokens": int(sum(len(x) for x in enc.dense.tokenizer(tok_texts, add_special_tokens=False)["input_ids"])),
        "encode_postings_per_s": {"wbert_cold": round(len(texts) / max(dense_s, 1e-9), 1),
                                  "lexical": round(len(texts) / max(lex_s, 1e-9), 1)},
    }


def png_base64(fig) -> str:
    """A matplotlib figure as base64 PNG, for an ``<img src='data:...'>`` in an HTML report."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def write_html(results: dict[str, dict], path: str | Path) -> Path:
    """An HTML report: one bar chart of match@10 per corpus and the match@k curves (k=1..50)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = ["<html><head><meta charset='utf-8'><title>jobrec posting-vector quality</title>"
             "</head><body><h1>Neighbour-label match@k</h1>"]
    for corpus, res in results.items():
        m10 = res["match_at_10"]
        fig, ax = plt.subplots(1, 2, figsize=(12, 4))
        names = list(m10)
        ax[0].bar(names, [m10[n] for n in names], color=["C0" if n == "default" else "C7" for n in names])
        ax[0].set_title(f"{corpus}: match@10")
        ax[0].tick_params(axis="x", rotation=30)
        for n, curve in res["match_at_k"].items():
            ax[1].plot(range(1, len(curve) + 1), curve, label=n, lw=2 if n == "default" else 1)
        ax[1].set_xlabel("k")
        ax[1].set_title(f"{corpus}: match@k")
        ax[1].legend(fontsize=8)
        img = png_base64(fig)
        plt.close(fig)
        rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{v:.3f}</td></tr>" for n, v in m10.items())
        parts.append(
            f"<h2>{html.escape(corpus)}</h2><p>{res['postings']} postings, {res['labels']} labels "
            f"({html.escape(res['label_column'])}), hybrid weight {res['hybrid_weight']} "
            f"({html.escape(res['weight_source'])}; the model's: {res['model_weight']}), "
            f"[UNK] tokens {res['unk_tokens']}</p><table border=1><tr><th>method</th>"
            f"<th>match@10</th></tr>{rows}</table><img src='data:image/png;base64,{img}'/>"
        )
    parts.append("</body></html>")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(parts), encoding="utf-8")
    return p
