"""A matching generation switch under load: ``deploy_generation`` writes the next day while a
frontend over Ray shard actors answers RecommendJobs and takes RecordInteractions.

Measured in one run: the deployment's phases, how long writes waited (the seal → flip → the
new shards opened window), read and write latencies before / during / after, errors, and
whether every application acknowledged at any time is excluded from the new generation's
lists. The competing approach is the one before generations: a new ``--match-root`` and
every frontend restarted onto it, so matching is down at least for the new shards' start
(``restart_downtime_s``: the same shards' start, timed in this run).

    python bench/match_generations.py --postings 20000 --seekers 20000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REF = dt.date(2026, 11, 20)


def pct(xs, q):
    return round(float(np.percentile(xs, q)) * 1000, 2) if xs else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postings", type=int, default=20_000)
    ap.add_argument("--seekers", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--write-qps", type=float, default=20.0)
    ap.add_argument("--before", type=float, default=8.0, help="seconds of load before")
    ap.add_argument("--after", type=float, default=8.0, help="seconds of load after")
    ap.add_argument("--health-interval", type=float, default=1.0,
                    help="how often the frontend looks for a flip (jobrec serve: 5 s)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)

    import ray

    from core.seekers import seeker_text
    from core.synth import generate_postings
    from core.synth.seekers import generate_interactions, generate_seekers
    from encoding.text import posting_text
    from server.runtime import attach_match_shards, deploy_encoders
    from workers.matching.generations import GenerationalMatchService, deploy_generation
    from workers.matching.service import LexicalEncoder

    out: dict = {"postings": args.postings, "seekers": args.seekers, "dim": args.dim,
                 "shards": args.shards}
    t = time.perf_counter()
    postings = generate_postings(args.postings, args.seed, ref_date=REF)
    seekers = generate_seekers(args.seekers, args.seed, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, args.seed, days=1, ref_date=REF)
    enc = LexicalEncoder(args.dim)
    pv = enc.encode([posting_text(r) for r in postings.iter_rows(named=True)])
    sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    enc_p, enc_s = deploy_encoders(enc)
    out["world_s"] = round(time.perf_counter() - t, 1)

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             namespace="jobrec-bench")  # named: the shards are detached actors
    root = Path(tempfile.mkdtemp(prefix="match-gens-")) / "root"
    t = time.perf_counter()
    deploy_generation(root, postings, pv, seekers, sv, inter, encode_postings=enc_p,
                      encode_seekers=enc_s, shards=args.shards)
    out["first_deploy_s"] = round(time.perf_counter() - t, 2)
    retired = []

    def retire(svc):
        retired.append(time.perf_counter())
        svc.calls.close()

    t = time.perf_counter()
    front = GenerationalMatchService(root, lambda d: attach_match_shards(d, enc, REF),
                                     retire=retire, retire_after_s=3.0)
    out["first_shards_start_s"] = round(time.perf_counter() - t, 2)
    sids = seekers["seeker_id"].to_list()
    stop = threading.Event()
    phase = {"now": "before"}
    reads: dict[str, list] = {"before": [], "during": [], "after": []}
    writes: dict[str, list] = {"before": [], "during": [], "after": []}
    errors: list[str] = []
    acked: list[tuple[str, str]] = []
    rng = random.Random(args.seed)

    def reader():
        while not stop.is_set():
            sid = rng.choice(sids)
            t0 = time.perf_counter()
            try:
                front.recommend_jobs(seeker_id=sid)
                reads[phase["now"]].append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - counted
                errors.append(f"read: {type(exc).__name__}: {exc}"[:200])

    def writer():
        gap = 1.0 / args.write_qps
        nxt = time.perf_counter()
        while not stop.is_set():
            nxt += gap
            sid = rng.choice(sids)
            try:
                got = front.recommend_jobs(seeker_id=sid, k=5)
                if got:
                    pid = got[0].item_id
                    t0 = time.perf_counter()
                    front.record_interactions([{"seeker_id": sid, "posting_id": pid,
                                                "event": "applied"}])
                    writes[phase["now"]].append(time.perf_counter() - t0)
                    acked.append((sid, pid))
            except Exception as exc:  # noqa: BLE001 - counted
                errors.append(f"write: {type(exc).__name__}: {exc}"[:200])
            time.sleep(max(0.0, nxt - time.perf_counter()))

    def health():
        while not stop.is_set():
            front.maybe_switch()
            stop.wait(args.health_interval)

    threads = [threading.Thread(target=f, daemon=True) for f in (reader, writer, health)]
    for th in threads:
        th.start()
    time.sleep(args.before)
    phase["now"] = "during"
    day2 = postings.sample(fraction=0.95, seed=args.seed)  # the day's export: some closed
    v2 = enc_p(day2)
    t = time.perf_counter()
    deploy_generation(root, day2, v2, seekers, sv, None, encode_postings=enc_p,
                      encode_seekers=enc_s, shards=args.shards)
    flipped = time.perf_counter()
    out["deploy_s"] = round(flipped - t, 2)
    while front.generation != "gen-000002":
        time.sleep(0.01)
    switched = time.perf_counter()
    out["flip_to_switched_s"] = round(switched - flipped, 2)
    phase["now"] = "after"
    time.sleep(args.after)
    stop.set()
    for th in threads:
        th.join(30)
    missed = [(s, p) for s, p in acked
              if p in {m.item_id for m in front.recommend_jobs(seeker_id=s, k=200)}]
    front.service.calls.close()  # then started again from the root: what a restart costs
    t = time.perf_counter()
    attach_match_shards(root / "gen-000002", enc, REF).calls.close()
    restart = time.perf_counter() - t
    out.update({
        "reads": {k: {"n": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99),
                      "max_ms": pct(v, 100)} for k, v in reads.items()},
        "writes": {k: {"n": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99),
                       "max_ms": pct(v, 100)} for k, v in writes.items()},
        "errors": len(errors), "error_samples": errors[:5],
        "acked_applications": len(acked), "acked_not_excluded": len(missed),
        "old_shards_retired": bool(retired),
        "restart_downtime_s": round(restart, 2),
    })
    print(json.dumps(out, indent=1))
    ray.shutdown()
    return 0 if not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
