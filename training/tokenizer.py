"""Korean tokenizer for W-BERT: Kiwi morpheme pre-tokenisation + a WordPiece vocabulary.

Kiwi cannot be serialised into a Hugging Face ``tokenizer.json``, so it runs as a text
pre-processing step (:func:`pretokenize`) and the saved tokenizer is a standard BERT
WordPiece tokenizer. ``AutoTokenizer.from_pretrained(model_dir)`` therefore loads it in any
process, with or without jobrec; for the best results feed it text that went through
:func:`pretokenize` (the :class:`training.encoder.Encoder` does this for you when the model
directory's ``wbert.json`` says ``"pretokenizer": "kiwi"``).

The split is *surface-preserving*: the text is only cut at morpheme starts Kiwi reports, never
rewritten (합니다 stays 합니다, not 하 + ᆸ니다), so removing the spaces of
``pretokenize(text)`` gives back the text without its spaces.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

PRETOKENIZER_NAME = "kiwi-surface-v1"
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

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


def train_tokenizer(pretokenized: Iterable[str], *, vocab_size: int, min_frequency: int = 2):
    """Train a WordPiece vocabulary on pre-tokenised texts; return a ``BertTokenizerFast``.

    Accents are not stripped: BERT's accent stripping decomposes Hangul syllables into jamo.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer
    from transformers import BertTokenizerFast

    if vocab_size < len(SPECIAL_TOKENS) + 100:
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 100}, got {vocab_size}")
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
    )
    tok.train_from_iterator(pretokenized, trainer=trainer)
    # Building the HF class from the vocabulary gives the exact standard BERT pipeline that
    # AutoTokenizer reconstructs on load (transformers 5 rebuilds it from these arguments).
    return BertTokenizerFast(
        vocab=tok.get_vocab(), do_lower_case=True, strip_accents=False, tokenize_chinese_chars=True
    )


def load_tokenizer(model_dir: str | Path):
    """Load a saved tokenizer with the standard ``AutoTokenizer`` API."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def detokenize(pretokenized_decoded: str) -> str:
    """Remove the spaces a round trip through the tokenizer leaves between pieces.

    Pre-tokenisation drops the information where the original spaces were, so the
    round-trip guarantee is: ``detokenize(decode(encode(pretokenize(t)))) == t`` without spaces
    (lower-cased Latin letters aside).
    """
    return "".join(pretokenized_decoded.split())
