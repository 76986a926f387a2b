"""The batch refresh: output vs the brute-force oracle, embeddings out, encoding via the cache,
the ``jobrec refresh`` sub-command, bad inputs."""

from __future__ import annotations

import argparse
from datetime import date

import numpy as np
import polars as pl
import pytest

from core.errors import InvalidInputError
from core.rules import RuleConfig
from core.synth import generate_postings
from encoding.vectors import read_vectors, write_vectors
from tests.test_retrieval_oracle import assert_matches, oracle, unit_rows
from workers.engine.types import RECS_SCHEMA
from workers.jobs import refresh_cli as cli
from workers.jobs.refresh import run_refresh

REF = date(2026, 11, 1)


def occupation_vectors(df: pl.DataFrame, dim: int = 24, seed: int = 0) -> np.ndarray:
    """Random vectors correlated with the occupation code (stand-in for W-BERT)."""
    rng = np.random.default_rng(seed)
    codes = {c: i for i, c in enumerate(sorted(set(df["occupation_code"].to_list())))}
    cent = rng.standard_normal((len(codes), dim))
    idx = np.array([codes[c] for c in df["occupation_code"].to_list()])
    return (cent[idx] + 0.7 * rng.standard_normal((df.height, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def postings():
    return generate_postings(400, seed=3, ref_date=REF)


def test_refresh_with_given_vectors_matches_oracle(ray_local, postings, tmp_path):
    vec = occupation_vectors(postings)
    src, vfile = tmp_path / "postings.parquet", tmp_path / "vectors.parquet"
    postings.write_parquet(src)
    write_vectors(vfile, postings["posting_id"].to_list()[::-1], vec[::-1])  # any row order
    out, emb = tmp_path / "out" / "recs.parquet", tmp_path / "emb.parquet"
    rep = run_refresh(src, None, out, k=7, ref_date=REF, num_shards=2, vectors_path=vfile,
                      embeddings_out=emb, progress=False)  # fmt: skip
    recs = pl.read_parquet(out)
    assert dict(recs.schema) == RECS_SCHEMA
    assert rep.postings == postings.height and rep.recommendations == recs.height
    assert set(rep.timings_s) >= {"read", "encode", "build_shards", "filter_search", "write"}
    rules = RuleConfig(ref_date=REF)
    rows, unit = postings.to_dicts(), unit_rows(vec)
    by_q = {key[0]: g.sort("rank") for key, g in recs.group_by("posting_id")}
    short = 0
    for i, r in enumerate(rows):
        want, qual = oracle(rows, unit, i, rules, 7)
        g = by_q.get(r["posting_id"])
        got = [] if g is None else list(zip(g["rec_posting_id"], g["score"], g["distance_km"],
                                            strict=True))  # fmt: skip
        assert_matches(got, want, qual, rules, r["posting_id"])
        short += len(want) < 7
    assert rep.short_postings == short
    ids = postings["posting_id"].to_list()
    np.testing.assert_array_equal(read_vectors(emb, ids), vec)


def test_refresh_rejects_bad_inputs(ray_local, postings, tmp_path):
    src = tmp_path / "p.parquet"
    postings.write_parquet(src)
    vfile = tmp_path / "v.parquet"
    write_vectors(vfile, postings["posting_id"].to_list()[1:], occupation_vectors(postings)[1:])
    with pytest.raises(InvalidInputError) as exc:
        run_refresh(src, None, tmp_path / "o.parquet", vectors_path=vfile, progress=False)
    assert exc.value.field == "vectors"
    with pytest.raises(InvalidInputError) as exc:
        run_refresh(src, None, tmp_path / "o.parquet", progress=False)
    assert exc.value.field == "model"
    with pytest.raises(InvalidInputError):
        run_refresh(tmp_path / "missing.parquet", None, tmp_path / "o.parquet", progress=False)
    assert not (tmp_path / "o.parquet").exists()


def test_refresh_command_encodes_through_the_cache(ray_local, tmp_path, capsys):
    from encoding.cache import encode_postings
    from encoding.encoder import EncoderConfig
    from encoding.hybrid import HybridEncoder
    from encoding.vectors import lexical_dir_for
    from training.train import TrainConfig, run_local, train_model

    df = generate_postings(150, seed=8, ref_date=REF)
    model = tmp_path / "model"
    cfg = TrainConfig(epochs=1, mlm_epochs=1, max_steps=4, vocab_size=1500, max_length=32,
                      log_every=0)  # fmt: skip
    train_model(df, model, cfg, runner=run_local, compute_metrics=False)
    src = tmp_path / "postings.parquet"
    df.write_parquet(src)

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    argv = ["refresh", "--postings", str(src), "--model", str(model), "--out",
            str(tmp_path / "recs.parquet"), "--k", "5", "--ref-date", REF.isoformat(),
            "--shards", "2", "--embeddings-out", str(tmp_path / "emb.parquet"),
            "--cache", str(tmp_path / "cache.sqlite"), "--no-progress"]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "filter_search" in printed and '"postings": 150' in printed
    recs = pl.read_parquet(tmp_path / "recs.parquet")
    assert recs.height > 0 and recs["rank"].max() <= 5
    # the vectors used are the (hybrid) encoder's, with the lexical model the refresh saved
    enc = HybridEncoder.load(model, lexical_dir_for(tmp_path / "recs.parquet"), config=EncoderConfig())
    used = read_vectors(tmp_path / "emb.parquet", df["posting_id"].to_list())
    np.testing.assert_allclose(used, encode_postings(df, enc), atol=1e-5)
    # a second run finds every text in the cache
    rep = run_refresh(src, model, tmp_path / "recs2.parquet", k=5, ref_date=REF, num_shards=1,
                      cache_path=tmp_path / "cache.sqlite", progress=False)  # fmt: skip
    assert rep.encoder["cache_misses"] == 0 and rep.encoder["cache_hits"] == 150
    again = pl.read_parquet(tmp_path / "recs2.parquet")
    assert again.select("posting_id", "rank", "rec_posting_id").equals(
        recs.select("posting_id", "rank", "rec_posting_id")
    )
