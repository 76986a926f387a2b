"""The W-BERT WordPiece tokenizer (trained here; Kiwi pre-tokenisation is in ``encoding``).

The saved tokenizer is a standard BERT WordPiece tokenizer, so
``AutoTokenizer.from_pretrained(model_dir)`` loads it in any process, with or without jobrec;
feed it text that went through :func:`encoding.pretokenize.pretokenize` when the model's
``wbert.json`` says ``"pretokenizer": "kiwi"`` (the encoder does this for you).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


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
