"""Durability of one collection of a shard: a base snapshot plus an append-only log.

Layout under ``directory``: ``base.parquet`` (+ ``base.npy`` vectors) and
``log/NNNNNNNN.<kind>.parquet`` (+ ``.npy`` for upserts). Every entry is written to a
temporary name and renamed (the parquet rename commits it), so a crash leaves either the
whole entry or nothing. Replaying the log over the base is idempotent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

UPSERT, DELETE = "upsert", "delete"


@dataclass(frozen=True)
class LogEntry:
    """One logged write: ``kind`` is ``"upsert"`` (``frame`` + ``vectors``) or ``"delete"``
    (``frame`` of ids)."""

    seq: int
    kind: str
    frame: pl.DataFrame
    vectors: np.ndarray | None


class SnapshotLog:
    """Base snapshot and write log of one collection in ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.seq = 0  # entries in the log since the last base

    def has_base(self) -> bool:
        return (self.dir / "base.parquet").exists()

    def write_base(self, frame: pl.DataFrame, vectors: np.ndarray) -> None:
        """Replace the base and fold the log into it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.dir / "base.parquet", frame, vectors)
        logdir = self.dir / "log"
        if logdir.exists():
            shutil.rmtree(logdir)
        self.seq = 0

    def append(self, kind: str, frame: pl.DataFrame, vectors: np.ndarray | None) -> None:
        """Log one write (durable when this returns)."""
        logdir = self.dir / "log"
        logdir.mkdir(parents=True, exist_ok=True)
        self.seq += 1
        _atomic_write(logdir / f"{self.seq:08d}.{kind}.parquet", frame, vectors)

    def read_base(self) -> tuple[pl.DataFrame, np.ndarray]:
        return pl.read_parquet(self.dir / "base.parquet"), np.load(self.dir / "base.npy")

    def replay(self) -> Iterator[LogEntry]:
        """The log entries in order (``seq`` continues after the last one)."""
        logdir = self.dir / "log"
        for e in sorted(logdir.glob("*.parquet")) if logdir.exists() else []:
            seq, kind = e.name.split(".")[:2]
            vec = np.load(e.with_suffix(".npy")) if kind == UPSERT else None
            self.seq = max(self.seq, int(seq))
            yield LogEntry(int(seq), kind, pl.read_parquet(e), vec)


def _atomic_write(path: Path, df: pl.DataFrame, vec: np.ndarray | None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if vec is not None:
        with open(tmp.with_suffix(".npy.tmp"), "wb") as fh:
            np.save(fh, vec)
        os.replace(tmp.with_suffix(".npy.tmp"), path.with_suffix(".npy"))
    df.write_parquet(tmp)
    os.replace(tmp, path)  # the parquet is the commit point of an entry
