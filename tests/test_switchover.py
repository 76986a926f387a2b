"""Zero-downtime refresh: while writers upsert and delete and readers query over gRPC, the
refresh builds the next generation in the store and flips it; the frontend switches over.
No reader sees an error, and every acknowledged write is in the new generation."""

from __future__ import annotations

import random
import threading
import time

import grpc
import numpy as np
import pytest

from core.errors import NotFoundError
from server.app import BackgroundServer, JobrecServer, ServerConfig
from server.generated.jobrec.v1 import recommendation_pb2 as pb
from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc
from server.runtime import build_backend
from tests.test_retrieval_oracle import REF, make_postings
from workers.jobs.refresh import run_refresh, write_vectors
from workers.store.generation import open_store, read_frame


def test_refresh_switch_over_under_concurrent_writes(ray_local, tmp_path):
    df, vec = make_postings(13, 200, spread_deg=0.6, n_companies=20)
    store = open_store(str(tmp_path / "store"))
    stored, rules = build_backend(df, vec, shards=2, ref_date=REF, store=store)
    stored.retire_after_s = 1.0
    server = JobrecServer(stored, None, rules, ServerConfig(port=0, health_interval_s=0))
    bg = BackgroundServer(server)
    bg.start()
    stop = threading.Event()
    acked_up: list[str] = []
    acked_del: list[str] = []
    errors: list[str] = []
    reads = [0]
    originals = df["posting_id"].to_list()

    def writer():
        rng = np.random.default_rng(5)
        i = 0
        while not stop.is_set():
            row = df[i % df.height : i % df.height + 1]
            new = row.with_columns(
                row["posting_id"].map_elements(lambda p, i=i: f"W{i}-{p}", return_dtype=str)
            )
            stored.upsert(new, rng.standard_normal((1, vec.shape[1])).astype(np.float32))
            acked_up.append(new["posting_id"][0])
            if i % 5 == 4:  # deletes of original postings (not queried by the reader)
                victim = originals[-1 - i // 5]
                stored.delete([victim])
                acked_del.append(victim)
            i += 1
            time.sleep(0.02)

    def reader():
        rng = random.Random(2)
        with grpc.insecure_channel(f"127.0.0.1:{bg.port}") as ch:
            stub = pb_grpc.RecommendationServiceStub(ch)
            while not stop.is_set():
                pid = originals[rng.randrange(100)]
                try:
                    stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid, k=5), timeout=10)
                    reads[0] += 1
                except grpc.RpcError as exc:
                    errors.append(f"{exc.code().name}: {exc.details()}")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        postings = tmp_path / "export.parquet"
        df.write_parquet(postings)
        write_vectors(tmp_path / "vec.parquet", originals, vec)
        report = run_refresh(
            postings, None, tmp_path / "recs.parquet", k=5, ref_date=REF, num_shards=3,
            vectors_path=tmp_path / "vec.parquet", progress=False, store=store,
        )  # fmt: skip
        time.sleep(0.5)  # writes keep landing on the old generation until the switch
        assert bg.call(server.check_backend()) is True  # the health loop's switch-over
        assert stored.generation == report.generation == "g000002" and stored.switches == 1
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    try:
        assert not errors, errors[:5]
        assert reads[0] > 20 and len(acked_up) > 20 and acked_del
        # every acknowledged write is served by the new generation ...
        for pid in acked_up:
            assert stored.get(pid)["posting_id"] == pid
        for pid in acked_del:
            with pytest.raises(NotFoundError):
                stored.get(pid)
        # ... and is in the store: a restart would find it
        ids = set(read_frame(store)[0]["posting_id"].to_list())
        assert set(acked_up) <= ids and not set(acked_del) & ids
        assert stored.size() == len(ids) == df.height + len(acked_up) - len(acked_del)
    finally:
        bg.stop()
        stored.shutdown()
