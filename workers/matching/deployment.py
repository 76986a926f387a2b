"""A matching deployment on disk: what :class:`StoredMatchShard` actors open, so a shard is
created and restarted from a path (Ray cannot restart an actor whose constructor tables went
out of scope, ray-project/ray#53727), and the write logs that make every acknowledged posting
and seeker write survive a restart.

Layout under the root: ``MATCH_DEPLOYMENT.json`` (the area plan; written last, so a root
without it is an unfinished write), ``shard-NNN/`` (start-up tables: ``postings.parquet``,
``posting_vectors.npy``, ``seekers.parquet``, ``seeker_vectors.npy``, ``interactions.parquet``,
``foreign.parquet``; write logs ``posting-writes/`` and ``seeker-writes/``),
``interactions/`` (the shards' interaction logs, :func:`~workers.matching.interaction_log.shard_log`)
and, for a deployment with a learned ranker, ``ranking/`` (``model/``: the ranker;
``log.parquet``: the start-up log every shard fits the same collaborative model on;
``history_occ.parquet``; ``settings.json``: the pool size).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import polars as pl

from core.errors import InvalidInputError, RetiredError
from workers.matching.sharded import AreaPlan, MatchShard, build_shards


class WriteLog:
    """A shard's writes of one kind since its start-up tables: ``NNNNNNNN.parquet`` files (an
    upsert's rows with their vectors, or a delete's ids), each written whole (temporary name,
    ``fsync``, rename) before the write is acknowledged, replayed in order on start."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        for t in self.dir.glob("*.tmp"):  # a write that never finished was never acknowledged
            t.unlink()
        self.seq = logged_seq(self.dir)

    def append(self, op: str, frame: pl.DataFrame, vectors: np.ndarray | None) -> None:
        """Log one write (``upsert`` with vectors, ``delete``, or ``away``: the shard's copy
        of what moved to another shard) durably, stamped with the time it was logged (the
        order a new generation carries the writes of several shards in)."""
        t = frame.with_columns(pl.lit(op).alias("_op"), pl.lit(time.time_ns()).alias("_at"))
        if vectors is not None:
            t = t.with_columns(pl.Series("_vector", [np.asarray(v, "<f4").tobytes()
                                                     for v in vectors], dtype=pl.Binary))
        self.seq += 1
        path = self.dir / f"{self.seq:08d}.parquet"
        tmp = path.with_suffix(".tmp")
        t.write_parquet(tmp)
        for target in (tmp, self.dir):
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if target == tmp:
                os.replace(tmp, path)

    def entries(self):
        """(op, frame, vectors or None) of every logged write, in order."""
        for _, _, op, frame, vec in self.records():
            yield op, frame, vec

    def records(self, after: int = 0):
        """(logged at in ns, seq, op, frame, vectors or None) of the writes after ``after``."""
        return logged_records(self.dir, after)


def _logged_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.parquet"))


def logged_seq(directory: str | Path) -> int:
    """The seq of the last write logged in a :class:`WriteLog` directory (0: none)."""
    return max([int(f.stem) for f in _logged_files(Path(directory))], default=0)


def logged_records(directory: str | Path, after: int = 0):
    """:meth:`WriteLog.records` of a directory, read without opening it as a writer does
    (its writer may be appending meanwhile: its temporary files are left alone)."""
    for f in _logged_files(Path(directory)):
        seq = int(f.stem)
        if seq <= after:
            continue
        t = pl.read_parquet(f)
        if t.height == 0:
            continue
        op = t["_op"][0]
        at = int(t["_at"][0]) if "_at" in t.columns else 0
        vec = None
        if "_vector" in t.columns:
            vec = np.stack([np.frombuffer(b, "<f4") for b in t["_vector"].to_list()])
        yield at, seq, op, t.drop([c for c in ("_op", "_vector", "_at") if c in t.columns]), vec


DEPLOYMENT = "MATCH_DEPLOYMENT.json"
SEALED = "SEALED"  # in a superseded generation (workers.matching.generations)


def write_deployment(root: str | Path, plan: AreaPlan, postings: pl.DataFrame,
                     posting_vectors: np.ndarray, seekers: pl.DataFrame,
                     seeker_vectors: np.ndarray, interactions: pl.DataFrame | None = None,
                     *, ranker=None, ranker_pool: int = 300) -> Path:
    """Write each shard's start-up tables under ``root`` (what :class:`StoredMatchShard`
    opens: a shard actor is created and restarted from a path, not from tables held by the
    process that started it). Refuses a ``root`` that holds a deployment already.
    ``ranker``: a :class:`core.ranker.Ranker` the shards order RecommendJobs by, over
    pools of ``ranker_pool`` per signal."""
    import json

    r = Path(root)
    if (r / DEPLOYMENT).exists():
        raise InvalidInputError(f"{r} holds a matching deployment already", field="match_root")
    if ranker is not None:
        _write_ranking(r / RANKING, ranker, ranker_pool, interactions, postings)
    for kw in build_shards(plan, postings, posting_vectors, seekers, seeker_vectors,
                           interactions=interactions):
        d = r / f"shard-{kw['shard_id']:03d}"
        d.mkdir(parents=True, exist_ok=True)
        kw["postings"].write_parquet(d / "postings.parquet")
        np.save(d / "posting_vectors.npy", np.asarray(kw["posting_vectors"], np.float32))
        kw["seekers"].write_parquet(d / "seekers.parquet")
        np.save(d / "seeker_vectors.npy", np.asarray(kw["seeker_vectors"], np.float32))
        if kw["interactions"] is not None:
            kw["interactions"].write_parquet(d / "interactions.parquet")
        f = kw["foreign"]
        pl.DataFrame({"posting_id": list(f), "vector": [np.asarray(v, "<f4").tobytes()
                                                         for v in f.values()]},
                     schema={"posting_id": pl.Utf8, "vector": pl.Binary}
                     ).write_parquet(d / "foreign.parquet")
    # the marker last: a root without it is an unfinished write, refused by open
    (r / DEPLOYMENT).write_text(json.dumps(plan.to_json()))
    return r


RANKING = "ranking"


def _write_ranking(d: Path, ranker, pool: int, interactions: pl.DataFrame | None,
                   postings: pl.DataFrame) -> None:
    import json

    from core.collab import CollabModel
    from workers.matching.ranked import history_occupations

    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
        raise InvalidInputError(f"ranker pool must be an int >= 1, got {pool!r}",
                                field="ranker_pool")
    log = interactions if interactions is not None else pl.DataFrame(
        schema={"seeker_id": pl.Utf8, "posting_id": pl.Utf8, "event": pl.Utf8})
    ranker.save(d / "model")
    log.write_parquet(d / "log.parquet")
    occ = history_occupations(CollabModel(log), postings)
    pl.DataFrame({"posting_id": list(occ), "occ": list(occ.values())},
                 schema={"posting_id": pl.Utf8, "occ": pl.Int64}
                 ).write_parquet(d / "history_occ.parquet")
    (d / "settings.json").write_text(json.dumps({"pool": pool}))


def deployment_ranked(root: str | Path) -> bool:
    """Whether the deployment at ``root`` orders RecommendJobs by a learned ranker."""
    return (Path(root) / RANKING / "settings.json").is_file()


def deployed_manifest(root: str | Path) -> dict | None:
    """The manifest of the deployment's ranker, or None."""
    import json

    f = Path(root) / RANKING / "model" / "manifest.json"
    return json.loads(f.read_text()) if f.is_file() else None


def open_ranking(root: str | Path):
    """The :class:`~workers.matching.ranked.ShardRanker` of a deployment, or None."""
    import json

    from core.collab import CollabModel
    from core.ranker import Ranker
    from workers.matching.ranked import ShardRanker

    d = Path(root) / RANKING
    if not deployment_ranked(root):
        return None
    occ = pl.read_parquet(d / "history_occ.parquet")
    return ShardRanker(Ranker.load(d / "model"), CollabModel(pl.read_parquet(d / "log.parquet")),
                       json.loads((d / "settings.json").read_text())["pool"],
                       dict(zip(occ["posting_id"].to_list(), occ["occ"].to_list(), strict=True)))


def read_plan(root: str | Path) -> AreaPlan:
    """The area plan of the deployment at ``root``."""
    import json

    p = Path(root) / DEPLOYMENT
    if not p.is_file():
        raise InvalidInputError(f"{root} holds no matching deployment (no {DEPLOYMENT})",
                                field="match_root")
    return AreaPlan.from_json(json.loads(p.read_text()))


class StoredMatchShard(MatchShard):
    """A :class:`MatchShard` opened from a deployment root: its start-up tables, its write
    logs (:class:`WriteLog`) and its interaction log (``root/interactions``). A write to a
    sealed generation (:mod:`workers.matching.generations`) is logged, then refused with
    :class:`~core.errors.RetiredError`: a write acknowledged here was logged before the seal,
    so the deployment that sealed it hands it over to the next generation."""

    def __init__(self, root: str | Path, shard_id: int) -> None:
        self._root, self._depth = Path(root), 1  # no seal check while the logs replay
        plan = read_plan(root)
        d = Path(root) / f"shard-{shard_id:03d}"
        inter = pl.read_parquet(d / "interactions.parquet") \
            if (d / "interactions.parquet").is_file() else None
        foreign = {p: np.frombuffer(b, "<f4").copy() for p, b in
                   pl.read_parquet(d / "foreign.parquet").iter_rows()}
        super().__init__(shard_id, plan, pl.read_parquet(d / "postings.parquet"),
                         np.load(d / "posting_vectors.npy"), pl.read_parquet(d / "seekers.parquet"),
                         np.load(d / "seeker_vectors.npy"), interactions=inter, foreign=foreign,
                         log_root=Path(root) / "interactions",
                         posting_log=WriteLog(d / "posting-writes"),
                         seeker_log=WriteLog(d / "seeker-writes"), ranking=open_ranking(root))
        self._depth = 0

    def _sealed_after(self, method: str, *args, **kw):
        self._depth += 1
        try:
            out = getattr(super(), method)(*args, **kw)
        finally:
            self._depth -= 1
        # after the write is logged: finding no seal here means the write precedes it
        if self._depth == 0 and (self._root / SEALED).exists():
            raise RetiredError(f"matching generation {self._root.name} was superseded: "
                               "write to the serving one")
        return out

    def record(self, rows, vectors):
        """:meth:`MatchShard.record`, refused once the generation is sealed."""
        return self._sealed_after("record", rows, vectors)

    def upsert_seekers(self, seekers, vectors, carried, liked_vectors):
        """:meth:`MatchShard.upsert_seekers`, refused once the generation is sealed."""
        return self._sealed_after("upsert_seekers", seekers, vectors, carried, liked_vectors)

    def delete_seekers(self, seeker_ids, moved: bool = False):
        """:meth:`MatchShard.delete_seekers`, refused once the generation is sealed."""
        return self._sealed_after("delete_seekers", seeker_ids, moved)

    def upsert_postings(self, postings, vectors):
        """:meth:`MatchShard.upsert_postings`, refused once the generation is sealed."""
        return self._sealed_after("upsert_postings", postings, vectors)

    def delete_postings(self, posting_ids, moved: bool = False):
        """:meth:`MatchShard.delete_postings`, refused once the generation is sealed."""
        return self._sealed_after("delete_postings", posting_ids, moved)
