"""The durable log of interactions recorded through the API (``RecordInteractions``).

Layout under ``directory``: ``base-NNNNNNNN.parquet`` (the entries up to NNNNNNNN folded) and
``log/NNNNNNNN.parquet``, one file per acknowledged write, in the canonical
:data:`core.seekers.INTERACTION_SCHEMA`. An entry is written to a temporary name, flushed to
disk (``fsync``) and renamed, and the directory is synced: once :meth:`append` returns, the
write survives the process and the node's kernel (a crash leaves the whole entry or nothing).
The directory is itself an interaction table for ``jobrec train-ranker`` / ``jobrec match
--interactions DIR``, so what the service records is what the next ranker learns from.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import polars as pl

from core.seekers import INTERACTION_SCHEMA, validate_interactions


def is_interaction_log(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by :class:`InteractionLog`."""
    p = Path(path)
    return p.is_dir() and (any(p.glob("base-*.parquet")) or (p / "log").is_dir())


def read_interactions(path: str | Path) -> pl.DataFrame:
    """An interaction table: a Parquet file, or an :class:`InteractionLog` directory."""
    return InteractionLog(path).read() if is_interaction_log(path) else pl.read_parquet(path)


class InteractionLog:
    """Append-only, durable interaction log in ``directory`` (safe across threads)."""

    def __init__(self, directory: str | Path, *, fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.fsync = fsync
        self._lock = threading.Lock()
        logdir = self.dir / "log"
        logdir.mkdir(parents=True, exist_ok=True)
        base = self._base()
        self.seq = max([_seq(e) for e in logdir.glob("*.parquet")] + [base[0]])

    def append(self, frame: pl.DataFrame) -> int:
        """Log ``frame`` (canonical interactions); durable when this returns. The entry's
        sequence number."""
        validate_interactions(frame)
        with self._lock:
            self.seq += 1
            self._write(self.dir / "log" / f"{self.seq:08d}.parquet", frame)
            return self.seq

    def read(self) -> pl.DataFrame:
        """Every logged interaction, base first, then the entries in write order."""
        folded, base = self._base()
        parts = [pl.read_parquet(base)] if base is not None else []
        parts += [pl.read_parquet(e) for e in self._entries() if _seq(e) > folded]
        if not parts:
            return pl.DataFrame(schema=INTERACTION_SCHEMA)
        return pl.concat(parts, how="vertical")

    def compact(self) -> int:
        """Fold the entries into the base (readers see the same table); entries folded."""
        with self._lock:
            entries = self._entries()
            if not entries:
                return 0
            old = list(self.dir.glob("base-*.parquet"))
            table = self.read()
            # the new base names the last entry it holds: a crash before the clean-up below
            # leaves entries that read() skips, never a row twice
            self._write(self.dir / f"base-{_seq(entries[-1]):08d}.parquet", table)
            for e in entries + [b for b in old if _seq(b) < _seq(entries[-1])]:
                e.unlink()
            return len(entries)

    def __len__(self) -> int:
        return self.read().height

    def _base(self) -> tuple[int, Path | None]:
        """(last entry folded, the newest base file or None)."""
        bases = sorted(self.dir.glob("base-*.parquet"), key=_seq)
        return (_seq(bases[-1]), bases[-1]) if bases else (0, None)

    def _entries(self) -> list[Path]:
        return sorted((self.dir / "log").glob("*.parquet"))

    def _write(self, path: Path, frame: pl.DataFrame) -> None:
        tmp = path.with_name(path.name + ".tmp")
        frame.write_parquet(tmp)
        if self.fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)  # the rename commits the entry
        if self.fsync:
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _seq(path: Path) -> int:
    return int(path.name.split(".")[0].rsplit("-", 1)[-1])
