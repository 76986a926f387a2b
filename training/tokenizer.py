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

# Every character a posting is likely to contain, whatever corpus the vocabulary was learnt
# on: all 11,172 Hangul syllables, the jamo blocks, lower-case ASCII letters, digits and common
# symbols. Letters and digits also get their "##" continuation form, so an unseen word is
# spelt out character by character instead of becoming [UNK].
HANGUL_SYLLABLES = "".join(chr(c) for c in range(0xAC00, 0xD7A4))
FULLWIDTH = "".join(chr(c) for c in range(0xFF01, 0xFF5F))  # ＞ ＜ （ ） ... (no NFKC in BERT)
JAMO = "".join(chr(c) for c in range(0x1100, 0x1200)) + "".join(chr(c) for c in range(0x3131, 0x318F))
ASCII_WORD = "abcdefghijklmnopqrstuvwxyz0123456789"
# Unicode symbol blocks seen in real postings (º, dashes, ≤, Ⅱ, ❍, ㈜, ㎡ ...): Latin-1, general
# punctuation, letter-like and number forms, arrows, mathematical operators, enclosed
# alphanumerics, box drawing and geometric shapes, miscellaneous symbols, dingbats, the
# mathematical symbol and arrow blocks (⦿ ⩗), CJK symbols, enclosed CJK letters and CJK
# compatibility units, runic punctuation (᛫, a bullet in real postings).
_BLOCKS = ((0x00A1, 0x0100), (0x16EB, 0x16EE), (0x2010, 0x205F), (0x2100, 0x2190),
           (0x2190, 0x2300), (0x2460, 0x2500), (0x2500, 0x2600), (0x2600, 0x2700),
           (0x2700, 0x27C0), (0x27C0, 0x2C00), (0x3000, 0x3040), (0x3200, 0x3300),
           (0x3300, 0x3400))
SYMBOL_BLOCKS = "".join(chr(c) for a, b in _BLOCKS for c in range(a, b) if chr(c).isprintable())
SYMBOLS = FULLWIDTH + SYMBOL_BLOCKS + "▲△▼▽▣◈◎◐◑・∙☎☏♥♡✔✓✗✕" + "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~·ㆍ•○●■□◆◇▶▷►※→←↑↓★☆①②③④⑤⑥⑦⑧⑨⑩℃㎡㎏㎞％～「」『』【】〈〉《》“”‘’…"
# Variation selectors (✔︎ = ✔ + U+FE0E) ride on the symbol before them: continuation forms.
VARIATION_SELECTORS = "".join(chr(c) for c in range(0xFE00, 0xFE10))


def ks_hanja() -> str:
    """The 4,888 Hanja of KS X 1001 (the Korean standard set: 必, 內, 外, 株 ... in real
    postings), read from Python's EUC-KR codec rows 0xCA-0xFD. The other 16k CJK ideographs
    stay out: they would add 16k vocabulary rows for characters Korean text hardly uses."""
    out = []
    for lead in range(0xCA, 0xFE):
        for trail in range(0xA1, 0xFF):
            out.append(bytes([lead, trail]).decode("euc_kr"))
    return "".join(out)


HANJA = ks_hanja()


def alphabet_tokens() -> list[str]:
    """The characters (and ``##`` continuations) every jobrec vocabulary contains."""
    word = HANGUL_SYLLABLES + JAMO + ASCII_WORD
    # the normaliser lower-cases before lookup (Ⅱ -> ⅱ, Ω -> ω): both forms are kept
    symbols = SYMBOLS + SYMBOLS.lower()
    # Hanja: the BERT pre-tokeniser splits every CJK ideograph off alone, no "##" form needed
    return list(dict.fromkeys([*word, *symbols, *HANJA, *VARIATION_SELECTORS,
                               *("##" + c for c in word + VARIATION_SELECTORS)]))


def train_tokenizer(pretokenized: Iterable[str], *, vocab_size: int, min_frequency: int = 2):
    """Train a WordPiece vocabulary on pre-tokenised texts; return a ``BertTokenizerFast``.

    ``vocab_size`` is the size of the learnt part; :func:`alphabet_tokens` is added on top, so
    the final vocabulary is larger (``len(tokenizer)``) and has no [UNK] for those characters.

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
    vocab = tok.get_vocab()
    for t in alphabet_tokens():  # full coverage: no [UNK] for any covered character
        if t not in vocab:
            vocab[t] = len(vocab)
    # Building the HF class from the vocabulary gives the exact standard BERT pipeline that
    # AutoTokenizer reconstructs on load (transformers 5 rebuilds it from these arguments).
    return BertTokenizerFast(
        vocab=vocab, do_lower_case=True, strip_accents=False, tokenize_chinese_chars=True
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
