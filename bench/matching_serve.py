"""Online matching benchmark: gRPC ``RecommendJobs`` and ``RecommendCandidates`` p50/p99 at an
offered rate (default 100 QPS, Poisson arrivals, open loop) on 100k postings x 100k seekers.

The matching service (:class:`workers.matching.service.MatchService`, 2 geo shards, exact
fan-out merge, all hard rules, k=120, reasons) is served by the real servicer behind the API
key interceptor on a port-0 server in this process; the load comes from separate processes
(``bench/serve.py``'s open-loop generator). The same requests are also timed as plain calls
(no gRPC) to show what the transport adds. ``--ranker DIR`` orders ``RecommendJobs`` with a
saved learned ranker, as ``jobrec serve --ranker`` does. Prints one JSON object.

``--data DIR`` reuses ``postings.parquet``, ``seekers.parquet`` and ``interactions.parquet``
there (``jobrec generate --seekers`` writes them), else generates them and saves them there.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serve import run_load  # noqa: E402
from core.matching import MatchConfig  # noqa: E402
from core.seekers import seeker_text  # noqa: E402
from core.synth import DEFAULT_REF_DATE, generate_postings  # noqa: E402
from core.synth.seekers import generate_interactions, generate_seekers  # noqa: E402
from encoding.text import posting_text  # noqa: E402

KEYS = "bench-plain,bench-employer:candidates"


def load_or_generate(data: Path | None, n_postings: int, n_seekers: int, days: int,
                     seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The three tables, from ``data`` when it holds them, else generated (and saved there)."""
    names = ("postings.parquet", "seekers.parquet", "interactions.parquet")
    if data is not None and all((data / n).is_file() for n in names):
        return tuple(pl.read_parquet(data / n) for n in names)  # type: ignore[return-value]
    postings = generate_postings(n_postings, seed, ref_date=DEFAULT_REF_DATE)
    seekers = generate_seekers(n_seekers, seed, postings=postings, ref_date=DEFAULT_REF_DATE)
    inter = generate_interactions(seekers, postings, seed, days=days, ref_date=DEFAULT_REF_DATE)
    if data is not None:
        data.mkdir(parents=True, exist_ok=True)
        for frame, n in zip((postings, seekers, inter), names, strict=True):
            frame.write_parquet(data / n)
    return postings, seekers, inter


def encoded_world(args, out: dict):
    """(postings, seekers, interactions, posting vectors, seeker vectors, encoder) of a bench
    run (``args.data / postings / seekers / days / seed``), with load and encode seconds in
    ``out``: hashed character n-gram vectors, the benches' deterministic text encoder."""
    from workers.matching.service import LexicalEncoder

    t0 = time.perf_counter()
    postings, seekers, inter = load_or_generate(args.data, args.postings, args.seekers,
                                                args.days, args.seed)
    out["data"] = {"postings": postings.height, "seekers": seekers.height,
                   "active_seekers": int(seekers["active"].sum()),
                   "interactions": inter.height, "load_s": round(time.perf_counter() - t0, 1)}
    t0 = time.perf_counter()
    enc = LexicalEncoder(512)
    pv = enc.encode([posting_text(r) for r in postings.iter_rows(named=True)])
    sv = enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    out["encode_s"] = round(time.perf_counter() - t0, 1)
    return postings, seekers, inter, pv, sv, enc


def serve_in_thread(service, scopes) -> tuple[int, callable]:
    """The matching servicer on a port-0 aio server in a daemon thread; (port, stop)."""
    import grpc

    from server.auth import ApiKeyInterceptor
    from server.matching import MatchingServicer, add_to_server

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def start() -> None:
        server = grpc.aio.server(interceptors=[ApiKeyInterceptor(scopes)])
        add_to_server(MatchingServicer(service, scopes), server)
        state["port"] = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        state["server"] = server
        ready.set()

    t = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()),
                         daemon=True)
    t.start()
    if not ready.wait(60):
        raise RuntimeError("the matching server did not start")

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(state["server"].stop(0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
    return state["port"], stop


def _pcts(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 2), "calls": int(a.size)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postings", type=int, default=100_000)
    ap.add_argument("--seekers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=3, help="days of generated interactions")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--qps", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load per method")
    ap.add_argument("--procs", type=int, default=1, help="load-generator processes")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--only", choices=("jobs", "candidates"), default=None)
    ap.add_argument("--ranker", type=Path, default=None,
                    help="a saved ranker (jobrec train-ranker / bench/ranking_speed.py "
                         "--save-ranker) ordering RecommendJobs, as `jobrec serve --ranker`")
    ap.add_argument("--switch-interval-ms", type=float, default=0.0,
                    help="the interpreter's GIL switch interval (0: leave Python's 5 ms)")
    args = ap.parse_args(argv)
    from server.auth import load_key_scopes
    from server.generated.jobrec.v1 import matching_pb2 as mpb
    from server.runtime import settle_for_serving
    from workers.matching.service import MatchService

    out: dict = {"config": {k: str(v) for k, v in vars(args).items()}}
    postings, seekers, inter, pv, sv, enc = encoded_world(args, out)
    t0 = time.perf_counter()
    ranker = None
    if args.ranker is not None:
        from core.ranker import Ranker

        ranker = Ranker.load(args.ranker)
    service = MatchService(postings, pv, seekers, sv, enc, interactions=inter,
                           num_shards=args.shards, config=MatchConfig(ref_date=DEFAULT_REF_DATE),
                           ranker=ranker)
    out["service_build_s"] = round(time.perf_counter() - t0, 1)
    settle_for_serving()  # as `jobrec serve` does once loaded
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000.0)
    scopes = load_key_scopes(env={"JOBREC_API_KEYS": KEYS})
    port, stop = serve_in_thread(service, scopes)
    rng = np.random.default_rng(args.seed)
    n = max(50, int(args.qps * args.duration))
    active = seekers.filter(pl.col("active"))["seeker_id"].to_numpy()
    open_ = postings.filter(pl.col("closes_on").is_null() | (pl.col("closes_on") >= DEFAULT_REF_DATE))
    sids = rng.choice(active, size=n + 60)
    pids = rng.choice(open_["posting_id"].to_numpy(), size=n + 60)
    jobs = [mpb.RecommendJobsRequest(seeker_id=str(s)).SerializeToString() for s in sids]
    cands = [mpb.RecommendCandidatesRequest(posting_id=str(p)).SerializeToString() for p in pids]
    # plain calls first: what the service itself costs per request, without gRPC or queueing
    t_calls, c_calls, sizes = [], [], []
    for s, p in zip(sids[:300], pids[:300], strict=True):
        t = time.perf_counter()
        sizes.append(len(service.recommend_jobs(seeker_id=str(s))))
        t_calls.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        service.recommend_candidates(str(p))
        c_calls.append((time.perf_counter() - t) * 1000)
    out["plain_call"] = {"recommend_jobs": _pcts(t_calls), "recommend_candidates": _pcts(c_calls),
                         "mean_jobs_per_list": round(float(np.mean(sizes)), 1)}
    md = {"jobs": (("authorization", "Bearer bench-plain"),),
          "candidates": (("authorization", "Bearer bench-employer"),)}
    out["grpc"] = {}
    try:
        for kind, reqs in (("jobs", jobs), ("candidates", cands)):
            if args.only and kind != args.only:
                continue
            run_load(port, reqs[-50:], 25, 2.0, 1, kind, metadata=md[kind])  # warm-up
            res = run_load(port, reqs[:n], args.qps, args.duration, args.procs, kind,
                           metadata=md[kind])
            res["target_p99_ms"] = 50
            res["meets_target"] = bool(res["p99_ms"] <= 50 and res["error_rate"] == 0)
            out["grpc"]["RecommendJobs" if kind == "jobs" else "RecommendCandidates"] = res
            print(f"bench: {kind} @ {args.qps:.0f} QPS: p50 {res['p50_ms']} ms, "
                  f"p99 {res['p99_ms']} ms, errors {res['error_rate']}", file=sys.stderr)
    finally:
        stop()
    out["when"] = dt.datetime.now().isoformat(timespec="seconds")
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
