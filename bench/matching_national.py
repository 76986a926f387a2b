"""National-day batch benchmark: ``jobrec match`` streamed for 1M active seekers x 250k
postings (k=120, all hard rules, geo shards on Ray), against the float64 GEMM compute bound
measured in the same run. Prints one JSON object.

Reported: total and per-stage seconds (queries, scoring + capped top-k, reasons/추천기준
formatting, Parquet writes), the formatting share, peak RSS of every process of the run (the
driver, the shard actors and the chunk workers, sampled), the exactly-once check of the
output dataset, recommendations outside the desired regions on a 10k-seeker sample (an
independent haversine-free area oracle) and the ratio to the compute bound. Generated data
and its vectors (hashed character n-grams, the benches' deterministic encoder) are cached in
``--data`` (a 1M x 250k world takes about 7 minutes to make).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matching_batch import gemm_rate  # noqa: E402
from core.matching import MatchConfig  # noqa: E402
from core.seekers import areas_of, seeker_text  # noqa: E402
from core.synth import DEFAULT_REF_DATE, generate_postings  # noqa: E402
from core.synth.seekers import generate_seekers  # noqa: E402
from encoding.text import posting_text  # noqa: E402
from workers.jobs.match import region_violations  # noqa: E402
from workers.jobs.match_stream import MatchDataset, StreamConfig, run_match_stream  # noqa: E402
from workers.matching.index import JobIndex  # noqa: E402

_NAMES = ("postings.parquet", "seekers.parquet", "posting_vectors.npy", "seeker_vectors.npy")


def national_world(data: Path | None, n_postings: int, n_seekers: int, seed: int,
                   out: dict, dim: int = 512
                   ) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, np.ndarray]:
    """(postings, seekers, posting vectors, seeker vectors), from ``data`` when it holds them,
    else generated and encoded in chunks (and saved there); ``dim``: the hashed n-gram
    vectors' width."""
    from workers.matching.service import LexicalEncoder

    t0 = time.perf_counter()
    if data is not None and all((data / n).is_file() for n in _NAMES):
        postings, seekers = (pl.read_parquet(data / n) for n in _NAMES[:2])
        pv, sv = (np.load(data / n, mmap_mode="r") for n in _NAMES[2:])
        if pv.shape[1] != dim:
            raise SystemExit(f"{data} holds vectors of dim {pv.shape[1]}, not {dim}")
        # a smaller run on a cached world: its first rows
        postings, pv = postings.head(n_postings), pv[:n_postings]
        seekers, sv = seekers.head(n_seekers), sv[:n_seekers]
        out["data"] = {"cached": str(data), "load_s": round(time.perf_counter() - t0, 1)}
    else:
        postings = generate_postings(n_postings, seed, ref_date=DEFAULT_REF_DATE)
        seekers = generate_seekers(n_seekers, seed, postings=postings, ref_date=DEFAULT_REF_DATE)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        enc = LexicalEncoder(dim)
        pv = _encode(enc, postings, posting_text)
        sv = _encode(enc, seekers, seeker_text)
        out["data"] = {"generate_s": round(gen_s, 1), "encode_s": round(time.perf_counter() - t0, 1)}
        if data is not None:
            data.mkdir(parents=True, exist_ok=True)
            postings.write_parquet(data / _NAMES[0])
            seekers.write_parquet(data / _NAMES[1])
            np.save(data / _NAMES[2], pv)
            np.save(data / _NAMES[3], sv)
    out["data"].update(postings=postings.height, seekers=seekers.height,
                       active_seekers=int(seekers["active"].sum()), dim=int(pv.shape[1]))
    return postings, seekers, pv, sv


def _encode(enc, frame: pl.DataFrame, text, chunk: int = 50_000) -> np.ndarray:
    out = np.empty((frame.height, enc.dim), dtype=np.float32)
    for a in range(0, frame.height, chunk):
        part = frame.slice(a, chunk)
        out[a:a + part.height] = enc.encode([text(r) for r in part.iter_rows(named=True)])
    return out


class PeakRss:
    """Peak resident memory of this process and every process under it (Ray's raylet,
    shard actors, chunk workers), read from /proc (VmHWM) once a second."""

    def __init__(self) -> None:
        self.peaks: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._sample()
        self._stop.set()
        self._t.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def _sample(self) -> None:
        children: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(d))
        todo, mine = [os.getpid()], []
        while todo:
            pid = todo.pop()
            mine.append(pid)
            todo.extend(children.get(pid, []))
        for pid in mine:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()[-60:]
            except OSError:
                continue
            hwm = next((int(x.split()[1]) * 1024 for x in status.splitlines()
                        if x.startswith("VmHWM:")), 0)
            if hwm > self.peaks.get(pid, (0, ""))[0]:
                self.peaks[pid] = (hwm, Path(f"/proc/{pid}/comm").read_text().strip()
                                   if Path(f"/proc/{pid}/comm").exists() else name)

    def report(self) -> dict:
        """The largest peaks, in GB, with the process names."""
        top = sorted(self.peaks.values(), reverse=True)[:6]
        return {"max_gb": round(top[0][0] / 1e9, 2) if top else None,
                "top": [{"process": n, "gb": round(b / 1e9, 2)} for b, n in top]}


def compute_bound(postings: pl.DataFrame, pv: np.ndarray, seekers: pl.DataFrame) -> dict:
    """FLOPs of exact scoring over every (active seeker, posting of its desired regions) pair
    (2 x dim each; no history vectors here) at the float64 GEMM rate measured now."""
    index = JobIndex(postings, np.asarray(pv[:1]).repeat(postings.height, axis=0))
    act = seekers.filter(pl.col("active"))
    combos = act.group_by(pl.col("desired_regions").list.sort()).agg(pl.len().alias("n"))
    pairs = 0
    for regions, n in combos.iter_rows():
        pairs += n * sum(b - a for a, b in index.blocks(areas_of(regions)))
    dim = int(pv.shape[1])
    flops = 2.0 * dim * pairs
    rate = gemm_rate(dim)
    return {"candidate_pairs": int(pairs), "scoring_gflop": round(flops / 1e9, 1),
            "gemm_gflops_measured": round(rate / 1e9, 1), "compute_bound_s": flops / rate}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postings", type=int, default=250_000)
    ap.add_argument("--seekers", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--k", type=int, default=120)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--chunk-seekers", type=int, default=StreamConfig.chunk_seekers)
    ap.add_argument("--in-flight", type=int, default=StreamConfig.in_flight)
    ap.add_argument("--data", type=Path, default=None, help="reuse / save the generated world")
    ap.add_argument("--out", type=Path, default=None,
                    help="the output dataset (default: a temporary directory, removed)")
    ap.add_argument("--oracle-sample", type=int, default=10_000)
    args = ap.parse_args(argv)
    out: dict = {"config": {k: str(v) for k, v in vars(args).items()}}
    postings, seekers, pv, sv = national_world(args.data, args.postings, args.seekers, args.seed,
                                               out)
    import ray

    cfg = MatchConfig(k=args.k, ref_date=DEFAULT_REF_DATE)
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="national-", dir=os.environ.get("TMPDIR"))
        args.out = Path(tmp.name) / "day"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with PeakRss() as rss:
            t0 = time.perf_counter()
            rep = run_match_stream(seekers, postings, sv, pv, cfg, str(args.out),
                                   num_shards=args.shards, use_ray=True,
                                   stream=StreamConfig(chunk_seekers=args.chunk_seekers,
                                                       in_flight=args.in_flight))
            total = time.perf_counter() - t0
    finally:
        ray.shutdown()
    ds = MatchDataset(str(args.out))
    t0 = time.perf_counter()
    active = seekers.filter(pl.col("active"))
    check = ds.verify(active["seeker_id"].to_list())
    check["verify_s"] = round(time.perf_counter() - t0, 1)
    sample = active.sample(min(args.oracle_sample, active.height), seed=args.seed)
    rows = pl.scan_parquet(ds.parts()).filter(
        pl.col("seeker_id").is_in(sample["seeker_id"].implode())).collect()
    bound = compute_bound(postings, pv, seekers)
    st = rep.timings_s
    summed = sum(v for k, v in st.items() if k.endswith("_summed"))
    out["batch"] = {
        "seconds": round(total, 1), "timings_s": {k: round(v, 1) for k, v in st.items()},
        "skipped_chunks": rep.skipped, "chunks": rep.chunks, "active_seekers": rep.seekers,
        "recommendations": rep.rows, "mean_list_len": round(rep.rows / max(rep.seekers, 1), 1),
        "format_share_of_chunk_seconds": round(st.get("chunk_format_summed", 0) / summed, 3)
        if summed else None,
        "output_gb": round(sum(os.path.getsize(p) for p in ds.parts()) / 1e9, 2),
        "peak_rss": rss.report(), "exactly_once": check,
        "oracle_sample": {"seekers": sample.height, "rows": rows.height,
                          "outside_desired_regions": region_violations(rows, sample, postings)},
        **{k: (float(f"{v:.3g}") if k == "compute_bound_s" else v) for k, v in bound.items()},
        "ratio_to_compute_bound": round(total / bound["compute_bound_s"], 1),
        "targets": {"seconds": 1200, "peak_rss_gb": 8, "ratio_to_compute_bound": 5,
                    "format_share": 0.25},
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(out, ensure_ascii=False, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
