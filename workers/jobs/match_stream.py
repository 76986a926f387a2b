"""``jobrec match --stream``: the batch as a streamed, resumable Parquet dataset.

The active seekers are cut into chunks in row order; each chunk is matched against the geo
shards (:class:`~workers.jobs.match.MatchWorld`, exact merge), formatted (reasons and
추천기준, columnar) and written as one part, so memory is bounded by a chunk, not by the day.

Layout of ``OUT`` (a local path or ``s3://bucket/prefix``, through pyarrow's filesystems)::

    _manifest.json        inputs' fingerprint, chunk size, number of chunks
    part-00000.parquet    the MATCH_SCHEMA rows of chunk 0's seekers
    part-00000.json       written after its part: seekers, rows, seekers without a match
    _SUCCESS              written last, with the totals

A part is written under a temporary name and moved into place (an S3 put is atomic), and its
``.json`` only after that, so a part is either whole or absent. On Ray each chunk is a task
that Ray re-runs when its worker dies; a re-run rewrites the same part, so the output still
holds every active seeker exactly once. Running the same command again after the driver died
resumes: chunks with a part are skipped. Other inputs or settings in the same ``OUT`` are
refused (their fingerprint differs) rather than mixed in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.errors import InvalidInputError
from core.matching import MatchConfig
from workers.jobs.match import MATCH_SCHEMA, MatchWorld, active_queries

log = logging.getLogger("jobrec.match")
FORMAT = "jobrec.match-dataset/1"
MANIFEST, SUCCESS = "_manifest.json", "_SUCCESS"


@dataclass(frozen=True)
class StreamConfig:
    """How the batch is cut and run: ``chunk_seekers`` active seekers per part, at most
    ``in_flight`` chunks at once, each re-run up to ``max_retries`` times if its worker dies."""

    chunk_seekers: int = 20_000
    in_flight: int = 2
    max_retries: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_seekers, int) or self.chunk_seekers < 1:
            raise ValueError(f"chunk_seekers must be an int >= 1, got {self.chunk_seekers!r}")
        if not isinstance(self.in_flight, int) or self.in_flight < 1:
            raise ValueError(f"in_flight must be an int >= 1, got {self.in_flight!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")


def _part(c: int) -> str:
    return f"part-{c:05d}"


class MatchDataset:
    """The output dataset: its manifest, parts and checks (plain class; pickled by its URI
    into the workers that write parts)."""

    def __init__(self, uri: str) -> None:
        from workers.store.store import StoreConfig

        self.uri = str(uri)
        self.config = StoreConfig(self.uri)
        self.fs, self.root = self.config.filesystem()

    def __reduce__(self):
        return (MatchDataset, (self.uri,))

    def _p(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _write(self, name: str, data: bytes) -> None:
        """Whole or absent: an S3 put is atomic; a local file is moved into place."""
        path = self._p(name)
        tmp = path if self.config.is_s3 else self._p(f".{name}.{uuid.uuid4().hex}.tmp")
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        if tmp != path:
            self.fs.move(tmp, path)

    def _read_json(self, name: str) -> dict | None:
        try:
            with self.fs.open_input_stream(self._p(name)) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def _names(self) -> list[str]:
        sel = pafs.FileSelector(self.root, allow_not_found=True)
        return sorted(i.base_name for i in self.fs.get_file_info(sel))

    def open(self, manifest: dict) -> set[int]:
        """Create the dataset, or check that it holds a run of the same inputs; the chunks
        already written."""
        if not self.config.is_s3:
            self.fs.create_dir(self.root, recursive=True)
        old = self._read_json(MANIFEST)
        if old is None:
            if any(not n.startswith(".") for n in self._names()):
                raise InvalidInputError(f"{self.uri}: not empty and not a match dataset; "
                                        "choose another --out", field="out")
            self._write(MANIFEST, json.dumps(manifest, indent=1).encode())
            return set()
        if old.get("fingerprint") != manifest["fingerprint"] or old.get("format") != FORMAT:
            raise InvalidInputError(
                f"{self.uri}: holds a match of other inputs or settings (fingerprint "
                f"{old.get('fingerprint', '?')[:12]}, this run {manifest['fingerprint'][:12]}); "
                "remove it or choose another --out", field="out")
        return self.done(manifest["fingerprint"])

    def done(self, fingerprint: str) -> set[int]:
        """Chunks whose part and sidecar are both in place (for this fingerprint)."""
        names = set(self._names())
        out = set()
        for n in names:
            if n.startswith("part-") and n.endswith(".json") and n[:-5] + ".parquet" in names:
                meta = self._read_json(n)
                if meta and meta.get("fingerprint") == fingerprint:
                    out.add(int(meta["chunk"]))
        return out

    def write_part(self, chunk: int, frame: pl.DataFrame, meta: dict) -> None:
        """Write chunk ``chunk``'s rows, then its sidecar (both whole or absent)."""
        final = self._p(_part(chunk) + ".parquet")
        table = frame.to_arrow()
        if self.config.is_s3:
            pq.write_table(table, final, filesystem=self.fs)
        else:  # a temporary name per attempt: a worker killed mid-write leaves only that
            tmp = self._p(f".{_part(chunk)}.{uuid.uuid4().hex}.tmp")
            pq.write_table(table, tmp, filesystem=self.fs)
            self.fs.move(tmp, final)
        self._write(_part(chunk) + ".json", json.dumps(meta).encode())

    def finish(self, totals: dict) -> None:
        """Remove what killed attempts left behind and write ``_SUCCESS``."""
        for n in self._names():
            if n.startswith(".") and n.endswith(".tmp"):
                self.fs.delete_file(self._p(n))
        self._write(SUCCESS, json.dumps(totals, indent=1).encode())

    def parts(self) -> list[str]:
        """Paths of the part files, in chunk order."""
        return [self._p(n) for n in self._names() if n.startswith("part-")
                and n.endswith(".parquet")]

    def read(self, columns: list[str] | None = None) -> pl.DataFrame:
        """The whole table (for checks and small runs)."""
        parts = self.parts()
        if not parts:
            return pl.DataFrame(schema=MATCH_SCHEMA)
        return pl.from_arrow(pq.ParquetDataset(parts, filesystem=self.fs).read(columns=columns))

    def verify(self, active_ids: list[str]) -> dict:
        """Exactly-once check against the active seekers (``active_ids`` in row order): every
        chunk written; every row's seeker active and in the chunk it belongs to; each seeker
        in one part with ranks 1..n; seekers with rows + those without a match == active."""
        manifest = self._read_json(MANIFEST) or {}
        n_chunks, size = int(manifest.get("chunks", -1)), int(manifest.get("chunk_seekers", 1))
        metas = [self._read_json(_part(c) + ".json") for c in range(max(n_chunks, 0))]
        seen = []
        for c in range(max(n_chunks, 0)):
            if metas[c] is None:
                continue
            f = pl.from_arrow(pq.read_table(self._p(_part(c) + ".parquet"), filesystem=self.fs,
                                            columns=["seeker_id", "rank"]))
            seen.append(f.group_by("seeker_id").agg(
                pl.len().alias("n"), pl.col("rank").min().alias("lo"),
                pl.col("rank").max().alias("hi"), pl.col("rank").n_unique().alias("distinct"))
                .with_columns(pl.lit(c, pl.Int32).alias("part")))
        got = pl.concat(seen) if seen else pl.DataFrame(
            schema={"seeker_id": pl.Utf8, "n": pl.UInt32, "lo": pl.Int16, "hi": pl.Int16,
                    "distinct": pl.UInt32, "part": pl.Int32})
        want = pl.DataFrame({"seeker_id": active_ids,
                             "chunk": np.arange(len(active_ids), dtype=np.int32) // size},
                            schema={"seeker_id": pl.Utf8, "chunk": pl.Int32})
        j = got.join(want, on="seeker_id", how="left")
        per_seeker = got.group_by("seeker_id").agg(pl.len().alias("parts"))
        no_match = sum(int(m["seekers"]) - int(m["seekers_with_rows"]) for m in metas if m)
        report = {
            "chunks": n_chunks, "chunks_written": sum(m is not None for m in metas),
            "rows": int(got["n"].sum()), "seekers_with_rows": got.height,
            "seekers_without_match": no_match, "active_seekers": len(active_ids),
            "rows_of_inactive_or_unknown_seekers": int(j.filter(pl.col("chunk").is_null())["n"]
                                                       .sum()),
            "seekers_in_the_wrong_part": int(j.filter(pl.col("chunk") != pl.col("part")).height),
            "seekers_in_several_parts": int(per_seeker.filter(pl.col("parts") > 1).height),
            "seekers_with_bad_ranks": int(got.filter(
                (pl.col("lo") != 1) | (pl.col("hi").cast(pl.UInt32) != pl.col("n"))
                | (pl.col("distinct") != pl.col("n"))).height),
        }
        report["exactly_once"] = bool(
            report["chunks_written"] == n_chunks
            and report["seekers_with_rows"] + no_match == len(active_ids)
            and not report["rows_of_inactive_or_unknown_seekers"]
            and not report["seekers_in_the_wrong_part"]
            and not report["seekers_in_several_parts"] and not report["seekers_with_bad_ranks"])
        return report


def fingerprint(seekers: pl.DataFrame, postings: pl.DataFrame, seeker_vectors: np.ndarray,
                posting_vectors: np.ndarray, interactions: pl.DataFrame | None,
                cfg: MatchConfig, chunk_seekers: int) -> str:
    """A digest of everything the output depends on (rows of both tables, the vectors, the
    log, the rules' settings, the chunking). The shard count is left out: the merge is exact,
    so any number of shards gives the same parts."""
    h = hashlib.sha256(FORMAT.encode())
    h.update(repr(sorted(dataclasses.asdict(cfg).items())).encode())
    h.update(str(chunk_seekers).encode())
    for frame in (seekers, postings, interactions):
        if frame is None:
            h.update(b"none")
        else:
            h.update(str(frame.columns).encode())
            h.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    for v in (seeker_vectors, posting_vectors):
        v = np.ascontiguousarray(v, dtype=np.float32)
        h.update(str(v.shape).encode())
        h.update(memoryview(v).cast("B"))
    return h.hexdigest()


@dataclass
class ChunkWorld:
    """What each chunk task gets once (Ray: one object, shared by every task)."""

    world: MatchWorld
    shards: object  # LocalShards or RayShards
    cfg: MatchConfig
    dataset: MatchDataset
    fingerprint: str


def match_chunk(ctx: ChunkWorld, chunk: int, seekers: pl.DataFrame, vectors: np.ndarray,
                interactions: pl.DataFrame | None) -> dict:
    """Match one chunk's (active) seekers, write its part; its sidecar (stage seconds)."""
    t0 = time.perf_counter()
    w = ctx.world
    qs = active_queries(seekers, vectors, interactions, w.side.ids.tolist(), w.side.vectors)
    t1 = time.perf_counter()
    per = w.top(ctx.shards, qs, ctx.cfg)
    t2 = time.perf_counter()
    frame = w.frame(qs, per)
    t3 = time.perf_counter()
    meta = {"chunk": chunk, "fingerprint": ctx.fingerprint, "seekers": len(qs),
            "seekers_with_rows": int(sum(p is not None and len(p[0]) > 0 for p in per)),
            "rows": frame.height}
    meta["timings_s"] = {"queries": t1 - t0, "match": t2 - t1, "format": t3 - t2}
    t4 = time.perf_counter()
    ctx.dataset.write_part(chunk, frame, meta)
    meta["timings_s"]["write"] = time.perf_counter() - t4
    return meta


@dataclass(frozen=True)
class StreamReport:
    """What a streamed batch did (``skipped``: chunks found written by an earlier run)."""

    chunks: int
    skipped: int
    seekers: int
    rows: int
    timings_s: dict[str, float]
    out: str


Runner = Callable[[Callable, ChunkWorld, Iterable[tuple]], Iterator[dict]]


def local_runner(fn: Callable, shared: ChunkWorld, items: Iterable[tuple]) -> Iterator[dict]:
    """Chunks one after the other in this process."""
    for item in items:
        yield fn(shared, *item)


def run_match_stream(seekers: pl.DataFrame, postings: pl.DataFrame, seeker_vectors: np.ndarray,
                     posting_vectors: np.ndarray, cfg: MatchConfig, out: str, *,
                     num_shards: int = 2, interactions: pl.DataFrame | None = None,
                     use_ray: bool = True, stream: StreamConfig | None = None) -> StreamReport:
    """Top-k jobs for every active seeker, written chunk by chunk to the dataset ``out``
    (resumed where an earlier run of the same inputs stopped)."""
    stream = stream or StreamConfig()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    active = seekers["active"].to_numpy()
    rows = np.flatnonzero(active)
    n_chunks = -(-rows.size // stream.chunk_seekers)
    fp = fingerprint(seekers, postings, seeker_vectors, posting_vectors, interactions, cfg,
                     stream.chunk_seekers)
    dataset = MatchDataset(out)
    done = dataset.open({"format": FORMAT, "fingerprint": fp, "chunks": n_chunks,
                         "chunk_seekers": stream.chunk_seekers, "active_seekers": int(rows.size),
                         "postings": postings.height, "k": cfg.k,
                         "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
    timings["fingerprint"] = time.perf_counter() - t0
    todo = [c for c in range(n_chunks) if c not in done]
    if done:
        log.info("%s: %d of %d chunks already written, resuming", out, len(done), n_chunks)
    t0 = time.perf_counter()
    world = MatchWorld.build(postings, posting_vectors, num_shards)
    shards = world.shards(postings, posting_vectors, use_ray) if todo else None
    timings["build_shards"] = time.perf_counter() - t0
    by_chunk = _interactions_by_chunk(seekers, rows, interactions, stream.chunk_seekers)

    def items() -> Iterator[tuple]:
        for c in todo:
            r = rows[c * stream.chunk_seekers:(c + 1) * stream.chunk_seekers]
            yield (c, seekers[r], np.ascontiguousarray(seeker_vectors[r], dtype=np.float32),
                   by_chunk.get(c))

    ctx = ChunkWorld(world, shards, cfg, dataset, fp)
    if use_ray:
        from workers.matching.actors import ray_runner

        runner: Runner = ray_runner(stream.in_flight, stream.max_retries)
    else:
        runner = local_runner
    t0 = time.perf_counter()
    stage: dict[str, float] = {}
    n_rows = 0
    try:
        for i, meta in enumerate(runner(match_chunk, ctx, items()), 1):
            n_rows += meta["rows"]
            for k, v in meta["timings_s"].items():
                stage[k] = stage.get(k, 0.0) + v
            log.info("chunk %d written (%d / %d this run)", meta["chunk"], i, len(todo))
    finally:
        if use_ray and shards is not None:
            shards.close()
    timings["chunks"] = time.perf_counter() - t0
    timings.update({f"chunk_{k}_summed": v for k, v in stage.items()})
    dataset.finish({"chunks": n_chunks, "active_seekers": int(rows.size),
                    "rows_this_run": n_rows, "skipped_chunks": len(done)})
    return StreamReport(n_chunks, len(done), int(rows.size), n_rows, timings, out)


def _interactions_by_chunk(seekers: pl.DataFrame, rows: np.ndarray,
                           interactions: pl.DataFrame | None, size: int) -> dict[int, pl.DataFrame]:
    """The log split by the chunk of its seeker (rows of seekers not active are dropped)."""
    if interactions is None or interactions.height == 0:
        return {}
    key = pl.DataFrame({"seeker_id": seekers["seeker_id"].gather(rows),
                        "_chunk": np.arange(rows.size, dtype=np.int64) // size})
    parts = interactions.join(key, on="seeker_id").partition_by("_chunk", as_dict=True)
    return {int(k[0]): v.drop("_chunk") for k, v in parts.items()}
