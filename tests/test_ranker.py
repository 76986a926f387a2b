"""The learned ranker: training lowers the validation loss, the learned order never breaks a
rule (scalar oracle), vectorised features == the one-pair path, cold start, round-trip and
version refusal, the collaborative signals against brute force."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest

from core.collab import CollabModel
from core.errors import InvalidInputError
from core.matching import MatchConfig, pair_passes
from core.ranker import (
    FEATURES,
    RANKER_REASONS,
    Ranker,
    RankerConfig,
    leaf_attributions,
    list_metrics,
    one_pair_features,
    pool_features,
    rank_pools,
    split_targets,
)
from core.seekers import seeker_text
from core.synth import generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from encoding.text import posting_text
from workers.jobs.rank import RankWorld
from workers.matching.service import LexicalEncoder

REF = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def world():
    postings = generate_postings(3000, 21, ref_date=REF)
    seekers = generate_seekers(500, 21, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, 21, days=7, ref_date=REF)
    enc = LexicalEncoder(128)
    pv = enc.encode([posting_text(r) for r in postings.iter_rows(named=True)])
    sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    held = REF - dt.timedelta(days=1)
    train = inter.filter(pl.col("at") < dt.datetime.combine(held, dt.time(0)))
    w = RankWorld(seekers, postings, sv, pv)
    ranker, metrics = w.train(train, MatchConfig(ref_date=held),
                              RankerConfig(rounds=60, early_stopping=60, min_data_in_leaf=20))
    return w, postings, seekers, train, ranker, metrics, held


def test_training_lowers_validation_loss(world):
    _, _, _, _, ranker, m, _ = world
    # the loss is 1 - nDCG on the validation seekers: below the untrained ranker's
    assert m["ranker"]["ndcg@10"] > m["untrained"]["ndcg@10"]
    assert m["ranker"]["hit@120"] > m["untrained"]["hit@120"]
    assert len(m["valid_ndcg@120_curve"]) >= m["best_iteration"] >= 1
    assert m["ranker"]["seekers"] == m["valid_seekers"] > 0


def test_training_seekers_sampled_down_validation_kept(world):
    w, _, _, train, _, m, held = world
    _, m2 = w.train(train, MatchConfig(ref_date=held),
                    RankerConfig(rounds=5, early_stopping=5, min_data_in_leaf=20,
                                 train_seekers=25))
    assert max(m["train_seekers_per_window"]) > 25
    assert max(m2["train_seekers_per_window"]) == 25 and m2["train_groups"] < m["train_groups"]
    assert (m2["valid_seekers"], m2["valid_groups"]) == (m["valid_seekers"], m["valid_groups"])
    with pytest.raises(ValueError, match="train_seekers"):
        RankerConfig(train_seekers=0)
    with pytest.raises(ValueError, match="fresh_slots"):
        RankerConfig(fresh_slots=-1)


def test_learned_order_never_breaks_a_rule(world):
    w, postings, seekers, train, ranker, _, held = world
    cfg = MatchConfig(ref_date=held)
    lists = w.ranked(ranker, train, cfg)
    rows = {r["posting_id"]: r for r in postings.iter_rows(named=True)}
    qs = {q.seeker_id: q for q in w.queries(train)}
    srow = {r["seeker_id"]: r for r in seekers.iter_rows(named=True)}
    assert sum(len(v) for v in lists.values()) > 1000
    for sid, ids in lists.items():
        assert len(ids) == len(set(ids)) <= cfg.k
        companies = [rows[p]["company"] for p in ids]
        assert max(companies.count(c) for c in companies) <= cfg.max_per_company
        for p in ids:
            assert pair_passes(srow[sid], rows[p], cfg, qs[sid].excluded), (sid, p)


def test_batch_features_equal_one_pair_path(world):
    w, postings, _, train, _, _, held = world
    cfg = MatchConfig(ref_date=held)
    collab = CollabModel(train)
    qs = [q for q in w.queries(train) if q.seeker_id in collab.history][:15]
    pools = pool_features(qs, w.side, w.index, collab, cfg, 40)
    rows = {r["posting_id"]: r for r in postings.iter_rows(named=True)}
    assert pools.X.shape[0] > 300
    for name in ("coapply_knn", "user_knn", "ease", "walk", "seen_before", "clicked_before",
                 "history_occupation_share"):
        assert (pools.X[:, FEATURES.index(name)] > 0).any(), name
    for t in range(0, pools.X.shape[0], 7):
        q = qs[pools.row[t]]
        pid = str(w.side.ids[pools.pos[t]])
        ref = one_pair_features(q, rows[pid], w.side.vectors[pools.pos[t]], collab, cfg, rows)
        np.testing.assert_allclose(pools.X[t, 1:], ref[1:], rtol=1e-4, atol=1e-4,
                                   equal_nan=True, err_msg=f"{q.seeker_id} {pid}")


def test_cold_start_new_posting_and_new_seeker_are_ranked(world):
    w, postings, seekers, train, ranker, _, held = world
    cfg = MatchConfig(ref_date=held)
    # a posting registered today (never in the log) and seekers without history
    collab = CollabModel(train)
    cold_seekers = [q for q in w.queries(train) if q.seeker_id not in collab.history][:10]
    assert cold_seekers
    pools = pool_features(cold_seekers, w.side, w.index, collab, cfg, 300)
    lists = rank_pools(ranker, pools, w.side, cfg.k, cfg.max_per_company)
    assert lists and all(len(v) for v in lists.values())
    for name in ("coapply_knn", "user_knn", "ease", "walk"):
        assert np.all(pools.X[:, FEATURES.index(name)] == 0), name
    never = ~np.isin(w.side.ids[pools.pos], collab.items)
    assert never.any()  # postings nobody interacted with are in the pools and get scores
    assert np.isfinite(ranker.score(pools.X[never])).all()


def test_fresh_slots_hold_the_best_never_applied_postings(world):
    """With ``fresh`` places, postings somebody applied to hold at most ``k - fresh`` places
    of a list (taken in score order under the company cap), postings nobody applied to the
    rest, known ones filling what they leave; recomputed here by sorting and counting."""
    w, _, _, train, ranker, _, held = world
    cfg = MatchConfig(ref_date=held)
    collab = CollabModel(train)
    pools = pool_features(w.queries(train)[:60], w.side, w.index, collab, cfg, 300)
    s = ranker.score(pools.X)
    cold = ~np.isin(w.side.ids[pools.pos], collab.items)
    company = w.side.company[pools.pos]
    k, cap, fresh = 10, cfg.max_per_company, 5  # pools of this world hold ~20-40

    def fill(order, n, taken, allow=lambda r, got: True):
        per: dict = {}
        for r in taken:
            per[company[r]] = per.get(company[r], 0) + 1
        got = list(taken)
        for r in order:
            if len(got) < n and r not in got and per.get(company[r], 0) < cap \
                    and allow(r, got):
                got.append(r)
                per[company[r]] = per.get(company[r], 0) + 1
        return got

    plain = rank_pools(ranker, pools, w.side, k, cap, 0)
    lists = rank_pools(ranker, pools, w.side, k, cap, fresh)
    changed = 0
    for i, sid in enumerate(pools.seeker_ids):
        rows = np.flatnonzero(pools.row == i)
        if rows.size == 0:
            continue
        # the order every list uses: score desc, then posting id
        order = sorted(rows.tolist(), key=lambda r: (-s[r], str(w.side.ids[pools.pos[r]])))
        top = fill(order, k, [])
        want = top
        if sum(cold[r] for r in top) < min(fresh, int(cold[rows].sum())):
            quota = fill(order, k, [], lambda r, got: cold[r] or
                         sum(not cold[x] for x in got) < k - fresh)
            want = sorted(fill(order, k, quota), key=order.index)
            changed += sum(cold[r] for r in want) > sum(cold[r] for r in top)
        assert [p for p, _ in lists[sid]] == [int(pools.pos[r]) for r in want], sid
        assert [p for p, _ in plain[sid]] == [int(pools.pos[r]) for r in top], sid
    assert changed > 0  # some list had fewer than ``fresh`` such postings without the places


def test_round_trip_and_version_refusal(world, tmp_path):
    w, _, _, train, ranker, _, held = world
    ranker.save(tmp_path / "r")
    back = Ranker.load(tmp_path / "r")
    pools = pool_features(w.queries(train)[:20], w.side, w.index, CollabModel(train),
                          MatchConfig(ref_date=held), 100)
    np.testing.assert_array_equal(back.score(pools.X), ranker.score(pools.X))
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["best_iteration"] >= 1
    # the fresh places chosen on validation travel with the model
    assert back.fresh_slots == ranker.fresh_slots == saved["fresh_slots"]["chosen"]
    assert str(ranker.fresh_slots) in saved["fresh_slots"]
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    man["feature_version"] = 0
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(InvalidInputError, match="feature version"):
        Ranker.load(tmp_path / "r")
    with pytest.raises(InvalidInputError, match="not a ranker"):
        Ranker.load(tmp_path / "missing")


def test_collab_scores_against_brute_force():
    log = pl.DataFrame({"seeker_id": ["a", "a", "b", "b", "b", "c", "c"],
                        "posting_id": ["x", "y", "x", "y", "z", "y", "z"],
                        "event": ["applied"] * 7, "at": [None] * 7},
                       schema={"seeker_id": pl.Utf8, "posting_id": pl.Utf8, "event": pl.Utf8,
                               "at": pl.Datetime("us")})
    m = CollabModel(log)
    users = {"a": {"x", "y"}, "b": {"x", "y", "z"}, "c": {"y", "z"}}

    def cos(i, j):
        ui = {u for u, s in users.items() if i in s}
        uj = {u for u, s in users.items() if j in s}
        return len(ui & uj) / math.sqrt(len(ui) * len(uj))
    knn, _ = m.pair_scores([["x"]], np.zeros(3, np.int64), m.codes(["x", "y", "z"]))
    np.testing.assert_allclose(knn, [0.0, cos("x", "y"), cos("x", "z")], rtol=1e-6)
    # EASE solves the ridge problem: B = argmin |X - XB|^2 + lambda |B|^2, diag(B) = 0
    x = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], float)
    g = x.T @ x + 100.0 * np.eye(3)
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    _, ease = m.pair_scores([["x", "y"]], np.zeros(3, np.int64), m.codes(["x", "y", "z"]))
    np.testing.assert_allclose(ease, np.array([1, 1, 0]) @ b, rtol=1e-4, atol=1e-7)
    assert list_metrics({"a": ["z", "q"]}, {"a": {"q"}})["hit@10"] == 1.0


def test_split_without_times_holds_one_application_out():
    log = pl.DataFrame({"seeker_id": ["a", "a", "a", "b"], "posting_id": ["x", "y", "z", "x"],
                        "event": ["applied"] * 4, "at": [None] * 4},
                       schema={"seeker_id": pl.Utf8, "posting_id": pl.Utf8, "event": pl.Utf8,
                               "at": pl.Datetime("us")})
    [(feat, targets, how)] = split_targets(log, 0)
    assert "no times" in how and set(targets) == {"a"} and len(targets["a"]) == 1
    assert feat.height == 3 and targets["a"].isdisjoint(
        set(feat.filter(pl.col("seeker_id") == "a")["posting_id"]))
    with pytest.raises(ValueError):
        RankerConfig(pool=0)


def test_user_knn_and_ease_rows_against_plain_python():
    """user-kNN: sum over the other seekers of cosine(liked sets) x their likes; EASE row: the
    sum of B's rows of the history; both recomputed here with sets and loops."""
    log = pl.DataFrame({
        "seeker_id": ["a", "a", "b", "b", "b", "c", "c", "d"],
        "posting_id": ["p1", "p2", "p1", "p2", "p3", "p3", "p4", "p1"],
        "event": ["applied"] * 8,
        "at": [dt.datetime(2026, 11, 1)] * 8,
    })
    collab = CollabModel(log)
    liked = {s: set(g["posting_id"]) for (s,), g in log.group_by("seeker_id")}
    for me, hist in (("a", ["p1", "p2"]), ("new", ["p3"]), ("d", ["p1"])):
        got = collab.user_knn_row(me, hist)
        for j, p in enumerate(collab.items.tolist()):
            want = sum(len(set(hist) & s) / math.sqrt(len(hist) * len(s)) for o, s in liked.items()
                       if o != me and p in s)
            assert got[j] == pytest.approx(want, abs=1e-6), (me, p)
        e = collab.ease_row(hist)
        b = collab.ease_b
        for j in range(len(collab.items)):
            want = sum(b[collab.ease_pos[collab.code[h]], collab.ease_pos[j]] for h in hist)
            assert e[j] == pytest.approx(want, abs=1e-6)
    # the block form the batch uses gives the same rows
    who = [("a", ["p1", "p2"]), ("new", ["p3"]), ("d", ["p1"]), ("e", [])]
    knn, ease, users, walk = collab.rows_block([w for w, _ in who], [h for _, h in who])
    for i, (me, hist) in enumerate(who):
        np.testing.assert_allclose(knn[i], collab.knn_row(hist), atol=1e-6)
        np.testing.assert_allclose(ease[i], collab.ease_row(hist), atol=1e-6)
        np.testing.assert_allclose(users[i], collab.user_knn_row(me, hist), atol=1e-6)
        np.testing.assert_allclose(walk[i], collab.walk_row(hist), atol=1e-6)
    empty = CollabModel(log.head(0))
    assert [r.shape for r in empty.rows_block(["a"], [["p1"]])] == [(1, 0)] * 4


def test_walk_row_against_plain_python():
    """The 4-step walk (posting -> seeker -> posting -> seeker -> posting, uniform over each
    node's edges) recomputed with dictionaries of probabilities."""
    log = pl.DataFrame({
        "seeker_id": ["a", "a", "b", "b", "b", "c", "c", "d", "e"],
        "posting_id": ["p1", "p2", "p1", "p2", "p3", "p3", "p4", "p1", "p5"],
        "event": ["applied"] * 9,
        "at": [dt.datetime(2026, 11, 1)] * 9,
    })
    collab = CollabModel(log)
    likes: dict[str, set[str]] = {}
    likers: dict[str, set[str]] = {}
    for s, p in zip(log["seeker_id"], log["posting_id"], strict=True):
        likes.setdefault(s, set()).add(p)
        likers.setdefault(p, set()).add(s)
    for hist in (["p1"], ["p2", "p3"], ["p4"], ["p5"], ["p1", "unknown"], []):
        known = [h for h in hist if h in likers]
        dist = {h: 1.0 / len(known) for h in known}
        for _ in range(2):
            users: dict[str, float] = {}
            for p, m in dist.items():
                for u in likers[p]:
                    users[u] = users.get(u, 0.0) + m / len(likers[p])
            dist = {}
            for u, m in users.items():
                for p in likes[u]:
                    dist[p] = dist.get(p, 0.0) + m / len(likes[u])
        got = collab.walk_row(hist)
        for j, p in enumerate(collab.items.tolist()):
            assert got[j] == pytest.approx(dist.get(p, 0.0), abs=1e-6), (hist, p)
        if known:
            assert got.sum() == pytest.approx(1.0, abs=1e-5)  # a walk ends somewhere
    # p4 is three hops from p1 (p1-b-p3-c-p4): the walk reaches it, item-kNN does not
    j = collab.code["p4"]
    assert collab.walk_row(["p1"])[j] > 0 and collab.knn_row(["p1"])[j] == 0


def test_path_attributions_add_up_to_the_prediction(world):
    """Saabas tables checked against LightGBM's own leaf assignment: the root values plus
    every feature's attribution along a row's leaves is the row's score, and the boosters
    that hold one feature's attribution predict exactly the table's sums."""
    w, _, _, train, ranker, _, held = world
    collab = CollabModel(train)
    qs = [q for q in w.queries(train) if q.seeker_id in collab.history][:20]
    X = pool_features(qs, w.side, w.index, collab, MatchConfig(ref_date=held), 60).X
    tables = leaf_attributions(ranker.booster, list(range(len(FEATURES))))
    leaves = ranker.booster.predict(X, pred_leaf=True).reshape(X.shape[0], -1)
    assert leaves.shape[1] == len(tables) >= 1
    per_row = sum(t[leaves[:, i]] for i, t in enumerate(tables))  # (rows, features)
    roots = sum(tr["tree_structure"].get("internal_value", tr["tree_structure"].get(
        "leaf_value", 0.0)) for tr in ranker.booster.dump_model()["tree_info"])
    np.testing.assert_allclose(roots + per_row.sum(axis=1), ranker.score(X), atol=1e-6)
    reasons = [FEATURES.index(n) for n in RANKER_REASONS]
    np.testing.assert_allclose(ranker.attributions(X), per_row[:, reasons], atol=1e-9)
    codes = ranker.driver_codes(X)
    best = per_row[:, reasons].max(axis=1)
    assert np.array_equal(codes >= 0, best > 0)
    lifted = codes >= 0
    assert lifted.any()
    np.testing.assert_allclose(per_row[:, reasons][lifted, codes[lifted]], best[lifted])


def test_ranked_batch_in_chunks_on_ray_equals_one_table(world, ray_local):
    """``match --ranker`` on Ray (chunks of seekers as tasks, two at once) writes the same
    table as the one in-process call."""
    w, postings, seekers, train, ranker, metrics, held = world
    cfg = MatchConfig(k=20, ref_date=held)
    one = w.match_frame(ranker, train, cfg, 60)
    chunked = w.match_frame(ranker, train, cfg, 60, use_ray=True, tasks=2, chunk=70)
    key = ["seeker_id", "rank"]
    assert one.height > 0 and chunked.sort(key).equals(one.sort(key))
    assert chunked["seeker_id"].unique(maintain_order=True).to_list() == \
        one["seeker_id"].unique(maintain_order=True).to_list()  # the seekers' order kept
