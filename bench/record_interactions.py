"""RecordInteractions benchmark: write latency at an offered rate, and read-after-write.

The matching service with an :class:`~workers.matching.interaction_log.InteractionLog` is served by
the real servicer on a port-0 server in this process (as ``bench/matching_serve.py``):

1. open loop: ``--qps`` RecordInteractions per second (one application each, Poisson
   arrivals, separate load processes) for ``--duration`` s, with the log fsynced (what
   ``jobrec serve --interaction-log`` does) and, as the competing approach, unsynced (the
   page cache only: lost with the node). Every acknowledged row must be in the log read
   back from disk and excluded in memory;
2. read after write, closed loop: for ``--checks`` seekers, RecommendJobs, record an
   application to its first posting, RecommendJobs again: the posting must be gone (100%).

Prints one JSON object. ``--data DIR`` reuses the tables of ``bench/matching_serve.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matching_serve import _pcts, encoded_world, serve_in_thread  # noqa: E402
from bench.serve import run_load  # noqa: E402
from core.matching import MatchConfig  # noqa: E402
from core.synth import DEFAULT_REF_DATE  # noqa: E402

KEYS = "bench-plain"
MD = (("authorization", "Bearer bench-plain"),)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postings", type=int, default=20_000)
    ap.add_argument("--seekers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--qps", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--checks", type=int, default=300, help="read-after-write seekers")
    ap.add_argument("--log-dir", type=Path, default=None,
                    help="where the logs go (default: a temporary directory)")
    args = ap.parse_args(argv)
    import grpc

    from server.auth import load_key_scopes
    from server.generated.jobrec.v1 import matching_pb2 as mpb
    from server.generated.jobrec.v1 import matching_pb2_grpc as mpb_grpc
    from server.runtime import settle_for_serving
    from workers.matching.interaction_log import InteractionLog
    from workers.matching.service import MatchService

    out: dict = {"config": {k: str(v) for k, v in vars(args).items()}}
    postings, seekers, inter, pv, sv, enc = encoded_world(args, out)
    root = args.log_dir or Path(tempfile.mkdtemp(prefix="jobrec-il-"))
    service = MatchService(postings, pv, seekers, sv, enc, interactions=inter,
                           config=MatchConfig(ref_date=DEFAULT_REF_DATE),
                           interaction_log=InteractionLog(root / "synced"))
    settle_for_serving()
    port, stop = serve_in_thread(service, load_key_scopes(env={"JOBREC_API_KEYS": KEYS}))
    rng = np.random.default_rng(args.seed)
    active = seekers.filter(pl.col("active"))["seeker_id"].to_numpy()
    ids = postings["posting_id"].to_numpy()
    n = max(50, int(args.qps * args.duration))
    out["open_loop"] = {}
    try:
        for name, fsync in (("fsync", True), ("no_fsync", False)):
            log = InteractionLog(root / name, fsync=fsync)
            service.interaction_log = log
            pairs = list(zip(rng.choice(active, n + 50).tolist(), rng.choice(ids, n + 50).tolist(),
                             strict=True))
            reqs = [mpb.RecordInteractionsRequest(interactions=[mpb.Interaction(
                seeker_id=s, posting_id=p, event="applied")]).SerializeToString()
                for s, p in pairs]
            warm = run_load(port, reqs[-50:], 25, 2.0, 1, "record", metadata=MD)
            res = run_load(port, reqs[:n], args.qps, args.duration, 1, "record", metadata=MD)
            back = InteractionLog(root / name).read()
            acked = warm["codes"].get("OK", 0) + res["codes"].get("OK", 0)
            logged = set(zip(back["seeker_id"].to_list(), back["posting_id"].to_list(),
                             strict=True))
            res["acknowledged_with_warm_up"] = acked
            res["rows_in_log"] = back.height
            res["no_acknowledged_write_lost"] = bool(back.height >= acked)
            res["every_logged_row_excluded"] = all(p in service.excluded.get(s, ())
                                                   for s, p in logged)
            if fsync:
                res["target_p99_ms"] = 20
                res["meets_target"] = bool(res["p99_ms"] <= 20 and res["error_rate"] == 0)
            out["open_loop"][name] = res
            print(f"bench: record ({name}) @ {args.qps:.0f} QPS: p50 {res['p50_ms']} ms, "
                  f"p99 {res['p99_ms']} ms, errors {res['error_rate']}", file=sys.stderr)
        service.interaction_log = InteractionLog(root / "synced")
        write_ms, read_ms, gone, checked = [], [], 0, 0
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = mpb_grpc.MatchingServiceStub(ch)
            for sid in rng.choice(active, args.checks * 3).tolist():
                first = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid), metadata=MD)
                if not first.matches:
                    continue
                top = first.matches[0].posting_id
                t = time.perf_counter()
                stub.RecordInteractions(mpb.RecordInteractionsRequest(interactions=[
                    mpb.Interaction(seeker_id=sid, posting_id=top, event="applied")]),
                    metadata=MD)
                write_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                again = stub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid), metadata=MD)
                read_ms.append((time.perf_counter() - t) * 1000)
                gone += top not in {m.posting_id for m in again.matches}
                checked += 1
                if checked == args.checks:
                    break
        out["read_after_write"] = {"seekers": checked, "excluded_at_once": gone,
                                   "excluded_share": round(gone / max(checked, 1), 4),
                                   "write": _pcts(write_ms), "next_recommend_jobs": _pcts(read_ms)}
    finally:
        stop()
    out["when"] = dt.datetime.now().isoformat(timespec="seconds")
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
