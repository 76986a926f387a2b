"""The HTML report of ``bench/matching.py``: quality bars, hit-rate@k curves, batch and latency.

Kept apart from the benchmark so the measuring code stays short; it only reads the JSON the
benchmark prints plus the hit-rate curves computed from the same lists.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

METRICS = ("hit_rate", "recall", "ndcg", "coverage")


def hit_rate_curve(lists: Mapping[str, Sequence[str]], held: Mapping[str, set[str]],
                   ks: Sequence[int]) -> list[float]:
    """Share of seekers with a held-out application among their first ``k``, for each k."""
    if not held:
        return [0.0 for _ in ks]
    # the rank of each seeker's first relevant posting (inf: none in the list)
    first = np.array([next((i for i, p in enumerate(lists.get(s, ())) if p in truth), np.inf)
                      for s, truth in held.items()])
    return [float(np.mean(first < k)) for k in ks]


def _table(rows: list[tuple], head: tuple[str, ...]) -> str:
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return ("<table border=1 cellpadding=3><tr>" + "".join(f"<th>{h}</th>" for h in head)
            + f"</tr>{body}</table>")


def write_html(out: Mapping, curves: Mapping[str, Sequence[float]], ks: Sequence[int],
               path: str | Path) -> Path:
    """Write the report of one benchmark run (``out``: its JSON; ``curves``: method ->
    hit-rate at each of ``ks``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from encoding.quality import png_base64

    quality = out["quality"]
    methods = [m for m in quality if isinstance(quality[m], dict)]
    fig, ax = plt.subplots(1, 2, figsize=(13, 4.2))
    width = 0.8 / len(methods)
    x = np.arange(len(METRICS))
    for i, m in enumerate(methods):
        ax[0].bar(x + i * width, [quality[m][k] for k in METRICS], width, label=m)
    ax[0].set_xticks(x + width * (len(methods) - 1) / 2, METRICS)
    ax[0].set_title(f"held-out day, k={out['config']['k']}")
    ax[0].legend(fontsize=8)
    for m, c in curves.items():
        ax[1].plot(ks, c, label=m, lw=2 if m == "jobrec" else 1)
    ax[1].axhline(quality["ceiling_hit_rate_eligible"], ls=":", c="k", lw=1,
                  label="ceiling (application passes the hard rules)")
    ax[1].set_xlabel("k (list length)")
    ax[1].set_ylabel("hit-rate@k")
    ax[1].legend(fontsize=8)
    img = png_base64(fig)
    plt.close(fig)
    rows = [(m, *[quality[m][k] for k in METRICS], quality[m].get("region_violations", ""))
            for m in methods]
    d = out["data"]
    parts = [
        "<html><head><meta charset='utf-8'><title>jobrec matching benchmark</title></head><body>",
        "<h1>Jobs for job seekers: held-out applications</h1>",
        f"<p>{d['postings']} postings, {d['seekers']} seekers, {d['interactions']} interactions; "
        f"held-out day {html.escape(d['held_out_day'])} "
        f"({d['seekers_with_held_out_application']} seekers applied that day). "
        f"jobrec / rule baseline hit-rate: <b>{quality['hit_rate_ratio_vs_rule']:.2f}×</b>.</p>",
        _table(rows, ("method", *METRICS, "outside desired regions")),
        f"<img src='data:image/png;base64,{img}'/>",
    ]
    for section in ("batch", "online_in_process_ms"):
        if section in out:
            parts.append(f"<h2>{section}</h2><pre>{html.escape(json.dumps(out[section], indent=1))}</pre>")
    parts.append(f"<h2>configuration</h2><pre>{html.escape(json.dumps(out['config'], indent=1))}</pre>")
    parts.append("</body></html>")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(parts), encoding="utf-8")
    return p
