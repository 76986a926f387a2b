"""Learned ranker vs the formula and collaborative baselines, on generated and real behaviour.

Datasets:
- ``generated``: postings and seekers from the generator, 7 days of the hidden-preference
  choice model; the last day's applications are held out, everything before is the log;
- ``kmu``: the real application log (``../shared/data/real/kmu/`` ingested with the shipped
  column maps, ``--kmu DIR`` holding ``kp.parquet``, ``ks.parquet``, ``ki.parquet``); one
  random application per résumé with at least two is held out (seed 0).

Every method ranks the same candidates: the postings that pass the hard rules and that the
seeker has not applied to (the company cap applied to all). Methods: the learned ranker
(``--seeds`` training seeds: min/median/max), the formula, popularity, item-kNN
(co-application cosine), EASE (λ=100), user-kNN (cosine of liked sets), the 4-step walk and
random. Metrics: recall@5, hit@10, hit@120, nDCG@10, coverage; slices: seekers without history (cold seekers) and held-out applications
to postings nobody interacted with before (cold postings). Prints JSON; ``--html`` adds a
report with hit@k curves (k = 1…120). On the KMU log, ``issue_item_knn_anchor`` recomputes the
issue's item-kNN figure over every unseen posting with optimistic ties (a target ranks after
only the postings that score strictly more) and with expected ties (random order among equal
scores): most held-out applications score 0, so the two differ by far.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matching_report import hit_rate_curve  # noqa: E402
from core.collab import CollabModel  # noqa: E402
from core.matching import MatchConfig, jobs_mask  # noqa: E402
from core.ranker import RankerConfig, list_metrics  # noqa: E402
from core.rules import select_top_k  # noqa: E402
from core.seekers import seeker_text  # noqa: E402
from encoding.text import posting_text  # noqa: E402
from workers.jobs.rank import RankWorld  # noqa: E402
from workers.matching.service import LexicalEncoder  # noqa: E402

K = 120


def encode(seekers: pl.DataFrame, postings: pl.DataFrame, dim: int = 512):
    """Content vectors of both sides (hashed character n-grams: deterministic, no model)."""
    enc = LexicalEncoder(dim)
    return (enc.encode([seeker_text(r) for r in seekers.iter_rows(named=True)]),
            enc.encode([posting_text(r) for r in postings.iter_rows(named=True)]))


def baselines(w: RankWorld, log: pl.DataFrame, cfg: MatchConfig, seed: int) -> dict:
    """popularity, item-kNN, EASE and random over each seeker's rule-passing candidates."""
    collab = CollabModel(log)
    qs = w.queries(log)
    codes = collab.codes(w.side.ids.tolist())
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, list[str]]] = {m: {} for m in ("popularity", "item_knn", "ease",
                                                            "walk", "user_knn", "random")}
    step = 256
    for a in range(0, len(qs), step):
        chunk = qs[a:a + step]
        hist = [collab.history.get(q.seeker_id, ()) for q in chunk]
        dense = {m: collab.rank_all(hist, m) for m in ("popularity", "knn", "ease", "walk")}
        for i, q in enumerate(chunk):
            idx = w.index.candidates(q.areas)
            idx = idx[jobs_mask(q, w.side, w.index.areas, idx, cfg)] if idx.size else idx
            if idx.size == 0:
                continue
            c = codes[idx]
            ids, comp = w.side.ids[idx], w.side.company[idx]
            for name, key in (("popularity", "popularity"), ("item_knn", "knn"),
                              ("ease", "ease"), ("walk", "walk")):
                s = np.where(c >= 0, dense[key][i][np.maximum(c, 0)], -1e9).astype(np.float64)
                t = select_top_k(s, ids, comp, cfg.k, cfg.max_per_company)
                out[name][q.seeker_id] = [str(ids[j]) for j in t]
            if hist[i]:
                row = collab.user_knn_row(q.seeker_id, hist[i])
                s = np.where(c >= 0, row[np.maximum(c, 0)], -1e9).astype(np.float64)
            else:
                s = np.full(idx.size, -1e9)
            t = select_top_k(s, ids, comp, cfg.k, cfg.max_per_company)
            out["user_knn"][q.seeker_id] = [str(ids[j]) for j in t]
            t = select_top_k(rng.random(idx.size), ids, comp, cfg.k, cfg.max_per_company)
            out["random"][q.seeker_id] = [str(ids[j]) for j in t]
    return out


def evaluate(name: str, w: RankWorld, log: pl.DataFrame, held: dict[str, set[str]],
             cfg: MatchConfig, seeds: int, rcfg: RankerConfig, train_log: pl.DataFrame) -> dict:
    """All methods on one dataset; the ranker is trained on ``train_log`` (targets split
    inside it) and ranks with the collaborative signals of ``log``."""
    t0 = time.perf_counter()
    collab = CollabModel(log)
    active = set(w.seekers["seeker_id"].to_list())
    held = {s: v for s, v in held.items() if s in active}
    n_items = int((w.side.closes_days >= cfg.ref_days()).sum())
    lists: dict[str, dict[str, list[str]]] = {}
    runs, train_s = [], []
    for seed in range(seeds):
        ranker, m = w.train(train_log, cfg, dataclasses.replace(rcfg, seed=seed))
        train_s.append(m["train_s"])
        got = w.ranked(ranker, log, cfg, rcfg.pool)
        runs.append((list_metrics(got, held, n_items), got, m))
    runs.sort(key=lambda r: r[0]["hit@120"])
    lists["ranker"] = runs[len(runs) // 2][1]
    lists["formula"] = w.ranked(None, log, cfg, rcfg.pool)
    lists.update(baselines(w, log, cfg, 0))
    res: dict = {}
    for m, ls in lists.items():
        res[m] = list_metrics(ls, held, n_items)
    res["ranker_seeds"] = {k: [r[0][k] for r in runs] for k in ("recall@5", "hit@10", "hit@120",
                                                                 "ndcg@10")}
    res["ranker_validation"] = [{k: r[2][k] for k in ("ranker", "formula", "best_iteration")}
                                for r in runs]
    # slices: seekers with no history; held-out applications to never-seen postings
    cold_s = {s: v for s, v in held.items() if s not in collab.history}
    known = set(collab.items.tolist())
    cold_p = {s: {p for p in v if p not in known} for s, v in held.items()}
    cold_p = {s: v for s, v in cold_p.items() if v}
    res["slices"] = {
        "cold_seekers": {m: list_metrics(ls, cold_s) for m, ls in lists.items()},
        "cold_postings": {m: list_metrics(ls, cold_p) for m, ls in lists.items()},
    }
    # the ceiling: held-out applications that pass the hard rules at all
    pos = {p: j for j, p in enumerate(w.side.ids.tolist())}
    ok = 0
    for q in w.queries(log):
        if q.seeker_id in held:
            js = np.array([pos[p] for p in held[q.seeker_id] if p in pos], np.int64)
            ok += bool(js.size and jobs_mask(q, w.side, w.index.areas, js, cfg).any())
    best_cf = max(res["item_knn"]["recall@5"], res["ease"]["recall@5"])
    best_any = max(res[m]["recall@5"] for m in ("item_knn", "ease", "user_knn", "walk"))
    res["summary"] = {
        "held_out_seekers": len(held), "ceiling_hit_rate_rules": round(ok / max(len(held), 1), 4),
        "ranker_recall@5_vs_best_of_knn_ease": round(res["ranker"]["recall@5"] / max(best_cf, 1e-9), 3),
        "ranker_recall@5_vs_best_collaborative": round(res["ranker"]["recall@5"] /
                                                       max(best_any, 1e-9), 3),
        "ranker_hit@120_vs_formula": round(res["ranker"]["hit@120"] /
                                           max(res["formula"]["hit@120"], 1e-9), 3),
        "train_ranker_s": train_s, "seconds": round(time.perf_counter() - t0, 1)}
    ks = list(range(1, K + 1))
    res["curves"] = {m: [round(v, 4) for v in hit_rate_curve(ls, held, ks)]
                     for m, ls in lists.items()}
    print(f"{name}: {json.dumps(res['summary'])}", file=sys.stderr)
    return res


def generated(args) -> dict:
    from core.synth import DEFAULT_REF_DATE, generate_postings
    from core.synth.seekers import generate_interactions, generate_seekers

    ref = DEFAULT_REF_DATE
    postings = generate_postings(args.postings, args.seed, ref_date=ref)
    seekers = generate_seekers(args.seekers, args.seed, postings=postings, ref_date=ref)
    inter = generate_interactions(seekers, postings, args.seed, days=7, ref_date=ref)
    held_day = ref - dt.timedelta(days=1)
    cut = dt.datetime.combine(held_day, dt.time(0))
    log = inter.filter(pl.col("at") < cut)
    held_df = inter.filter((pl.col("at") >= cut) & (pl.col("event") == "applied"))
    held = {s: set(p) for s, p in held_df.group_by("seeker_id").agg("posting_id").iter_rows()}
    sv, pv = encode(seekers, postings)
    w = RankWorld(seekers, postings, sv, pv)
    cfg = MatchConfig(k=K, ref_date=held_day)
    res = evaluate("generated", w, log, held, cfg, args.seeds, RankerConfig(pool=args.pool), log)
    res["data"] = {"postings": postings.height, "seekers": seekers.height,
                   "interactions": inter.height, "held_out_day": str(held_day)}
    return res


def kmu(args) -> dict:
    d = Path(args.kmu)
    postings, seekers = pl.read_parquet(d / "kp.parquet"), pl.read_parquet(d / "ks.parquet")
    inter = pl.read_parquet(d / "ki.parquet")
    app = inter.filter(pl.col("event") == "applied").select("seeker_id", "posting_id").unique() \
        .sort("seeker_id", "posting_id").with_columns(pl.len().over("seeker_id").alias("_n"))
    rng = np.random.default_rng(0)
    app = app.with_columns(pl.Series("_r", rng.random(app.height)))
    test = app.filter(pl.col("_n") >= 2).sort("seeker_id", "_r") \
        .group_by("seeker_id", maintain_order=True).first().select("seeker_id", "posting_id")
    log = inter.join(test, on=["seeker_id", "posting_id"], how="anti")
    held: dict[str, set[str]] = {}
    for s, p in test.iter_rows():
        held.setdefault(s, set()).add(p)
    sv, pv = encode(seekers, postings)
    w = RankWorld(seekers, postings, sv, pv)
    # the source names no company: the company cap cannot apply; no dates: nothing expires
    cfg = MatchConfig(k=K, max_per_company=0, exclude_expired=False)
    res = evaluate("kmu", w, log, held, cfg, args.seeds, RankerConfig(pool=args.pool), log)
    res["issue_item_knn_anchor"] = tie_anchor(log, held, postings["posting_id"].to_list())
    res["data"] = {"postings": postings.height, "seekers": seekers.height,
                   "applications": inter.height, "held_out": test.height}
    return res


def tie_anchor(log: pl.DataFrame, held: dict[str, set[str]], universe: list[str]) -> dict:
    """item-kNN over every posting the seeker has not applied to (no rules), the target's
    rank counted optimistically (1 + postings scoring strictly more) and in expectation over
    a random order of ties: recall@5 and hit@120 both ways."""
    collab = CollabModel(log)
    never = len(set(universe)) - len(collab.items)  # postings nobody liked: they score 0
    opt5 = opt120 = exp5 = exp120 = zero = 0.0
    seekers = [s for s in held if s in collab.history]
    for a in range(0, len(seekers), 256):
        chunk = seekers[a:a + 256]
        dense = collab.rank_all([collab.history[s] for s in chunk], "knn")
        for i, s in enumerate(chunk):
            row = dense[i]
            row[collab.codes(collab.history[s])] = -np.inf  # applied before: not a candidate
            for p in held[s]:
                c = collab.code.get(p, -1)
                t = float(row[c]) if c >= 0 else 0.0
                above = int((row > t).sum())
                # postings with the same score, the target included (unseen ones score 0)
                ties = int((row == t).sum()) + (never if t == 0 else 0)
                zero += t == 0
                opt5 += above < 5
                opt120 += above < 120
                exp5 += min(max((5 - above) / ties, 0.0), 1.0)
                exp120 += min(max((120 - above) / ties, 0.0), 1.0)
    m = max(sum(len(held[s]) for s in seekers), 1)
    exp5, exp120 = float(exp5), float(exp120)
    return {"seekers": len(seekers), "optimistic": {"recall@5": round(opt5 / m, 4),
                                                    "hit@120": round(opt120 / m, 4)},
            "expected_ties": {"recall@5": round(exp5 / m, 4), "hit@120": round(exp120 / m, 4)},
            "held_out_scoring_0": round(zero / m, 4)}


def write_html(out: dict, path: Path) -> Path:
    """Tables and hit@k curves per dataset."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from encoding.quality import png_base64

    parts = ["<html><head><meta charset='utf-8'><title>jobrec ranking benchmark</title>"
             "</head><body><h1>Learned ranker vs formula and collaborative baselines</h1>"]
    for name, res in out["datasets"].items():
        fig, ax = plt.subplots(figsize=(7, 4))
        ks = list(range(1, K + 1))
        for m, c in res["curves"].items():
            ax.plot(ks, c, label=m, lw=2 if m == "ranker" else 1)
        ax.axhline(res["summary"]["ceiling_hit_rate_rules"], ls=":", c="k", lw=1,
                   label="ceiling (passes the rules)")
        ax.set_xlabel("k")
        ax.set_ylabel("hit@k")
        ax.legend(fontsize=8)
        img = png_base64(fig)
        plt.close(fig)
        metrics = ("recall@5", "hit@10", "hit@120", "ndcg@10", "coverage")
        rows = "".join(f"<tr><td>{m}</td>" + "".join(f"<td>{res[m].get(k, '')}</td>"
                                                      for k in metrics) + "</tr>"
                       for m in res["curves"])
        parts += [f"<h2>{html.escape(name)}</h2><table border=1><tr><th>method</th>" +
                  "".join(f"<th>{k}</th>" for k in metrics) + f"</tr>{rows}</table>",
                  f"<img src='data:image/png;base64,{img}'/>",
                  f"<pre>{html.escape(json.dumps(res['summary'], indent=1))}</pre>"]
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postings", type=int, default=20000)
    ap.add_argument("--seekers", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3, help="ranker training seeds")
    ap.add_argument("--pool", type=int, default=RankerConfig.pool)
    ap.add_argument("--kmu", type=Path, default=None,
                    help="directory with the ingested KMU kp/ks/ki.parquet")
    ap.add_argument("--only", choices=("generated", "kmu"), default=None)
    ap.add_argument("--html", type=Path, default=None)
    args = ap.parse_args(argv)
    out: dict = {"config": {k: str(v) for k, v in vars(args).items()}, "datasets": {}}
    if args.only in (None, "generated"):
        out["datasets"]["generated"] = generated(args)
    if args.only in (None, "kmu") and args.kmu is not None:
        out["datasets"]["kmu"] = kmu(args)
    if args.html:
        out["html"] = str(write_html(out, args.html))
    for res in out["datasets"].values():
        res.pop("curves", None) if not args.html else None
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
