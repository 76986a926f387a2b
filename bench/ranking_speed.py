"""Learned-ranker speed: ``train-ranker`` on N seekers with 7 days of log, ``match --ranker``
against the formula's batch (both on Ray, 2 CPUs, k = 120, measured in the same run) and
online ``RecommendJobs`` (plain calls) with and without the ranker. Prints one JSON object.

Targets (issue #21): training <= 10 min at 100k seekers; the ranked batch <= 2 x the
formula's; online p99 <= 50 ms (gRPC at 100 QPS: ``bench/matching_serve.py --ranker``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matching_serve import _pcts, encoded_world  # noqa: E402
from core.matching import MatchConfig  # noqa: E402
from core.ranker import RankerConfig  # noqa: E402
from core.synth import DEFAULT_REF_DATE  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postings", type=int, default=100_000)
    ap.add_argument("--seekers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--calls", type=int, default=300, help="online plain calls timed")
    ap.add_argument("--data", type=Path, default=None, help="reuse / save the generated tables")
    ap.add_argument("--skip-batch", action="store_true")
    ap.add_argument("--ranker", type=Path, default=None,
                    help="load this ranker instead of training one (the batch and online "
                         "figures only)")
    ap.add_argument("--save-ranker", type=Path, default=None,
                    help="write the trained ranker there (for bench/matching_serve.py --ranker)")
    args = ap.parse_args(argv)
    import ray

    from workers.actors import init_ray, shutdown_ray
    from workers.jobs.match import run_match
    from workers.jobs.rank import RankWorld
    from workers.matching.service import MatchService

    out: dict = {"config": {k: str(v) for k, v in vars(args).items()}}
    postings, seekers, inter, pv, sv, enc = encoded_world(args, out)
    cfg = MatchConfig(k=120, ref_date=DEFAULT_REF_DATE)
    t0 = time.perf_counter()
    world = RankWorld(seekers, postings, sv, pv)
    if args.ranker is not None:
        from workers.matching.ranker_store import load_ranker

        ranker = load_ranker(args.ranker)
        out["train"] = {"loaded": str(args.ranker)}
    else:
        ranker, m = world.train(inter, cfg, RankerConfig())
        out["train"] = {"seconds": round(time.perf_counter() - t0, 1), "target_s": 600,
                        "train_groups": m["train_groups"], "train_rows": m["train_rows"],
                        "best_iteration": m["best_iteration"], "valid_ranker": m["ranker"],
                        "valid_formula": m["formula"]}
        print(f"bench: trained in {out['train']['seconds']} s", file=sys.stderr)
    if args.save_ranker is not None and args.ranker is None:
        out["train"]["saved"] = str(ranker.save(args.save_ranker))
    if not args.skip_batch:
        init_ray(num_cpus=2)
        try:
            t0 = time.perf_counter()
            formula, _ = run_match(seekers, postings, sv, pv, cfg, num_shards=args.shards,
                                   interactions=inter, use_ray=True, progress=False)
            f_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            ranked = world.match_frame(ranker, inter, cfg, RankerConfig.pool, use_ray=True,
                                       tasks=2)
            r_s = time.perf_counter() - t0
        finally:
            shutdown_ray() if ray.is_initialized() else None
        out["batch"] = {"formula_s": round(f_s, 1), "ranker_s": round(r_s, 1),
                        "ratio": round(r_s / f_s, 2), "target_ratio": 2.0,
                        "formula_rows": formula.height, "ranker_rows": ranked.height,
                        "seekers_with_a_list": ranked["seeker_id"].n_unique()}
        print(f"bench: batch formula {f_s:.1f} s, ranker {r_s:.1f} s", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    sids = rng.choice(seekers.filter(pl.col("active"))["seeker_id"].to_numpy(), args.calls)
    out["online_plain_call"] = {}
    for name, rk in (("formula", None), ("ranker", ranker)):
        svc = MatchService(postings, pv, seekers, sv, enc, interactions=inter,
                           num_shards=args.shards, config=cfg, ranker=rk)
        ms = []
        for s in sids.tolist():
            t = time.perf_counter()
            svc.recommend_jobs(seeker_id=str(s))
            ms.append((time.perf_counter() - t) * 1000)
        out["online_plain_call"][name] = _pcts(ms)
        del svc
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
