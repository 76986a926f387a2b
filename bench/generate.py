"""Throughput of the synthetic corpus generator and its Worknet XML writer (rows/s, JSON).

Run with no arguments: ``python bench/generate.py``. The XML writer assembles escaped
strings; the same documents serialised by ``xml.etree.ElementTree`` are timed alongside as
the competing approach.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--xml-rows", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from core.synth import generate_postings, write_worknet_xml
    from core.synth.occupations import popularity
    from core.synth.places import places

    t = time.perf_counter()
    popularity(), places()  # reference tables load once per process
    warm = time.perf_counter() - t
    out: dict = {"python": platform.python_version(), "reference_load_s": round(warm, 3),
                 "generate": {}}
    df = None
    for n in args.sizes:
        t = time.perf_counter()
        df = generate_postings(n, args.seed)
        s = time.perf_counter() - t
        out["generate"][str(n)] = {"seconds": round(s, 2), "rows_per_s": round(n / s)}
    assert df is not None
    sub = df.head(args.xml_rows)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        paths = write_worknet_xml(sub, Path(tmp) / "x", per_file=1000)
        s = time.perf_counter() - t
        size = sum(p.stat().st_size for p in paths)
        out["xml_write"] = {"rows": sub.height, "seconds": round(s, 2),
                            "rows_per_s": round(sub.height / s), "mb": round(size / 1e6, 1)}
        trees = [ET.parse(p) for p in paths]
        t = time.perf_counter()
        for i, tree in enumerate(trees):
            tree.write(Path(tmp) / f"etree_{i}.xml", encoding="utf-8", xml_declaration=True)
        s_et = time.perf_counter() - t
        out["xml_write_etree_serialise_only"] = {
            "rows": sub.height, "seconds": round(s_et, 2), "rows_per_s": round(sub.height / s_et),
            "note": "ElementTree serialisation of already-built trees (no field assembly)",
        }
    print(json.dumps(out, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
