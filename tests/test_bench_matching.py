"""bench/matching.py end to end at a small size (JSON + HTML report) and its hit-rate curve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.matching_report import hit_rate_curve  # noqa: E402


def test_hit_rate_curve_counts_the_first_relevant_rank():
    lists = {"a": ["p1", "p2", "p3"], "b": ["p9", "p8"], "c": []}
    held = {"a": {"p3"}, "b": {"p9", "p7"}, "c": {"p1"}}
    # a: first hit at rank 3; b: at rank 1; c: none
    assert hit_rate_curve(lists, held, [1, 2, 3, 10]) == [1 / 3, 1 / 3, 2 / 3, 2 / 3]
    assert hit_rate_curve(lists, {}, [1, 5]) == [0.0, 0.0]


def test_matching_bench_prints_json_and_writes_the_report(tmp_path):
    report = tmp_path / "matching.html"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "matching.py"), "--postings", "2000", "--seekers",
         "200", "--latency-queries", "10", "--html", str(report)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    q = out["quality"]
    assert q["jobrec"]["region_violations"] == 0
    for m in ("jobrec", "rule_baseline", "random_eligible"):
        assert 0.0 <= q[m]["ndcg"] <= 1.0 and 0.0 <= q[m]["hit_rate"] <= 1.0
    for m in ("jobrec", "random_eligible"):  # both keep to the hard rules: never above the ceiling
        assert q[m]["hit_rate"] <= q["ceiling_hit_rate_eligible"] + 1e-9
    text = report.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 1 and "hit-rate" in text
    assert out["html"] == str(report)
