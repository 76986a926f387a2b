"""Two-sided matching benchmark: held-out hit-rate vs the rule baseline, rule violations,
coverage, batch timing and single-query latency. Prints one JSON object.

Generated postings and seekers; the interaction log comes from the generator's hidden-
preference choice model (:func:`core.synth.seekers.generate_interactions`) over 7 days; the
last day is held out: recommendations are made as of that day from the earlier days only.

Compared (each up to k=120 per seeker, applied/hidden postings excluded for all):
- ``jobrec``: all hard rules, ranked by :func:`core.matching.job_scores`;
- ``rule_baseline``: the older service — desired occupation code and desired region match,
  not expired, newest first;
- ``random``: random postings among those passing jobrec's hard rules.

Vectors: ``--vectors lexical`` (default; character 2-3-gram hashing of posting_text /
seeker_text, a deterministic text encoder) or ``--vectors model --model DIR`` (W-BERT).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matching_report import hit_rate_curve, write_html  # noqa: E402
from core.matching import MatchConfig, jobs_mask  # noqa: E402
from core.rules import select_top_k  # noqa: E402
from core.seekers import seeker_text  # noqa: E402
from core.synth import DEFAULT_REF_DATE, generate_postings  # noqa: E402
from core.synth.seekers import generate_interactions, generate_seekers  # noqa: E402
from workers.jobs.match import (  # noqa: E402
    LocalShards,
    excluded_by_seeker,
    recommend_fanout,
    region_violations,
    run_match,
    shard_postings,
)
from workers.matching.index import JobIndex  # noqa: E402


def ndcg(rel: list[bool], n_rel: int) -> float:
    """Binary nDCG of one ranked list."""
    dcg = sum(1.0 / np.log2(i + 2) for i, r in enumerate(rel) if r)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(n_rel, len(rel) or 1)))
    return dcg / ideal if ideal else 0.0


def evaluate(lists: dict[str, list[str]], held: dict[str, set[str]], n_open: int) -> dict:
    """hit-rate, recall, nDCG over seekers with a held-out application; coverage."""
    hits, recalls, ndcgs = [], [], []
    for sid, truth in held.items():
        got = lists.get(sid, [])
        rel = [p in truth for p in got]
        hits.append(any(rel))
        recalls.append(sum(rel) / len(truth))
        ndcgs.append(ndcg(rel, len(truth)))
    shown = {p for ps in lists.values() for p in ps}
    return {"hit_rate": float(np.mean(hits)), "recall": float(np.mean(recalls)),
            "ndcg": float(np.mean(ndcgs)), "coverage": len(shown) / max(n_open, 1),
            "mean_list_len": float(np.mean([len(v) for v in lists.values()])) if lists else 0.0}


def rule_baseline(seekers: pl.DataFrame, postings: pl.DataFrame, cfg: MatchConfig,
                  excluded: dict[str, frozenset[str]], k: int) -> dict[str, list[str]]:
    """Desired occupation code and desired region match, not expired, newest first."""
    idx = JobIndex(postings, np.zeros((postings.height, 1), np.float32))
    p = idx.side
    out = {}
    for row in seekers.filter(pl.col("active")).iter_rows(named=True):
        from core.seekers import areas_of

        cand = idx.candidates(areas_of(row["desired_regions"]))
        codes = np.array([int(c) for c in row["desired_occupations"]])
        cand = cand[np.isin(p.occ[cand], codes) & (p.closes_days[cand] >= cfg.ref_days())]
        ex = excluded.get(row["seeker_id"], frozenset())
        if ex:
            cand = cand[~np.isin(p.ids[cand], list(ex))]
        order = sorted(cand.tolist(), key=lambda j: (-int(p.registered_days[j]), p.ids[j]))
        out[row["seeker_id"]] = [str(p.ids[j]) for j in order[:k]]
    return out


def random_eligible(qs, index: JobIndex, cfg: MatchConfig, k: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for q in qs:
        cand = index.candidates(q.areas)
        cand = cand[jobs_mask(q, index.side, index.areas, cand, cfg)]
        # the same company cap as jobrec: only the order differs
        picked = select_top_k(rng.random(cand.size), index.side.ids[cand],
                              index.side.company[cand], k, cfg.max_per_company)
        out[q.seeker_id] = [str(index.side.ids[cand[t]]) for t in picked]
    return out


def timed_run_match(args, seekers, postings, sv, pv, cfg: MatchConfig, interactions):
    """The batch as the matching benches time it: ``run_match`` over ``args.shards`` shards,
    as Ray actors with ``args.ray`` (a 2-CPU local Ray started here); (table, stages, seconds)."""
    if args.ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    frame, timings = run_match(seekers, postings, sv, pv, cfg, num_shards=args.shards,
                               interactions=interactions, use_ray=args.ray, progress=False)
    return frame, timings, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postings", type=int, default=40000)
    ap.add_argument("--seekers", type=int, default=3000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--k", type=int, default=120)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--vectors", choices=("lexical", "model"), default="lexical")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--ray", action="store_true", help="run the batch on Ray actors")
    ap.add_argument("--latency-queries", type=int, default=300)
    ap.add_argument("--html", type=Path, default=None, help="also write an HTML report with plots")
    args = ap.parse_args(argv)
    out: dict = {"config": {k: str(v) for k, v in vars(args).items()}}
    t0 = time.perf_counter()
    ref = DEFAULT_REF_DATE
    postings = generate_postings(args.postings, args.seed, ref_date=ref)
    seekers = generate_seekers(args.seekers, args.seed, postings=postings, ref_date=ref)
    inter = generate_interactions(seekers, postings, args.seed, days=7, ref_date=ref)
    held_day = ref - dt.timedelta(days=1)
    cut = dt.datetime.combine(held_day, dt.time(0))
    train = inter.filter(pl.col("at") < cut)
    held_df = inter.filter((pl.col("at") >= cut) & (pl.col("event") == "applied"))
    held = {s: set(p) for s, p in held_df.group_by("seeker_id").agg("posting_id").iter_rows()}
    out["data"] = {"postings": postings.height, "seekers": seekers.height,
                   "interactions": inter.height, "held_out_day": str(held_day),
                   "seekers_with_held_out_application": len(held),
                   "generate_s": round(time.perf_counter() - t0, 1)}
    t0 = time.perf_counter()
    if args.vectors == "model":
        from encoding.cache import encode_postings
        from encoding.encoder import Encoder

        enc = Encoder.load(args.model)
        pv = encode_postings(postings, enc)
        sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    else:
        from encoding.text import posting_text
        from workers.matching.service import LexicalEncoder

        enc = LexicalEncoder(512)
        pv = enc.encode([posting_text(r) for r in postings.iter_rows(named=True)])
        sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    out["encode_s"] = round(time.perf_counter() - t0, 1)
    cfg = MatchConfig(k=args.k, ref_date=held_day)
    frame, timings, batch_s = timed_run_match(args, seekers, postings, sv, pv, cfg, train)
    lists = {s: list(p) for s, p in frame.sort(["seeker_id", "rank"]).group_by(
        "seeker_id", maintain_order=True).agg("posting_id").iter_rows()}
    n_open = int((postings["closes_on"].is_null() | (postings["closes_on"] >= held_day)).sum())
    excluded = excluded_by_seeker(train)
    base = rule_baseline(seekers, postings, cfg, excluded, args.k)
    from workers.jobs.match import seeker_queries

    act = seekers["active"].to_numpy()
    qs = seeker_queries(seekers.filter(pl.Series(act)), sv[act], excluded)
    rnd = random_eligible(qs, JobIndex(postings, pv), cfg, args.k, args.seed)
    held = {s: v for s, v in held.items() if s in set(seekers.filter(pl.col("active"))["seeker_id"])}
    res = {"jobrec": evaluate(lists, held, n_open), "rule_baseline": evaluate(base, held, n_open),
           "random_eligible": evaluate(rnd, held, n_open)}
    res["jobrec"]["region_violations"] = region_violations(frame, seekers, postings)
    # the ceiling: seekers whose held-out application passes the hard rules at all
    index0 = JobIndex(postings, pv)
    pos = {pid: j for j, pid in enumerate(index0.side.ids.tolist())}
    q_of = {q.seeker_id: q for q in qs}
    ok = 0
    for sid, truth in held.items():
        js = np.array([pos[p] for p in truth], dtype=np.int64)
        ok += bool(jobs_mask(q_of[sid], index0.side, index0.areas, js, cfg).any())
    res["ceiling_hit_rate_eligible"] = ok / max(len(held), 1)
    res["hit_rate_ratio_vs_rule"] = res["jobrec"]["hit_rate"] / max(res["rule_baseline"]["hit_rate"], 1e-9)
    out["quality"] = res
    ks = list(range(1, args.k + 1))
    curves = {m: hit_rate_curve(ls, held, ks)
              for m, ls in (("jobrec", lists), ("rule_baseline", base), ("random_eligible", rnd))}
    # compute bound: exact scoring FLOPs over the candidates (2*dim per pair)
    pairs = 0
    index = JobIndex(postings, pv)
    for q in qs:
        pairs += index.candidates(q.areas).size
    out["batch"] = {"seekers": len(qs), "postings": postings.height, "shards": args.shards,
                    "ray": args.ray, "seconds": round(batch_s, 2),
                    "timings_s": {k: round(v, 2) for k, v in timings.items()},
                    "candidate_pairs": pairs, "scoring_gflop": round(2 * pairs * pv.shape[1] / 1e9, 2),
                    "recommendations": frame.height}
    # single-seeker latency through the fan-out (in process, no gRPC)
    parts = shard_postings(postings, args.shards)
    shards = LocalShards([JobIndex(postings[p], pv[p]) for p in parts])
    company = dict(zip(postings["posting_id"].to_list(), postings["company"].to_list(), strict=True))
    holders_of = []
    for q in qs[: args.latency_queries]:
        holders_of.append([s for s in range(len(parts)) if shards.holds(s, q.areas)])
    lat = []
    for q, hs in zip(qs[: args.latency_queries], holders_of, strict=True):
        t = time.perf_counter()
        recommend_fanout(shards, [hs], [q], cfg, company.__getitem__)
        lat.append((time.perf_counter() - t) * 1000)
    out["online_in_process_ms"] = {"p50": round(float(np.percentile(lat, 50)), 2),
                                   "p99": round(float(np.percentile(lat, 99)), 2),
                                   "queries": len(lat)}
    if args.html:
        out["html"] = str(write_html(out, curves, ks, args.html))
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
