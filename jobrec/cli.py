"""The ``jobrec`` command: one sub-command per job, each registered by its own package.

Each package exposes ``register(subparsers)`` in its ``cli`` module and sets ``func`` on its
parser; heavy imports (torch, ray) happen inside the command, so ``jobrec --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from core.errors import JobrecError

# (module, what it provides) in the order sub-commands are listed in --help
_REGISTRARS: tuple[str, ...] = (
    "jobrec.demo",  # demo
    "core.synth.cli",  # generate
    "core.ingest.cli",  # ingest
    "training.cli",  # train
    "encoding.cli",  # evaluate
    "workers.jobs.refresh_cli",  # refresh
    "workers.jobs.match_cli",  # match
    "workers.jobs.rank_cli",  # train-ranker
    "server.cli",  # serve
    "server.deploy_cli",  # match-deploy
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command."""
    from jobrec import __version__

    parser = argparse.ArgumentParser(
        prog="jobrec",
        description="Job-posting recommendations for Worknet/Work24 postings.",
    )
    parser.add_argument("--version", action="version", version=f"jobrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _REGISTRARS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jobrec`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # commands print their own progress; library INFO chatter stays off the terminal
    # (-v shows everything; `jobrec serve` configures its own JSON logs)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except JobrecError as exc:
        print(f"jobrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jobrec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
