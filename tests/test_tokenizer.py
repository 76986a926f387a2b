"""Kiwi pre-tokenisation + WordPiece: lossless splitting, round trips, plain AutoTokenizer loading."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.synth import generate_postings
from encoding.pretokenize import pretokenize, pretokenize_batch
from encoding.text import posting_text
from training.tokenizer import detokenize, load_tokenizer, train_tokenizer

SENTENCES = [
    "빅데이터 플랫폼 구축 및 SQL 기반 데이터 분석 업무를 담당합니다.",
    "요양보호사 자격증 소지자 우대, 어르신 돌봄 및 생활 지원",
    "지게차운전기능사 소지자 필수 . 물류센터 입출고 관리",
    "경리 사무원: 전표 입력, 세금계산서 발행했다",
]


def _nospace(s: str) -> str:
    return "".join(s.split())


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    df = generate_postings(400, seed=11)
    return [posting_text(r) for r in df.iter_rows(named=True)] + SENTENCES


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, corpus):
    tok = train_tokenizer(pretokenize_batch(corpus), vocab_size=3000)
    d = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(str(d))
    return d


def test_pretokenize_splits_morphemes_and_keeps_surface():
    out = pretokenize("데이터를 분석합니다")
    # Kiwi separates the object particle and the verb ending from their stems
    assert out.split()[:2] == ["데이터", "를"]
    assert _nospace(out) == "데이터를분석합니다"
    assert pretokenize("") == ""


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="가나다라마바사아자차카타파하는를을에서 .\n0123ABCabc·()", max_size=40))
def test_pretokenize_is_lossless(text):
    assert _nospace(pretokenize(text)) == _nospace(text.replace(" . ", " "))


def test_batch_equals_single_and_cache_is_consistent():
    single = [pretokenize(s) for s in SENTENCES]
    assert pretokenize_batch(SENTENCES) == single
    assert pretokenize_batch(SENTENCES[::-1]) == single[::-1]


def test_wordpiece_round_trips_korean(tokenizer_dir, corpus):
    tok = load_tokenizer(tokenizer_dir)
    for text in corpus[:200] + SENTENCES:
        ids = tok(pretokenize(text))["input_ids"]
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert tok.unk_token_id not in ids, text
        decoded = tok.decode(ids, skip_special_tokens=True)
        assert detokenize(decoded) == _nospace(text).lower()


def test_vocabulary_has_whole_morphemes(tokenizer_dir):
    vocab = load_tokenizer(tokenizer_dir).get_vocab()
    for word in ("데이터", "분석", "관리", "업무"):
        assert word in vocab


def test_autotokenizer_loads_without_jobrec(tokenizer_dir):
    text = pretokenize(SENTENCES[0])
    expected = load_tokenizer(tokenizer_dir)(text)["input_ids"]
    code = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        "from tokenizers import Tokenizer\n"
        f"d = {str(tokenizer_dir)!r}\n"
        "tok = AutoTokenizer.from_pretrained(d)\n"
        f"text = {text!r}\n"
        "raw = Tokenizer.from_file(d + '/tokenizer.json').encode(text).ids\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('jobrec', 'training', 'core')]\n"
        "print(json.dumps({'ids': tok(text)['input_ids'], 'raw': raw, 'bad': bad}))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/",
        check=True,
    )
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["bad"] == []
    assert got["ids"] == expected
    assert got["raw"] == expected


def test_train_tokenizer_rejects_tiny_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["a b c"], vocab_size=10)
