"""Encoder: mean pooling over the last hidden state, normalised deterministic vectors, cache."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from core.errors import ModelError
from core.synth import generate_postings
from encoding.cache import EmbeddingCache, encode_postings
from encoding.encoder import Encoder, EncoderConfig
from encoding.pretokenize import pretokenize
from encoding.text import posting_text
from training.train import TrainConfig, run_local, train_model


@pytest.fixture(scope="module")
def postings() -> pl.DataFrame:
    return generate_postings(300, seed=5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, postings):
    d = tmp_path_factory.mktemp("enc") / "model"
    cfg = TrainConfig(epochs=1, mlm_epochs=1, max_steps=6, vocab_size=2000, max_length=48, log_every=0)
    train_model(postings, d, cfg, runner=run_local, compute_metrics=False)
    return d


def test_posting_text_keeps_job_lines_and_drops_boilerplate():
    row = {
        "title": "[성북] 지게차 운전원 모집(경력무관)",
        "description": "■ 주요업무\n* 물류센터 입출고 관리\n* 지게차 상하차\n<복리후생>\n4대보험, 퇴직금\n"
        "■ 자격요건\n- 학력: 학력무관\n- 지게차운전기능사 소지자\n※ 워크넷 입사지원 후 연락 주시기 바랍니다.",
        "certificates": "지게차운전기능사",
    }
    assert posting_text(row) == (
        "지게차 운전원 모집 . 물류센터 입출고 관리 . 지게차 상하차 . 지게차운전기능사 소지자 . "
        "지게차운전기능사"
    )


def test_vectors_are_normalised_deterministic_and_order_free(model_dir, postings):
    enc = Encoder.load(model_dir, EncoderConfig(batch_size=16, quantize=False))
    texts = [posting_text(r) for r in postings.head(40).iter_rows(named=True)]
    a = enc.encode(texts)
    b = enc.encode(texts)
    assert a.dtype == np.float32 and a.shape == (40, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, b)
    rev = enc.encode(texts[::-1])[::-1]
    np.testing.assert_allclose(rev, a, atol=1e-5)
    assert enc.encode([]).shape == (0, enc.dim)


def test_mean_pooling_matches_manual_last_hidden_state(model_dir, postings):
    from transformers import AutoModel, AutoTokenizer

    enc = Encoder.load(model_dir, EncoderConfig(quantize=False))
    texts = [posting_text(r) for r in postings.head(5).iter_rows(named=True)]
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    for text, got in zip(texts, enc.encode(texts), strict=True):
        ids = tok(pretokenize(text), truncation=True, max_length=48, return_tensors="pt")
        with torch.no_grad():  # one text alone: no padding, plain average over all tokens
            hidden = model(**ids).last_hidden_state[0].numpy()
        want = hidden.mean(axis=0)
        want /= np.linalg.norm(want)
        np.testing.assert_allclose(got, want, atol=1e-4)
        # and it is not the word-embedding average the old prototype used
        emb = model.get_input_embeddings()(ids["input_ids"])[0].detach().numpy().mean(axis=0)
        assert abs(float(np.dot(got, emb / np.linalg.norm(emb)))) < 0.99


def test_int8_quantised_vectors_stay_close(model_dir, postings):
    texts = [posting_text(r) for r in postings.head(30).iter_rows(named=True)]
    fp = Encoder.load(model_dir, EncoderConfig(quantize=False))
    q = Encoder.load(model_dir, EncoderConfig(quantize=True))
    assert q.quantized and q.model_id != fp.model_id
    a, b = fp.encode(texts), q.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.9


def test_cache_encodes_only_new_or_changed(model_dir, postings, tmp_path):
    enc = Encoder.load(model_dir, EncoderConfig(quantize=False))
    df = postings.head(50)
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        first = encode_postings(df, enc, cache)
        n_first = enc.texts_encoded
        assert 0 < n_first <= 50  # identical texts are encoded once
        second = encode_postings(df, enc, cache)
        assert enc.texts_encoded == n_first  # all hits: nothing encoded
        assert np.array_equal(first, second)
        assert cache.hits >= 50
    changed = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("완전히 새로운 제목 바리스타")).otherwise(pl.col("title")).alias("title")
    )
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:  # persisted on disk
        third = encode_postings(changed, enc, cache)
    assert enc.texts_encoded == n_first + 1
    np.testing.assert_allclose(third[3], enc.encode([posting_text(changed.row(3, named=True))])[0], atol=1e-5)
    assert np.array_equal(np.delete(third, 3, axis=0), np.delete(first, 3, axis=0))


def test_cache_key_depends_on_model_id(model_dir, postings, tmp_path):
    a = Encoder.load(model_dir, EncoderConfig(quantize=False))
    b = Encoder.load(model_dir, EncoderConfig(quantize=False, max_length=16))
    assert a.model_id == Encoder.load(model_dir, EncoderConfig(quantize=False)).model_id
    assert a.model_id != b.model_id
    df = postings.head(5)
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        encode_postings(df, a, cache)
        encode_postings(df, b, cache)
        assert b.texts_encoded > 0  # a different model never reads a's vectors


def test_load_errors(tmp_path):
    with pytest.raises(ModelError):
        Encoder.load(tmp_path / "nothing")
    with pytest.raises(ValueError):
        EncoderConfig(max_length=2)
