"""Generations of a matching root: a new day deployed while the old one serves and takes
writes loses none of them (those logged before the carry, those logged while the new
generation was written, one refused by the sealed generation and retried), and the frontend
switched to it answers as a MatchService rebuilt over the day's tables with those writes
(the oracle); the same after every new shard restarts. Refusals, the ranker kept or changed,
and the switch through Ray actors."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import polars as pl
import pytest

import workers.matching.generations as gens
from core.errors import (
    AlreadyExistsError,
    InvalidInputError,
    NotFoundError,
    RetiredError,
    UnavailableError,
)
from core.matching import MatchConfig
from core.ranker import RankerConfig
from core.seekers import seeker_text
from core.synth import generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from encoding.text import posting_text
from server.runtime import deploy_encoders
from tests.helpers import same_matches, seeker_profile
from workers.jobs.rank import RankWorld
from workers.matching.deployment import (
    StoredMatchShard,
    deployed_manifest,
    deployment_ranked,
    read_plan,
    write_deployment,
)
from workers.matching.frontend import LocalShardCalls, ShardedMatchService
from workers.matching.generations import (
    GenerationalMatchService,
    current_generation,
    deploy_generation,
    is_sealed,
    serving_dir,
)
from workers.matching.service import LexicalEncoder, MatchService, seeker_frame
from workers.matching.sharded import AreaPlan

REF = dt.date(2026, 11, 20)
AT = dt.datetime(2026, 11, 19, 9, 30)


@pytest.fixture(scope="module")
def data():
    postings = generate_postings(1500, 17, ref_date=REF)
    seekers = generate_seekers(90, 17, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, 17, days=2, ref_date=REF)
    enc = LexicalEncoder(96)
    pv = enc.encode([posting_text(r) for r in postings.iter_rows(named=True)])
    sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    return {"postings": postings, "seekers": seekers, "inter": inter, "enc": enc, "pv": pv,
            "sv": sv, "cfg": MatchConfig(k=25, ref_date=REF)}


def _encoders(enc):  # the frontends' encoders of carried rows (jobrec match-deploy's)
    p, sk = deploy_encoders(enc)
    return {"encode_postings": p, "encode_seekers": sk}


def _attach(d):
    def attach(dep):
        n = read_plan(dep).num_shards
        return ShardedMatchService(LocalShardCalls([StoredMatchShard(dep, s) for s in range(n)]),
                                   read_plan(dep), d["enc"], d["cfg"],
                                   ranked=deployment_ranked(dep))
    return attach


def test_a_new_generation_carries_every_acknowledged_write(data, tmp_path, monkeypatch):
    P, S, pv, sv, enc = data["postings"], data["seekers"], data["pv"], data["sv"], data["enc"]
    root = tmp_path / "root"
    g1 = deploy_generation(root, P[:1400], pv[:1400], S[:80], sv[:80], data["inter"],
                           shards=2, **_encoders(enc))
    assert (g1, serving_dir(root)) == ("gen-000001", root / "gen-000001")
    front = GenerationalMatchService(root, _attach(data))
    sid = S["seeker_id"].to_list()
    applied, clicked = [], []

    def apply(i):  # the top posting of seeker i, applied to: it must never come back
        top = front.recommend_jobs(seeker_id=sid[i])[0].item_id
        front.record_interactions([{"seeker_id": sid[i], "posting_id": top, "event": "applied",
                                    "at": AT}])
        applied.append((sid[i], top))

    # before the deployment: carried with the tables
    apply(1)
    new_seeker = seeker_profile(S.row(80, named=True))
    assert front.upsert_seekers([new_seeker]) == 1
    assert front.delete_seekers([sid[3]]) == 1
    front.upsert_postings(P[1400:1405], pv[1400:1405])
    assert front.delete_postings([P["posting_id"][10]]) == 1

    real_write, real_hand_over = gens.write_deployment, gens._hand_over
    moved = seeker_profile(S.row(6, named=True), desired_regions=S.row(40, named=True)[
        "desired_regions"])

    def writes_while_deploying(*a, **kw):  # logged after the carry, before the seal
        apply(2)
        front.upsert_postings(P[1405:1408], pv[1405:1408])
        for i in (8, 9, 11, 12):  # a click on a posting written meanwhile: in the history
            front.record_interactions([{"seeker_id": sid[i], "posting_id": P["posting_id"][1405],
                                        "event": "clicked", "at": AT}])
            clicked.append((sid[i], P["posting_id"][1405]))
        assert front.upsert_seekers([moved]) == 1
        assert front.delete_seekers([sid[5]]) == 1
        return real_write(*a, **kw)

    late = {}

    def write_into_the_seal(*a, **kw):  # refused by the sealed generation, then retried
        def go():
            try:
                apply(4)
                late["ok"] = True
            except Exception as exc:  # noqa: BLE001 - reported below
                late["error"] = exc
        t = threading.Thread(target=go)
        t.start()
        late["thread"] = t
        t.join(0.5)  # it waits on the seal until the flip
        assert t.is_alive()
        late["handed"] = real_hand_over(*a, **kw)
        return late["handed"]

    monkeypatch.setattr(gens, "write_deployment", writes_while_deploying)
    monkeypatch.setattr(gens, "_hand_over", write_into_the_seal)
    old_dir = root / g1
    g2 = deploy_generation(root, P[:1400], pv[:1400], S[:80], sv[:80], None, shards=3,
                           **_encoders(enc))
    late["thread"].join(30)
    assert late.get("ok"), late.get("error")
    # the writes made while gen-000002 was written: 1 application row, 3 postings, 2 seekers
    assert late["handed"] >= 6
    assert (g2, current_generation(root), front.generation) == ("gen-000002",) * 3
    assert is_sealed(old_dir) and not is_sealed(root / g2)
    with pytest.raises(RetiredError):
        StoredMatchShard(old_dir, 0).upsert_postings(P[1408:1409], pv[1408:1409])

    # the oracle: the day's tables with the writes applied, rebuilt from scratch
    gone_p = {P["posting_id"][10]}
    keep = ~P[:1400]["posting_id"].is_in(pl.Series(sorted(gone_p)).implode()).to_numpy()
    table_p = pl.concat([P[:1400].filter(pl.Series(keep)), P[1400:1408]])
    vec_p = np.concatenate([pv[:1400][keep], pv[1400:1408]])
    written = seeker_frame([new_seeker, moved])
    keep_s = ~S[:80]["seeker_id"].is_in(pl.Series([sid[3], sid[5], sid[6]]).implode()).to_numpy()
    table_s = pl.concat([S[:80].filter(pl.Series(keep_s)), written])
    vec_s = np.concatenate([sv[:80][keep_s],
                            enc.encode([seeker_text(r) for r in written.iter_rows(named=True)])])
    rec = pl.DataFrame([(s, p, "applied", AT) for s, p in applied]
                       + [(s, p, "clicked", AT) for s, p in clicked],
                       schema=data["inter"].schema, orient="row")
    oracle = MatchService(table_p, vec_p, table_s, vec_s, enc,
                          interactions=pl.concat([data["inter"], rec]), num_shards=2,
                          config=data["cfg"])
    assert len(applied) == 3
    for f in (front, _attach(data)(root / g2)):  # served, and every shard restarted
        for s in table_s["seeker_id"].to_list():
            same_matches(f.recommend_jobs(seeker_id=s), oracle.recommend_jobs(seeker_id=s))
        for s, p in applied:
            assert p not in {m.item_id for m in f.recommend_jobs(seeker_id=s, k=100)}
        for s in (sid[3], sid[5]):
            with pytest.raises(NotFoundError):
                f.recommend_jobs(seeker_id=s)
        for pid in table_p["posting_id"].to_list()[::40] + P["posting_id"].to_list()[1400:1408]:
            same_matches(f.recommend_candidates(pid), oracle.recommend_candidates(pid))
        with pytest.raises(NotFoundError):
            f.recommend_candidates(P["posting_id"][10])


def test_refusals_resume_and_claim(data, tmp_path, monkeypatch):
    P, S, pv, sv, enc = data["postings"], data["seekers"], data["pv"], data["sv"], data["enc"]
    single = write_deployment(tmp_path / "single", AreaPlan.build(P, 2), P, pv, S, sv)
    assert serving_dir(single) == single and current_generation(single) is None
    with pytest.raises(InvalidInputError, match="without generations"):
        deploy_generation(single, P, pv, S, sv, **_encoders(enc))
    with pytest.raises(InvalidInputError, match="no matching generation"):
        GenerationalMatchService(tmp_path / "empty", _attach(data))
    with pytest.raises(InvalidInputError, match="shards"):
        deploy_generation(tmp_path / "r", P, pv, S, sv, shards=0, **_encoders(enc))
    root = tmp_path / "r"
    deploy_generation(root, P, pv, S, sv, **_encoders(enc))
    front = GenerationalMatchService(root, _attach(data))
    sid = S["seeker_id"][0]
    top = front.recommend_jobs(seeker_id=sid)[0].item_id
    front.record_interactions([{"seeker_id": sid, "posting_id": top, "event": "applied"}])
    (root / "gen-000001" / "SEALED").write_text("{}")  # a hand-over that died before the flip
    with pytest.raises(RetiredError):  # the sealed generation acknowledges no write
        front.service.delete_seekers([S["seeker_id"][1]])
    # the next deployment resumes: it carries all of the sealed one
    assert deploy_generation(root, P, pv, S, sv, **_encoders(enc)) == "gen-000002"
    assert front.maybe_switch() and front.generation == "gen-000002"
    assert top not in {m.item_id for m in front.recommend_jobs(seeker_id=sid, k=100)}
    (root / "gen-000003").mkdir()  # another deployment claimed the name this one picks
    monkeypatch.setattr(gens, "_gen", lambda n: "gen-000003")
    with pytest.raises(AlreadyExistsError):
        deploy_generation(root, P, pv, S, sv, **_encoders(enc))
    assert current_generation(root) == "gen-000002"


def test_the_ranker_is_kept_replaced_or_dropped_per_generation(data, tmp_path):
    """A new generation keeps the serving one's ranker by default (fitted on every
    interaction up to the deployment, recorded ones included), or orders by the formula."""
    P, S, pv, sv, enc, cfg = (data[k] for k in ("postings", "seekers", "pv", "sv", "enc", "cfg"))
    ranker, _ = RankWorld(S, P, sv, pv).train(data["inter"], cfg, RankerConfig(
        rounds=20, early_stopping=20, min_data_in_leaf=5, windows=2))
    root = tmp_path / "r"
    deploy_generation(root, P, pv, S, sv, data["inter"], ranker=ranker, ranker_pool=60,
                      **_encoders(enc))
    front = GenerationalMatchService(root, _attach(data))
    assert front.ranked
    sids = S["seeker_id"].to_list()
    top = front.recommend_jobs(seeker_id=sids[0])[0].item_id
    front.record_interactions([{"seeker_id": sids[0], "posting_id": top, "event": "applied",
                                "at": AT}])
    rec = pl.DataFrame([(sids[0], top, "applied", AT)], schema=data["inter"].schema,
                       orient="row")
    assert deploy_generation(root, P, pv, S, sv, None, **_encoders(enc)) == "gen-000002"
    assert deployed_manifest(root / "gen-000002") == deployed_manifest(root / "gen-000001")
    assert front.maybe_switch() and front.ranked
    oracle = MatchService(P, pv, S, sv, enc, interactions=pl.concat([data["inter"], rec]),
                          config=cfg, ranker=ranker, ranker_pool=60)
    for s in sids[:30]:
        same_matches(front.recommend_jobs(seeker_id=s), oracle.recommend_jobs(seeker_id=s))
    assert top not in {m.item_id for m in front.recommend_jobs(seeker_id=sids[0], k=100)}
    deploy_generation(root, P, pv, S, sv, None, ranker=None, **_encoders(enc))
    assert front.maybe_switch() and not front.ranked
    formula = MatchService(P, pv, S, sv, enc, interactions=pl.concat([data["inter"], rec]),
                           config=cfg)
    for s in sids[:30]:
        same_matches(front.recommend_jobs(seeker_id=s), formula.recommend_jobs(seeker_id=s))


class _Gone:
    """The calls of shards another frontend retired (every call UNAVAILABLE)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def call(self, *a):
        raise UnavailableError("shard unavailable: retired")

    async def asend(self, *a):
        raise UnavailableError("shard unavailable: retired")


def test_a_read_on_retired_shards_moves_to_the_new_generation(data, tmp_path):
    import asyncio

    P, S, pv, sv, enc = data["postings"], data["seekers"], data["pv"], data["sv"], data["enc"]
    root = tmp_path / "r"
    deploy_generation(root, P, pv, S, sv, data["inter"], **_encoders(enc))
    front = GenerationalMatchService(root, _attach(data))
    sid = S["seeker_id"][2]
    for gen in ("gen-000002", "gen-000003"):
        assert deploy_generation(root, P[:1200], pv[:1200], S, sv, None, **_encoders(enc)) == gen
        front.service.calls = _Gone(len(front.service.calls))
        want = _attach(data)(root / gen).recommend_jobs(seeker_id=sid)
        got = front.recommend_jobs(seeker_id=sid) if gen == "gen-000002" else \
            asyncio.run(front.ajobs_with_rows(seeker_id=sid))[0]
        assert front.generation == gen
        same_matches(got, want)
    front.service.calls = _Gone(len(front.service.calls))
    with pytest.raises(UnavailableError):  # no newer generation: the error stands
        front.recommend_jobs(seeker_id=sid)
