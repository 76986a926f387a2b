"""Kiwi morpheme pre-tokenisation, the text step before a WordPiece tokenizer.

Kiwi cannot be serialised into a Hugging Face ``tokenizer.json``, so it runs as a text
pre-processing step; the :class:`encoding.encoder.Encoder` applies it when the model
directory's ``wbert.json`` says ``"pretokenizer": "kiwi"``.

The split is *surface-preserving*: the text is only cut at morpheme starts Kiwi reports, never
rewritten (합니다 stays 합니다, not 하 + ᆸ니다), so removing the spaces of
``pretokenize(text)`` gives back the text without its spaces.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Sequence

PRETOKENIZER_NAME = "kiwi-surface-v1"

_kiwi = None
_kiwi_lock = threading.Lock()


def _get_kiwi():
    """One Kiwi instance per process (its model takes ~1.5 s and ~100 MB to load)."""
    global _kiwi
    if _kiwi is None:
        with _kiwi_lock:
            if _kiwi is None:
                from kiwipiepy import Kiwi

                _kiwi = Kiwi(num_workers=min(4, os.cpu_count() or 1))
    return _kiwi


def _split_at(text: str, starts: Iterable[int]) -> str:
    """Cut ``text`` at the given character offsets (and at whitespace) and join with spaces."""
    cuts = sorted({s for s in starts if 0 < s < len(text)})
    pieces: list[str] = []
    prev = 0
    for c in cuts:
        pieces.append(text[prev:c])
        prev = c
    pieces.append(text[prev:])
    return " ".join(" ".join(pieces).split())


# Texts are analysed line by line (and at jobrec's " . " joints) with a per-process cache:
# posting texts repeat most of their lines (duties, qualifications), so a cold batch of 20k
# generated postings only sends ~17% of its lines through Kiwi, the slow part of encoding.
_SEGMENT = re.compile(r"(\n+| \. )")
_CACHE_MAX = 500_000
_cache: dict[str, str] = {}
_cache_lock = threading.Lock()


def pretokenize(text: str) -> str:
    """Split ``text`` at Kiwi morpheme boundaries, keeping the surface characters."""
    return pretokenize_batch([text])[0]


def pretokenize_batch(texts: Sequence[str]) -> list[str]:
    """:func:`pretokenize` for many texts (distinct segments go to Kiwi once, in one batch)."""
    if not texts:
        return []
    # re.split with a group keeps the separators at odd positions
    segmented = [[seg.strip() for seg in _SEGMENT.split(t or "")] for t in texts]
    with _cache_lock:
        todo = list(
            dict.fromkeys(
                seg for segs in segmented for seg in segs[::2] if seg and seg not in _cache
            )
        )
    if todo:
        kiwi = _get_kiwi()
        # Kiwi returns an iterator over per-text token lists when given a list.
        done = {
            seg: _split_at(seg, (t.start for t in tokens))
            for seg, tokens in zip(todo, kiwi.tokenize(todo), strict=True)
        }
        with _cache_lock:
            if len(_cache) + len(done) > _CACHE_MAX:
                _cache.clear()
            _cache.update(done)
    else:
        done = {}
    out = []
    for segs in segmented:
        parts = []
        for i, seg in enumerate(segs):
            if i % 2:  # a separator: " . " stays a full stop, line breaks become spaces
                parts.append("." if seg == "." else "")
            elif seg:
                parts.append(done.get(seg) or _cache.get(seg) or _split_at(seg, ()))
        out.append(" ".join(p for p in parts if p))
    return out


def clear_cache() -> None:
    """Forget cached segment analyses (benchmarks measuring cold encoding call this)."""
    with _cache_lock:
        _cache.clear()
