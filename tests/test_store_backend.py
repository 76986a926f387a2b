"""The shard store under real Ray shard actors: acknowledged writes survive a restart from
the store (local directory and S3), and the refresh carries them into the next generation."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import NotFoundError
from core.rules import RuleConfig
from server.runtime import build_backend
from tests.test_retrieval_oracle import REF, make_postings
from tests.test_store import s3_server  # noqa: F401  (fixture)
from workers.jobs.refresh import run_refresh, write_vectors
from workers.store.generation import open_store, read_frame
from workers.store.stored import StoredBackend

RULES = RuleConfig(ref_date=REF)


@pytest.fixture(scope="module")
def data():
    return make_postings(8, 160, spread_deg=0.6, n_companies=16)


def _edit(df, vec):
    """Two new postings (copies of rows 0/1 moved and renamed) and one deleted id."""
    new = df[:2].with_columns(
        df[:2]["posting_id"].map_elements(lambda p: f"NEW-{p}", return_dtype=str),
        (df[:2]["lat"] + 0.01),
    )
    rng = np.random.default_rng(1)
    return new, rng.standard_normal((2, vec.shape[1])).astype(np.float32), df["posting_id"][5]


def _online(backend, pid, k=5):
    return [(r.posting_id, round(r.score, 5)) for r in backend.similar(pid, k, RULES)]


def _restart_keeps_acknowledged_writes(store, df, vec):
    backend, _ = build_backend(df, vec, shards=2, ref_date=REF, store=store)
    assert isinstance(backend, StoredBackend)
    new, new_vec, gone = _edit(df, vec)
    try:
        backend.upsert(new, new_vec)
        backend.delete([gone])
        probe = df["posting_id"][7]
        want = {pid: _online(backend, pid) for pid in (probe, *new["posting_id"].to_list())}
        size = backend.size()
    finally:
        backend.shutdown()
    # a fresh set of shard actors, from the store alone (no postings given)
    again, _ = build_backend(None, None, ref_date=REF, store=store)
    try:
        assert again.size() == size == df.height + 1
        with pytest.raises(NotFoundError):
            again.get(gone)
        for pid, recs in want.items():
            assert _online(again, pid) == recs
        assert again.get(new["posting_id"][0])["lat"] == pytest.approx(new["lat"][0])
    finally:
        again.shutdown()


def test_restart_from_a_local_store_keeps_every_acknowledged_write(ray_local, tmp_path, data):
    df, vec = data
    _restart_keeps_acknowledged_writes(open_store(str(tmp_path / "store")), df, vec)


def test_restart_from_an_s3_store_keeps_every_acknowledged_write(ray_local, s3_server, data):  # noqa: F811
    df, vec = data
    store = open_store("s3://jobrec-test/restart", s3_server)
    _restart_keeps_acknowledged_writes(store, df, vec)


def test_refresh_carries_logged_writes_into_the_next_generation(ray_local, tmp_path, data):
    df, vec = data
    store = open_store(str(tmp_path / "store"))
    backend, _ = build_backend(df, vec, shards=2, ref_date=REF, store=store)
    new, new_vec, gone = _edit(df, vec)
    try:
        backend.upsert(new, new_vec)
        backend.delete([gone])
    finally:
        backend.shutdown()
    postings = tmp_path / "postings.parquet"
    df.write_parquet(postings)  # the nightly export knows nothing of the gRPC writes
    write_vectors(tmp_path / "vec.parquet", df["posting_id"].to_list(), vec)
    report = run_refresh(
        postings, None, tmp_path / "recs.parquet", k=5, ref_date=REF, num_shards=3,
        vectors_path=tmp_path / "vec.parquet", progress=False, store=store,
    )  # fmt: skip
    assert report.generation == "g000002" and report.carried_writes > 0
    assert store.manifest().generation == "g000002" and store.manifest().previous == "g000001"
    got, got_vec, gen = read_frame(store)
    ids = set(got["posting_id"].to_list())
    assert gen == "g000002" and store.meta(gen)["num_shards"] == 3
    assert set(new["posting_id"].to_list()) <= ids and gone not in ids
    assert len(ids) == df.height + 1 == report.postings
    row = got["posting_id"].to_list().index(new["posting_id"][1])
    assert np.allclose(got_vec[row], new_vec[1])
