"""The shard store, on a local directory and on a real S3-compatible server (moto, started
here): generations, the append log replayed against a plain-dict oracle, the id → shard
map, and the atomic manifest flip."""

from __future__ import annotations

import os
import pickle
import random
import threading

import pyarrow as pa
import pytest

from core.errors import InvalidInputError, NotFoundError
from workers.store.store import ShardStore, StoreConfig, replay

SCHEMA = pa.schema([("posting_id", pa.string()), ("title", pa.string()), ("lat", pa.float64()),
                    ("vector", pa.list_(pa.float32(), 2))])  # fmt: skip


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on a free local port, with a bucket; AWS variables point at it."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1"
    )
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket="jobrec-test"
    )
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ShardStore(str(tmp_path / "store"))
    endpoint = request.getfixturevalue("s3_server")
    prefix = f"s3://jobrec-test/{request.node.name.replace('[', '-').rstrip(']')}-{random.randrange(10**9)}"
    return ShardStore(StoreConfig(prefix, endpoint=endpoint))


def _rows(ids, title="t", lat=37.5):
    return pa.table({
        "posting_id": ids, "title": [f"{title}-{i}" for i in ids], "lat": [lat] * len(ids),
        "vector": pa.array([[float(j), 1.0] for j in range(len(ids))], SCHEMA.field("vector").type),
    }, schema=SCHEMA)  # fmt: skip


def _log(op, ids, owned=True, title="u"):
    t = _rows(ids, title)
    return t.append_column("op", pa.array([op] * len(ids))).append_column(
        "owned", pa.array([owned] * len(ids))
    )


def _generation(store, gen="g000001"):
    bases = {0: _rows(["a", "b", "c"]), 1: _rows(["c", "d"])}  # c: halo copy on shard 1
    idmap = pa.table({"posting_id": ["a", "b", "c", "d"], "owner": [0, 0, 0, 1],
                      "shards": [[0], [0], [0, 1], [1]]})  # fmt: skip
    store.write_generation(gen, bases, idmap, {"dim": 2})
    return bases


def test_generation_log_replay_id_map_and_flip(store):
    assert store.manifest() is None and store.generations() == []
    _generation(store)
    assert store.manifest() is None  # written beside, not serving until flipped
    m = store.flip("g000001")
    assert (m.generation, m.num_shards, m.previous) == ("g000001", 2, None)
    assert store.manifest().generation == "g000001"
    assert store.next_generation() == "g000002"

    store.append("g000001", 0, _log("upsert", ["b", "e"], title="v2"))
    store.append("g000001", 1, _log("upsert", ["e"], owned=False, title="v2"))
    store.append("g000001", 0, _log("delete", ["a"]))
    store.append("g000001", 1, _log("delete", ["c"]))  # halo copy gone, owner keeps it
    state0, last0 = store.shard_state("g000001", 0)
    state1, _ = store.shard_state("g000001", 1)
    assert last0 == store.log_keys("g000001", 0)[-1]
    got0 = {r["posting_id"]: r["title"] for r in state0.to_pylist()}
    assert got0 == {"b": "v2-b", "c": "t-c", "e": "v2-e"}
    assert {r["posting_id"] for r in state1.to_pylist()} == {"d", "e"}
    assert state0.schema == SCHEMA
    assert store.id_map("g000001") == {
        "b": (0, (0,)), "c": (0, (0,)), "d": (1, (1,)), "e": (0, (0, 1)),
    }  # fmt: skip
    lag = store.log_lag("g000001", 2)
    assert lag["log_objects"] == 4 and lag["oldest_log_age_s"] >= 0

    _generation(store, "g000002")
    with pytest.raises(InvalidInputError, match="another refresh"):
        store.flip("g000002", expect="g000000")
    m2 = store.flip("g000002", expect="g000001")
    assert m2.previous == "g000001" and store.manifest().generation == "g000002"
    # the old generation and its log stay readable (replay during the switch-over)
    assert len(store.log_keys("g000001", 0)) == 2
    assert store.log_keys("g000001", 0, after=store.log_keys("g000001", 0)[0]) == [last0]


def test_incomplete_generation_cannot_flip(store):
    with pytest.raises(NotFoundError):
        store.flip("g000007")
    with pytest.raises(NotFoundError):
        store.base("g000001", 0)
    with pytest.raises(InvalidInputError):
        store.append("g000001", 0, pa.table({"posting_id": ["x"], "op": ["rename"]}))


def test_replay_matches_a_dict_oracle():
    rng = random.Random(3)
    base = _rows([f"p{i}" for i in range(20)])
    oracle = {r["posting_id"]: r for r in base.to_pylist()}
    batches = []
    for b in range(30):
        ids = rng.sample([f"p{i}" for i in range(30)], rng.randint(1, 5))
        op = rng.choice(("upsert", "delete"))
        t = _log(op, ids, title=f"b{b}").drop_columns(["owned"])
        batches.append(t)
        for r in t.to_pylist():
            if op == "upsert":
                oracle[r["posting_id"]] = {k: r[k] for k in SCHEMA.names}
            else:
                oracle.pop(r["posting_id"], None)
    got = {r["posting_id"]: r for r in replay(base, batches).to_pylist()}
    assert got == oracle


def test_local_flip_is_atomic_for_concurrent_readers(tmp_path):
    store = ShardStore(str(tmp_path / "s"))
    for g in ("g000001", "g000002"):
        _generation(store, g)
    store.flip("g000001")
    seen, errors, stop = set(), [], threading.Event()

    def read():
        reader = ShardStore(str(tmp_path / "s"))
        while not stop.is_set():
            try:
                seen.add(reader.manifest().generation)
            except Exception as exc:  # noqa: BLE001  (any torn read is the failure)
                errors.append(exc)

    t = threading.Thread(target=read)
    t.start()
    for i in range(200):
        store.flip("g000002" if i % 2 == 0 else "g000001")
    stop.set()
    t.join()
    assert not errors and seen <= {"g000001", "g000002"}
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.endswith(".tmp")]


def test_store_config_and_pickling(tmp_path):
    for bad in ("", "gs://bucket/x", "s3://", "http://host/x"):
        with pytest.raises(ValueError):
            StoreConfig(bad)
    with pytest.raises(ValueError):
        StoreConfig("s3://b/p", endpoint="minio:9000")
    cfg = StoreConfig("s3://b/prefix/", endpoint="http://127.0.0.1:9000")
    fs, root = cfg.filesystem()
    assert root == "b/prefix" and type(fs).__name__ == "S3FileSystem"
    store = ShardStore(f"file://{tmp_path}/x")
    assert store.root == f"{tmp_path}/x"
    clone = pickle.loads(pickle.dumps(store))
    assert clone.config == store.config and clone.root == store.root
