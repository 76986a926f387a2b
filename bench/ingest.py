"""Ingestion throughput (rows/s) for Worknet XML, Korean-header CSV and Parquet, as JSON.

The input is the synthetic corpus (``core.synth.generate_postings``), written as Worknet
list + detail XML (``core.synth.write_worknet_xml``), as a CSV export with Korean headers
and occupation names instead of codes, and as canonical Parquet. For each format the full
``core.ingest.ingest`` is timed next to what it competes with:

* XML: whole-file parsing (what ingest does for files up to 64 MiB) against streaming
  ``iterparse`` (what it does above that), and the bare parse without normalisation;
* CSV / Parquet: the bare ``polars`` read, the floor any ingestion pays;
* region resolution: the cached resolver against resolving every string afresh.

Usage: ``python bench/ingest.py [--n 100000] [--seed 0] [--repeat 1]``. Wall and CPU
seconds are both reported: CPU time is steadier on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from core.ingest import ingest, worknet_xml
from core.reference import occupations
from core.regions import RegionResolver, default_resolver
from core.schema import EDUCATION_LEVELS
from core.synth.worknet import EMP_NAMES as EMP_KO
from core.synth.worknet import WAGE_NAMES as WAGE_KO


def _timed(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds of ``repeat`` runs, and the last result."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


def _rate(n: int, wall: float, cpu: float) -> dict[str, float]:
    return {
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "rows_per_s": round(n / wall, 1),
        "rows_per_cpu_s": round(n / cpu, 1),
    }


def korean_csv(df: pl.DataFrame, path: Path) -> None:
    """The corpus as an operator's CSV export: Korean headers, names instead of codes."""
    names = {code: o.name for code, o in occupations().items()}

    def edu(lo: int, hi: int) -> str:
        if lo == 0 and hi == 7:
            return "학력무관"
        if hi == 7:
            return f"{EDUCATION_LEVELS[lo]} 이상"
        return EDUCATION_LEVELS[lo] if lo == hi else f"{EDUCATION_LEVELS[lo]}-{EDUCATION_LEVELS[hi]}"

    def career(kind: str, years: int) -> str:
        if kind == "entry":
            return "신입"
        if kind == "experienced":
            return f"경력 (최소{years}년) 필수" if years else "경력"
        return "관계없음"

    out = df.select(
        pl.col("posting_id").alias("구인인증번호"),
        pl.col("company").alias("회사명"),
        pl.col("title").alias("구인제목"),
        pl.col("description").alias("직무내용"),
        pl.col("occupation_code").replace_strict(names).alias("모집직종"),
        pl.col("region").alias("근무지역"),
        pl.struct("min_education_level", "max_education_level")
        .map_elements(lambda s: edu(s["min_education_level"], s["max_education_level"]),
                      return_dtype=pl.Utf8)
        .alias("학력"),
        pl.struct("career", "min_career_years")
        .map_elements(lambda s: career(s["career"], s["min_career_years"] or 0), return_dtype=pl.Utf8)
        .alias("경력"),
        pl.col("wage_type").replace_strict(WAGE_KO, default=None).alias("임금형태"),
        pl.col("wage_min").alias("최소임금"),
        pl.col("wage_max").alias("최대임금"),
        pl.col("holiday_type").alias("근무형태"),
        pl.col("employment_type").replace_strict(EMP_KO).alias("고용형태"),
        pl.col("registered_on").dt.strftime("%Y-%m-%d").alias("등록일"),
        pl.col("closes_on").dt.strftime("%Y-%m-%d").alias("마감일"),
    )
    out.write_csv(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="postings (default 100000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="best of R runs per measurement")
    args = ap.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        ap.error("--n and --repeat must be >= 1")

    from core.synth import generate_postings, write_worknet_xml

    result: dict[str, object] = {
        "n": args.n,
        "seed": args.seed,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    # indexes are built once per process; time them apart from the per-row work
    w, c, _ = _timed(default_resolver, 1)
    result["region_index_build_s"] = round(w, 3)

    with tempfile.TemporaryDirectory(prefix="jobrec-bench-ingest-") as tmp:
        tmpd = Path(tmp)
        w, c, df = _timed(lambda: generate_postings(args.n, args.seed), 1)
        result["generate"] = _rate(args.n, w, c)
        xml_dir = tmpd / "xml"
        w, c, files = _timed(lambda: write_worknet_xml(df, xml_dir, seed=args.seed), 1)
        result["write_xml"] = {**_rate(args.n, w, c), "files": len(files),
                               "mb": round(sum(p.stat().st_size for p in files) / 1e6, 1)}
        csv_path, pq_path = tmpd / "export.csv", tmpd / "postings.parquet"
        korean_csv(df, csv_path)
        df.write_parquet(pq_path)

        # warm-up (imports, KECO index, first-use caches) on the first list/detail pair, so
        # that no format pays the one-off costs inside its timing
        ingest(files[:2], "worknet-xml")

        # -- XML ------------------------------------------------------------------------
        w, c, res = _timed(lambda: ingest([xml_dir], "worknet-xml"), args.repeat)
        xml = {"ingest": {**_rate(args.n, w, c), "counts": res.counts}}

        def parse_only() -> int:
            # with the GC paused, as ingest does, so only the normalisation differs
            gc.disable()
            try:
                return sum(len(worknet_xml.parse_xml_bytes(p.read_bytes(), str(p))) for p in files)
            finally:
                gc.enable()

        w, c, _ = _timed(parse_only, args.repeat)
        addresses = [
            f"{it.fields.get('basicAddr', '')} {it.fields.get('detailAddr', '')}"
            for p in files if "list" in p.name
            for it in worknet_xml.parse_xml_bytes(p.read_bytes(), str(p))
        ]
        xml["parse_only_no_normalise"] = _rate(args.n, w, c)
        saved = worknet_xml.WHOLE_FILE_BYTES
        worknet_xml.WHOLE_FILE_BYTES = -1  # force the streaming path
        try:
            w, c, res2 = _timed(lambda: ingest([xml_dir], "worknet-xml"), args.repeat)
        finally:
            worknet_xml.WHOLE_FILE_BYTES = saved
        assert res2.postings.equals(res.postings)
        xml["ingest_streaming_iterparse"] = _rate(args.n, w, c)
        result["worknet_xml"] = xml
        xml_postings = res.postings

        # -- CSV ------------------------------------------------------------------------
        w, c, res = _timed(lambda: ingest([csv_path], "csv"), args.repeat)
        result["csv"] = {
            "ingest": {**_rate(args.n, w, c), "counts": res.counts},
            "polars_read_csv_only": _rate(
                args.n, *_timed(lambda: pl.read_csv(csv_path, infer_schema_length=0), args.repeat)[:2]
            ),
        }

        # -- Parquet --------------------------------------------------------------------
        w, c, res = _timed(lambda: ingest([pq_path], "parquet"), args.repeat)
        result["parquet"] = {
            "ingest": {**_rate(args.n, w, c), "counts": res.counts},
            "polars_read_parquet_only": _rate(
                args.n, *_timed(lambda: pl.read_parquet(pq_path), args.repeat)[:2]
            ),
        }

    # -- region resolution: cached vs uncached ----------------------------------------------
    texts = xml_postings["region"].to_list() + addresses
    fresh = RegionResolver()
    w, c, _ = _timed(lambda: [fresh._resolve(t) for t in texts], 1)  # no cache
    uncached = _rate(len(texts), w, c)
    cached_resolver = RegionResolver()
    w, c, _ = _timed(lambda: [cached_resolver.resolve(t) for t in texts], 1)
    result["region_resolution"] = {
        "strings": len(texts),
        "distinct": len(set(texts)),
        "uncached": uncached,
        "cached": _rate(len(texts), w, c),
    }
    result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
