"""The shard store every node reaches: a local directory or ``s3://`` through ``pyarrow.fs``.

Layout under the store root::

    manifest.json                               which generation serves (flipped atomically)
    generations/<gen>/meta.json                 num_shards, dim, created_at, anything the
                                                builder records (sharding plan, rules)
    generations/<gen>/idmap.parquet             posting_id → owner shard, shards holding it
    generations/<gen>/shard-<i>/base.parquet    the base snapshot of shard i
    generations/<gen>/shard-<i>/log/<key>.parquet
                                                one object per acknowledged write batch:
                                                ``op`` (upsert/delete), ``posting_id``, the
                                                row's columns; keys sort in write order

A write is acknowledged only after its log object is fully written (``close()`` of the
output stream: the S3 upload has completed), so a shard restarted anywhere reloads
``base + log`` without losing an acknowledged write. S3 has no append, hence one object per
batch; object keys start with a nanosecond timestamp so listing order is write order.

The manifest flip is atomic on both backends: S3 replaces a whole object in one PUT; on a
local directory the new manifest is written beside it and renamed over it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.errors import InvalidInputError, NotFoundError, UnavailableError

MANIFEST = "manifest.json"
OPS = ("upsert", "delete")
_GEN = re.compile(r"^g\d{6}$")
_S3_SCHEMES = ("s3://",)


@dataclass(frozen=True)
class StoreConfig:
    """Where the shard store lives.

    ``uri``: a local path (``/data/store``, ``file:///data/store``) or ``s3://bucket/prefix``.
    ``endpoint``: an S3-compatible endpoint (``http://minio:9000``); None = AWS.
    Credentials come from the standard AWS variables (``AWS_ACCESS_KEY_ID`` …).
    """

    uri: str
    endpoint: str | None = None
    region: str | None = None
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri.strip():
            raise ValueError("store uri must be a non-empty string")
        if "://" in self.uri and not self.uri.startswith(("file://", *_S3_SCHEMES)):
            raise ValueError(f"store uri must be a local path or s3://…, got {self.uri!r}")
        if self.uri.startswith("s3://") and not self.uri[5:].strip("/"):
            raise ValueError("s3 store uri needs a bucket: s3://bucket/prefix")
        if self.endpoint is not None and not re.match(r"^https?://[^/]+", self.endpoint):
            raise ValueError(f"store endpoint must be http(s)://host[:port], got {self.endpoint!r}")
        if self.connect_timeout_s <= 0 or self.request_timeout_s <= 0:
            raise ValueError("store timeouts must be > 0")

    @property
    def is_s3(self) -> bool:
        """Whether the store is on S3 (or an S3-compatible server)."""
        return self.uri.startswith("s3://")

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and the root path inside it."""
        if self.is_s3:
            kw: dict[str, Any] = {
                "connect_timeout": self.connect_timeout_s,
                "request_timeout": self.request_timeout_s,
            }
            if self.endpoint:
                scheme, host = self.endpoint.split("://", 1)
                kw.update(endpoint_override=host.rstrip("/"), scheme=scheme)
            region = (
                self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            )
            if region:
                kw["region"] = region
            return pafs.S3FileSystem(**kw), self.uri[5:].rstrip("/")
        path = self.uri[7:] if self.uri.startswith("file://") else self.uri
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


@dataclass(frozen=True)
class Manifest:
    """The serving generation of a store."""

    generation: str
    num_shards: int
    flipped_at: str
    previous: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _gen_name(n: int) -> str:
    return f"g{n:06d}"


class ShardStore:
    """Reads and writes one store (see the module docstring for the layout).

    Plain class: shard actors, frontends and the refresh each open their own; it holds no
    state beyond the filesystem handle, so any number of processes share a store.
    """

    def __init__(self, config: StoreConfig | str) -> None:
        self.config = StoreConfig(config) if isinstance(config, str) else config
        self.fs, self.root = self.config.filesystem()
        self._lock = threading.Lock()

    def __reduce__(self):  # pickled into Ray actors by its config, not its fs handle
        return (ShardStore, (self.config,))

    # -- paths -------------------------------------------------------------------------------
    def _p(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _gen_dir(self, gen: str) -> str:
        if not _GEN.match(gen):
            raise InvalidInputError(f"bad generation name {gen!r}", field="generation")
        return self._p("generations", gen)

    def _shard_dir(self, gen: str, shard: int) -> str:
        return f"{self._gen_dir(gen)}/shard-{int(shard)}"

    def _io(self, what: str, fn, *args):
        try:
            return fn(*args)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise UnavailableError(f"shard store {self.config.uri}: {what} failed: {exc}") from exc

    def _mkparent(self, path: str) -> None:
        if not self.config.is_s3:  # S3 has no directories; a local file needs its parent
            self._io(f"creating {path}", self.fs.create_dir, path.rsplit("/", 1)[0])

    def _write_bytes(self, path: str, data: bytes) -> None:
        self._mkparent(path)

        def put():
            with self.fs.open_output_stream(path) as out:
                out.write(data)

        self._io(f"writing {path}", put)

    def _read_bytes(self, path: str) -> bytes:
        def get():
            with self.fs.open_input_stream(path) as f:
                return f.read()

        return self._io(f"reading {path}", get)

    def _exists(self, path: str) -> bool:
        info = self._io(f"stat {path}", self.fs.get_file_info, path)
        return info.type != pafs.FileType.NotFound

    def _write_table(self, path: str, table: pa.Table) -> None:
        self._mkparent(path)
        self._io(f"writing {path}", lambda: pq.write_table(table, path, filesystem=self.fs))

    def _read_table(self, path: str) -> pa.Table:
        return self._io(f"reading {path}", lambda: pq.read_table(path, filesystem=self.fs))

    def ensure(self) -> None:
        """Create the root (a local directory; on S3 the bucket must exist)."""
        if not self.config.is_s3:
            self.fs.create_dir(self.root, recursive=True)

    # -- manifest ----------------------------------------------------------------------------
    def manifest(self) -> Manifest | None:
        """The serving generation, or None for an empty store."""
        path = self._p(MANIFEST)
        try:
            raw = json.loads(self._read_bytes(path))
        except FileNotFoundError:
            return None
        return Manifest(
            raw["generation"], int(raw["num_shards"]), raw["flipped_at"], raw.get("previous"),
            raw.get("extra", {}),
        )  # fmt: skip

    def generations(self) -> list[str]:
        """Every generation written to the store (serving or not), oldest first."""
        sel = pafs.FileSelector(self._p("generations"), allow_not_found=True)
        infos = self._io("listing generations", self.fs.get_file_info, sel)
        return sorted(i.base_name for i in infos if _GEN.match(i.base_name))

    def next_generation(self) -> str:
        """A fresh generation name, after every existing one."""
        gens = self.generations()
        return _gen_name(int(gens[-1][1:]) + 1 if gens else 1)

    def flip(
        self, gen: str, *, expect: str | None = None, extra: Mapping | None = None
    ) -> Manifest:
        """Make ``gen`` the serving generation, atomically.

        ``expect``: the generation the caller believes is serving; a mismatch (another
        refresh flipped meanwhile) raises instead of silently overwriting it.
        """
        meta = self.meta(gen)
        with self._lock:
            current = self.manifest()
            current_gen = current.generation if current else None
            if expect is not None and current_gen != expect:
                raise InvalidInputError(
                    f"store serves {current_gen}, expected {expect}: another refresh flipped",
                    field="generation",
                )
            m = Manifest(
                gen, int(meta["num_shards"]), dt.datetime.now(dt.UTC).isoformat(), current_gen,
                dict(extra or {}),
            )  # fmt: skip
            data = json.dumps(m.__dict__ | {"extra": dict(m.extra)}).encode()
            path = self._p(MANIFEST)
            if self.config.is_s3:
                self._write_bytes(path, data)  # one PUT replaces the whole object
            else:
                tmp = f"{path}.{uuid.uuid4().hex}.tmp"
                self._write_bytes(tmp, data)
                self._io("renaming the manifest", self.fs.move, tmp, path)  # os.replace
        return m

    # -- generations -------------------------------------------------------------------------
    def write_generation(
        self,
        gen: str,
        bases: Mapping[int, pa.Table],
        id_map: pa.Table,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a whole generation beside the serving one (not flipped: see :meth:`flip`).

        ``bases``: shard → base snapshot (must have ``posting_id``); ``id_map``: columns
        ``posting_id`` (str), ``owner`` (int), ``shards`` (list of int).
        """
        missing = {"posting_id", "owner", "shards"} - set(id_map.column_names)
        if missing:
            raise InvalidInputError(f"id_map lacks columns {sorted(missing)}", field="id_map")
        num_shards = len(bases)
        if sorted(bases) != list(range(num_shards)):
            raise InvalidInputError("bases must cover shards 0..n-1", field="bases")
        self.ensure()
        for s, table in bases.items():
            if "posting_id" not in table.column_names:
                raise InvalidInputError(f"base of shard {s} lacks posting_id", field="bases")
            self._write_table(f"{self._shard_dir(gen, s)}/base.parquet", table)
        self._write_table(f"{self._gen_dir(gen)}/idmap.parquet", id_map)
        info = {
            "num_shards": num_shards,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            **dict(meta or {}),
        }
        # meta.json last: a generation without it is incomplete and never flipped
        self._write_bytes(f"{self._gen_dir(gen)}/meta.json", json.dumps(info).encode())

    def write_object(self, gen: str, name: str, data: bytes) -> None:
        """Store an opaque object of a generation (e.g. its pickled shard plan)."""
        if "/" in name or not name:
            raise InvalidInputError(f"bad object name {name!r}", field="name")
        self._write_bytes(f"{self._gen_dir(gen)}/{name}", data)

    def read_object(self, gen: str, name: str) -> bytes:
        """An object written by :meth:`write_object`."""
        try:
            return self._read_bytes(f"{self._gen_dir(gen)}/{name}")
        except FileNotFoundError:
            raise NotFoundError(f"generation {gen} has no {name}") from None

    def meta(self, gen: str) -> dict[str, Any]:
        """What :meth:`write_generation` recorded for ``gen``."""
        try:
            return json.loads(self._read_bytes(f"{self._gen_dir(gen)}/meta.json"))
        except FileNotFoundError:
            raise NotFoundError(f"generation {gen} is not (completely) in the store") from None

    def base(self, gen: str, shard: int) -> pa.Table:
        """The base snapshot of one shard."""
        try:
            return self._read_table(f"{self._shard_dir(gen, shard)}/base.parquet")
        except FileNotFoundError:
            raise NotFoundError(f"no base snapshot for shard {shard} of {gen}") from None

    def base_id_map(self, gen: str) -> pa.Table:
        """The id → shard map the generation was built with (before its log)."""
        return self._read_table(f"{self._gen_dir(gen)}/idmap.parquet")

    # -- the append log ----------------------------------------------------------------------
    def append(self, gen: str, shard: int, records: pa.Table) -> str:
        """Durably log one write batch of a shard; return its key (sorts in write order).

        ``records`` has ``op`` ("upsert"/"delete") and ``posting_id``; upserts carry the
        row's columns (as in the base snapshot), deletes may leave them null.
        """
        if not {"op", "posting_id"} <= set(records.column_names):
            raise InvalidInputError("log records need op and posting_id", field="records")
        bad = set(records["op"].to_pylist()) - set(OPS)
        if bad:
            raise InvalidInputError(f"unknown log ops {sorted(bad)}", field="records")
        key = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        self._write_table(f"{self._shard_dir(gen, shard)}/log/{key}.parquet", records)
        return key

    def log_keys(self, gen: str, shard: int, after: str | None = None) -> list[str]:
        """Keys of the shard's log objects (after ``after``), in write order."""
        sel = pafs.FileSelector(f"{self._shard_dir(gen, shard)}/log", allow_not_found=True)
        infos = self._io("listing the log", self.fs.get_file_info, sel)
        keys = sorted(
            i.base_name[: -len(".parquet")] for i in infos if i.base_name.endswith(".parquet")
        )
        return [k for k in keys if after is None or k > after]

    def log(self, gen: str, shard: int, after: str | None = None) -> list[tuple[str, pa.Table]]:
        """The shard's logged write batches (after ``after``), in write order."""
        d = f"{self._shard_dir(gen, shard)}/log"
        return [(k, self._read_table(f"{d}/{k}.parquet")) for k in self.log_keys(gen, shard, after)]

    def log_lag(self, gen: str, num_shards: int) -> dict[str, float]:
        """How far the base snapshots lag the writes: log objects and the oldest one's age."""
        keys = [k for s in range(num_shards) for k in self.log_keys(gen, s)]
        oldest = min((int(k.split("-")[0]) for k in keys), default=None)
        age = 0.0 if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)
        return {"log_objects": float(len(keys)), "oldest_log_age_s": age}

    def shard_state(self, gen: str, shard: int) -> tuple[pa.Table, str | None]:
        """Base + log of one shard replayed: its current rows, and the last log key applied."""
        base = self.base(gen, shard)
        batches = self.log(gen, shard)
        return replay(base, [t for _, t in batches]), (batches[-1][0] if batches else None)

    def id_map(
        self, gen: str, num_shards: int | None = None
    ) -> dict[str, tuple[int, tuple[int, ...]]]:
        """posting_id → (owner shard, shards holding it), base map plus every shard's log.

        A logged upsert row carries ``owned`` (True on its owner shard; halo copies False).
        """
        n = num_shards if num_shards is not None else int(self.meta(gen)["num_shards"])
        base = self.base_id_map(gen)
        out = {
            pid: (int(o), tuple(int(x) for x in s))
            for pid, o, s in zip(
                base["posting_id"].to_pylist(), base["owner"].to_pylist(),
                base["shards"].to_pylist(), strict=True,
            )
        }  # fmt: skip
        events = []  # (key, shard, op, posting_id, owned)
        for s in range(n):
            for key, t in self.log(gen, s):
                owned = t["owned"].to_pylist() if "owned" in t.column_names else [True] * t.num_rows
                for op, pid, own in zip(
                    t["op"].to_pylist(), t["posting_id"].to_pylist(), owned, strict=True
                ):
                    events.append((key, s, op, pid, bool(own)))
        for _key, s, op, pid, own in sorted(events, key=lambda e: e[0]):
            owner, shards = out.get(pid, (None, ()))
            if op == "delete":
                shards = tuple(x for x in shards if x != s)
                if owner == s:
                    owner = None
            else:
                shards = tuple(sorted({*shards, s}))
                if own:
                    owner = s
            if shards and owner is not None:
                out[pid] = (owner, shards)
            elif shards:
                out[pid] = (shards[0], shards)
            else:
                out.pop(pid, None)
        return out


def replay(base: pa.Table, batches: list[pa.Table]) -> pa.Table:
    """``base`` with the logged ``batches`` applied in order (last write of an id wins)."""
    if not batches:
        return base
    cols = base.column_names
    log = pa.concat_tables(
        [b.append_column("_seq", pa.array(range(i * 10**9, i * 10**9 + b.num_rows), pa.int64()))
         for i, b in enumerate(batches)],
        promote_options="permissive",
    )  # fmt: skip
    # the last op of every id decides: upsert → that row, delete → gone
    last: dict[str, int] = {}
    for j, pid in enumerate(log["posting_id"].to_pylist()):
        last[pid] = j
    keep_base = pc.invert(pc.is_in(base["posting_id"], value_set=pa.array(list(last), pa.string())))
    kept = base.filter(keep_base)
    idx = sorted(j for j in last.values() if log["op"][j].as_py() == "upsert")
    if not idx:
        return kept
    ups = log.take(pa.array(idx, pa.int64()))
    ups = ups.select([c for c in cols if c in ups.column_names])
    missing = [c for c in cols if c not in ups.column_names]
    for c in missing:
        ups = ups.append_column(
            base.schema.field(c), pa.nulls(ups.num_rows, base.schema.field(c).type)
        )
    return pa.concat_tables([kept, ups.select(cols).cast(base.schema)])
