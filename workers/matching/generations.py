"""Generations of a matching deployment: a new day's tables (or a new ranker) served without a
new ``--match-root`` and without losing a write acknowledged on the old one.

Layout under the root: ``MATCH_CURRENT.json`` (the serving generation, flipped by an atomic
rename) and ``gen-NNNNNN/``, each a whole deployment (:mod:`workers.matching.deployment`) with
its own shard actors. :func:`deploy_generation` writes the next one in two steps:

1. **Carry.** The serving generation's logged writes (posting and seeker upserts and
   deletes, in the order they were logged across its shards; every interaction, start-up and
   recorded) are applied to the day's tables, and the new generation is written from them.
   The old generation keeps serving meanwhile.
2. **Seal and hand over.** ``SEALED`` is written into the old generation. A shard logs a
   write before it looks for the seal, and refuses (:class:`~core.errors.RetiredError`,
   after logging) a write that finds it; so every write it acknowledged was logged before the
   seal, and the writes logged since step 1 (the stragglers, read after the seal) are all
   there to be appended to the new shards' own write logs. Then the manifest flips.

Frontends (:class:`GenerationalMatchService`) notice the flip on their health check, attach
to the new generation's shards and retire the old ones a while later; a write refused by a
sealed shard waits for the flip and goes to the new generation (writes are idempotent). The
window in which writes wait is step 2 plus the new shards' start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from core.errors import AlreadyExistsError, InvalidInputError, RetiredError, UnavailableError
from core.seekers import INTERACTION_SCHEMA, areas_of
from workers.matching.deployment import (
    DEPLOYMENT,
    RANKING,
    SEALED,
    WriteLog,
    logged_records,
    logged_seq,
    read_plan,
    write_deployment,
)

log = logging.getLogger(__name__)
CURRENT = "MATCH_CURRENT.json"
KEEP = "keep"  # ranker= of deploy_generation: the serving generation's ranker, if any


def _gen(n: int) -> str:
    return f"gen-{n:06d}"


def current_generation(root: str | Path) -> str | None:
    """The serving generation of a root of generations (None: none yet)."""
    f = Path(root) / CURRENT
    return json.loads(f.read_text())["generation"] if f.is_file() else None


def serving_dir(root: str | Path) -> Path | None:
    """The deployment a frontend of ``root`` serves: its serving generation, the root itself
    for a single deployment written without generations, or None (nothing written yet)."""
    r = Path(root)
    if (r / DEPLOYMENT).is_file():
        return r
    gen = current_generation(r)
    return None if gen is None else r / gen


def is_sealed(deployment: str | Path) -> bool:
    """Whether a generation was superseded (its shards refuse writes)."""
    return (Path(deployment) / SEALED).exists()


def _durable_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- what a generation's shards logged ------------------------------------------------------
def _shard_dirs(dep: Path) -> list[Path]:
    return [dep / f"shard-{s:03d}" for s in range(read_plan(dep).num_shards)]


def _positions(dep: Path) -> dict[str, int]:
    """The last logged seq of every write log of a deployment."""
    out = {}
    for d in _shard_dirs(dep):
        for kind in ("posting-writes", "seeker-writes"):
            out[f"{d.name}/{kind}"] = logged_seq(d / kind)  # read only: the shard writes
    return out


def _last_writes(dep: Path, kind: str, key: str, after: dict[str, int] | None):
    """id -> (row frame, vector) of its last logged upsert, or None (deleted), over every
    shard of ``dep``, in the order the writes were logged (``away``: a copy that moved to
    another shard, not a deletion)."""
    recs = []
    for s, d in enumerate(_shard_dirs(dep)):
        start = 0 if after is None else after.get(f"{d.name}/{kind}", 0)
        recs.extend((at, s, seq, op, frame, vec) for at, seq, op, frame, vec in
                    logged_records(d / kind, start) if op in ("upsert", "delete"))
    last: dict[str, tuple[pl.DataFrame, np.ndarray] | None] = {}
    for _, _, _, op, frame, vec in sorted(recs, key=lambda r: r[:3]):
        for i, x in enumerate(frame[key].to_list()):
            last[x] = (frame[i], vec[i]) if op == "upsert" else None
    return last


def _interactions(dep: Path) -> pl.DataFrame:
    """Every interaction a deployment knows: its shards' start-up tables and recorded log."""
    parts = [pl.read_parquet(d / "interactions.parquet") for d in _shard_dirs(dep)
             if (d / "interactions.parquet").is_file()]
    return _union([*parts, _recorded(dep)])


def _recorded(dep: Path) -> pl.DataFrame | None:
    """The interactions recorded through a deployment's shards (None: none logged)."""
    from workers.matching.interaction_log import is_interaction_log, read_interactions

    return read_interactions(dep / "interactions") if is_interaction_log(dep / "interactions") \
        else None


def _union(parts) -> pl.DataFrame:
    cols = list(INTERACTION_SCHEMA)
    parts = [p.select(cols).cast(INTERACTION_SCHEMA) for p in parts if p is not None and p.height]
    if not parts:
        return pl.DataFrame(schema=INTERACTION_SCHEMA)
    return pl.concat(parts, how="vertical").unique(maintain_order=True)


def _apply(table: pl.DataFrame, vectors: np.ndarray, last: dict, key: str,
           encode: Callable[[pl.DataFrame], np.ndarray]) -> tuple[pl.DataFrame, np.ndarray]:
    """``table`` with the carried writes: written ids replaced or removed, upserts encoded
    again by ``encode`` (the vectors of the day's encoder)."""
    if not last:
        return table, np.asarray(vectors, np.float32)
    keep = ~table[key].is_in(pl.Series(list(last), dtype=pl.Utf8).implode())
    up = [v[0] for v in last.values() if v is not None]
    out = table.filter(keep)
    vec = np.asarray(vectors, np.float32)[keep.to_numpy()]
    if up:
        rows = pl.concat(up, how="diagonal_relaxed")
        # the day's table may carry columns a write through the API does not (and back)
        out = pl.concat([out, rows], how="diagonal_relaxed").select(table.columns)
        rows = out.tail(rows.height)
        vec = np.concatenate([vec, np.asarray(encode(rows), np.float32)])
    return out, vec


# -- writing a generation -------------------------------------------------------------------
def deploy_generation(root: str | Path, postings: pl.DataFrame, posting_vectors: np.ndarray,
                      seekers: pl.DataFrame, seeker_vectors: np.ndarray,
                      interactions: pl.DataFrame | None = None, *,
                      encode_postings: Callable[[pl.DataFrame], np.ndarray],
                      encode_seekers: Callable[[pl.DataFrame], np.ndarray],
                      shards: int = 2, ranker=KEEP, ranker_pool: int | None = None) -> str:
    """Write the day's tables as ``root``'s next generation, carrying every write the
    serving one acknowledged, and flip to it (the module docstring). ``encode_*``: the
    vectors of carried rows, by the day's encoder. ``ranker``: a
    :class:`core.ranker.Ranker`, None (the formula), or :data:`KEEP` (the serving
    generation's ranker and pool). Returns the new generation's name."""
    from workers.matching.sharded import AreaPlan

    r = Path(root)
    if (r / DEPLOYMENT).is_file():
        raise InvalidInputError(f"{r} is a single deployment, written without generations: "
                                "deploy into a new --match-root", field="match_root")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise InvalidInputError(f"shards must be an int >= 1, got {shards!r}", field="shards")
    old_name = current_generation(r)
    old = None if old_name is None else r / old_name
    # sealed but current: a hand-over that died before the flip. Nothing is written there
    # any more, so this deployment carries all of it in step 1 and has nothing to hand over
    resumed = old is not None and is_sealed(old)
    if resumed:
        log.warning("%s is sealed but still current (a deployment died handing over): "
                    "carrying all of it", old)
    pool = ranker_pool
    if ranker == KEEP:
        ranker, pool = _kept_ranker(old, ranker_pool)
    r.mkdir(parents=True, exist_ok=True)
    existing = [int(p.name[4:]) for p in r.glob("gen-*") if p.name[4:].isdigit()]
    name = _gen(max(existing, default=0) + 1)
    new = r / name
    try:  # the claim: of two deployments started together, one writes the generation
        new.mkdir()
    except FileExistsError:
        raise AlreadyExistsError(f"another deployment is writing {new}") from None
    t0 = time.perf_counter()
    inter = _union([interactions])
    at = None
    if old is not None:  # 1. carry what the serving generation logged, while it serves
        at = _positions(old)
        postings, posting_vectors = _apply(postings, posting_vectors, _last_writes(
            old, "posting-writes", "posting_id", None), "posting_id", encode_postings)
        seekers, seeker_vectors = _apply(seekers, seeker_vectors, _last_writes(
            old, "seeker-writes", "seeker_id", None), "seeker_id", encode_seekers)
        inter = _union([inter, _interactions(old)])
    plan = AreaPlan.build(postings, shards)
    try:
        write_deployment(new, plan, postings, posting_vectors, seekers, seeker_vectors,
                         inter if inter.height else None, ranker=ranker,
                         **({} if pool is None else {"ranker_pool": pool}))
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)  # never flipped to: nothing refers to it
        raise
    carried = 0
    if old is not None and not resumed:  # 2. seal, hand the stragglers over, flip
        _durable_write(old / SEALED, json.dumps({"superseded_by": name}))
        carried = _hand_over(old, new, at, inter, postings, posting_vectors, seekers,
                             encode_postings, encode_seekers)
    _durable_write(r / CURRENT, json.dumps({"generation": name, "previous": old_name}))
    log.info("match generation %s deployed in %.1f s (%d writes handed over after the seal)",
             name, time.perf_counter() - t0, carried)
    return name


def _kept_ranker(old: Path | None, pool: int | None):
    if old is None or not (old / RANKING / "settings.json").is_file():
        return None, pool
    from core.ranker import Ranker

    kept = json.loads((old / RANKING / "settings.json").read_text())["pool"]
    return Ranker.load(old / RANKING / "model"), kept if pool is None else pool


def _hand_over(old: Path, new: Path, at: dict, inter: pl.DataFrame, postings: pl.DataFrame,
               posting_vectors: np.ndarray, seekers: pl.DataFrame, encode_postings,
               encode_seekers) -> int:
    """Append what the sealed generation logged after ``at`` to the new generation's own
    write logs, routed by its plan (each shard replays them on start as writes made through
    it). Returns the writes handed over."""
    from workers.matching.interaction_log import shard_log

    plan = read_plan(new)
    dirs = _shard_dirs(new)
    n = 0
    pv = dict(zip(postings["posting_id"].to_list(), np.asarray(posting_vectors), strict=True))
    owner = _owners(plan, postings)
    pw = _last_writes(old, "posting-writes", "posting_id", at)
    if pw:  # every shard sees the write and keeps what it owns (as a frontend's write)
        up = {p: v for p, v in pw.items() if v is not None}
        gone = [p for p, v in pw.items() if v is None]
        frame = pl.concat([f for f, _ in up.values()], how="diagonal_relaxed") if up else None
        vecs = np.asarray(encode_postings(frame), np.float32) if up else None
        for d in dirs:
            wl = WriteLog(d / "posting-writes")
            if up:
                wl.append("upsert", frame, vecs)
            if gone:
                wl.append("delete", pl.DataFrame({"posting_id": gone}), None)
        for p in gone:
            pv.pop(p, None)
        if up:  # the vectors the seekers' histories take from now on
            pv.update(zip(frame["posting_id"].to_list(), vecs, strict=True))
            owner.update(_owners(plan, frame))
        n += len(pw)
    held = [set(seekers["seeker_id"][idx].to_list()) for idx in plan.split_seekers(seekers)]
    sw = _last_writes(old, "seeker-writes", "seeker_id", at)
    if sw:
        up = {s: v for s, v in sw.items() if v is not None}
        frame = pl.concat([f for f, _ in up.values()], how="diagonal_relaxed") if up else None
        vecs = np.asarray(encode_seekers(frame), np.float32) if up else None
        for s, d in enumerate(dirs):
            wl = WriteLog(d / "seeker-writes")
            here = [s in plan.seeker_shards(areas_of(x))
                    for x in frame["desired_regions"].to_list()] if up else []
            mine = [sid for sid, h in zip(up, here, strict=True) if h]
            state = inter.filter(pl.col("seeker_id").is_in(pl.Series(mine, dtype=pl.Utf8)
                                                           .implode()))
            foreign = sorted({p for p in state["posting_id"].to_list()
                              if p in pv and owner[p] != s})
            if foreign:
                wl.append("vectors", pl.DataFrame({"posting_id": foreign}),
                          np.stack([pv[p] for p in foreign]))
            if state.height:
                wl.append("carry", state.select("seeker_id", "posting_id", "event"), None)
            if any(here):
                wl.append("upsert", frame.filter(pl.Series(here)), vecs[np.asarray(here)])
            away = [sid for sid, v in sw.items() if v is None or sid not in mine]
            if away:
                wl.append("delete", pl.DataFrame({"seeker_id": away}), None)
            held[s] = (held[s] - set(away)) | set(mine)
        n += len(sw)
    # the start-up tables are in `inter` already: only the recorded log can hold new rows
    rows = _union([_recorded(old)]).join(inter, on=list(INTERACTION_SCHEMA), how="anti",
                                         nulls_equal=True)
    if rows.height:
        for s in range(len(dirs)):
            mine = rows.filter(pl.col("seeker_id").is_in(pl.Series(sorted(held[s]),
                                                                   dtype=pl.Utf8).implode()))
            if mine.height:
                need = {p: pv[p] for p in set(mine["posting_id"].to_list())
                        if p in pv and owner[p] != s}
                shard_log(new / "interactions", s).append(mine, need)
        n += rows.height
    return n


def _owners(plan, postings: pl.DataFrame) -> dict[str, int]:
    ids = postings["posting_id"]
    return {p: s for s, idx in enumerate(plan.split_postings(postings))
            for p in ids[idx].to_list()}


# -- serving the generations ----------------------------------------------------------------
class GenerationalMatchService:
    """A matching frontend over a root of generations: the serving generation's
    :class:`~workers.matching.frontend.ShardedMatchService` (built by ``attach(deployment
    dir)``), switched to the next one when the manifest flips (:meth:`maybe_switch`, from
    the server's health check). Reads go to the generation being served; a write a sealed
    generation refuses waits up to ``switch_wait_s`` for the flip and goes to the new one.
    ``retire(service)`` stops an old generation's shards ``retire_after_s`` after the
    switch (other frontends may still be reading from them meanwhile)."""

    def __init__(self, root: str | Path, attach: Callable[[Path], object], *,
                 retire: Callable[[object], None] | None = None, retire_after_s: float = 60.0,
                 switch_wait_s: float = 30.0, wait: bool = False) -> None:
        """``wait``: a root without a generation yet is served from its first one (until
        then every call is UNAVAILABLE), instead of refused."""
        if retire_after_s < 0 or switch_wait_s <= 0:
            raise ValueError("retire_after_s must be >= 0 and switch_wait_s > 0")
        self.root, self._attach, self._retire = Path(root), attach, retire
        self.retire_after_s, self.switch_wait_s = retire_after_s, switch_wait_s
        gen = current_generation(self.root)
        if gen is None and not wait:
            raise InvalidInputError(f"{root} holds no matching generation", field="match_root")
        self.generation, self.service = gen, None if gen is None else attach(self.root / gen)
        self._lock = threading.Lock()
        self.switches = 0

    def __getattr__(self, name: str):  # the rest of the serving generation's frontend
        return getattr(self._served(), name)

    def _served(self):
        svc = self.__dict__["service"]
        if svc is None:
            raise UnavailableError(f"{self.root} has no matching generation yet (jobrec "
                                   "match-deploy writes the first)")
        return svc

    def maybe_switch(self) -> bool:
        """Serve the manifest's generation if it moved on; True if this call switched."""
        gen = current_generation(self.root)
        if gen is None or gen == self.generation:
            return False
        with self._lock:
            if gen == self.generation:
                return False
            old, new = self.service, self._attach(self.root / gen)
            log.info("matching: switched %s -> %s", self.generation, gen)
            self.service, self.generation = new, gen
            self.switches += 1
        if self._retire is not None and old is not None:
            t = threading.Timer(self.retire_after_s, self._retire, (old,))
            t.daemon = True
            t.start()
        return True

    def _read(self, method: str, *args, **kw):
        try:
            return getattr(self._served(), method)(*args, **kw)
        except UnavailableError:
            # the old generation's shards retired by another frontend before this one looked
            if not self.maybe_switch():
                raise
            return getattr(self._served(), method)(*args, **kw)

    async def _aread(self, method: str, *args, **kw):
        import asyncio

        try:
            return await getattr(self._served(), method)(*args, **kw)
        except UnavailableError:
            if not await asyncio.to_thread(self.maybe_switch):
                raise
            return await getattr(self._served(), method)(*args, **kw)

    def seeker_row(self, seeker_id):
        """As :meth:`ShardedMatchService.seeker_row`, on the serving generation."""
        return self._read("seeker_row", seeker_id)

    def health(self) -> dict:
        """The serving generation's shards' health (UNAVAILABLE before the first)."""
        return {**self._served().health(), "generation": self.generation}

    def seeker_count(self) -> int:
        """Seekers held by the serving generation's shards (0 before the first)."""
        return 0 if self.service is None else self.service.seeker_count()

    def jobs_with_rows(self, **kw):
        """As :meth:`ShardedMatchService.jobs_with_rows`, on the serving generation."""
        return self._read("jobs_with_rows", **kw)

    async def ajobs_with_rows(self, **kw):
        """As :meth:`ShardedMatchService.ajobs_with_rows`, on the serving generation."""
        return await self._aread("ajobs_with_rows", **kw)

    def candidates_with_profiles(self, posting_id, **kw):
        """As :meth:`ShardedMatchService.candidates_with_profiles`."""
        return self._read("candidates_with_profiles", posting_id, **kw)

    async def acandidates_with_profiles(self, posting_id, **kw):
        """As :meth:`ShardedMatchService.acandidates_with_profiles`."""
        return await self._aread("acandidates_with_profiles", posting_id, **kw)

    def recommend_jobs(self, **kw):
        """:meth:`jobs_with_rows` without the rows."""
        return self.jobs_with_rows(**kw)[0]

    def recommend_candidates(self, posting_id, **kw):
        """:meth:`candidates_with_profiles` without the profiles."""
        return self.candidates_with_profiles(posting_id, **kw)[0]

    def _written(self, method: str, *args):
        deadline = time.monotonic() + self.switch_wait_s
        while True:
            try:
                return getattr(self._served(), method)(*args)
            except RetiredError:
                if time.monotonic() > deadline:
                    raise
                if not self.maybe_switch():
                    time.sleep(0.1)  # the deployment is handing over: the flip follows

    def record_interactions(self, rows):
        """As :meth:`ShardedMatchService.record_interactions`, on the serving generation."""
        return self._written("record_interactions", rows)

    def upsert_seekers(self, profiles):
        """As :meth:`ShardedMatchService.upsert_seekers`, on the serving generation."""
        return self._written("upsert_seekers", profiles)

    def delete_seekers(self, seeker_ids):
        """As :meth:`ShardedMatchService.delete_seekers`, on the serving generation."""
        return self._written("delete_seekers", seeker_ids)

    def upsert_postings(self, postings, vectors):
        """As :meth:`ShardedMatchService.upsert_postings`, on the serving generation."""
        return self._written("upsert_postings", postings, vectors)

    def delete_postings(self, posting_ids):
        """As :meth:`ShardedMatchService.delete_postings`, on the serving generation."""
        return self._written("delete_postings", posting_ids)
