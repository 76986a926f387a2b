"""The durable log of interactions recorded through the API (``RecordInteractions``).

A write-ahead log: ``log/NNNNNNNN.jsonl`` segments hold one JSON line per acknowledged write
(all its rows, so a write is all or nothing), appended and ``fsync``-ed before
:meth:`InteractionLog.append` returns: the write survives the process and the node's kernel.
A crash mid-write leaves a torn last line, which was never acknowledged (readers skip it);
the first append of the process that opens the log cuts it off before writing after it. :meth:`InteractionLog.compact` folds the
segments into ``base-NNNNNNNN.parquet`` (the canonical :data:`core.seekers.INTERACTION_SCHEMA`,
holding every segment up to NNNNNNNN).

A write may carry the vectors of the postings it names (a matching shard logs those of postings
other shards hold, so that its seekers' history vectors come back after a restart): the line is
then ``{"rows": [...], "vectors": {posting_id: base64 float32}}``, folded by compaction into
``vectors-NNNNNNNN.parquet``; :meth:`InteractionLog.vectors` reads them back.

The directory is itself an interaction table for ``jobrec train-ranker`` / ``jobrec match
--interactions DIR`` (:func:`read_interactions`), so what the service records is what the
next ranker learns from. One process writes a log directory at a time.

Matching in the shard actors gives each shard its own log, ``shard-NNN/`` under one root
(:func:`shard_log`); a seeker held by two shards has its writes in both (each shard replays
its own log alone), and :func:`read_interactions` of the root reads each write once.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from core.errors import InvalidInputError
from core.seekers import INTERACTION_EVENTS, INTERACTION_SCHEMA, validate_interactions

MARKER = "INTERACTION_LOG"  # names a directory as a log (what is_interaction_log looks for)
SHARDED_MARKER = "SHARDED_INTERACTION_LOG"  # a root of per-shard logs
SEGMENT_ROWS = 200_000  # a new segment after this many rows: bounded files, cheap compaction


def is_interaction_log(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by :class:`InteractionLog` (or a root of
    per-shard logs)."""
    p = Path(path)
    return (p / MARKER).is_file() or (p / SHARDED_MARKER).is_file()


def shard_log(root: str | Path, shard: int, **kw) -> InteractionLog:
    """Shard ``shard``'s log under the per-shard root ``root`` (both made if missing)."""
    r = Path(root)
    r.mkdir(parents=True, exist_ok=True)
    if (r / MARKER).exists():
        raise InvalidInputError(f"{r} is a single interaction log, not a root of shard logs",
                                field="interaction_log")
    if not (r / SHARDED_MARKER).exists():
        (r / SHARDED_MARKER).write_text("jobrec interaction logs of the matching shards: shard-NNN/\n")
    return InteractionLog(r / f"shard-{shard:03d}", **kw)


def read_interactions(path: str | Path) -> pl.DataFrame:
    """An interaction table: a Parquet file, an :class:`InteractionLog` directory, or a
    root of per-shard logs (a write two shards logged is read once)."""
    p = Path(path)
    if (p / SHARDED_MARKER).is_file():
        parts = [InteractionLog(d).read() for d in sorted(p.glob("shard-*")) if
                 (d / MARKER).is_file()]
        if not parts:
            return pl.DataFrame(schema=INTERACTION_SCHEMA)
        # the frontend stamps one time per write: the copies of a write are equal rows
        return pl.concat(parts, how="vertical").unique(maintain_order=True) \
            .sort("at", maintain_order=True)
    return InteractionLog(p).read() if is_interaction_log(p) else pl.read_parquet(p)


Row = tuple[str, str, str, dt.datetime]


class InteractionLog:
    """Append-only, durable interaction log in ``directory`` (safe across threads)."""

    def __init__(self, directory: str | Path, *, fsync: bool = True,
                 segment_rows: int = SEGMENT_ROWS) -> None:
        if segment_rows < 1:
            raise ValueError(f"segment_rows must be >= 1, got {segment_rows}")
        self.dir = Path(directory)
        self.fsync, self.segment_rows = fsync, segment_rows
        self._lock = threading.Lock()
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        if not (self.dir / MARKER).exists():
            (self.dir / MARKER).write_text("jobrec interaction log: base-*.parquet + log/*.jsonl\n")
        segs = self._segments()
        self.seq = max([_seq(s) for s in segs] + [self._base()[0]])
        self._fd: int | None = None  # appending starts a new segment after the last one
        self._rows = 0
        # cut when this log first appends, not on open: a reader (train-ranker, a new match
        # generation) must not truncate a segment its writer is appending to
        self._torn = segs[-1] if segs else None

    def append(self, rows: pl.DataFrame | Sequence[Row],
               vectors: Mapping[str, np.ndarray] | None = None) -> int:
        """Log ``rows`` (a canonical frame, or ``(seeker_id, posting_id, event, at)``
        tuples with a naive UTC ``at``) as one write, with ``vectors`` (posting id -> vector)
        in the same line; durable when this returns. The rows."""
        if isinstance(rows, pl.DataFrame):
            validate_interactions(rows)
            rows = rows.rows()
        for i, r in enumerate(rows):
            if len(r) != 4 or r[2] not in INTERACTION_EVENTS or not isinstance(r[3], dt.datetime) \
                    or not (isinstance(r[0], str) and isinstance(r[1], str)):
                raise InvalidInputError(f"row {i} is not (seeker_id, posting_id, event, at)",
                                        field="interactions")
        if not rows:
            return 0
        body: list | dict = [[s, p, e, a.isoformat(timespec="microseconds")] for s, p, e, a in rows]
        if vectors:
            body = {"rows": body, "vectors": {p: _b64(v) for p, v in vectors.items()}}
        line = (json.dumps(body, ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self._fd is None or self._rows >= self.segment_rows:
                self._open_next()
            os.write(self._fd, line)
            if self.fsync:
                os.fsync(self._fd)
            self._rows += len(rows)
        return len(rows)

    def read(self) -> pl.DataFrame:
        """Every logged interaction, base first, then the writes in order."""
        folded, base = self._base()
        parts = [pl.read_parquet(base)] if base is not None else []
        rows = [tuple(r) for s in self._segments() if _seq(s) > folded
                for r in _read_segment(s)]
        if rows:
            f = pl.DataFrame(rows, schema={"seeker_id": pl.Utf8, "posting_id": pl.Utf8,
                                           "event": pl.Utf8, "at": pl.Utf8}, orient="row")
            parts.append(f.with_columns(pl.col("at").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us")))
        if not parts:
            return pl.DataFrame(schema=INTERACTION_SCHEMA)
        return pl.concat(parts, how="vertical")

    def vectors(self) -> dict[str, np.ndarray]:
        """Posting id -> vector, of every write that carried one (the latest wins)."""
        folded, _ = self._base()
        out: dict[str, np.ndarray] = {}
        held = sorted(self.dir.glob("vectors-*.parquet"), key=_seq)
        if held and _seq(held[-1]) <= folded:
            t = pl.read_parquet(held[-1])
            out.update((p, np.frombuffer(b, "<f4").copy()) for p, b in t.iter_rows())
        for s in self._segments():
            if _seq(s) > folded:
                for line in _lines(s):
                    if isinstance(line, dict):
                        out.update((p, _unb64(v)) for p, v in line.get("vectors", {}).items())
        return out

    def compact(self) -> int:
        """Fold the segments into the base (readers see the same table); segments folded."""
        with self._lock:
            segs = self._segments()
            if not segs:
                return 0
            self._close()
            old = list(self.dir.glob("base-*.parquet"))
            table, vecs = self.read(), self.vectors()
            # the new base names the last segment it holds: a crash before the clean-up below
            # leaves segments that read() skips, never a row twice
            last = _seq(segs[-1])
            if vecs:  # before the base: a base names the vectors file of its number
                vt = self.dir / f"vectors-{last:08d}.parquet.tmp"
                pl.DataFrame({"posting_id": list(vecs), "vector": [
                    np.asarray(v, "<f4").tobytes() for v in vecs.values()]},
                    schema={"posting_id": pl.Utf8, "vector": pl.Binary}).write_parquet(vt)
                self._sync_file(vt)
                os.replace(vt, self.dir / f"vectors-{last:08d}.parquet")
            tmp = self.dir / f"base-{last:08d}.parquet.tmp"
            table.write_parquet(tmp)
            self._sync_file(tmp)
            os.replace(tmp, self.dir / f"base-{last:08d}.parquet")
            self._sync_dir(self.dir)
            old += list(self.dir.glob("vectors-*.parquet"))
            for p in segs + [b for b in old if _seq(b) < last]:
                p.unlink()
            return len(segs)

    def close(self) -> None:
        """Close the open segment (appending again opens a new one)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open_next(self) -> None:
        if self._torn is not None:
            _cut_torn_tail(self._torn)
            self._torn = None
        self._close()
        self.seq += 1
        path = self.dir / "log" / f"{self.seq:08d}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._rows = 0
        self._sync_dir(path.parent)  # the new segment's name is durable too

    def _sync_file(self, path: Path) -> None:
        if self.fsync:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _sync_dir(self, path: Path) -> None:
        self._sync_file(path)

    def _base(self) -> tuple[int, Path | None]:
        """(last segment folded, the newest base file or None)."""
        bases = sorted(self.dir.glob("base-*.parquet"), key=_seq)
        return (_seq(bases[-1]), bases[-1]) if bases else (0, None)

    def _segments(self) -> list[Path]:
        return sorted((self.dir / "log").glob("*.jsonl"), key=_seq)


def _seq(path: Path) -> int:
    return int(path.name.split(".")[0].rsplit("-", 1)[-1])


def _lines(path: Path) -> list:
    """A segment's complete lines, parsed (a torn last line was never acknowledged)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:end].splitlines() if line]


def _read_segment(path: Path) -> list[list]:
    """The rows of a segment's complete lines."""
    return [r for line in _lines(path) for r in (line["rows"] if isinstance(line, dict) else line)]


def _b64(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()


def _unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), "<f4").copy()


def _cut_torn_tail(path: Path) -> None:
    """Cut a torn last line off ``path``."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
