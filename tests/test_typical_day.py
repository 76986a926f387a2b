"""The README's "typical day", run as written: ingest Worknet XML, refresh, serve; every
posting's gRPC answer equals what the refresh wrote (issue #20). Then how `jobrec serve`
finds, or reproduces, the refresh's encoder when it is told less.

Ground truth is the refresh's own output (recs.parquet, embeddings.parquet, RECS.lexical/).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
from pathlib import Path

import grpc
import numpy as np
import polars as pl
import pytest

from server.generated.jobrec.v1 import recommendation_pb2 as pb
from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
N_POSTINGS = 700


def typical_day() -> list[list[str]]:
    """The commands of the README's "A typical day" block, as argv lists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"A typical day:\s*```bash\n(.*?)```", text, re.S)
    assert block, "README has no typical-day block"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [shlex.split(x) for x in lines if x.strip()]


def _run(argv: list[str]) -> None:
    from jobrec.cli import main

    assert argv[0] == "jobrec"
    assert main(argv[1:]) == 0, argv


def _serve_args(argv: list[str]):
    """`jobrec serve` arguments as parsed by the CLI, on port 0 (tests never take 50051)."""
    from jobrec.cli import build_parser

    argv = list(argv[1:])
    if "--port" in argv:
        argv[argv.index("--port") + 1] = "0"
    return build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def day(ray_local, tmp_path_factory):
    """A working directory after the README's ingest and refresh: ``(dir, commands)``."""
    from core.synth import generate_postings
    from core.synth.worknet import write_worknet_xml
    from training.train import TrainConfig, run_local, train_model

    d = tmp_path_factory.mktemp("typical_day")
    cmds = typical_day()
    assert [c[1] for c in cmds] == ["ingest", "refresh", "serve"], cmds
    model = Path(cmds[1][cmds[1].index("--model") + 1])
    assert not model.is_absolute() and cmds[2][cmds[2].index("--model") + 1] == str(model)
    corpus = generate_postings(N_POSTINGS, 21, ref_date=dt.date.today())
    write_worknet_xml(corpus, d / cmds[0][2])
    # the model path of the README, relative to the working directory: a briefly trained one
    cfg = TrainConfig(epochs=1, mlm_epochs=1, max_steps=4, vocab_size=1500, max_length=32,
                      log_every=0)  # fmt: skip
    train_model(corpus, d / model, cfg, runner=run_local, compute_metrics=False)
    cwd = os.getcwd()
    os.chdir(d)
    try:
        for argv in cmds[:2]:
            _run(argv)
        yield d, cmds
    finally:
        os.chdir(cwd)


class Served:
    """`jobrec serve` built from CLI arguments, started in-process, with a stub."""

    def __init__(self, args) -> None:
        from server.app import BackgroundServer
        from server.cli import build_server

        self.server, self.backend, _ = build_server(args)
        self.bg = BackgroundServer(self.server)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.bg.start()}")
        self.stub = pb_grpc.RecommendationServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.bg.stop()
        self.backend.shutdown()


def assert_serves_the_refresh(args, recs: pl.DataFrame) -> int:
    """Every posting's SimilarPostings (k=10) equals the refresh's rows; returns how many
    postings had recommendations."""
    want = {k[0]: g.sort("rank") for k, g in recs.group_by("posting_id")}
    ids = pl.read_parquet(args.postings)["posting_id"].to_list()
    s = Served(args)
    try:
        for pid in ids:
            resp = s.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid, k=10),
                                          timeout=30)  # fmt: skip
            got = resp.recommendations
            w = want.get(pid)
            assert [r.posting_id for r in got] == ([] if w is None else w["rec_posting_id"].to_list()), pid
            if w is not None:
                np.testing.assert_allclose([r.score for r in got], w["score"], atol=1e-5)
                np.testing.assert_allclose([r.distance_km for r in got], w["distance_km"],
                                           atol=1e-3)  # fmt: skip
    finally:
        s.close()
    return len(want)


def test_readme_typical_day_serves_what_the_refresh_wrote(day):
    d, cmds = day
    recs = pl.read_parquet(cmds[1][cmds[1].index("--out") + 1])
    args = _serve_args(cmds[2])
    assert args.lexical is None and args.embeddings is not None  # the README gives neither flag
    with_recs = assert_serves_the_refresh(args, recs)
    assert with_recs > N_POSTINGS // 2  # most postings have neighbours: a real comparison


def test_serve_without_embeddings_chooses_as_the_refresh_did(day):
    """No --embeddings, no --lexical: the lexical half and weight are chosen on the postings
    by the refresh's rule, and every answer is still the refresh's."""
    from encoding.hybrid import saved_weight

    d, cmds = day
    argv = list(cmds[2])
    i = argv.index("--embeddings")
    del argv[i : i + 2]
    args = _serve_args(argv)
    recs = pl.read_parquet(cmds[1][cmds[1].index("--out") + 1])
    assert saved_weight(d / "recs.lexical") != _model_weight(args.model)  # a weight was chosen
    assert_serves_the_refresh(args, recs)


def _model_weight(model_dir) -> float:
    from encoding.hybrid import HybridEncoder

    return HybridEncoder.model_weight(model_dir)


# ------------------------------------------------------------------- serving_encoding


def _refresh_vectors(d: Path, ids: list[str]) -> np.ndarray:
    from encoding.vectors import read_vectors

    return read_vectors(d / "embeddings.parquet", ids)


def test_serving_encoding_finds_the_lexical_model_the_embeddings_record(day, tmp_path):
    from encoding.hybrid import saved_weight
    from encoding.text import posting_text
    from encoding.vectors import read_provenance, write_vectors
    from server.runtime import load_postings, serving_encoding

    d, cmds = day
    postings = load_postings(d / "postings.parquet")
    model = d / cmds[1][cmds[1].index("--model") + 1]
    ids = postings["posting_id"].to_list()
    emb = _refresh_vectors(d, ids)
    prov = read_provenance(d / "embeddings.parquet")
    assert prov["lexical_dir"] == "recs.lexical" and prov["hybrid_weight"] == saved_weight(d / "recs.lexical")
    # the vector file moved with the refresh output: the relative record still finds it
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(d / "embeddings.parquet", moved)
    shutil.copytree(d / "recs.lexical", moved / "recs.lexical")
    got = serving_encoding(model, postings, embeddings=moved / "embeddings.parquet")
    assert got.warning is None and str(moved / "recs.lexical") in got.source
    np.testing.assert_array_equal(got.vectors, emb)
    # an inline posting (a text the refresh indexed) gets the refresh's vector
    rows = list(postings.head(5).iter_rows(named=True))
    np.testing.assert_allclose(got.encoder.encode([posting_text(r) for r in rows]), emb[:5],
                               atol=1e-5)  # fmt: skip
    assert got.encoder.model_id == prov["model_id"]
    # the refresh's --out names its lexical model too
    by_out = serving_encoding(model, postings, lexical=d / "recs.parquet")
    assert by_out.encoder.model_id == prov["model_id"] and by_out.warning is None
    # a vector file that records nothing (vectors written elsewhere): the refresh's rule,
    # checked against the file's vectors, which it reproduces
    bare = tmp_path / "bare.parquet"
    write_vectors(bare, ids, emb)
    again = serving_encoding(model, postings, embeddings=bare)
    assert again.warning is None and "the refresh's rule" in again.source
    assert again.encoder.model_id == prov["model_id"]


def test_serving_encoding_warns_when_it_cannot_match_the_refresh(day, tmp_path):
    from encoding.vectors import write_vectors
    from server.runtime import load_postings, serving_encoding
    from training.train import TrainConfig, run_local, train_model

    d, cmds = day
    postings = load_postings(d / "postings.parquet")
    model = d / cmds[1][cmds[1].index("--model") + 1]
    ids = postings["posting_id"].to_list()
    # another model than the refresh's, the refresh's lexical model found
    other = tmp_path / "other"
    train_model(postings, other, TrainConfig(epochs=1, mlm_epochs=1, max_steps=2, vocab_size=1500,
                                             max_length=32, log_every=0, seed=9),
                runner=run_local, compute_metrics=False)  # fmt: skip
    got = serving_encoding(other, postings, embeddings=d / "embeddings.parquet")
    assert got.warning is not None and "\n" not in got.warning
    assert "embeddings.parquet" in got.warning
    # vectors that no encoder of these postings makes (the lexical half another weight)
    from encoding.hybrid import combine

    emb = _refresh_vectors(d, ids)
    dense = emb[:, : got.encoder.dense.dim]
    lex = emb[:, got.encoder.dense.dim :]
    w = float(np.median(np.sum(lex**2, axis=1)))  # both halves unit norm: |lexical|^2 = w
    shifted = combine(dense / np.linalg.norm(dense, axis=1, keepdims=True),
                      lex / np.linalg.norm(lex, axis=1, keepdims=True), 0.9 if w < 0.5 else 0.1)
    bare = tmp_path / "shifted.parquet"
    write_vectors(bare, ids, shifted)
    off = serving_encoding(model, postings, embeddings=bare)
    assert off.warning is not None
    np.testing.assert_array_equal(off.vectors, shifted)  # still served as given
