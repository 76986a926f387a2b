"""Benchmark of the batch refresh: geo-sharded exact filtered search vs the old prototype.

Run with no arguments (about 10 minutes on 2 cores); prints one JSON document.

- main: N=72,000 realistic postings (core.synth), given vectors, k=10, all rules: the
  filter + search stage (``recommend_all`` over the Ray shard actors), build time,
  per-shard CPU seconds, single-query latency of the online path;
- old_vs_new: at N=10,000 the old prototype (global FAISS top-100, then per-posting Python
  filtering by a 시군구 distance matrix) and ours on the same postings and rules: times,
  ratio, share of postings left with fewer than k, and the old method's distance errors;
- scoring: for one query, gather + BLAS vs FAISS IndexFlatIP + IDSelectorBatch;
- scaling: 10k/50k/100k/200k postings x 1/2/4 shards, time and memory per shard;
- h3_ring_coverage: the measured ring counts behind the candidate search.

Vectors: W-BERT is not run here (that is the encode stage, cached in production); each
posting gets a random unit vector correlated with its occupation (KECO code and mid group),
``--dim`` (default 256) dimensions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.rules import RuleConfig, haversine_km  # noqa: E402
from core.schema import CAPITAL_AREA_SIDO  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def occupation_vectors(df: pl.DataFrame, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors = occupation centroid + mid-group centroid + noise."""
    rng = np.random.default_rng(seed)
    codes = df["occupation_code"].to_numpy()
    uc, ci = np.unique(codes, return_inverse=True)
    um, mi = np.unique([c[:3] for c in uc], return_inverse=True)
    occ = rng.standard_normal((uc.size, dim)).astype(np.float32)
    mid = rng.standard_normal((um.size, dim)).astype(np.float32)
    v = occ[ci] + 0.8 * mid[mi[ci]] + 0.9 * rng.standard_normal((df.height, dim), np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def short_share(recs: pl.DataFrame, n: int, k: int) -> float:
    full = int((recs.group_by("posting_id").len()["len"] >= k).sum())
    return round(1.0 - full / n, 4)


def run_ours(df, vec, *, shards, rules, k, threads, fine_res=7):
    """Build the backend, time recommend_all; returns (recs, figures)."""
    from workers.backend import RecommendationBackend
    from workers.engine.sharding import ShardingConfig

    t0 = time.perf_counter()
    b = RecommendationBackend.build(
        df, vec, rules=rules,
        sharding=ShardingConfig(num_shards=shards, threads_per_shard=threads, fine_res=fine_res),
    )  # fmt: skip
    build_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        recs = b.recommend_all(k, rules)
        fs = time.perf_counter() - t0
        batch = b.batch_stats()
        mem = b.shard_stats()
    finally:
        b.shutdown()
    return recs, {
        "postings": df.height,
        "shards": shards,
        "threads_per_shard": threads,
        "build_s": round(build_s, 2),
        "filter_search_s": round(fs, 2),
        "share_fewer_than_k": short_share(recs, df.height, k),
        "per_shard": [
            {
                "postings_stored": m["postings"],
                "owned": m["owned"],
                "cpu_s": round(s.get("cpu_s", 0.0), 2),
                "wall_s": round(s.get("wall_s", 0.0), 2),
                "pairs_scored": s.get("pairs", 0),
                "fallback_rows": s.get("fallback_rows", 0),
                "rescored_rows": s.get("rescored_rows", 0),
                "vector_mb": round(m["vector_bytes"] / 2**20, 1),
                "metadata_mb": round(m["metadata_bytes"] / 2**20, 1),
                "rss_peak_mb": round(m["rss_peak_bytes"] / 2**20, 1),
            }
            for s, m in zip(batch, mem, strict=True)
        ],
    }


def online_latency(df, vec, rules, n_queries=300, seed=0) -> dict:
    """Single-query latency through the Ray backend (2 shards)."""
    from workers.backend import RecommendationBackend
    from workers.engine.sharding import ShardingConfig

    b = RecommendationBackend.build(df, vec, sharding=ShardingConfig(num_shards=2), rules=rules)
    try:
        ids = df["posting_id"].to_list()
        rng = np.random.default_rng(seed)
        b.similar(ids[0], 10)  # warm-up
        lat = []
        for i in rng.integers(0, len(ids), n_queries).tolist():
            t0 = time.perf_counter()
            b.similar(ids[i], 10)
            lat.append(time.perf_counter() - t0)
    finally:
        b.shutdown()
    lat_ms = np.array(lat) * 1e3
    return {
        "queries": n_queries,
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
        "p95_ms": round(float(np.percentile(lat_ms, 95)), 2),
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
    }


def scoring_methods(df, vec, rules, n_queries=200, seed=1) -> dict:
    """Exact scoring of one query's candidates: gather + BLAS vs FAISS with IDSelectorBatch."""
    import faiss

    from workers.engine.shard import Shard

    faiss.omp_set_num_threads(1)
    sh = Shard(0, dim=vec.shape[1], rules=rules)
    sh.load(df, vec, np.ones(df.height, bool))
    postings = sh.collection("postings")
    vectors = postings.store["vector"]
    index = faiss.IndexFlatIP(vec.shape[1])
    index.add(vectors)
    rng = np.random.default_rng(seed)
    t_blas = t_faiss = 0.0
    n_cand = []
    from workers.engine import geo

    for i in rng.integers(0, df.height, n_queries).tolist():
        q = postings.query_of_row(i)
        radius = float(postings.kind.rules.radius_km(q.columns, rules)[0])
        cell = geo.cells(q.columns["lat"], q.columns["lng"], sh.fine_res)[0]
        rows = postings.cell_rows(geo.disk_cells(int(cell), geo.rings_for(sh.fine_res, radius)))
        n_cand.append(rows.size)
        t0 = time.perf_counter()
        s = vectors[rows] @ q.vector
        np.argpartition(-s, min(40, s.size - 1))
        t_blas += time.perf_counter() - t0
        t0 = time.perf_counter()
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(rows.astype(np.int64)))
        index.search(q.vector[None, :], 40, params=params)
        t_faiss += time.perf_counter() - t0
    return {
        "queries": n_queries,
        "mean_candidates": int(np.mean(n_cand)),
        "gather_blas_ms": round(t_blas / n_queries * 1e3, 3),
        "faiss_idselector_ms": round(t_faiss / n_queries * 1e3, 3),
    }


def old_vs_new(df, vec, k, ref: date, shards: int, threads: int) -> dict:
    """The old prototype and ours on the same 10k postings."""
    from workers.jobs.baseline import OLD_RULES, OldPrototype

    old_rules = RuleConfig(**{**OLD_RULES.__dict__, "ref_date": ref})
    t0 = time.perf_counter()
    proto = OldPrototype(df, vec, k_prime=100, rules=old_rules)
    old_recs, t = proto.recommend_all(k)
    old_total = time.perf_counter() - t0
    # how often the region-centroid distance let through a posting beyond the true radius
    pos = {p: i for i, p in enumerate(df["posting_id"].to_list())}
    qi = np.array([pos[p] for p in old_recs["posting_id"].to_list()])
    ci = np.array([pos[p] for p in old_recs["rec_posting_id"].to_list()])
    lat, lng = df["lat"].to_numpy(), df["lng"].to_numpy()
    true_d = haversine_km(lat[qi], lng[qi], lat[ci], lng[ci])
    cap = np.isin(df["sido"].to_numpy()[qi], list(CAPITAL_AREA_SIDO))
    radius = np.where(cap, old_rules.capital_radius_km, old_rules.other_radius_km)
    ours_same, f_same = run_ours(df, vec, shards=shards, rules=old_rules, k=k, threads=threads)
    ours_strict, f_strict = run_ours(
        df, vec, shards=shards, rules=RuleConfig(ref_date=ref), k=k, threads=threads
    )
    old_fs = t["faiss_s"] + t["filter_s"]
    return {
        "postings": df.height,
        "k": k,
        "old_k_prime": 100,
        "old": {
            "faiss_s": round(t["faiss_s"], 2),
            "python_filter_s": round(t["filter_s"], 2),
            "faiss_plus_filter_s": round(old_fs, 2),
            "total_s": round(old_total, 2),
            "share_fewer_than_k": short_share(old_recs, df.height, k),
            "recs_beyond_true_radius_share": round(float((true_d > radius).mean()), 4),
        },
        "ours_same_rules": {
            "filter_search_s": f_same["filter_search_s"],
            "build_s": f_same["build_s"],
            "share_fewer_than_k": f_same["share_fewer_than_k"],
        },
        "ours_strict_rules": {
            "filter_search_s": f_strict["filter_search_s"],
            "share_fewer_than_k": f_strict["share_fewer_than_k"],
        },
        "speedup_filter_search": round(old_fs / max(f_same["filter_search_s"], 1e-9), 1),
        "rules_note": "same rules = the prototype's (education lenient for 학력무관); "
        "strict = product rules",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=72_000, help="postings of the main run")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shards", type=int, default=2, help="shards of the main run")
    ap.add_argument("--old-n", type=int, default=10_000, help="postings of old-vs-new")
    ap.add_argument("--sizes", default="10000,50000,100000,200000", help="scaling sizes ('' = skip)")
    ap.add_argument("--shard-counts", default="1,2,4")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="small run: n=10k, sizes 5k,10k")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.old_n, args.sizes = 10_000, 5_000, "5000,10000"

    from core.synth import generate_postings
    from workers.actors import init_ray, shutdown_ray

    sizes = [int(s) for s in args.sizes.split(",") if s]
    counts = [int(s) for s in args.shard_counts.split(",") if s]
    n_max = max([args.n, args.old_n, *sizes])
    ref = date.today()
    t0 = time.perf_counter()
    log(f"generating {n_max} postings")
    all_df = generate_postings(n_max, seed=args.seed, ref_date=ref)
    all_vec = occupation_vectors(all_df, args.dim, seed=args.seed)
    gen_s = time.perf_counter() - t0

    init_ray(num_cpus=args.cpus)
    # one BLAS thread per shard: measured, 2 threads in one actor were several times slower
    threads = lambda s: 1  # noqa: E731
    result: dict = {
        "machine": {"cpus": args.cpus, "load_avg_at_start": os.getloadavg()},
        "vectors": f"random unit vectors correlated with occupation, dim={args.dim}",
        "data": f"core.synth.generate_postings(seed={args.seed}), ref_date={ref}",
        "generate_s": round(gen_s, 1),
    }
    from workers.engine import geo

    result["h3_ring_coverage"] = [
        {k: v for k, v in geo.measure_ring_need(res, r).items() if k != "need_histogram"}
        for res in (6, 7)
        for r in (20.0, 40.0)
    ]
    try:
        rules = RuleConfig(ref_date=ref)
        df, vec = all_df.head(args.n), all_vec[: args.n]
        log(f"main run: {args.n} postings, {args.shards} shards")
        _, main_fig = run_ours(df, vec, shards=args.shards, rules=rules, k=args.k,
                               threads=threads(args.shards))  # fmt: skip
        main_fig["k"] = args.k
        main_fig["rules"] = "all (strict education, career, expiry, 20/40 km, max 2 per company)"
        main_fig["target_filter_search_s"] = 10.0
        main_fig["load_avg_after"] = os.getloadavg()
        result["main"] = main_fig
        log(f"main: filter+search {main_fig['filter_search_s']} s")

        log("online latency")
        result["online_similar"] = online_latency(df, vec, rules)
        log("scoring methods")
        result["scoring_one_query"] = scoring_methods(df, vec, rules)

        log(f"old vs new at {args.old_n}")
        odf, ovec = all_df.head(args.old_n), all_vec[: args.old_n]
        result["old_vs_new"] = old_vs_new(odf, ovec, args.k, ref, args.shards,
                                          threads(args.shards))  # fmt: skip

        scaling = []
        for n in sizes:
            for s in counts:
                log(f"scaling: {n} postings, {s} shards")
                _, fig = run_ours(all_df.head(n), all_vec[:n], shards=s, rules=rules, k=args.k,
                                  threads=threads(s))  # fmt: skip
                scaling.append(fig)
        result["scaling"] = scaling
    finally:
        shutdown_ray()
    text = json.dumps(result, ensure_ascii=False, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
