"""Fault bench: steady load through two frontends on a multi-node local Ray cluster, then a
shard actor killed, a worker node removed, a frontend killed and a refresh switch-over.

The cluster is ``ray.cluster_utils.Cluster`` (a head and ``--nodes`` worker raylets on this
machine); the shards are detached named actors in one Ray namespace that both frontends
(two ``JobrecServer`` processes-in-threads, each its own gRPC port and backend handle)
serve; the shard store is a local directory (``--store`` for another, e.g. ``s3://…``).

Load: ``--qps`` reads over gRPC, half SimilarPostings by id and half RecommendJobs of a
random seeker (matching answered by named match shard actors that both frontends share,
``jobrec serve --match-root``), round-robin over the live frontends (a caller that gets
UNAVAILABLE from one frontend tries the other, as a load balancer would), plus ``--ups``
acknowledged upserts per second through the frontends' backends and ``--records``
acknowledged RecordInteractions (an application each) per second through their gRPC
MatchingService.

Per fault the JSON report has: errors by status code while it lasted, time to full
recovery (until the end of the last call that failed or took over ``--slow-s``; health must
be SERVING afterwards), read latency p50/p99, acknowledged upserts lost (must be 0: each acknowledged id is
read back afterwards), acknowledged applications lost (must be 0: each is in the shards' logs
and excluded from that seeker's RecommendJobs afterwards) and whether the answers equal an exact brute force (the oracle of
``tests/test_retrieval_oracle.py`` over the postings the store holds) for ``--check``
queries. A timeline plot (latency and errors over time, faults marked) is written beside.

    python bench/faults.py --quick            # small sizes, ~2 min
    python bench/faults.py --out bench/out/faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class Load:
    """Open-loop reads over gRPC and acknowledged upserts, recorded on one timeline."""

    def __init__(self, frontends: list, ids: list[str], qps: float, ups: float, seed: int = 0,
                 seekers: list[str] = (), records: float = 0.0):
        self.frontends = frontends  # [Frontend], some may be down
        self.ids, self.seekers = ids, list(seekers)
        self.qps, self.ups, self.records = qps, ups, records
        self.applied: list[tuple[str, str]] = []  # acknowledged RecordInteractions
        # (sent at, kind, code, latency_s): times are send times, so a slow or failed call
        # is placed where it began
        self.events: list[tuple[float, str, str, float]] = []
        self.acked: list[str] = []
        self._stop = threading.Event()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def _record(self, kind: str, code: str, latency: float) -> None:
        with self._lock:
            self.events.append((time.monotonic() - latency - self.t0, kind, code, latency))

    def _read_once(self, i: int) -> None:
        import grpc

        from server.generated.jobrec.v1 import matching_pb2 as mpb
        from server.generated.jobrec.v1 import recommendation_pb2 as pb

        jobs = bool(self.seekers) and i % 2 == 1
        if jobs:
            sid = self.seekers[self._rng.randrange(len(self.seekers))]
        else:
            pid = self.ids[self._rng.randrange(len(self.ids))]
        live = [f for f in self.frontends if f.up]
        t = time.monotonic()
        code = "UNAVAILABLE"
        for f in (live[i % len(live) :] + live[: i % len(live)]) if live else []:
            try:
                if jobs:
                    f.mstub.RecommendJobs(mpb.RecommendJobsRequest(seeker_id=sid, k=20), timeout=5)
                else:
                    f.stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=pid, k=5),
                                           timeout=5)
                code = "OK"
                break
            except grpc.RpcError as exc:
                code = exc.code().name
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    break  # only UNAVAILABLE is worth another frontend
        self._record("jobs" if jobs else "read", code, time.monotonic() - t)

    def _applications(self) -> None:
        import grpc

        from server.generated.jobrec.v1 import matching_pb2 as mpb

        rng = random.Random(7)
        i, start = 0, time.monotonic()
        while not self._stop.is_set():
            pause = start + i / self.records - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sid, pid = rng.choice(self.seekers), rng.choice(self.ids)
            live = [f for f in self.frontends if f.up]
            t = time.monotonic()
            code = "UNAVAILABLE"
            for f in live[i % max(1, len(live)) :] + live[: i % max(1, len(live))]:
                try:
                    f.mstub.RecordInteractions(mpb.RecordInteractionsRequest(interactions=[
                        mpb.Interaction(seeker_id=sid, posting_id=pid, event="applied")]),
                        timeout=10)
                    code = "OK"
                    with self._lock:
                        self.applied.append((sid, pid))
                    break
                except grpc.RpcError as exc:
                    code = exc.code().name
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        break
            self._record("record", code, time.monotonic() - t)
            i += 1

    def _reads(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            i, start = 0, time.monotonic()
            while not self._stop.is_set():
                due = start + i / self.qps
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                pool.submit(self._read_once, i)
                i += 1

    def _writes(self, df, vec) -> None:
        rng = np.random.default_rng(1)
        i, start = 0, time.monotonic()
        while not self._stop.is_set():
            pause = start + i / self.ups - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            row = df[i % df.height : i % df.height + 1]
            pid = f"U{i:06d}"
            new = row.with_columns(
                row["posting_id"].map_elements(lambda _p, v=pid: v, return_dtype=str)
            )
            live = [f for f in self.frontends if f.up]
            t = time.monotonic()
            code = "UNAVAILABLE"
            for f in live[i % max(1, len(live)) :] + live[: i % max(1, len(live))]:
                try:
                    f.backend.upsert(new, rng.standard_normal((1, vec.shape[1])).astype(np.float32))
                    code = "OK"
                    with self._lock:
                        self.acked.append(pid)
                    break
                except Exception as exc:  # noqa: BLE001  (counted by type)
                    code = type(exc).__name__
            self._record("upsert", code, time.monotonic() - t)
            i += 1

    def start(self, df, vec) -> None:
        self.threads = [
            threading.Thread(target=self._reads, daemon=True),
            threading.Thread(target=self._writes, args=(df, vec), daemon=True),
        ]
        if self.seekers and self.records:
            self.threads.append(threading.Thread(target=self._applications, daemon=True))
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def now(self) -> float:
        return time.monotonic() - self.t0


class Frontend:
    """One gRPC frontend over the shared shards (``up`` while it serves)."""

    def __init__(self, store, namespace: str, match: tuple[str, list[str]] | None = None) -> None:
        """``match``: (deployment root, actor names) of the matching shards to serve."""
        self.store, self.namespace, self.match = store, namespace, match
        self.up = False
        self.start()

    def start(self) -> None:
        import grpc

        from server.app import BackgroundServer, JobrecServer, ServerConfig
        from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc
        from server.runtime import build_backend
        from tests.test_retrieval_oracle import REF

        self.backend, rules = build_backend(None, None, ref_date=REF, store=self.store, shared=True)
        self.matching = None
        if self.match is not None:  # stateless: the plan and actor handles only
            from core.matching import MatchConfig
            from workers.matching.deployment import read_plan
            from workers.matching.frontend import ShardedMatchService
            from workers.matching.shard_actors import RayShardCalls, find_match_shards

            root, names = self.match
            self.matching = ShardedMatchService(RayShardCalls(find_match_shards(names), names=names),
                                                read_plan(root), None, MatchConfig(ref_date=REF))
        self.server = JobrecServer(
            self.backend, None, rules, ServerConfig(port=0, health_interval_s=0),
            matching=self.matching,
        )
        self.bg = BackgroundServer(self.server)
        self.port = self.bg.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.RecommendationServiceStub(self.channel)
        from server.generated.jobrec.v1 import matching_pb2_grpc as mpb_grpc

        self.mstub = mpb_grpc.MatchingServiceStub(self.channel)
        self.up = True

    def kill(self) -> None:
        self.up = False
        self.channel.close()
        self.bg.stop(grace=0)

    def healthy(self) -> bool:
        return self.bg.call(self.server.check_backend(), timeout=60)


def _recovered_at(load: Load, since: float, until: float, slow_s: float) -> float:
    """When the fault stopped showing: the end of the last call sent in [since, until] that
    failed or took longer than ``slow_s`` (``since`` itself when none did)."""
    ends = [
        t + lat for t, _k, c, lat in load.events
        if since <= t <= until and (c != "OK" or lat > slow_s)
    ]  # fmt: skip
    return max(ends, default=since)


def _exactness(store, backend, n: int, seed: int) -> dict:
    """Answers for ``n`` random ids vs the brute-force oracle over the store's postings."""
    from core.rules import RuleConfig
    from tests.test_retrieval_oracle import REF, oracle, unit_rows
    from workers.store.generation import read_frame

    df, vec, _ = read_frame(store)
    rows, unit = df.to_dicts(), unit_rows(vec)
    rules = RuleConfig(ref_date=REF)
    rng = random.Random(seed)
    same = 0
    picks = rng.sample(range(len(rows)), min(n, len(rows)))
    for i in picks:
        want, _ = oracle(rows, unit, i, rules, 5)
        got = [(r.posting_id, r.score) for r in backend.similar(rows[i]["posting_id"], 5, rules)]
        same += [p for p, *_ in want] == [p for p, _ in got] and np.allclose(
            [s for _, s, _ in want], [s for _, s in got], atol=1e-5
        )
    return {"checked": len(picks), "equal": same}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--postings", type=int, default=3000)
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--nodes", type=int, default=3, help="worker raylets besides the head")
    p.add_argument("--qps", type=float, default=100.0)
    p.add_argument("--ups", type=float, default=10.0)
    p.add_argument("--seekers", type=int, default=400, help="seekers in the match shards")
    p.add_argument("--records", type=float, default=10.0,
                   help="RecordInteractions (one application each) per second")
    p.add_argument("--steady-s", type=float, default=10.0, help="load before the first fault")
    p.add_argument("--fault-s", type=float, default=20.0, help="observation window per fault")
    p.add_argument(
        "--slow-s", type=float, default=0.5,
        help="a call slower than this still counts as the fault showing (recovery time)",
    )  # fmt: skip
    p.add_argument("--check", type=int, default=50, help="queries checked against brute force")
    p.add_argument("--store", default=None, help="store URI (default: a temporary directory)")
    p.add_argument("--out", type=Path, default=Path("bench/out/faults.json"))
    p.add_argument("--quick", action="store_true", help="small sizes (CI / a busy machine)")
    args = p.parse_args(argv)
    if args.quick:
        args.postings, args.qps, args.ups, args.seekers, args.records = 600, 20.0, 4.0, 150, 4.0
        args.steady_s, args.fault_s, args.check, args.nodes = 4.0, 12.0, 20, 2
    return run(args)


def run(args) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from server.runtime import build_backend
    from tests.test_retrieval_oracle import REF, make_postings
    from workers.jobs.refresh import run_refresh, write_vectors
    from workers.store.generation import open_store

    tmp = Path(tempfile.mkdtemp(prefix="jobrec-faults-"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(args.nodes)]
    cluster.wait_for_nodes()
    namespace = "jobrec-faults"
    ray.init(address=cluster.address, namespace=namespace, log_to_driver=False)
    store = open_store(args.store or str(tmp / "store"))
    df, vec = make_postings(3, args.postings, spread_deg=1.0, n_companies=50)
    seed_backend, _ = build_backend(
        df, vec, shards=args.shards, ref_date=REF, store=store, shared=True
    )
    from core.synth.seekers import generate_seekers
    from workers.matching.deployment import write_deployment
    from workers.matching.shard_actors import match_shard_names, start_match_shards
    from workers.matching.sharded import AreaPlan

    seekers = generate_seekers(args.seekers, 3, postings=df, ref_date=REF)
    svec = np.random.default_rng(3).standard_normal((seekers.height, vec.shape[1])).astype(np.float32)
    svec /= np.linalg.norm(svec, axis=1, keepdims=True)
    match_root = write_deployment(tmp / "match", AreaPlan.build(df, args.shards), df, vec,
                                  seekers, svec)
    names = match_shard_names("jobrec-faults-match", args.shards)
    start_match_shards(str(match_root), args.shards, names=names)
    match = (str(match_root), names)
    frontends = [Frontend(store, namespace, match), Frontend(store, namespace, match)]
    load = Load(frontends, df["posting_id"].to_list(), args.qps, args.ups,
                seekers=seekers.filter(seekers["active"])["seeker_id"].to_list(),
                records=args.records)
    faults: list[dict] = []
    load.start(df, vec)
    time.sleep(args.steady_s)

    def observe(name: str, inject) -> None:
        t = load.now()
        detail = inject()
        end = t + args.fault_s
        while load.now() < end:
            time.sleep(0.25)
        healthy = all(f.healthy() for f in frontends if f.up)
        window = [(k, c) for tt, k, c, _ in load.events if t <= tt <= end]
        lat = [x for tt, k, c, x in load.events if t <= tt <= end and k == "read" and c == "OK"]
        rec = _recovered_at(load, t, end, args.slow_s)
        faults.append({
            "fault": name, "at_s": round(t, 2), "detail": detail,
            "errors_by_code": dict(Counter(c for k, c in window if c != "OK")),
            "reads": sum(1 for k, _ in window if k == "read"),
            "upserts_acked": sum(1 for k, c in window if k == "upsert" and c == "OK"),
            "recovery_s": round(rec - t, 2),
            "read_ms_p50_p99": [round(float(np.percentile(lat, q)) * 1000, 1) for q in (50, 99)]
            if lat else None,
            "healthy_after": healthy,
        })  # fmt: skip

    def kill_actor():
        st = frontends[0].backend.shard_stats()[0]
        os.kill(st["pid"], signal.SIGKILL)
        return {"shard": 0, "pid": st["pid"]}

    def remove_node():
        # the node hosting most shard actors (never the head: it has no CPUs)
        hosts = Counter(
            a["Address"]["NodeID"]
            for a in ray._private.state.actors().values()  # noqa: SLF001
            if a["State"] == "ALIVE" and a["ActorClassName"].endswith("Shard")
        )
        victim = next(w for w in workers if w.node_id == hosts.most_common(1)[0][0])
        cluster.remove_node(victim)
        workers.remove(victim)
        return {"node": victim.node_id[:12], "shards_there": hosts.most_common(1)[0][1]}

    def kill_match_shard():
        st = frontends[0].matching.stats()[0]
        os.kill(st["pid"], signal.SIGKILL)
        return {"match_shard": 0, "pid": st["pid"]}

    def kill_frontend():
        frontends[0].kill()
        return {"frontend": 0}

    def refresh():
        export = tmp / "export.parquet"
        df.write_parquet(export)
        write_vectors(tmp / "vec.parquet", df["posting_id"].to_list(), vec)
        report = run_refresh(
            export, None, tmp / "recs.parquet", k=5, ref_date=REF, num_shards=args.shards,
            vectors_path=tmp / "vec.parquet", progress=False, store=store,
        )  # fmt: skip
        for f in frontends:
            if f.up:
                f.healthy()  # the health loop's switch-over, now
        return {
            "generation": report.generation, "carried_writes": report.carried_writes,
            "frontends_serve": [f.backend.generation for f in frontends if f.up],
        }  # fmt: skip

    try:
        observe("kill shard actor", kill_actor)
        observe("kill match shard actor", kill_match_shard)
        observe("remove worker node", remove_node)
        observe("kill frontend", kill_frontend)
        frontends[0].start()  # back for the refresh
        observe("refresh switch-over", refresh)
    finally:
        load.stop()
    live = next(f for f in frontends if f.up)
    lost = [pid for pid in load.acked if not _has(live.backend, pid)]
    lost_applied = _applications_lost(live.matching, match_root, load.applied)
    exact = _exactness(store, live.backend, args.check, seed=5)
    report = {
        "postings": args.postings, "shards": args.shards, "worker_nodes": args.nodes,
        "offered_qps": args.qps, "offered_upserts_per_s": args.ups,
        "faults": faults, "acknowledged_upserts": len(load.acked),
        "acknowledged_upserts_lost": len(lost), "exact_after_recovery": exact,
        "seekers": seekers.height, "offered_applications_per_s": args.records,
        "acknowledged_applications": len(load.applied),
        "acknowledged_applications_lost": lost_applied,
        "errors_total": dict(Counter(c for _, _, c, _ in load.events if c != "OK")),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    _plot(load, faults, args.out.with_suffix(".png"))
    print(json.dumps(report, indent=1))
    for f in frontends:
        if f.up:
            f.kill()
    seed_backend.shutdown()
    live.matching.calls.close()
    ray.shutdown()
    cluster.shutdown()
    return 0 if not lost and not lost_applied and exact["equal"] == exact["checked"] else 1


def _applications_lost(matching, root: Path, applied: list[tuple[str, str]]) -> int:
    """Acknowledged applications missing from the shards' logs or still recommended."""
    from workers.matching.interaction_log import read_interactions

    log = read_interactions(root / "interactions")
    logged = set(log.filter(log["event"] == "applied").select("seeker_id", "posting_id").rows())
    lost = 0
    for sid, pid in applied:
        shown = {m.item_id for m in matching.recommend_jobs(seeker_id=sid, k=120)}
        lost += (sid, pid) not in logged or pid in shown
    return lost


def _has(backend, pid: str) -> bool:
    from core.errors import NotFoundError

    try:
        backend.get(pid)
        return True
    except NotFoundError:
        return False


def _plot(load: Load, faults: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    ok = [(t, lat * 1000) for t, k, c, lat in load.events if k == "read" and c == "OK"]
    bad = [(t, c) for t, k, c, _ in load.events if c != "OK"]
    if ok:
        ax1.scatter(*zip(*ok, strict=True), s=2, label="read latency (ms)")
    ax1.set_yscale("log")
    ax1.set_ylabel("read latency, ms")
    buckets = Counter((int(t), c) for t, c in bad)
    for code in sorted({c for _, c in bad}):
        xs = sorted(b for b, c in buckets if c == code)
        ax2.bar(xs, [buckets[(x, code)] for x in xs], width=0.9, label=code)
    ax2.set_ylabel("errors per second")
    ax2.set_xlabel("seconds")
    for f in faults:
        for ax in (ax1, ax2):
            ax.axvline(f["at_s"], color="red", lw=0.8)
        ax1.text(f["at_s"], ax1.get_ylim()[1], f["fault"], rotation=90, va="top", fontsize=7)
    if bad:
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
