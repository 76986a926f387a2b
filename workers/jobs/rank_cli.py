"""``jobrec train-ranker``: fit the learned ranker on the interaction log, gate and publish it.

The daily retraining is this command (k8s/ranker-raycronjob.yaml runs it): a new version is
written under ``--out`` and serves (``CURRENT``) only if its validation hit@120 is not below
the serving version's on the same validation seekers; frontends started with
``jobrec serve --ranker OUT`` switch to it without a restart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli_args import iso_date
from core.matching import MatchConfig
from core.ranker import RankerConfig

_M, _R = MatchConfig(), RankerConfig()


def register(subparsers) -> None:
    """Add the ``train-ranker`` sub-command."""
    p = subparsers.add_parser(
        "train-ranker", help="train the learned ranker on the application log",
        description="Fit LightGBM lambdarank over the rule-passing candidates of every seeker "
        "with a target application (the last days of a log with times, else one held-out "
        "application per seeker); write a version under OUT/versions/ and promote it to "
        "OUT/CURRENT unless its validation hit@120 is below the serving version's.")
    p.add_argument("--seekers", required=True, type=Path, help="canonical seekers (Parquet)")
    p.add_argument("--postings", required=True, type=Path, help="canonical postings")
    p.add_argument("--interactions", required=True, type=Path,
                   help="canonical interaction log (jobrec ingest --kind interactions), or "
                        "the --interaction-log directory of jobrec serve")
    p.add_argument("--model", required=True, type=Path, help="trained encoder directory")
    p.add_argument("--out", required=True, type=Path, help="ranker directory (versions, CURRENT)")
    p.add_argument("--ref-date", type=iso_date, default=None, metavar="YYYY-MM-DD",
                   help="reference date of a log without times (default today)")
    p.add_argument("--max-per-company", type=int, default=_M.max_per_company)
    p.add_argument("--keep-expired", action="store_true",
                   help="postings past their deadline stay candidates (a log of closed postings)")
    p.add_argument("--pool", type=int, default=_R.pool, help="candidates per seeker ranked")
    p.add_argument("--rounds", type=int, default=_R.rounds, help="most boosting rounds")
    p.add_argument("--windows", type=int, default=_R.windows,
                   help="days of a timed log whose applications are training targets (a log "
                        "without times: random hold-outs)")
    p.add_argument("--fresh-slots", type=int, default=_R.fresh_slots,
                   help="places of each list kept for postings nobody applied to yet "
                        "(default: chosen on the validation seekers)")
    p.add_argument("--seed", type=int, default=_R.seed)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Encode, train, measure the serving version on the same validation seekers, publish."""
    import time

    from core.errors import InvalidInputError
    from workers.jobs.match_cli import encode_sides, read_inputs
    from workers.jobs.rank import RankWorld
    from workers.matching.ranker_store import current_version, load_ranker, publish

    try:
        cfg = MatchConfig(max_per_company=args.max_per_company, ref_date=args.ref_date,
                          exclude_expired=not args.keep_expired)
        rcfg = RankerConfig(pool=args.pool, rounds=args.rounds, windows=args.windows,
                            fresh_slots=args.fresh_slots, seed=args.seed)
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="config") from None
    seekers, postings, inter = read_inputs(args)
    incumbent = None
    if current_version(args.out) is not None:
        try:
            incumbent = load_ranker(args.out)
        except InvalidInputError as exc:  # another feature version: it cannot be compared
            print(f"serving version not comparable: {exc}", file=sys.stderr)
    t0 = time.perf_counter()
    sv, pv = encode_sides(args.model, seekers, postings)
    print(f"encoded {postings.height} postings, {seekers.height} seekers "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    ranker, metrics = RankWorld(seekers, postings, sv, pv).train(inter, cfg, rcfg, incumbent)
    decision = publish(args.out, ranker, metrics.get("incumbent"))
    summary = {k: metrics[k] for k in ("ranker", "formula", "untrained", "incumbent",
                                       "best_iteration", "train_groups", "valid_groups",
                                       "train_s") if k in metrics}
    print(json.dumps({"metrics": summary, "decision": decision}, ensure_ascii=False, indent=1))
    print(("promoted: " if decision["promoted"] else "kept aside: ") + decision["reason"],
          file=sys.stderr)
    return 0
