"""gRPC MatchingService in process on port 0: batch == gRPC, inline profiles, sort views,
scope enforcement for RecommendCandidates, and no résumé text in any response. Every test
runs twice: over the in-process MatchService and over the matching shard actors (a stateless
ShardedMatchService frontend)."""

from __future__ import annotations

import datetime as dt

import grpc
import polars as pl
import pytest

from bench.matching_serve import serve_in_thread
from core.matching import MatchConfig
from core.seekers import seeker_text
from core.synth import generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from encoding.text import posting_text
from server import convert
from server.auth import load_key_scopes
from server.generated.jobrec.v1 import matching_pb2 as mpb
from server.generated.jobrec.v1 import matching_pb2_grpc as mpb_grpc
from workers.jobs.match import run_match
from workers.matching.service import LexicalEncoder, MatchService

REF = dt.date(2026, 11, 20)
KEYS = {"JOBREC_API_KEYS": "plain-key,employer-key:candidates"}


@pytest.fixture(scope="module", params=["in-process", "shard-actors"])
def served(request, tmp_path_factory):
    postings = generate_postings(2500, 6, ref_date=REF)
    seekers = generate_seekers(150, 6, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, 6, days=3, ref_date=REF)
    enc = LexicalEncoder(128)
    pv = enc.encode([posting_text(r) for r in postings.iter_rows(named=True)])
    sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    cfg = MatchConfig(k=40, ref_date=REF)
    close = None
    if request.param == "in-process":
        service = MatchService(postings, pv, seekers, sv, enc, interactions=inter, num_shards=2,
                               config=cfg)
    else:
        request.getfixturevalue("ray_local")
        from workers.matching.deployment import write_deployment
        from workers.matching.frontend import ShardedMatchService
        from workers.matching.shard_actors import (
            RayShardCalls,
            match_shard_names,
            start_match_shards,
        )
        from workers.matching.sharded import AreaPlan

        root = write_deployment(tmp_path_factory.mktemp("match"), AreaPlan.build(postings, 2),
                                postings, pv, seekers, sv, inter)
        calls = RayShardCalls(start_match_shards(str(root), 2,
                                                 names=match_shard_names("jobrec-grpc-test", 2)))
        service, close = ShardedMatchService(calls, calls.plan(), enc, cfg), calls.close
    scopes = load_key_scopes(env=KEYS)
    port, stop = serve_in_thread(service, scopes)  # the bench's port-0 server, same servicer
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = mpb_grpc.MatchingServiceStub(channel)
    yield {"stub": stub, "postings": postings, "seekers": seekers, "inter": inter, "pv": pv,
           "sv": sv, "cfg": cfg, "service": service,
           "rows": {r["posting_id"]: r for r in postings.iter_rows(named=True)},
           "kind": request.param}
    channel.close()
    stop()
    if close is not None:
        close()


def _md(key):
    return (("authorization", f"Bearer {key}"),)


def test_recommend_jobs_equals_batch(served):
    frame, _ = run_match(served["seekers"], served["postings"], served["sv"], served["pv"],
                         served["cfg"], num_shards=2, interactions=served["inter"],
                         use_ray=False, progress=False)
    stub = served["stub"]
    checked = 0
    for sid in frame["seeker_id"].unique(maintain_order=True).to_list()[:25]:
        want = frame.filter(pl.col("seeker_id") == sid).sort("rank")["posting_id"].to_list()
        resp = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid), metadata=_md("plain-key"))
        assert [m.posting_id for m in resp.matches] == want
        assert all(m.reason_text and m.reasons.matched_region for m in resp.matches)
        checked += 1
    assert checked == 25


def test_sort_view_and_inline_profile(served):
    stub = served["stub"]
    sid = served["seekers"]["seeker_id"][0]
    base = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid), metadata=_md("plain-key"))
    by_dist = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid, sort="distance"),
                                 metadata=_md("plain-key"))
    assert sorted(m.posting_id for m in base.matches) == sorted(m.posting_id for m in by_dist.matches)
    d = [m.reasons.distance_km for m in by_dist.matches]
    assert d == sorted(d)
    row = served["seekers"].row(0, named=True)
    prof = mpb.SeekerProfile(
        desired_occupations=row["desired_occupations"],
        desired_regions=[mpb.DesiredRegion(**{k: v for k, v in r.items() if v is not None})
                         for r in row["desired_regions"]],
        education_level=row["education_level"], career_years=row["career_years"],
        resume_text="저는 홍길동입니다. 010-1234-5678 " + row["resume_text"])
    resp = stub.RecommendJobs(mpb.RecommendJobsRequest(profile=prof, k=10), metadata=_md("plain-key"))
    assert 0 < len(resp.matches) <= 10
    for m in resp.matches:
        p = served["rows"][m.posting_id]
        assert any(r["sido"] == p["sido"] and r["sigungu"] in (None, p["sigungu"])
                   for r in row["desired_regions"])
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid, sort="salary"),
                           metadata=_md("plain-key"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id="nobody"), metadata=_md("plain-key"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_candidates_need_the_scope(served):
    stub = served["stub"]
    pid = served["postings"]["posting_id"][0]
    req = mpb.RecommendCandidatesRequest(posting_id=pid, k=20)
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendCandidates(req, metadata=_md("plain-key"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendCandidates(req)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    found = 0
    resumes = served["seekers"]["resume_text"].to_list()
    for pid in served["postings"]["posting_id"].to_list()[:60]:
        resp = stub.RecommendCandidates(mpb.RecommendCandidatesRequest(posting_id=pid, k=20),
                                        metadata=_md("employer-key"))
        found += len(resp.candidates)
        wire = resp.SerializeToString().decode("utf-8", "replace")
        assert not any(r[:40] in wire for r in resumes)
        assert set(mpb.CandidateMatch.DESCRIPTOR.fields_by_name) == {
            "seeker_id", "score", "desired_occupations", "desired_regions", "education_level",
            "career_years", "reasons", "reason_text"}
    assert found > 0


def test_jobrec_server_hosts_the_matching_service(served, ray_local):
    """The one frontend (JobrecServer, as `jobrec serve --seekers` builds it) serves
    MatchingService beside RecommendationService, with the same answers and scopes."""
    from core.rules import RuleConfig
    from server.app import BackgroundServer, JobrecServer, ServerConfig
    from server.generated.jobrec.v1 import recommendation_pb2 as pb
    from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc
    from workers.backend import RecommendationBackend
    from workers.engine.sharding import ShardingConfig

    scopes = load_key_scopes(env=KEYS)
    backend = RecommendationBackend.build(served["postings"], served["pv"],
                                          sharding=ShardingConfig(num_shards=2),
                                          rules=RuleConfig(ref_date=REF))
    server = JobrecServer(backend, LexicalEncoder(128), backend.rules,
                          ServerConfig(port=0, health_interval_s=0, api_keys=frozenset(scopes)),
                          matching=served["service"], key_scopes=scopes)
    bg = BackgroundServer(server)
    port = bg.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = mpb_grpc.MatchingServiceStub(channel)
        sid = served["seekers"]["seeker_id"][0]
        want = [m.item_id for m in served["service"].recommend_jobs(seeker_id=sid)]
        resp = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid), metadata=_md("plain-key"))
        assert [m.posting_id for m in resp.matches] == want
        pid = served["postings"]["posting_id"][0]
        req = mpb.RecommendCandidatesRequest(posting_id=pid, k=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.RecommendCandidates(req, metadata=_md("plain-key"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert stub.RecommendCandidates(req, metadata=_md("employer-key")).candidates is not None
        similar = pb_grpc.RecommendationServiceStub(channel).SimilarPostings(
            pb.SimilarPostingsRequest(posting_id=pid, k=5), metadata=_md("plain-key"))
        assert len(similar.recommendations) <= 5
        # a posting registered a minute ago (UpsertPostings) is recommended to seekers at once,
        # and a withdrawn one (DeletePostings) never again
        rec = pb_grpc.RecommendationServiceStub(channel)
        new = _new_posting_for(served, sid)
        rec.UpsertPostings(iter([convert.posting_from_row(new)]), metadata=_md("plain-key"))
        got = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid), metadata=_md("plain-key"))
        assert new["posting_id"] in [m.posting_id for m in got.matches]
        rec.DeletePostings(pb.DeletePostingsRequest(posting_ids=[new["posting_id"]]),
                           metadata=_md("plain-key"))
        got = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid), metadata=_md("plain-key"))
        assert new["posting_id"] not in [m.posting_id for m in got.matches]
        assert [m.posting_id for m in got.matches] == want
    finally:
        channel.close()
        bg.stop()
        backend.shutdown()


def _new_posting_for(served, sid: str) -> dict:
    """An open posting of the seeker's desired occupation, at the existing posting of its
    first desired region nearest to its home, that every hard rule lets through."""
    from core.rules import haversine_km

    s = served["seekers"].filter(pl.col("seeker_id") == sid).row(0, named=True)
    area = s["desired_regions"][0]
    p = served["postings"].filter(pl.col("sido") == area["sido"])
    if area["sigungu"]:
        p = p.filter(pl.col("sigungu") == area["sigungu"])
    d = haversine_km(s["home_lat"], s["home_lng"], p["lat"].to_numpy(), p["lng"].to_numpy())
    row = p.row(int(d.argmin()), named=True)
    return {**row, "posting_id": "NEW-MATCH-0001", "company": "새로운회사",
            "occupation_code": s["desired_occupations"][0], "min_education_level": 0,
            "career": "any", "min_career_years": None, "closes_on": None, "registered_on": REF}


def test_upsert_and_delete_seekers(served):
    """UpsertSeekers / DeleteSeekers: served by the matching shards (a new seeker's list by id
    == the same profile inline; bad regions refused; deleted is NOT_FOUND), refused with
    FAILED_PRECONDITION by the in-process service."""
    stub = served["stub"]
    row = served["seekers"].row(3, named=True)
    prof = mpb.SeekerProfile(
        seeker_id="S-GRPC-1", desired_occupations=row["desired_occupations"],
        desired_regions=[mpb.DesiredRegion(**{k: v for k, v in r.items() if v is not None})
                         for r in row["desired_regions"]],
        education_level=row["education_level"], career_years=row["career_years"],
        resume_text=row["resume_text"])
    req = mpb.UpsertSeekersRequest(seekers=[prof])
    if served["kind"] == "in-process":
        with pytest.raises(grpc.RpcError) as err:
            stub.UpsertSeekers(req, metadata=_md("plain-key"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        return
    assert stub.UpsertSeekers(req, metadata=_md("plain-key")).upserted == 1
    by_id = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id="S-GRPC-1"),
                               metadata=_md("plain-key"))
    inline = stub.RecommendJobs(mpb.RecommendJobsRequest(profile=prof), metadata=_md("plain-key"))
    assert [m.posting_id for m in by_id.matches] == [m.posting_id for m in inline.matches]
    assert by_id.matches
    bad = mpb.SeekerProfile()
    bad.CopyFrom(prof)
    del bad.desired_regions[:]
    bad.desired_regions.append(mpb.DesiredRegion(sido="없는도"))
    with pytest.raises(grpc.RpcError) as err:
        stub.UpsertSeekers(mpb.UpsertSeekersRequest(seekers=[bad]), metadata=_md("plain-key"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    resp = stub.DeleteSeekers(mpb.DeleteSeekersRequest(seeker_ids=["S-GRPC-1", "nobody"]),
                              metadata=_md("plain-key"))
    assert resp.deleted == 1
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id="S-GRPC-1"), metadata=_md("plain-key"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
