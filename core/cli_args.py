"""Argument types shared by the ``register(subparsers)`` modules of every package."""

from __future__ import annotations

import argparse
import datetime as dt


def iso_date(text: str) -> dt.date:
    """argparse ``type=`` for a YYYY-MM-DD date, with a readable usage error."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def add_store_args(p: argparse.ArgumentParser) -> None:
    """``--store`` / ``--store-endpoint``, defaulting to JOBREC_STORE / JOBREC_STORE_ENDPOINT
    (how the Kubernetes manifests configure the store once for every container)."""
    import os

    p.add_argument(
        "--store", default=os.environ.get("JOBREC_STORE") or None,
        help="shard store: a local path or s3://bucket/prefix (default: $JOBREC_STORE)",
    )  # fmt: skip
    p.add_argument(
        "--store-endpoint", default=os.environ.get("JOBREC_STORE_ENDPOINT") or None,
        help="S3-compatible endpoint, e.g. http://minio:9000 (default: $JOBREC_STORE_ENDPOINT)",
    )  # fmt: skip
