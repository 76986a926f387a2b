"""Vectors keyed by model and text in SQLite, so a daily refresh only encodes what changed."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import InvalidInputError
from encoding.text import posting_text

if TYPE_CHECKING:
    from encoding.encoder import Encoder
    from encoding.hybrid import HybridEncoder


class EmbeddingCache:
    """Vectors keyed by ``sha256(model_id + "\\x00" + text)`` in a SQLite file.

    Safe to share between threads of one process; ``hits``/``misses`` count lookups.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, model_id TEXT NOT NULL,"
            " dim INTEGER NOT NULL, vec BLOB NOT NULL)"
        )
        self._db.commit()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_id: str, text: str) -> str:
        return hashlib.sha256(f"{model_id}\x00{text}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are absent from the result)."""
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for s in range(0, len(uniq), 500):
                chunk = uniq[s : s + 500]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT key, dim, vec FROM emb WHERE key IN ({marks})"
                for k, dim, blob in self._db.execute(q, chunk):
                    found[k] = np.frombuffer(blob, dtype=np.float32, count=dim).copy()
            self.hits += sum(1 for k in keys if k in found)
            self.misses += sum(1 for k in keys if k not in found)
        return found

    def put_many(self, model_id: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [
            (k, model_id, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for k, v in items
        ]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def encode_postings(df, encoder: Encoder | HybridEncoder,
                    cache: EmbeddingCache | None = None) -> np.ndarray:
    """Vectors for the postings of ``df`` (rows in ``df`` order); only cache misses are encoded.

    ``df`` is a polars frame (or anything with ``iter_rows(named=True)``) with at least
    ``title`` and ``description``. Identical texts are encoded once. For a
    :class:`~encoding.hybrid.HybridEncoder` only the W-BERT half is cached (keyed by the W-BERT
    model): the lexical half is refitted per refresh and cheap to recompute.
    """
    dense = getattr(encoder, "dense", encoder)
    if not hasattr(df, "iter_rows"):
        raise InvalidInputError("encode_postings needs a polars DataFrame of postings")
    if "title" not in df.columns:
        raise InvalidInputError("postings lack column 'title'", field="title")
    texts = [posting_text(r) for r in df.iter_rows(named=True)]
    out = np.zeros((len(texts), dense.dim), dtype=np.float32)
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    keys = [EmbeddingCache.key(dense.model_id, t) for t in texts]
    cached = cache.get_many(keys) if cache is not None else {}
    todo = list(dict.fromkeys(k for k in keys if k not in cached))
    if todo:
        text_of = dict(zip(keys, texts, strict=True))
        vecs = dense.encode([text_of[k] for k in todo])
        fresh = dict(zip(todo, vecs, strict=True))
        if cache is not None:
            cache.put_many(dense.model_id, fresh.items())
        cached = {**cached, **fresh}
    for i, k in enumerate(keys):
        out[i] = cached[k]
    return encoder.combine(texts, out) if dense is not encoder else out
