"""Hybrid vectors: no-UNK tokenizer, lexical model round trip, batch == inline, quality bench."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.synth import generate_postings
from encoding.cache import encode_postings
from encoding.hybrid import (
    HybridEncoder,
    choose_weight,
    combine,
    labelled_queries,
    match_at_k,
    saved_weight,
    weight_scores,
)
from encoding.lexical import LexicalModel
from encoding.text import posting_text
from training.tokenizer import HANGUL_SYLLABLES, HANJA, SYMBOLS, train_tokenizer
from training.train import TrainConfig, run_local, train_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def postings() -> pl.DataFrame:
    return generate_postings(200, seed=31)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, postings):
    d = tmp_path_factory.mktemp("hyb") / "model"
    cfg = TrainConfig(epochs=1, mlm_epochs=1, max_steps=4, vocab_size=1500, max_length=32, log_every=0)
    train_model(postings, d, cfg, runner=run_local, compute_metrics=False)
    return d


def test_tokenizer_from_a_tiny_corpus_has_no_unk():
    tok = train_tokenizer(["데이터 분석 업무", "요양 보호사 자격증"] * 3, vocab_size=200)
    texts = list(HANGUL_SYLLABLES) + list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789") + list(SYMBOLS)
    texts += ["재가 요양보호사 구함 식사 챙겨드리기", "React.js AWS 지게차 용접 ㄱㄴㄷ ㅏㅓ"]
    # Hanja of KS X 1001 and the odd marks of real postings (⦿ ⩗ ᛫, ✔ with a variation selector)
    texts += list(HANJA) + ["必須 經歷 內外", "⦿ 업무 ⩗ 조건 ᛫ 우대", "✔︎ 자격증 ✔️ 경력"]
    # syllables in pairs as well, so continuation (##) forms are exercised
    texts += [HANGUL_SYLLABLES[i : i + 2] for i in range(0, len(HANGUL_SYLLABLES), 2)]
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    assert sum(seq.count(tok.unk_token_id) for seq in ids) == 0
    assert len(HANJA) == 4888


def test_lexical_model_round_trips_to_disk(tmp_path, postings):
    texts = [posting_text(r) for r in postings.iter_rows(named=True)]
    lex = LexicalModel.fit(texts)
    back = LexicalModel.load(lex.save(tmp_path / "lex"))
    assert back.model_id == lex.model_id and back.dim == lex.dim
    np.testing.assert_array_equal(back.transform(texts), lex.transform(texts))
    z = lex.transform(texts)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    # a row depends on its own text only
    np.testing.assert_array_equal(lex.transform(texts[5:6])[0], z[5])


def _unit_rows(rng, n: int, dim: int) -> np.ndarray:
    z = rng.standard_normal((n, dim)).astype(np.float32)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def test_combine_is_the_weighted_cosine():
    rng = np.random.default_rng(0)
    d, x = _unit_rows(rng, 6, 8), _unit_rows(rng, 6, 5)
    h = combine(d, x, 0.3)
    np.testing.assert_allclose(h @ h.T, 0.7 * (d @ d.T) + 0.3 * (x @ x.T), atol=1e-5)
    # brute-force match@k oracle
    labels = ["a", "a", "b", "b", "a", "b"]
    sims = h @ h.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :2]
    want = np.mean([[labels[j] == labels[i] for j in row] for i, row in enumerate(top)])
    assert match_at_k(h, labels, np.arange(6), k=2) == pytest.approx(want)


def test_weight_scores_equal_match_at_k_of_each_combination():
    rng = np.random.default_rng(3)
    d, x = _unit_rows(rng, 60, 8), _unit_rows(rng, 60, 5)
    x[:30, 0] += 3.0  # the lexical half separates the two labels, the dense half does not
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = ["a"] * 30 + ["b"] * 30
    q = np.arange(0, 60, 2)
    scores = weight_scores(d, x, labels, q, grid=(0.0, 0.5, 1.0), k=5)
    for w, got in scores.items():
        assert got == pytest.approx(match_at_k(combine(d, x, w), labels, q, k=5))
    w, _ = choose_weight(d, x, labels, q, grid=(0.0, 0.5, 1.0))
    assert w > 0.0 and scores[w] == max(scores.values())


def test_labelled_queries_need_shared_labels(monkeypatch):
    import encoding.hybrid as H

    monkeypatch.setattr(H, "MIN_LABELLED", 4)
    assert labelled_queries(["a", "b", "c", None, ""]) is None  # no label is shared
    q = labelled_queries(["a", "a", "b", "b", "c", None, "a"])
    assert q.tolist() == [0, 1, 2, 3, 6]


def test_refresh_chooses_the_weight_on_the_postings_labels(tmp_path, model_dir, postings, monkeypatch):
    """encode(weight_label=...) picks the grid weight with the best labelled match@10, records
    it beside the lexical model, and the server's encoder (loaded from there) uses it."""
    import encoding.hybrid as H
    from encoding.vectors import encode

    monkeypatch.setattr(H, "MIN_LABELLED", 50)
    lex_dir = tmp_path / "lex"
    vec, info = encode(postings, model_dir, None, lexical_dir=lex_dir, weight_label="occupation_code")
    assert info["weight_source"].startswith("label:occupation_code")
    texts = [posting_text(r) for r in postings.iter_rows(named=True)]
    enc = HybridEncoder.fit(model_dir, texts)
    dense, lex = enc.dense.encode(texts), enc.lexical.transform(texts)
    labels = postings["occupation_code"].to_list()
    want, _ = choose_weight(dense, lex, labels, labelled_queries(labels))
    assert info["hybrid_weight"] == want == saved_weight(lex_dir)
    served = HybridEncoder.load(model_dir, lex_dir)
    assert served.weight == want
    np.testing.assert_allclose(served.encode(texts[:3]), vec[:3], atol=1e-5)
    # without labels the model's weight is kept, and recorded as such
    _, info2 = encode(postings, model_dir, None, lexical_dir=tmp_path / "lex2")
    assert info2["weight_source"] == "model"
    assert saved_weight(tmp_path / "lex2") == HybridEncoder.model_weight(model_dir)
    with pytest.raises(Exception, match="weight label"):
        encode(postings, model_dir, None, weight_label="no_such_column")


def test_kiwi_sees_only_the_readable_prefix_and_ids_do_not_change(model_dir):
    import encoding.encoder as E

    enc = E.Encoder.load(model_dir)
    rng = np.random.default_rng(5)
    words = ["요양보호사", "지게차", "운전", "가능자", "우대", "React.js", "개발", "경력", "3년", "이상"]
    texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(2, 120, size=40)]
    texts += ["짧은 글", "", "가나다라 " * 150]
    cut = enc.prepare(texts)
    saved = E.KIWI_CHARS_PER_TOKEN
    try:
        E.KIWI_CHARS_PER_TOKEN = 1e9  # whole texts through Kiwi
        whole = enc.prepare(texts)
    finally:
        E.KIWI_CHARS_PER_TOKEN = saved
    assert cut == whole
    assert max(len(t) for t in texts) > enc.max_length * saved  # the cut was exercised
    # one 500-character "word": whole, WordPiece gives up on it ([UNK]); cut, it is read
    assert enc.tokenizer.unk_token_id not in enc.prepare(["가" * 500])[0]


def test_batch_and_inline_hybrid_vectors_are_identical(tmp_path, model_dir, postings):
    texts = [posting_text(r) for r in postings.iter_rows(named=True)]
    enc = HybridEncoder.fit(model_dir, texts)
    enc.lexical.save(tmp_path / "lex")
    batch = encode_postings(postings, enc)
    assert batch.shape == (postings.height, enc.dense.dim + enc.lexical.dim)
    served = HybridEncoder.load(model_dir, tmp_path / "lex")  # what the server loads
    for i in (0, 7, 42):
        one = served.encode([posting_text(postings.row(i, named=True))])[0]
        np.testing.assert_allclose(one, batch[i], atol=1e-5)
        assert int(np.argmax(batch @ one)) == i


def test_quality_bench_runs_on_the_real_samples(tmp_path, model_dir):
    sys.path.insert(0, str(ROOT / "bench"))
    import quality

    out = tmp_path / "q.json"
    assert quality.main(["--model", str(model_dir), "--sample", "--generated", "300",
                         "--html", str(tmp_path / "q.html"), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"generated", "wanted", "worknet"}
    for r in res.values():
        m = r["match_at_10"]
        assert set(m) == {"default", "model_weight", "wbert", "lexical", "tfidf_char2_4",
                          "tfidf_word1", "random"}
        # the weight is chosen on the validation half, every method measured on the other
        assert r["queries"]["validation"] + r["queries"]["test"] == r["postings"]
        best = max(r["validation_match_at_10_by_weight"].values())
        assert r["validation_match_at_10_by_weight"][str(r["hybrid_weight"])] == best
        assert r["unk_tokens"] <= r["hanja_chars"]  # only uncovered (Hanja) characters
        assert len(r["match_at_k"]["default"]) == 50
        assert m["default"] > m["random"]
    assert res["generated"]["unk_tokens"] == 0
    html = (tmp_path / "q.html").read_text()
    assert html.count("data:image/png;base64,") == 3


def test_refresh_reencodes_carried_writes_in_its_own_space(tmp_path, model_dir, postings):
    """Writes carried over from the serving generation's log hold vectors of that
    generation's lexical model; the refresh encodes them again with the one it fitted."""
    from workers.jobs.refresh import _reencode_carried

    texts = [posting_text(r) for r in postings.iter_rows(named=True)]
    enc = HybridEncoder.fit(model_dir, texts)
    enc.lexical.save(tmp_path / "lex")
    vec = enc.encode(texts).astype(np.float32)
    ids = postings["posting_id"].to_list()
    fresh = dict(zip(ids, vec.copy(), strict=True))
    carried = vec.copy()
    carried[3] = 0.5  # an upsert logged with an old-space vector
    fresh.pop(ids[7])  # a posting that only the log knows
    carried[7] = 0.25
    _reencode_carried(postings, carried, ids, fresh, model_dir, tmp_path / "lex")
    np.testing.assert_allclose(carried[[3, 7]], vec[[3, 7]], atol=1e-5)
    untouched = [i for i in range(len(ids)) if i not in (3, 7)]
    np.testing.assert_array_equal(carried[untouched], vec[untouched])


def test_store_generation_carries_its_lexical_model_to_the_frontend(
    ray_local, tmp_path, model_dir, postings
):
    """A refresh into a store writes its lexical half with the generation; a frontend that
    switches to the generation encodes inline postings with it."""
    import types

    from core.synth import DEFAULT_REF_DATE
    from encoding.vectors import lexical_dir_for
    from server.app import JobrecServer, ServerConfig
    from workers.jobs.refresh import run_refresh
    from workers.store.generation import lexical_from_store, open_store

    store = open_store(str(tmp_path / "store"))
    path = tmp_path / "postings.parquet"
    postings.write_parquet(path)
    out = tmp_path / "recs.parquet"
    report = run_refresh(path, model_dir, out, k=5, ref_date=DEFAULT_REF_DATE, num_shards=2,
                         progress=False, store=store)
    saved = LexicalModel.load(lexical_dir_for(out))
    got = LexicalModel.load(lexical_from_store(store, report.generation, tmp_path / "lex"))
    assert got.model_id == saved.model_id

    other = generate_postings(120, seed=77)  # the frontend started with another fit
    enc = HybridEncoder.fit(model_dir, [posting_text(r) for r in other.iter_rows(named=True)])
    assert enc.lexical.model_id != saved.model_id
    backend = types.SimpleNamespace(store=store, on_switch=None, on_append=None)
    JobrecServer(backend, enc, None, ServerConfig(port=0, health_interval_s=0))
    backend.on_switch(report.generation)  # what StoredBackend.maybe_switch calls
    assert enc.lexical.model_id == saved.model_id
