"""Benchmark of course recommendations (postings and seekers -> training courses); prints JSON.

On generated data (core.synth: postings, seekers, courses with the KECO occupation each was
generated for, kept apart as the truth):

- relevance: share of top-5 courses whose true occupation family (KECO mid group) is the
  posting's (for seekers: one of the desired occupations'), for our ranking and, on the
  same rule-passing candidates, two baselines: keyword overlap (shared words of the
  posting's title/description and the course's title/NCS name, then start date) and
  nearest-first (distance, then start date);
- skill gap: for seekers whose desired occupations ask for certificates they lack, the
  share whose top-5 holds a course preparing for one of them;
- rules: violations of the distance, date and seat rules among every top-5 returned,
  checked by an independent brute force (math haversine, rules written out again): 0;
- time: courses for every posting of the corpus, in one process and through the Ray geo
  shards (2 CPUs; ``recommend_courses_all``, the batch refresh's course table).

Vectors: with ``--model DIR`` postings, seekers (resume text) and courses (title, NCS name,
description, certificates) are encoded by that W-BERT; without it the vector term is off
and the ranking uses the NCS↔KECO family and the certificate gap only (said in the JSON).
``--quick`` runs a small size for CI-like checks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REF = dt.date(2026, 11, 20)
_TOKEN = re.compile(r"[0-9A-Za-z가-힣]{2,}")
_CAPITAL = {"서울특별시", "경기도", "인천광역시"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _hav(lat1, lng1, lat2, lng2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2)
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, a)))


def violations(anchors, c: dict, horizon: int) -> list[str]:
    """The rules written out again (independent of core.course_rules)."""
    out = []
    if not c["online"] and not any(
        _hav(la, ln, c["lat"], c["lng"]) <= (20.0 if s in _CAPITAL else 40.0) for la, ln, s in anchors
    ):
        out.append("distance")
    s, e = c["start_date"], c["end_date"]
    if not (REF <= s <= REF + dt.timedelta(days=horizon) or (s < REF and (e is None or e >= REF))):
        out.append("date")
    if c["capacity"] is not None and (c["enrolled"] or 0) >= c["capacity"]:
        out.append("capacity")
    return out


def _tokens(*texts) -> set[str]:
    return {t for x in texts if x for t in _TOKEN.findall(str(x))}


def _share(hits: list[list[bool]]) -> float:
    flat = [h for row in hits for h in row]
    return round(float(np.mean(flat)), 4) if flat else float("nan")



def _seeker_anchors(s: dict) -> list[tuple[float, float, str | None]]:
    """Where a seeker looks for courses: home when given, else each desired region's centre."""
    from core.regions import default_resolver

    if s.get("home_lat") is not None and s.get("home_lng") is not None:
        sido = s["desired_regions"][0]["sido"] if s["desired_regions"] else None
        return [(s["home_lat"], s["home_lng"], sido)]
    out = []
    for r in s["desired_regions"] or []:
        hit = default_resolver().resolve(" ".join(x for x in (r["sido"], r["sigungu"]) if x))
        if hit is not None:
            out.append((hit.lat, hit.lng, hit.sido))
    return out

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postings", type=int, default=100_000)
    ap.add_argument("--courses", type=int, default=10_000)
    ap.add_argument("--seekers", type=int, default=2_000)
    ap.add_argument("--sample", type=int, default=3_000, help="postings scored for relevance")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--model", type=Path, default=None, help="W-BERT directory (vector term)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="2,000 postings, 500 courses")
    ap.add_argument("--shards", type=int, default=2, help="shards of the engine run")
    ap.add_argument("--no-engine", action="store_true", help="skip the Ray shard run")
    args = ap.parse_args(argv)
    if args.quick:
        args.postings, args.courses, args.seekers, args.sample = 2_000, 500, 200, 300

    from core.course_rank import (
        CertificateDemand,
        CourseIndex,
        CourseRankConfig,
        posting_query,
        seeker_query,
    )
    from core.course_rules import CourseRuleConfig
    from core.courses import course_text, split_certificates
    from core.reference import keco_groups
    from core.synth import generate_course_corpus, generate_postings, generate_seekers

    out: dict = {"postings": args.postings, "courses": args.courses, "k": args.k}
    t0 = time.perf_counter()
    postings = generate_postings(args.postings, args.seed, ref_date=REF)
    corpus = generate_course_corpus(args.courses, args.seed + 1, ref_date=REF)
    seekers = generate_seekers(args.seekers, args.seed + 2, postings=postings, ref_date=REF)
    courses, truth = corpus.courses, corpus.truth
    log(f"generated in {time.perf_counter() - t0:.1f} s")

    pvec = cvec = svec = None
    if args.model is not None:
        from core.seekers import seeker_text
        from encoding.cache import encode_postings
        from encoding.hybrid import HybridEncoder
        from encoding.text import posting_text

        t = time.perf_counter()
        # the default representation: W-BERT + the lexical half fitted on the postings
        enc = HybridEncoder.fit(args.model, [posting_text(r) for r in postings.iter_rows(named=True)])
        pvec = encode_postings(postings, enc)
        cvec = enc.encode([course_text(r) for r in courses.iter_rows(named=True)])
        svec = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
        out["encoder"] = {"model": str(args.model), "encode_s": round(time.perf_counter() - t, 1)}
    else:
        out["encoder"] = "none: vector term off (NCS-KECO family + certificate gap only)"

    rank = CourseRankConfig()
    rules = CourseRuleConfig(ref_date=REF)
    t = time.perf_counter()
    idx = CourseIndex(courses, cvec, rank)
    demand = CertificateDemand.from_postings(postings)
    out["index_build_s"] = round(time.perf_counter() - t, 3)
    truth_mid = truth["mid_code"].to_numpy()
    crow = courses.to_dicts()
    ctok = [_tokens(r["title"], r["ncs_name"]) for r in crow]
    start_days = idx.cols["start_days"]
    ids = idx.ids

    # -- relevance on a sample of postings -------------------------------------------------
    rng = np.random.default_rng(args.seed)
    sample = rng.choice(postings.height, min(args.sample, postings.height), replace=False)
    ours, kw, near = [], [], []
    viol: dict[str, int] = {"distance": 0, "date": 0, "capacity": 0}
    checked = empty = 0
    for j in sample.tolist():
        p = postings.row(j, named=True)
        q = posting_query(p, None if pvec is None else pvec[j])
        fams = {g.mid_code for g in keco_groups(p["occupation_code"])}
        rows, dist = idx.eligible(q, rules)
        if rows.size == 0:
            empty += 1
            continue
        top = idx.search(q, args.k, rules)
        pos = {cid: i for i, cid in enumerate(ids[rows].tolist())}
        ours.append([truth_mid[rows[pos[r.course_id]]] in fams for r in top])
        for r in top:
            checked += 1
            for v in violations(q.anchors, crow[rows[pos[r.course_id]]], rules.horizon_days):
                viol[v] += 1
        ptok = _tokens(p["title"], p["description"])
        overlap = np.array([len(ptok & ctok[i]) for i in rows.tolist()])
        order = np.lexsort((ids[rows], start_days[rows], -overlap))[: args.k]
        kw.append([truth_mid[rows[i]] in fams for i in order])
        order = np.lexsort((ids[rows], start_days[rows], dist))[: args.k]
        near.append([truth_mid[rows[i]] in fams for i in order])
    out["postings_relevance"] = {
        "sampled": int(sample.size), "without_courses": empty,
        "top5_same_family": {"ours": _share(ours), "keyword_overlap": _share(kw),
                             "nearest_first": _share(near)},
    }
    out["rule_violations"] = {"checked": checked, **viol}

    # -- seekers ----------------------------------------------------------------------------
    s_ours, s_kw, gap_ours, gap_kw = [], [], [], []
    for i, s in enumerate(seekers.iter_rows(named=True)):
        q = seeker_query(_seeker_anchors(s), s["desired_occupations"], s["certificates"] or [],
                         demand, rank, None if svec is None else svec[i])
        fams = {g.mid_code for c in s["desired_occupations"] for g in keco_groups(c)}
        rows, _ = idx.eligible(q, rules)
        if rows.size == 0:
            continue
        top = idx.search(q, args.k, rules)
        pos = {cid: n for n, cid in enumerate(ids[rows].tolist())}
        s_ours.append([truth_mid[rows[pos[r.course_id]]] in fams for r in top])
        stok = _tokens(s["resume_text"])
        overlap = np.array([len(stok & ctok[n]) for n in rows.tolist()])
        order = np.lexsort((ids[rows], start_days[rows], -overlap))[: args.k]
        s_kw.append([truth_mid[rows[n]] in fams for n in order])
        if q.gap:
            gap_ours.append(any(r.gap_certificates for r in top))
            gap_kw.append(any(any(c.replace(" ", "").lower() in q.gap
                                  for c in split_certificates(crow[rows[n]]["certificate"]))
                              for n in order))
    out["seekers_relevance"] = {
        "seekers": args.seekers, "with_courses": len(s_ours),
        "top5_same_family": {"ours": _share(s_ours), "keyword_overlap": _share(s_kw)},
        "with_certificate_gap": len(gap_ours),
        "top5_closes_a_gap": {"ours": round(float(np.mean(gap_ours)), 4) if gap_ours else None,
                              "keyword_overlap": round(float(np.mean(gap_kw)), 4) if gap_kw else None},
    }

    # -- time: courses for every posting -------------------------------------------------------
    t = time.perf_counter()
    n_recs = 0
    for j, p in enumerate(postings.iter_rows(named=True)):
        n_recs += len(idx.search(posting_query(p, None if pvec is None else pvec[j]), args.k, rules))
    wall = time.perf_counter() - t
    out["all_postings"] = {
        "postings": postings.height, "recommendations": n_recs, "wall_s": round(wall, 2),
        "per_posting_us": round(wall / max(1, postings.height) * 1e6, 1),
        "processes": 1,
    }
    if not args.no_engine:
        out["all_postings_engine"] = _engine_timing(postings, pvec, courses, cvec, demand, rules,
                                                    args.k, args.shards)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def _engine_timing(postings, pvec, courses, cvec, demand, rules, k: int, shards: int) -> dict:
    """Courses for every posting through the geo shards (Ray actors, 2 CPUs): the batch
    refresh's second table. Without a model the vectors are random (timing only)."""
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from core.rules import RuleConfig
    from workers.actors import init_ray, shutdown_ray
    from workers.backend import RecommendationBackend
    from workers.engine.sharding import ShardingConfig

    rng = np.random.default_rng(0)
    note = "model vectors"
    if pvec is None:
        dim = 64
        pvec = rng.normal(size=(postings.height, dim)).astype(np.float32)
        cvec = rng.normal(size=(courses.height, dim)).astype(np.float32)
        note = "random vectors (timing only)"
    started = init_ray(None, num_cpus=2)
    try:
        t = time.perf_counter()
        b = RecommendationBackend.build(postings, pvec, sharding=ShardingConfig(num_shards=shards),
                                        rules=RuleConfig(ref_date=REF))
        build = time.perf_counter() - t
        t = time.perf_counter()
        b.load_courses(courses, cvec, demand)
        load = time.perf_counter() - t
        t = time.perf_counter()
        table = b.recommend_courses_all(k, rules)
        wall = time.perf_counter() - t
        b.shutdown()
    finally:
        if started:
            shutdown_ray()
    return {"shards": shards, "cpus": 2, "vectors": note, "build_postings_s": round(build, 2),
            "load_courses_s": round(load, 2), "courses_for_all_postings_s": round(wall, 2),
            "rows": table.height}


if __name__ == "__main__":
    raise SystemExit(main())
