"""Serving benchmark: gRPC ``SimilarPostings`` under open-loop load from separate processes.

Runs with no arguments and prints JSON:

- by id: p50/p99 latency at stepped offered rates, and the highest rate sustained with
  p99 <= 20 ms (and < 1% errors): rates are stepped up until a step fails, then the gap
  between the last passing and the first failing rate is bisected (``--refine`` steps);
  every step run is reported, none is retried;
- inline new postings (encoded by the server with W-BERT) at 20 QPS: p50/p99 (target <= 100 ms);
- CPU seconds of the server side (the gRPC frontend process, i.e. this one, and the shard actor
  processes) vs the load generator processes, per step;
- the competing approach in the same run: the same by-id queries called in-process on the
  backend (no gRPC), sequentially, to show what the network layer costs.

The server (frontend in this process, shard actors in local Ray worker processes) and the load
generator processes share the same machine (2 cores here): the load generator's CPU is
reported so the numbers can be read with that in mind, and so is the CPU that *other* processes
of the (shared) machine used during each step, with the load average. Latency is measured
from each request's *scheduled* send time (open loop), so a client that falls behind counts
as latency. Send times are a Poisson process at the offered rate by default (bursty, as
independent callers are; ``--arrivals uniform`` spaces them evenly, which queues less).
No results are cached anywhere: every request is searched by a shard.

Vectors of the indexed postings are random-but-structured (one random centroid per KECO
occupation + noise, L2-normalised; ``--vectors random``) unless ``--vectors model`` encodes
them with the model; inline postings are always encoded by the server's real encoder.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REF = dt.date(2024, 6, 1)


# ------------------------------------------------------------------------------ load gen


async def _open_loop(
    port: int,
    requests: list[bytes],
    kind: str,
    rate: float,
    t_start: float,
    timeout: float,
    arrivals: str = "poisson",
    seed: int = 0,
    metadata: tuple = (),
) -> dict:
    """Offer ``requests`` (serialised) at ``rate`` QPS to the method of ``kind`` (by_id and
    inline: SimilarPostings; jobs, candidates, record: MatchingService), with call ``metadata``."""
    import grpc

    from server.generated.jobrec.v1 import matching_pb2 as mpb
    from server.generated.jobrec.v1 import recommendation_pb2 as pb

    path, response = {
        "jobs": ("/jobrec.v1.MatchingService/RecommendJobs", mpb.RecommendJobsResponse),
        "candidates": ("/jobrec.v1.MatchingService/RecommendCandidates",
                       mpb.RecommendCandidatesResponse),
        "record": ("/jobrec.v1.MatchingService/RecordInteractions",
                   mpb.RecordInteractionsResponse),
    }.get(kind, ("/jobrec.v1.RecommendationService/SimilarPostings", pb.SimilarPostingsResponse))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(
        path,
        request_serializer=lambda b: b,  # requests are pre-serialised: no client CPU for that
        response_deserializer=response.FromString,
    )
    await channel.channel_ready()
    lat: list[float] = []
    codes: dict[str, int] = {}

    async def one(req: bytes, scheduled: float) -> None:
        try:
            await call(req, timeout=timeout, metadata=metadata)
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        lat.append(time.perf_counter() - scheduled)
        codes[code] = codes.get(code, 0) + 1

    tasks = []
    if arrivals == "poisson":
        gaps = np.random.default_rng(seed).exponential(1.0 / rate, len(requests))
        at = np.concatenate([[0.0], np.cumsum(gaps)[:-1]])
    else:
        at = np.arange(len(requests)) / rate
    # perf_counter is per process; t_start is wall-clock, convert once
    offset = time.perf_counter() - time.time()
    t0 = t_start + offset
    for i, req in enumerate(requests):
        scheduled = t0 + float(at[i])
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(req, scheduled)))
    await asyncio.gather(*tasks)
    await channel.close()
    return {"latencies": lat, "codes": codes}


def _loadgen_proc(port, requests, kind, rate, t_start, timeout, arrivals, seed, out_q,
                  metadata=()) -> None:
    cpu0 = time.process_time()
    res = asyncio.run(_open_loop(port, requests, kind, rate, t_start, timeout, arrivals, seed,
                                 metadata))
    res["cpu_s"] = time.process_time() - cpu0
    out_q.put(res)


def _proc_stat_busy() -> float:
    """Busy CPU seconds of the whole machine so far (from /proc/stat)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    idle = vals[3] + vals[4]
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _pids_cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each of ``pids`` (from /proc; gone processes are left out)."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tck  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return out


def _self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_load(
    port: int | Sequence[int],
    requests: list[bytes],
    rate: float,
    duration: float,
    procs: int,
    kind: str,
    timeout: float = 5.0,
    shard_pids: tuple[int, ...] = (),
    arrivals: str = "poisson",
    seed: int = 0,
    metadata: tuple = (),
) -> dict:
    """Offer ``rate`` QPS for ``duration`` s from ``procs`` processes; latency and CPU figures.
    Several ``port`` s: load process ``i`` calls the frontend ``port[i % len(port)]``."""
    ports = [port] if isinstance(port, int) else list(port)
    n = max(1, int(rate * duration))
    per = [requests[i::procs][: max(1, n // procs)] for i in range(procs)]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t_start = time.time() + 1.5  # spawned interpreters need a moment to import grpc
    ps = [
        ctx.Process(
            target=_loadgen_proc,
            args=(
                ports[i % len(ports)], per[i], kind, rate / procs, t_start + i / rate, timeout, arrivals,
                seed * 1000 + i, q, metadata,
            ),  # fmt: skip
        )
        for i in range(procs)
    ]
    for p in ps:
        p.start()
    # CPU windows start when the load starts (process start-up is not load-generator work)
    time.sleep(max(0.0, t_start - time.time()))
    busy0, self0, shard0 = _proc_stat_busy(), _self_cpu_s(), _pids_cpu_s(shard_pids)
    results = [q.get(timeout=duration + 120) for _ in ps]
    busy1, self1, shard1 = _proc_stat_busy(), _self_cpu_s(), _pids_cpu_s(shard_pids)
    wall = time.time() - t_start
    for p in ps:
        p.join()
    lat = np.array([x for r in results for x in r["latencies"]]) * 1000.0
    codes: dict[str, int] = {}
    for r in results:
        for c, v in r["codes"].items():
            codes[c] = codes.get(c, 0) + v
    ok = codes.get("OK", 0)
    loadgen_cpu = sum(r["cpu_s"] for r in results)
    cpu = {
        "frontend_process": self1 - self0,
        "shard_actors": sum(v - shard0.get(p, v) for p, v in shard1.items()),
        "load_generator": loadgen_cpu,
    }
    busy = busy1 - busy0
    return {
        "offered_qps": rate,
        "requests": int(lat.size),
        "achieved_qps": round(ok / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p90_ms": round(float(np.percentile(lat, 90)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        "error_rate": round(1 - ok / max(1, lat.size), 4),
        "codes": codes,
        "wall_s": round(wall, 2),
        "arrivals": arrivals,
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()}
        | {
            # includes whatever else runs on the machine (other users, Ray's own daemons)
            "machine_busy": round(busy, 2),
            "others": round(busy - sum(cpu.values()), 2),
        },
        "cpu_ms_per_request": {k: round(v / max(1, lat.size) * 1e3, 3) for k, v in cpu.items()},
        "machine_cores_busy": round(busy / max(wall, 1e-9), 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }


# ------------------------------------------------------------------------------ setup


def structured_vectors(postings, dim: int, seed: int) -> np.ndarray:
    """Random vectors clustered by occupation code (a stand-in for W-BERT at benchmark scale)."""
    rng = np.random.default_rng(seed)
    codes = postings["occupation_code"].to_list()
    uniq = {c: i for i, c in enumerate(sorted(set(codes)))}
    centroids = rng.standard_normal((len(uniq), dim)).astype(np.float32)
    idx = np.fromiter((uniq[c] for c in codes), dtype=np.int64, count=len(codes))
    v = centroids[idx] + 0.8 * rng.standard_normal((len(codes), dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def find_or_train_model(model: Path | None, work: Path) -> tuple[Path, str]:
    """A model directory for the encoder: given, the demo's/default one, or a quick tiny one."""
    from encoding.encoder import default_model_dir, is_trained_model_dir

    if model is not None:
        return model, "given"
    for cand in (Path(".jobrec/demo/model"), default_model_dir()):
        if is_trained_model_dir(cand):
            return cand, f"existing {cand}"
    from core.synth import generate_postings
    from training.train import TrainConfig, run_local, train_model

    out = work / "model"
    print(
        "bench: no trained model found; training a tiny one briefly (timing only)",
        file=sys.stderr,
        flush=True,
    )
    train_model(
        generate_postings(2000, 99, ref_date=REF), out,
        TrainConfig(size="tiny", epochs=1, mlm_epochs=1, max_steps=20),
        runner=run_local, compute_metrics=False,
    )  # fmt: skip
    return out, "tiny model trained for 20 steps (same architecture/speed as the default)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="postings indexed")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument(
        "--rates",
        default="50,100,200,300,400,500,600,800,1000",
        help="offered by-id rates (QPS), stepped until p99 > 20 ms",
    )
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per rate step")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--inline-qps", type=float, default=20.0)
    ap.add_argument("--inline-duration", type=float, default=10.0)
    ap.add_argument("--vectors", choices=("random", "model"), default="random")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--p99-target-ms", type=float, default=20.0)
    ap.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    ap.add_argument(
        "--refine", type=int, default=2, help="bisection steps after the first failing rate"
    )
    args = ap.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import polars as pl

    from core.synth import generate_postings
    from server import convert
    from server.app import BackgroundServer, JobrecServer, ServerConfig
    from server.generated.jobrec.v1 import recommendation_pb2 as pb
    from server.runtime import build_backend, encode_postings, load_encoder

    out: dict = {
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "config": vars(args) | {"model": str(args.model)},
    }
    work = Path(tempfile.mkdtemp(prefix="jobrec-bench-serve-"))
    t = time.perf_counter()
    postings = generate_postings(args.n, 1, ref_date=REF)
    out["setup_s"] = {"generate": round(time.perf_counter() - t, 1)}

    model_dir, model_note = find_or_train_model(args.model, work)
    encoder = load_encoder(model_dir, postings=postings)
    out["model"] = {"dir": str(model_dir), "note": model_note, "dim": encoder.dim}
    t = time.perf_counter()
    if args.vectors == "model":
        vectors = encode_postings(postings, encoder)
        out["vectors"] = "W-BERT encodings of the postings"
    else:
        vectors = structured_vectors(postings, encoder.dim, seed=2)
        out["vectors"] = (
            "random-but-structured (occupation centroid + noise), timing only; "
            "inline queries use the real encoder"
        )
    out["setup_s"]["vectors"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    backend, rules = build_backend(postings, vectors, shards=args.shards, ref_date=REF)
    out["setup_s"]["build_shards"] = round(time.perf_counter() - t, 1)
    server = BackgroundServer(JobrecServer(
        backend, encoder, rules,
        ServerConfig(port=0, max_in_flight=4096, health_interval_s=0),
    ))  # fmt: skip
    port = server.start()
    shard_pids = tuple(int(st["pid"]) for st in backend.shard_stats())

    rng = np.random.default_rng(3)
    ids = postings["posting_id"].to_list()
    sample = [ids[i] for i in rng.choice(len(ids), size=min(len(ids), 50_000), replace=False)]
    by_id = [pb.SimilarPostingsRequest(posting_id=p, k=args.k).SerializeToString() for p in sample]

    # competing approach: in-process backend calls, no gRPC
    direct = []
    for pid in sample[:300]:
        t = time.perf_counter()
        backend.similar(pid, k=args.k)
        direct.append((time.perf_counter() - t) * 1000)
    out["direct_backend_sequential"] = {
        "calls": len(direct),
        "p50_ms": round(float(np.percentile(direct, 50)), 2),
        "p99_ms": round(float(np.percentile(direct, 99)), 2),
    }

    run_load(port, by_id, 50, 2.0, args.procs, "by_id")  # warm-up
    steps = []
    best = None
    offset = 0

    def step(rate: float) -> bool:
        nonlocal offset, best
        n = int(rate * args.duration)
        reqs = (by_id[offset:] + by_id[:offset])[:n]
        offset = (offset + n) % len(by_id)
        res = run_load(
            port, reqs, rate, args.duration, args.procs, "by_id", shard_pids=shard_pids,
            arrivals=args.arrivals, seed=len(steps),
        )  # fmt: skip
        steps.append(res)
        ok = res["p99_ms"] <= args.p99_target_ms and res["error_rate"] < 0.01
        print(
            f"bench: by id @ {rate:.0f} QPS: p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
            f"errors {res['error_rate']:.2%}, machine {res['machine_cores_busy']} cores busy "
            f"({res['cpu_s']['others']} CPU-s by others) -> {'pass' if ok else 'FAIL'}",
            file=sys.stderr,
            flush=True,
        )
        if ok and (best is None or res["achieved_qps"] > best["achieved_qps"]):
            best = res
        return ok

    lo, hi = None, None
    for rate in [float(r) for r in args.rates.split(",")]:
        if step(rate):
            lo = rate
        else:
            hi = rate
            break
    if lo is not None and hi is not None:
        for _ in range(args.refine):
            mid = round((lo + hi) / 2)
            if mid in (lo, hi):
                break
            if step(mid):
                lo = mid
            else:
                hi = mid
    out["by_id"] = {
        "steps": steps,
        "max_qps_with_p99_under_target": best["achieved_qps"] if best else None,
        "offered_qps_of_that_step": best["offered_qps"] if best else None,
        "p99_target_ms": args.p99_target_ms,
        "target_qps": 200,
        "arrivals": args.arrivals,
    }

    new = generate_postings(
        max(50, int(args.inline_qps * args.inline_duration) + 20), 77, ref_date=REF
    )
    new = new.with_columns(pl.lit("").alias("posting_id"))
    inline = [
        pb.SimilarPostingsRequest(posting=convert.posting_from_row(r), k=args.k).SerializeToString()
        for r in new.iter_rows(named=True)
    ]
    # the server warmed its encoder up before serving; a short warm-up of the inline path
    # here mirrors the by-id one (and is not measured)
    run_load(port, inline[-20:], 10, 1.0, 1, "inline", timeout=10)
    res = run_load(
        port,
        inline[:-20] if len(inline) > 40 else inline,
        args.inline_qps,
        args.inline_duration,
        args.procs,
        "inline",
        timeout=10,
        shard_pids=shard_pids,
        arrivals=args.arrivals,
    )
    print(
        f"bench: inline @ {args.inline_qps:.0f} QPS: p50 {res['p50_ms']} ms, "
        f"p99 {res['p99_ms']} ms",
        file=sys.stderr,
        flush=True,
    )
    out["inline"] = res | {"target_p99_ms": 100}

    out["machine"]["loadavg_at_end"] = os.getloadavg()
    server.stop()
    backend.shutdown()
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
