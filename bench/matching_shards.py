"""Online matching from the shard actors, through several stateless frontends: gRPC
``RecommendJobs`` / ``RecommendCandidates`` p50/p99 at an offered rate (Poisson, open loop),
``RecordInteractions`` write p99 and read-after-write across frontends, and each frontend's
memory at every seeker count of ``--sizes`` (it must not grow with the seekers).

Per size: the deployment is written (:func:`workers.matching.deployment.write_deployment`),
``--shards`` named shard actors open it on a local Ray, ``--frontends`` frontend processes
attach to them (the servicer of ``jobrec serve --match-root`` over a
:class:`~workers.matching.frontend.ShardedMatchService`, nothing else loaded), and the load
processes call the frontends in turn. The competing layout, the in-process
:class:`~workers.matching.service.MatchService` that ``jobrec serve --seekers`` builds (every
seeker and posting in the frontend), is started as a frontend process too at each size up to
``--baseline-max`` seekers, for its memory and latency in the same run. Prints one JSON object.

The world is ``bench/matching_national.py``'s (cached in ``--data``; hashed character n-gram
vectors of ``--dim``: 256 is W-BERT's width, and 512-wide float64 candidate blocks of 1M
seekers do not fit this machine twice).

``--ranked``: the learned ranker orders RecommendJobs in the shards
(:mod:`workers.matching.ranked`) and in the in-process baseline (``jobrec serve --seekers
--ranker``). The world then also has ``--days`` of generated interactions, and a ranker is
trained on them (:class:`workers.jobs.rank.RankWorld`, the same vectors), both cached in
``--data``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matching_serve import _pcts  # noqa: E402
from bench.serve import run_load  # noqa: E402
from core.synth import DEFAULT_REF_DATE  # noqa: E402

KEYS = "bench-plain,bench-employer:candidates"
MD = {"jobs": (("authorization", "Bearer bench-plain"),),
      "candidates": (("authorization", "Bearer bench-employer"),),
      "record": (("authorization", "Bearer bench-plain"),)}
NAMES = "jobrec-bench-match"


def rss_mb(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of a process, MB."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            got[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return {"rss_mb": got.get("VmRSS"), "peak_mb": got.get("VmHWM")}


# ------------------------------------------------------------------ a frontend process
def frontend_main(args) -> int:
    """One frontend: attach to the shards (or, ``--in-process``, build a MatchService from
    the deployment's tables), serve MatchingService on a port-0 server, write the port."""
    import ray

    from bench.matching_serve import serve_in_thread
    from core.matching import MatchConfig
    from server.auth import load_key_scopes
    from server.runtime import settle_for_serving
    from workers.matching.deployment import deployment_ranked, read_plan
    from workers.matching.service import LexicalEncoder

    enc = LexicalEncoder(args.dim)
    cfg = MatchConfig(ref_date=DEFAULT_REF_DATE)
    if args.in_process:
        from core.ranker import Ranker
        from workers.matching.service import MatchService

        w = Path(args.root)
        ranked = (w / "ranker").is_dir()
        service = MatchService(pl.read_parquet(w / "postings.parquet"),
                               np.load(w / "posting_vectors.npy"),
                               pl.read_parquet(w / "seekers.parquet"),
                               np.load(w / "seeker_vectors.npy"), enc, num_shards=args.shards,
                               config=cfg, ranker_pool=args.ranker_pool,
                               interactions=pl.read_parquet(w / "interactions.parquet")
                               if ranked else None,
                               ranker=Ranker.load(w / "ranker") if ranked else None)
    else:
        from workers.matching.frontend import ShardedMatchService
        from workers.matching.shard_actors import (
            RayShardCalls,
            find_match_shards,
            match_shard_names,
        )

        ray.init(address=args.ray_address, namespace="jobrec-bench", log_to_driver=False)
        plan = read_plan(args.root)
        handles = find_match_shards(match_shard_names(NAMES, plan.num_shards))
        service = ShardedMatchService(RayShardCalls(handles), plan, enc, cfg,
                                      ranked=deployment_ranked(args.root))
    settle_for_serving()
    port, _ = serve_in_thread(service, load_key_scopes(env={"JOBREC_API_KEYS": KEYS}))
    Path(args.port_file).write_text(str(port))
    while True:
        time.sleep(3600)


def start_frontend(extra: list[str], port_file: Path) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, __file__, "--frontend", "--port-file", str(port_file),
                          *extra], stdout=subprocess.DEVNULL)
    deadline = time.time() + 1800
    while not port_file.exists() or not port_file.read_text():
        if p.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"frontend {extra} did not start (rc {p.poll()})")
        time.sleep(0.5)
    return p, int(port_file.read_text())


# ------------------------------------------------------------------ one size
def requests_for(seekers: pl.DataFrame, postings: pl.DataFrame, n: int, seed: int):
    from server.generated.jobrec.v1 import matching_pb2 as mpb

    rng = np.random.default_rng(seed)
    active = seekers.filter(pl.col("active"))["seeker_id"].to_numpy()
    open_ = postings.filter(pl.col("closes_on").is_null() | (pl.col("closes_on") >= DEFAULT_REF_DATE))
    sids, pids = rng.choice(active, n + 60), rng.choice(open_["posting_id"].to_numpy(), n + 60)
    return {
        "jobs": [mpb.RecommendJobsRequest(seeker_id=str(s)).SerializeToString() for s in sids],
        "candidates": [mpb.RecommendCandidatesRequest(posting_id=str(p)).SerializeToString()
                       for p in pids],
        "record": [mpb.RecordInteractionsRequest(interactions=[mpb.Interaction(
            seeker_id=str(s), posting_id=str(p), event="clicked")]).SerializeToString()
            for s, p in zip(rng.permutation(sids), pids, strict=True)],
    }, sids


def load_phase(ports, reqs, args, out: dict, pids: dict[str, list[int]]) -> None:
    """Open-loop RecommendJobs, then RecommendCandidates; CPU ms per request of each kind
    of process in ``pids`` (frontends, shards)."""
    from bench.serve import _pids_cpu_s

    n = int(args.qps * args.duration)
    for kind in ("jobs", "candidates"):
        run_load(ports, reqs[kind][-50:], 20, 2.0, len(ports), kind, metadata=MD[kind])  # warm
        before = {k: _pids_cpu_s(v) for k, v in pids.items()}
        res = run_load(ports, reqs[kind][:n], args.qps, args.duration, len(ports), kind,
                       metadata=MD[kind])
        for k, v in pids.items():
            after = _pids_cpu_s(v)
            res["cpu_ms_per_request"][k] = round(sum(after[p] - before[k].get(p, after[p])
                                                     for p in after) / max(1, n) * 1e3, 3)
        res["meets_target"] = bool(res["p99_ms"] <= 50 and res["error_rate"] == 0)
        out["RecommendJobs" if kind == "jobs" else "RecommendCandidates"] = res
        print(f"bench: {kind} {len(ports)} frontends @ {args.qps:.0f} QPS: p50 {res['p50_ms']} "
              f"p99 {res['p99_ms']} ms errors {res['error_rate']}", file=sys.stderr)


def read_after_write(ports, sids, checks: int) -> dict:
    """RecommendJobs through frontend A, an application to its first posting through frontend
    B (timed), RecommendJobs through A again: the posting must be gone."""
    import grpc

    from server.generated.jobrec.v1 import matching_pb2 as mpb
    from server.generated.jobrec.v1 import matching_pb2_grpc as mpb_grpc

    chans = [grpc.insecure_channel(f"127.0.0.1:{p}") for p in ports]
    stubs = [mpb_grpc.MatchingServiceStub(c) for c in chans]
    md = MD["jobs"]
    write_ms, excluded, tried = [], 0, 0
    for i, s in enumerate(sids[:checks]):
        a, b = stubs[i % len(stubs)], stubs[(i + 1) % len(stubs)]
        first = a.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=str(s), k=5), metadata=md,
                                timeout=30).matches
        if not first:
            continue
        tried += 1
        t = time.perf_counter()
        b.RecordInteractions(mpb.RecordInteractionsRequest(interactions=[mpb.Interaction(
            seeker_id=str(s), posting_id=first[0].posting_id, event="applied")]), metadata=md,
            timeout=30)
        write_ms.append((time.perf_counter() - t) * 1000)
        again = a.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=str(s), k=120), metadata=md,
                                timeout=30).matches
        excluded += first[0].posting_id not in {m.posting_id for m in again}
    for c in chans:
        c.close()
    return {"checked": tried, "excluded_next_call": excluded,
            "excluded_share": round(excluded / max(1, tried), 4),
            "write_closed_loop": _pcts(write_ms)}


def run_size(n_seekers: int, postings, seekers_all, pv, sv_all, args, work: Path,
             inter: pl.DataFrame | None = None, ranker=None) -> dict:
    from workers.actors import init_ray
    from workers.matching.deployment import write_deployment
    from workers.matching.shard_actors import RayShardCalls, match_shard_names, start_match_shards
    from workers.matching.sharded import AreaPlan

    out: dict = {"seekers": n_seekers}
    seekers, sv = seekers_all.head(n_seekers), np.asarray(sv_all[:n_seekers])
    root = work / f"deploy-{n_seekers}"
    t0 = time.perf_counter()
    if inter is not None:
        inter = inter.filter(pl.col("seeker_id").is_in(seekers["seeker_id"].implode()))
    write_deployment(root, AreaPlan.build(postings, args.shards), postings, np.asarray(pv),
                     seekers, sv, inter, ranker=ranker, ranker_pool=args.ranker_pool)
    out["write_deployment_s"] = round(time.perf_counter() - t0, 1)
    init_ray(num_cpus=2, namespace="jobrec-bench")
    import ray

    t0 = time.perf_counter()
    calls = RayShardCalls(start_match_shards(str(root), args.shards,
                                             names=match_shard_names(NAMES, args.shards)),
                          timeout=1800)
    shard_stats = calls.call(list(range(args.shards)), "stats")
    out["shards_open_s"] = round(time.perf_counter() - t0, 1)
    out["shards"] = [{**st, **rss_mb(st["pid"])} for st in shard_stats]
    address = ray.get_runtime_context().gcs_address
    fronts = []
    try:
        for i in range(args.frontends):
            fronts.append(start_frontend(["--root", str(root), "--ray-address", address,
                                          "--dim", str(args.dim)], work / f"port-{n_seekers}-{i}"))
        ports = [p for _, p in fronts]
        reqs, sids = requests_for(seekers, postings, int(args.qps * args.duration), args.seed)
        out["grpc"] = {}
        load_phase(ports, reqs, args, out["grpc"], {
            "frontends": [p.pid for p, _ in fronts], "shards": [st["pid"] for st in shard_stats]})
        rec = run_load(ports, reqs["record"][:int(args.write_qps * args.duration)],
                       args.write_qps, args.duration, len(ports), "record", metadata=MD["record"])
        rec["meets_target"] = bool(rec["p99_ms"] <= 20 and rec["error_rate"] == 0)
        out["grpc"]["RecordInteractions"] = rec
        out["read_after_write"] = read_after_write(ports, sids[::-1], args.checks)
        out["frontends"] = [rss_mb(p.pid) for p, _ in fronts]
        out["shards_after"] = [rss_mb(st["pid"]) for st in shard_stats]
    finally:
        for p, _ in fronts:
            p.kill()
            p.wait()
        calls.close()
        ray.shutdown()
    if n_seekers <= args.baseline_max:  # the frontend that holds everything, same size
        w = work / f"world-{n_seekers}"
        w.mkdir(exist_ok=True)
        postings.write_parquet(w / "postings.parquet")
        np.save(w / "posting_vectors.npy", np.asarray(pv))
        seekers.write_parquet(w / "seekers.parquet")
        np.save(w / "seeker_vectors.npy", sv)
        if ranker is not None:
            inter.write_parquet(w / "interactions.parquet")
            ranker.save(w / "ranker")
        t0 = time.perf_counter()
        p, port = start_frontend(["--in-process", "--root", str(w), "--dim", str(args.dim),
                                  "--shards", str(args.shards), "--ranker-pool",
                                  str(args.ranker_pool)], work / f"port-base-{n_seekers}")
        base: dict = {"start_s": round(time.perf_counter() - t0, 1)}
        try:
            load_phase([port], reqs, args, base, {"frontend": [p.pid]})
            base["frontend"] = rss_mb(p.pid)
        finally:
            p.kill()
            p.wait()
        out["in_process_baseline"] = base
    return out


def ranked_world(data: Path | None, postings, seekers, pv, sv, args, out: dict):
    """(interactions, ranker) of the world: ``--days`` of generated log and a ranker trained
    on it with the world's vectors (cached in ``data``)."""
    from core.matching import MatchConfig
    from core.ranker import Ranker, RankerConfig
    from core.synth.seekers import generate_interactions
    from workers.jobs.rank import RankWorld

    if data is not None and (data / "ranker").is_dir():
        out["ranker"] = {"cached": str(data / "ranker")}
        return pl.read_parquet(data / "interactions.parquet"), Ranker.load(data / "ranker")
    t0 = time.perf_counter()
    inter = generate_interactions(seekers, postings, args.seed, days=args.days,
                                  ref_date=DEFAULT_REF_DATE)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranker, _ = RankWorld(seekers, postings, np.asarray(sv), np.asarray(pv)).train(
        inter, MatchConfig(ref_date=DEFAULT_REF_DATE), RankerConfig(pool=args.ranker_pool))
    out["ranker"] = {"log_rows": inter.height, "generate_s": round(gen_s, 1),
                     "train_s": round(time.perf_counter() - t0, 1)}
    if data is not None:
        inter.write_parquet(data / "interactions.parquet")
        ranker.save(data / "ranker")
    return inter, ranker


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frontend", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ray-address", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--postings", type=int, default=250_000)
    ap.add_argument("--sizes", default="100000,1000000", help="seeker counts, comma-separated")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--frontends", type=int, default=2)
    ap.add_argument("--qps", type=float, default=200.0)
    ap.add_argument("--write-qps", type=float, default=50.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--checks", type=int, default=200, help="read-after-write checks")
    ap.add_argument("--baseline-max", type=int, default=100_000,
                    help="largest size the in-process frontend is measured at")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None, help="cache of the generated world")
    ap.add_argument("--ranked", action="store_true",
                    help="the learned ranker orders RecommendJobs (trained on the world's log)")
    ap.add_argument("--days", type=int, default=3, help="days of generated log (--ranked)")
    ap.add_argument("--ranker-pool", type=int, default=300)
    args = ap.parse_args(argv)
    if args.frontend:
        return frontend_main(args)
    from bench.matching_national import national_world

    sizes = sorted(int(x) for x in args.sizes.split(","))
    out: dict = {"config": {k: str(v) for k, v in vars(args).items()}}
    postings, seekers, pv, sv = national_world(args.data, args.postings, sizes[-1], args.seed,
                                               out, dim=args.dim)
    inter = ranker = None
    if args.ranked:
        inter, ranker = ranked_world(args.data, postings, seekers, pv, sv, args, out)
    out["runs"] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("JOBREC_BENCH_TMP")) as tmp:
        for n in sizes:
            out["runs"].append(run_size(n, postings, seekers, pv, sv, args, Path(tmp), inter,
                                        ranker))
            print(json.dumps(out["runs"][-1]), file=sys.stderr)
    fr = [r["frontends"] for r in out["runs"]]
    rss = [max(f["rss_mb"] for f in x) for x in fr]
    out["frontend_rss_growth"] = round(rss[-1] / rss[0] - 1, 4) if len(rss) > 1 else None
    out["when"] = dt.datetime.now().isoformat(timespec="seconds")
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
