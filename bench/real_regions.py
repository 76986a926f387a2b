"""Address resolution on the real corpora: resolved share of the postings naming a place, as JSON.

Each corpus in ``../shared/data/real`` (see its README) is ingested exactly as a user would,
through ``core.ingest.ingest`` with the column map shipped in ``core/ingest/maps``. The
share counts the postings whose address names a place (not blank, 없음, 재택 …) and leaves
out records rejected for other reasons; ``settled_by_batch`` is how many of the resolved
ones only the batch's other postings (same company, street or 동) placed.

Usage: ``python bench/real_regions.py [--real-dir DIR] [--sample]`` (``--sample``: the
repository's samples in tests/fixtures/real instead of the full files).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections import Counter
from pathlib import Path

from core.ingest.columns import load_map
from core.ingest.csv_source import read_csv
from core.ingest.normalise import Normaliser
from core.ingest.pipeline import Ingestor
from core.ingest.region_context import resolution_share

ROOT = Path(__file__).resolve().parents[1]
MAPS = ROOT / "core" / "ingest" / "maps"
CORPORA = {  # name -> (full file, sample file, column map, label column)
    "wanted": ("wanted_job_groups.csv", "wanted_sample.csv", "wanted.json", "job_group"),
    "worknet_list": ("worknet_list_crawl.csv", "worknet_list_sample.csv", "worknet_list.json",
                     "occupation_groups"),
}


def measure(path: Path, column_map: Path, label: str) -> dict:
    """Ingest ``path`` with ``column_map`` and report the resolution figures."""
    spec = load_map(column_map)
    ing = Ingestor(
        normaliser=Normaliser(ref_date=dt.date(2024, 6, 1), defaults=spec.defaults,
                              accept_unclassified=spec.accept_unclassified),
        keep=spec.keep,
    )
    t0 = time.perf_counter()
    for rec in read_csv(path, spec.mapping):
        ing.add(rec)
    res = ing.result()
    share = resolution_share(res.counts, res.rejects)
    unresolved = res.rejects.filter(res.rejects["reason"] == "unknown_region")["detail"]
    kinds = Counter(
        "no place" if d.endswith("names no place")
        else "ambiguous" if "readings: none" not in d else "unknown"
        for d in unresolved
    )
    return {
        "file": str(path),
        **share,
        "settled_by_batch": ing.settled,
        "resolved_alone_share": round((share["resolved"] - ing.settled) / share["places"], 4),
        "rejects_by_kind": dict(sorted(kinds.items())),
        "label_column": label,
        "labels": res.postings[label].n_unique(),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real-dir", type=Path, default=ROOT / ".." / "shared" / "data" / "real")
    ap.add_argument("--sample", action="store_true", help="the repository's samples instead")
    args = ap.parse_args()
    out = {}
    for name, (full, sample, cmap, label) in CORPORA.items():
        path = ROOT / "tests" / "fixtures" / "real" / sample if args.sample else args.real_dir / full
        out[name] = measure(path, MAPS / cmap, label)
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
