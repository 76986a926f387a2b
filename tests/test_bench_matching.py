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


def _bench(name: str, *args: str, timeout: int = 300) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / name), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_batch_bench_reports_the_compute_bound_and_the_scalar_path(tmp_path):
    out = _bench("matching_batch.py", "--postings", "1500", "--seekers", "150", "--days", "2",
                 "--scalar-sample", "20", "--data", str(tmp_path / "d"))
    b = out["batch"]
    assert b["region_violations"] == 0 and b["recommendations"] > 0
    assert b["candidate_pairs"] > 0 and b["compute_bound_s"] > 0
    assert b["ratio_to_compute_bound"] > 0
    assert out["per_seeker_scalar"]["sample"] == 20
    # --data keeps the generated tables: a second run reads them instead of generating
    assert (tmp_path / "d" / "seekers.parquet").is_file()


def test_serve_bench_measures_both_rpcs_through_grpc():
    out = _bench("matching_serve.py", "--postings", "1500", "--seekers", "150", "--days", "2",
                 "--qps", "20", "--duration", "1.5")
    for rpc in ("RecommendJobs", "RecommendCandidates"):
        r = out["grpc"][rpc]
        assert r["error_rate"] == 0 and r["codes"] == {"OK": r["requests"]}
        assert 0 < r["p50_ms"] <= r["p99_ms"]
    assert out["plain_call"]["recommend_jobs"]["calls"] > 0
