"""The gRPC server end to end: real local Ray shard actors, a real (tiny, briefly trained)
W-BERT, the server started in-process on port 0 and called through real gRPC channels.

Ground truth is the backend itself called directly (``recommend_all`` / ``similar_to``) and
the batch refresh (``workers.jobs.refresh.run_refresh``) on the same postings.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import threading
import time
import urllib.request

import grpc
import numpy as np
import polars as pl
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from core.rules import RuleConfig, haversine_km, passes
from server import convert
from server.app import BackgroundServer, JobrecServer, ServerConfig
from server.errors import FIELD_METADATA_KEY
from server.generated.jobrec.v1 import recommendation_pb2 as pb
from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc

REF = dt.date(2024, 6, 1)
N_POSTINGS = 600
SERVICE = "jobrec.v1.RecommendationService"


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def corpus() -> pl.DataFrame:
    from core.synth import generate_postings

    return generate_postings(N_POSTINGS, 11, ref_date=REF)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, corpus):
    """A real W-BERT directory, trained for a handful of steps (fast, deterministic)."""
    from training.train import TrainConfig, run_local, train_model

    out = tmp_path_factory.mktemp("wbert")
    cfg = TrainConfig(size="tiny", epochs=1, mlm_epochs=1, max_steps=3, vocab_size=2000)
    train_model(corpus, out, cfg, runner=run_local, compute_metrics=False)
    return out


@pytest.fixture(scope="module")
def encoder(model_dir, refreshed, refresh_dir):
    """The hybrid encoder with the lexical model the refresh fitted and saved."""
    from encoding.vectors import lexical_dir_for
    from server.runtime import load_encoder

    return load_encoder(model_dir, lexical=lexical_dir_for(refresh_dir / "recs.parquet"))


@pytest.fixture(scope="module")
def refresh_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("refresh")


@pytest.fixture(scope="module")
def refreshed(ray_local, refresh_dir, corpus, model_dir):
    """The batch refresh of the corpus: its recommendations and the vectors it used."""
    from encoding.vectors import read_embeddings
    from workers.jobs.refresh import run_refresh

    d = refresh_dir
    postings_path = d / "postings.parquet"
    corpus.write_parquet(postings_path)
    run_refresh(
        postings_path, model_dir, d / "recs.parquet", k=10, ref_date=REF, num_shards=2,
        embeddings_out=d / "emb.parquet",
    )  # fmt: skip
    ids, vecs = read_embeddings(d / "emb.parquet")
    pos = {p: i for i, p in enumerate(ids)}
    vectors = vecs[[pos[p] for p in corpus["posting_id"].to_list()]]
    return pl.read_parquet(d / "recs.parquet"), vectors


def _build(corpus, vectors, shards=2, max_restarts=3):
    from workers.backend import RecommendationBackend
    from workers.engine.sharding import ShardingConfig

    return RecommendationBackend.build(
        corpus,
        vectors,
        sharding=ShardingConfig(num_shards=shards, max_restarts=max_restarts),
        rules=RuleConfig(ref_date=REF),
    )


@pytest.fixture(scope="module")
def backend(ray_local, corpus, refreshed):
    """Read-only backend shared by the query tests (nothing here mutates it)."""
    b = _build(corpus, refreshed[1])
    yield b
    b.shutdown()


class Running:
    """A server in a background thread plus a channel and stubs to call it."""

    def __init__(self, backend, encoder, **cfg) -> None:
        self.server = JobrecServer(
            backend, encoder, backend.rules, ServerConfig(port=0, health_interval_s=0, **cfg)
        )
        self.bg = BackgroundServer(self.server)
        self.port = self.bg.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.RecommendationServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.bg.stop()


@pytest.fixture(scope="module")
def srv(backend, encoder):
    r = Running(backend, encoder, metrics_port=0)
    yield r
    r.close()


def _rows(corpus) -> dict[str, dict]:
    return {r["posting_id"]: r for r in corpus.iter_rows(named=True)}


def _code(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        call(*args, **kwargs)
    return exc.value


def _field(err: grpc.RpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get(FIELD_METADATA_KEY)


# ------------------------------------------------------------------------------ queries


def _f32(xs) -> list[float]:
    return np.asarray(xs, dtype=np.float32).tolist()


def _assert_same_ranking(got: list, want: list, label: str) -> None:
    """``got`` and ``want`` ([(id, score, distance)]) are identical: the same ids in the same
    order with the same float32 scores and distances (the single-query and the batch paths
    score, tie-break and round the same way)."""
    assert [g[0] for g in got] == [w[0] for w in want], label
    assert _f32([g[1] for g in got]) == _f32([w[1] for w in want]), label
    assert _f32([g[2] for g in got]) == _f32([w[2] for w in want]), label


def test_by_id_matches_batch_refresh_and_backend_for_every_posting(srv, backend, refreshed, corpus):
    batch, _ = refreshed
    direct = backend.recommend_all(k=10)

    def table(df):
        out: dict[str, list] = {}
        for r in df.sort(["posting_id", "rank"]).iter_rows(named=True):
            out.setdefault(r["posting_id"], []).append(
                (r["rec_posting_id"], r["score"], r["distance_km"])
            )
        return out

    want_batch, want_direct = table(batch), table(direct)
    with_recs = ties = 0
    for pid in corpus["posting_id"].to_list():
        resp = srv.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid), timeout=10)
        got = [(r.posting_id, r.score, r.distance_km) for r in resp.recommendations]
        assert [r.rank for r in resp.recommendations] == list(range(1, len(got) + 1))
        _assert_same_ranking(got, want_batch.get(pid, []), f"{pid} vs refresh")
        _assert_same_ranking(got, want_direct.get(pid, []), f"{pid} vs recommend_all")
        # and the sync single-query call of the backend
        sync = [(r.posting_id, r.score, r.distance_km) for r in backend.similar(pid, k=10)]
        _assert_same_ranking(got, sync, f"{pid} vs backend.similar")
        with_recs += bool(got)
        ties += sum(1 for a, b in zip(got, got[1:], strict=False) if abs(a[1] - b[1]) < 1e-5)
    assert with_recs > N_POSTINGS // 2  # most postings have neighbours: the check is not vacuous
    print(f"{with_recs} postings with recommendations, {ties} adjacent near-ties, all identical")


def test_by_id_results_obey_the_rules(srv, corpus):
    rows = _rows(corpus)
    rules = RuleConfig(ref_date=REF)
    for pid in corpus["posting_id"].to_list()[:80]:
        resp = srv.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid, k=20))
        q = rows[pid]
        assert resp.query_posting_id == pid and resp.rules.ref_date == REF.isoformat()
        per_company: dict[str, int] = {}
        for r in resp.recommendations:
            c = rows[r.posting_id]
            d = float(haversine_km(q["lat"], q["lng"], c["lat"], c["lng"]))
            assert abs(d - r.distance_km) < 1e-3
            assert passes(q, c, rules, d)
            assert (r.title, r.company, r.region) == (c["title"], c["company"], c["region"])
            per_company[c["company"]] = per_company.get(c["company"], 0) + 1
        assert max(per_company.values(), default=0) <= rules.max_per_company
        scores = [r.score for r in resp.recommendations]
        assert scores == sorted(scores, reverse=True)


def test_k_default_and_rule_overrides(srv, backend, corpus):
    pid = corpus["posting_id"][0]
    resp = srv.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid))
    assert len(resp.recommendations) <= 10
    loose = RuleConfig(
        ref_date=REF, capital_radius_km=15, other_radius_km=30, max_per_company=0,
        education_policy="lenient_no_requirement", career_filter=False, exclude_expired=False,
    )  # fmt: skip
    req = pb.SimilarPostingsRequest(
        posting_id=pid,
        k=30,
        rules=pb.RuleOverrides(
            capital_radius_km=15,
            other_radius_km=30,
            max_per_company=0,
            education_policy="lenient_no_requirement",
            career_filter=False,
            exclude_expired=False,
        ),  # fmt: skip
    )
    got = srv.stub.SimilarPostings(req)
    want = backend.similar(pid, k=30, rules=loose)
    assert [r.posting_id for r in got.recommendations] == [r.posting_id for r in want]
    assert got.rules.max_per_company == 0 and not got.rules.career_filter


def test_inline_posting_matches_backend_similar_to(srv, backend, encoder, corpus):
    from encoding.text import posting_text

    rows = _rows(corpus)
    for pid in corpus["posting_id"].to_list()[:15]:
        q = dict(rows[pid], posting_id="")
        q["title"] = "신규 " + q["title"]
        resp = srv.stub.SimilarPostings(
            pb.SimilarPostingsRequest(posting=convert.posting_from_row(q), k=10), timeout=30
        )
        vec = encoder.encode([posting_text(q)])[0]
        want = backend.similar_to(q, vec, k=10)
        assert [r.posting_id for r in resp.recommendations] == [w.posting_id for w in want]
        np.testing.assert_allclose(
            [r.score for r in resp.recommendations], [w.score for w in want], atol=1e-5
        )


def test_inline_copy_of_an_indexed_posting_finds_it_first(srv, corpus):
    rows = _rows(corpus)
    hits = 0
    for pid in corpus["posting_id"].to_list()[:30]:
        q = dict(rows[pid], posting_id="NEW-" + pid)
        resp = srv.stub.SimilarPostings(
            pb.SimilarPostingsRequest(posting=convert.posting_from_row(q), k=5), timeout=30
        )
        closes = rows[pid]["closes_on"]
        if closes is not None and closes < REF:
            continue  # an expired twin is filtered out, correctly
        first = resp.recommendations[0]
        assert first.distance_km < 1e-6 and first.score > 0.999
        # identical text, place and company: the twin or an identical duplicate comes first
        assert first.posting_id == pid or rows[first.posting_id]["title"] == rows[pid]["title"]
        hits += 1
    assert hits > 10


def test_get_posting_round_trips_the_canonical_row(srv, corpus):
    rows = _rows(corpus)
    for pid in corpus["posting_id"].to_list()[:20]:
        msg = srv.stub.GetPosting(pb.GetPostingRequest(posting_id=pid))
        assert convert.posting_to_dict(msg) == rows[pid]


# ------------------------------------------------------------------------------ health etc.


def test_health_and_reflection(srv):
    for service in ("", SERVICE):
        resp = srv.health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert srv.bg.call(srv.server.check_backend()) is True

    refl = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
    reqs = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, fd = list(refl.ServerReflectionInfo(iter(reqs)))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert fd.file_descriptor_response.file_descriptor_proto  # callers can fetch the schema


def test_metrics_endpoint_counts_requests_by_method_and_code(srv, corpus):
    srv.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=corpus["posting_id"][0]))
    _code(srv.stub.SimilarPostings, pb.SimilarPostingsRequest(posting_id="nope"))
    url = f"http://127.0.0.1:{srv.server.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    m = f"/{SERVICE}/SimilarPostings"
    assert f'jobrec_grpc_requests_total{{code="OK",method="{m}"}}' in text
    assert f'jobrec_grpc_requests_total{{code="NOT_FOUND",method="{m}"}}' in text
    assert "jobrec_grpc_request_duration_seconds_bucket" in text
    assert srv.server.metrics.count(m, "NOT_FOUND") >= 1


# ------------------------------------------------------------------------------ errors


def test_invalid_argument_names_the_field(srv, corpus):
    pid = corpus["posting_id"][0]
    cases = [
        (pb.SimilarPostingsRequest(posting_id=pid, k=101), "k"),
        (pb.SimilarPostingsRequest(posting_id=pid, k=-3), "k"),
        (pb.SimilarPostingsRequest(posting_id=" "), "posting_id"),
        (pb.SimilarPostingsRequest(k=5), "query"),
        (
            pb.SimilarPostingsRequest(posting_id=pid, rules=pb.RuleOverrides(other_radius_km=0)),
            "rules.other_radius_km",
        ),
        # above the shard halo: rejected by the backend, named by the server
        (
            pb.SimilarPostingsRequest(posting_id=pid, rules=pb.RuleOverrides(other_radius_km=90)),
            "rules.other_radius_km",
        ),
        (
            pb.SimilarPostingsRequest(
                posting_id=pid, rules=pb.RuleOverrides(education_policy="none")
            ),
            "rules.education_policy",
        ),
    ]
    row = _rows(corpus)[pid]
    bad = convert.posting_from_row(row)
    bad.ClearField("title")
    cases.append((pb.SimilarPostingsRequest(posting=bad), "posting.title"))
    bad = convert.posting_from_row(row)
    bad.lat = 51.5  # London
    cases.append((pb.SimilarPostingsRequest(posting=bad), "posting.lat"))
    bad = convert.posting_from_row(row)
    bad.registered_on = "어제"
    cases.append((pb.SimilarPostingsRequest(posting=bad), "posting.registered_on"))
    for req, field in cases:
        err = _code(srv.stub.SimilarPostings, req)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (req, err.details())
        assert _field(err) == field and field in err.details()
    err = _code(srv.stub.DeletePostings, pb.DeletePostingsRequest(posting_ids=[pid, ""]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(err) == "posting_ids[1]"


def test_not_found(srv):
    err = _code(srv.stub.SimilarPostings, pb.SimilarPostingsRequest(posting_id="K-nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "K-nope" in err.details()
    err = _code(srv.stub.GetPosting, pb.GetPostingRequest(posting_id="K-nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_request_size_limit(backend, encoder, corpus):
    r = Running(backend, encoder, max_receive_message_bytes=2048)
    try:
        row = dict(_rows(corpus)[corpus["posting_id"][0]], posting_id="")
        row["description"] = "용접 " * 2000
        err = _code(
            r.stub.SimilarPostings,
            pb.SimilarPostingsRequest(posting=convert.posting_from_row(row)),
        )
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # a normal request still works
        r.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=corpus["posting_id"][0]))
    finally:
        r.close()


def test_in_flight_bound_gives_resource_exhausted(backend, encoder, corpus):
    r = Running(backend, encoder, max_in_flight=1)
    pid = corpus["posting_id"][0]
    release = threading.Event()

    def held_stream():
        yield convert.posting_from_row(_rows(corpus)[pid])  # an update of an existing posting
        release.wait(30)

    try:
        fut = r.stub.UpsertPostings.future(held_stream(), timeout=60)
        deadline = time.monotonic() + 10
        while r.server.limiter.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.server.limiter.in_flight == 1
        err = _code(r.stub.SimilarPostings, pb.SimilarPostingsRequest(posting_id=pid))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # health is exempt from the bound
        resp = r.health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        release.set()
        assert fut.result().updated == 1
        r.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid))
    finally:
        release.set()
        r.close()


def test_auth_on(backend, encoder, corpus):
    r = Running(backend, encoder, api_keys=frozenset({"s3cret", "other"}))
    pid = corpus["posting_id"][0]
    req = pb.SimilarPostingsRequest(posting_id=pid)
    try:
        err = _code(r.stub.SimilarPostings, req)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        err = _code(r.stub.SimilarPostings, req, metadata=[("authorization", "Bearer nope")])
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        err = _code(r.stub.UpsertPostings, iter([]), metadata=[("authorization", "s3cret")])
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = r.stub.SimilarPostings(req, metadata=[("authorization", "Bearer s3cret")])
        assert ok.query_posting_id == pid
        # the health check needs no key, reflection does
        assert r.health.Check(health_pb2.HealthCheckRequest()).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        refl = reflection_pb2_grpc.ServerReflectionStub(r.channel)
        err = _code(
            lambda: list(
                refl.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                )
            )
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        m = f"/{SERVICE}/SimilarPostings"
        assert r.server.metrics.count(m, "UNAUTHENTICATED") == 2
    finally:
        r.close()


def test_auth_off_needs_no_metadata(srv, corpus):
    pid = corpus["posting_id"][1]
    assert srv.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid)).query_posting_id


def test_tls(tmp_path, backend, encoder, corpus):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = JobrecServer(
        backend, encoder, backend.rules,
        ServerConfig(port=0, tls_cert=cert, tls_key=key, health_interval_s=0),
    )  # fmt: skip
    with BackgroundServer(server) as bg:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{bg.port}", creds) as ch:
            stub = pb_grpc.RecommendationServiceStub(ch)
            pid = corpus["posting_id"][0]
            assert stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid), timeout=10)
        with grpc.insecure_channel(f"localhost:{bg.port}") as ch:
            stub = pb_grpc.RecommendationServiceStub(ch)
            err = _code(stub.SimilarPostings, pb.SimilarPostingsRequest(posting_id=pid), timeout=5)
            assert err.code() == grpc.StatusCode.UNAVAILABLE


# ------------------------------------------------------------------------------ writes


@pytest.fixture
def writable(ray_local, corpus, refreshed, encoder):
    """A backend of its own (tests below change it), served on port 0."""
    b = _build(corpus.head(300), refreshed[1][:300], shards=2)
    r = Running(b, encoder)
    yield b, r
    r.close()
    b.shutdown()


def test_upsert_then_query_then_delete(writable, corpus):
    backend, r = writable
    rows = _rows(corpus.head(300))
    base_id = corpus["posting_id"][5]
    base = rows[base_id]
    twin = dict(base, posting_id="NEW-TWIN", closes_on=None)
    far = dict(base, posting_id="NEW-JEJU", lat=33.4996, lng=126.5312, sido="제주특별자치도",
               region="제주 제주시")  # fmt: skip
    before = backend.size()
    summary = r.stub.UpsertPostings(iter([convert.posting_from_row(x) for x in (twin, far)]))
    assert (summary.inserted, summary.updated, summary.received) == (2, 0, 2)
    assert backend.size() == before + 2
    # searchable as soon as the call returned, from both sides
    resp = r.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=base_id, k=5))
    assert resp.recommendations[0].posting_id == "NEW-TWIN"
    assert resp.recommendations[0].score > 0.999 and resp.recommendations[0].distance_km < 1e-6
    resp = r.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id="NEW-TWIN", k=5))
    assert base_id in [x.posting_id for x in resp.recommendations]
    assert (
        convert.posting_to_dict(r.stub.GetPosting(pb.GetPostingRequest(posting_id="NEW-JEJU")))[
            "sido"
        ]
        == "제주특별자치도"
    )
    # same answer as the backend queried directly
    direct = backend.similar("NEW-TWIN", k=5)
    assert [x.posting_id for x in resp.recommendations] == [d.posting_id for d in direct]

    # an update moves the posting: no longer near base
    summary = r.stub.UpsertPostings(
        iter([convert.posting_from_row(dict(twin, lat=35.1796, lng=129.0756, sido="부산광역시"))])
    )
    assert (summary.inserted, summary.updated) == (0, 1)
    resp = r.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=base_id, k=5))
    assert "NEW-TWIN" not in [x.posting_id for x in resp.recommendations]

    deleted = r.stub.DeletePostings(
        pb.DeletePostingsRequest(posting_ids=["NEW-TWIN", "NEW-JEJU", "NEVER-WAS"])
    )
    assert deleted.deleted == 2 and list(deleted.not_found) == ["NEVER-WAS"]
    assert backend.size() == before
    for pid in ("NEW-TWIN", "NEW-JEJU"):
        err = _code(r.stub.GetPosting, pb.GetPostingRequest(posting_id=pid))
        assert err.code() == grpc.StatusCode.NOT_FOUND
        err = _code(r.stub.SimilarPostings, pb.SimilarPostingsRequest(posting_id=pid))
        assert err.code() == grpc.StatusCode.NOT_FOUND


def test_invalid_upsert_is_rejected_whole_and_names_the_posting(writable, corpus):
    backend, r = writable
    rows = list(_rows(corpus.head(300)).values())
    good = [dict(rows[i], posting_id=f"NEW-{i}") for i in range(3)]
    bad = dict(rows[3], posting_id="NEW-3", career="sometimes")
    before = backend.size()
    err = _code(r.stub.UpsertPostings, iter([convert.posting_from_row(x) for x in [*good, bad]]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _field(err) == "postings[3].career"
    assert backend.size() == before  # nothing applied
    err = _code(r.stub.GetPosting, pb.GetPostingRequest(posting_id="NEW-0"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_deadline_exceeded_and_no_partial_write(writable, corpus):
    backend, r = writable
    from core.synth import generate_postings

    many = generate_postings(1500, 12345, ref_date=REF).with_columns(
        ("DL-" + pl.col("posting_id")).alias("posting_id")
    )
    before = backend.size()
    msgs = [convert.posting_from_row(x) for x in many.iter_rows(named=True)]
    err = _code(r.stub.UpsertPostings, iter(msgs), timeout=0.3)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    m = f"/{SERVICE}/UpsertPostings"
    deadline = time.monotonic() + 10
    while r.server.metrics.count(m, "DEADLINE_EXCEEDED") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # the server saw the deadline too, and gave up before writing anything
    assert r.server.metrics.count(m, "DEADLINE_EXCEEDED") == 1
    time.sleep(1.0)
    assert backend.size() == before
    # a by-id query with a sane deadline still works afterwards
    pid = corpus["posting_id"][0]
    assert r.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid), timeout=30)


def test_unavailable_when_shard_actors_die(ray_local, corpus, refreshed, encoder):
    backend = _build(corpus.head(200), refreshed[1][:200], shards=2, max_restarts=0)
    r = Running(backend, encoder)
    try:
        pid = corpus["posting_id"][0]
        r.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid))
        for st in backend.shard_stats():
            os.kill(st["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            try:
                r.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid), timeout=20)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                assert "Traceback" not in exc.details()
                break
            assert time.monotonic() < deadline, "shard death never surfaced"
            time.sleep(0.2)
        err = _code(r.stub.GetPosting, pb.GetPostingRequest(posting_id=pid), timeout=20)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        # the health service reports the service as not serving once it has looked
        assert r.bg.call(r.server.check_backend()) is False
        resp = r.health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        r.close()
        backend.shutdown()


# ------------------------------------------------------------------------------ the CLI


def test_jobrec_serve_command(ray_local, tmp_path, corpus, model_dir):
    """`jobrec serve` as a process: joins the test's Ray, serves with API keys and metrics,
    logs JSON, and stops cleanly on SIGTERM."""
    import json
    import re
    import sys

    postings = tmp_path / "postings.parquet"
    corpus.head(300).write_parquet(postings)
    keys = tmp_path / "keys.txt"
    keys.write_text("# internal callers\ncli-key\n")
    address = ray_local.get_runtime_context().gcs_address
    env = {k: v for k, v in os.environ.items() if k != "JOBREC_API_KEYS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobrec.cli", "serve", "--postings", str(postings),
         "--model", str(model_dir), "--port", "0", "--ray-address", address, "--shards", "1",
         "--ref-date", REF.isoformat(), "--metrics-port", "0", "--api-keys-file", str(keys)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # blocks until the server listens (or the process dies)
        m = re.search(r"listening on 127\.0\.0\.1:(\d+), metrics on :(\d+)", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        port, metrics_port = int(m.group(1)), int(m.group(2))
        rows = _rows(corpus.head(300))
        pid = corpus["posting_id"][3]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.RecommendationServiceStub(ch)
            err = _code(stub.SimilarPostings, pb.SimilarPostingsRequest(posting_id=pid))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            auth = [("authorization", "Bearer cli-key")]
            resp = stub.SimilarPostings(
                pb.SimilarPostingsRequest(posting_id=pid, k=5), metadata=auth, timeout=30
            )
            assert resp.rules.ref_date == REF.isoformat()
            for r in resp.recommendations:
                assert passes(
                    rows[pid], rows[r.posting_id], RuleConfig(ref_date=REF), r.distance_km
                )
            got = stub.GetPosting(pb.GetPostingRequest(posting_id=pid), metadata=auth)
            assert convert.posting_to_dict(got) == rows[pid]
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        assert 'code="UNAUTHENTICATED"' in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        logs = [json.loads(x) for x in proc.stderr.read().splitlines() if x.startswith("{")]
        assert any(x["msg"] == "serving" and x["auth"] is True for x in logs)
        assert any(x.get("rpc_code") == "UNAUTHENTICATED" for x in logs)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_jobrec_demo_once(ray_local, tmp_path, corpus, model_dir, capsys):
    """`jobrec demo --once` with a given corpus and model: refresh, serve, query, print."""
    from jobrec.cli import main

    postings = tmp_path / "postings.parquet"
    corpus.head(400).write_parquet(postings)
    rc = main(
        ["demo", "--once", "--port", "0", "--postings", str(postings), "--model", str(model_dir),
         "--workdir", str(tmp_path / "demo"), "--shards", "1", "--k", "3", "--courses", "300"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "[6/6] querying the server over gRPC" in out
    # one line per stage, then the recommendations; library logs went to the named file
    head = out.split("\n\n")[0].splitlines()
    assert [line[:5] for line in head] == [f"[{i}/6]" for i in range(1, 7)], head
    assert str(tmp_path / "demo" / "demo.log") in out
    assert "Failed to query" not in out and "INFO" not in out
    assert out.count("same as the batch refresh: yes") == 3 and "!!" not in out
    assert "rules passed: distance" in out and "new posting sent inline" in out
    assert "training courses for this job" in out and " 개강" in out
    table = pl.read_parquet(tmp_path / "demo" / "course_recs.parquet")
    assert table.height > 0 and table["rank"].max() <= 5
    assert (tmp_path / "demo" / "recs.parquet").exists()
