"""Matching inside the shards: each shard holds the postings of its areas *and* the seekers
who may be matched to them, so ``RecommendJobs`` / ``RecommendCandidates`` are answered where
the data is and a frontend (:class:`~workers.matching.frontend.ShardedMatchService`) holds
neither side.

Placement is by area (:class:`AreaPlan`), fixed when the deployment is built:

- every 시군구 has one owner shard, and so does every province (for postings without a
  시군구 and 시군구 not seen at build time); a posting lives in the owner of its area;
- a seeker lives in every shard that owns one of its desired areas (a desired province: the
  owners of all its 시군구 and the province's own).

So a seeker's shards hold every posting it may be recommended (the desired regions are a hard
rule) and a posting's shard holds every seeker who may see it: jobs fan out to the seeker's
shards and merge exactly as in the batch; candidates are one shard's answer. Placement never
changes after the build: an upsert never moves data between shards.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from core.collab import LIKED_EVENTS
from core.errors import NotConfiguredError, NotFoundError
from core.matching import Match, MatchConfig, SeekerQuery
from core.seekers import Area, areas_of
from workers.jobs.match import (
    apply_interactions,
    excluded_by_seeker,
    history_vectors,
    liked_by_seeker,
    seekers_by_excluded,
    shard_postings,
)
from workers.matching.index import JobIndex, SeekerIndex, merge_exact


@dataclass(frozen=True)
class AreaPlan:
    """Which shard owns each area (see the module docstring)."""

    num_shards: int
    sigungu_owner: Mapping[tuple[str, str], int]
    sido_owner: Mapping[str, int]

    def __post_init__(self) -> None:
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
        bad = [s for s in [*self.sigungu_owner.values(), *self.sido_owner.values()]
               if not 0 <= s < self.num_shards]
        if bad:
            raise ValueError(f"shard {bad[0]} is outside 0..{self.num_shards - 1}")
        by_sido: dict[str, set[int]] = {}
        for (sido, _), s in self.sigungu_owner.items():
            by_sido.setdefault(sido, set()).add(s)
        for sido, s in self.sido_owner.items():
            by_sido.setdefault(sido, set()).add(s)
        object.__setattr__(self, "_by_sido", {k: tuple(sorted(v)) for k, v in by_sido.items()})

    def to_json(self) -> dict:
        """A JSON-able form (:meth:`from_json` reads it back)."""
        return {"num_shards": self.num_shards,
                "sigungu_owner": [[a, g, s] for (a, g), s in sorted(self.sigungu_owner.items())],
                "sido_owner": dict(sorted(self.sido_owner.items()))}

    @classmethod
    def from_json(cls, d: Mapping) -> AreaPlan:
        """The plan :meth:`to_json` wrote."""
        return cls(int(d["num_shards"]), {(a, g): int(s) for a, g, s in d["sigungu_owner"]},
                   {a: int(s) for a, s in d["sido_owner"].items()})

    @classmethod
    def build(cls, postings: pl.DataFrame, num_shards: int) -> AreaPlan:
        """Owners from the batch's geo split of ``postings`` (H3 bisection balanced by count):
        each area goes to the shard holding most of its postings (ties: the lower shard)."""
        owner = np.zeros(postings.height, dtype=np.int64)
        for s, rows in enumerate(shard_postings(postings, num_shards)):
            owner[rows] = s
        sgg = postings["sigungu"].to_list() if "sigungu" in postings.columns \
            else [None] * postings.height
        by_area: dict[tuple[str, str], Counter] = {}
        by_sido: dict[str, Counter] = {}
        for sido, g, s in zip(postings["sido"].to_list(), sgg, owner.tolist(), strict=True):
            by_sido.setdefault(sido, Counter())[s] += 1
            if g:
                by_area.setdefault((sido, g), Counter())[s] += 1

        def top(c: Counter) -> int:
            return min(c, key=lambda s: (-c[s], s))
        return cls(num_shards, {a: top(c) for a, c in by_area.items()},
                   {a: top(c) for a, c in by_sido.items()})

    def posting_shard(self, sido: str, sigungu: str | None) -> int:
        """The shard a posting in (``sido``, ``sigungu``) lives in."""
        if sigungu and (sido, sigungu) in self.sigungu_owner:
            return self.sigungu_owner[(sido, sigungu)]
        return self.sido_owner.get(sido, 0)

    def area_shards(self, area: Area) -> tuple[int, ...]:
        """The shards that may hold postings in ``area``."""
        if area.sigungu is not None:
            return (self.posting_shard(area.sido, area.sigungu),)
        return self._by_sido.get(area.sido, (0,))  # type: ignore[attr-defined]

    def seeker_shards(self, areas: Sequence[Area]) -> tuple[int, ...]:
        """The shards holding a seeker of these desired areas (sorted)."""
        return tuple(sorted({s for a in areas for s in self.area_shards(a)}))

    def split_postings(self, postings: pl.DataFrame) -> list[np.ndarray]:
        """Row indices of each shard's postings."""
        sgg = postings["sigungu"].to_list() if "sigungu" in postings.columns \
            else [None] * postings.height
        owner = np.array([self.posting_shard(a, g) for a, g in
                          zip(postings["sido"].to_list(), sgg, strict=True)], dtype=np.int64)
        return [np.flatnonzero(owner == s) for s in range(self.num_shards)]

    def split_seekers(self, seekers: pl.DataFrame) -> list[np.ndarray]:
        """Row indices of each shard's seekers (a seeker may be in several)."""
        rows: list[list[int]] = [[] for _ in range(self.num_shards)]
        for i, regions in enumerate(seekers["desired_regions"].to_list()):
            for s in self.seeker_shards(areas_of(regions)):
                rows[s].append(i)
        return [np.asarray(r, dtype=np.int64) for r in rows]


def foreign_vectors(interactions: pl.DataFrame | None, seeker_ids: Sequence[str],
                    local_ids: Sequence[str], postings: pl.DataFrame,
                    posting_vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Vectors of the postings ``seeker_ids`` liked that are not among ``local_ids`` (a
    shard needs them for its seekers' history vectors)."""
    if interactions is None or interactions.height == 0:
        return {}
    liked = set(interactions.filter(
        pl.col("event").is_in(list(LIKED_EVENTS))
        & pl.col("seeker_id").is_in(pl.Series(list(seeker_ids), dtype=pl.Utf8).implode())
    )["posting_id"].to_list()) - set(local_ids)
    if not liked:
        return {}
    at = {p: i for i, p in enumerate(postings["posting_id"].to_list())}
    return {p: np.asarray(posting_vectors[at[p]], np.float32) for p in sorted(liked) if p in at}


SHOWN_FIELDS = ("title", "company", "region", "closes_on", "registered_on")
FOLD_AT = 2000  # written seekers kept beside the base index before they are folded into it


def _shown(row: Mapping) -> dict:
    return {f: row.get(f) for f in SHOWN_FIELDS}


class MatchShard:
    """One shard of two-sided matching: its postings (a :class:`JobIndex`), its seekers (a
    :class:`SeekerIndex` for candidates, rows and vectors for jobs) and their exclusions and
    history, with the shard's own durable interaction log replayed on start.

    ``interactions``: the base log for these seekers; ``foreign``: vectors of postings of
    other shards that they liked (:func:`foreign_vectors`); ``log_root``: the root of the
    per-shard interaction logs (:func:`~workers.matching.interaction_log.shard_log`; a path,
    so a restarted actor opens it again), or None: writes refused.
    """

    def __init__(self, shard_id: int, plan: AreaPlan, postings: pl.DataFrame,
                 posting_vectors: np.ndarray, seekers: pl.DataFrame, seeker_vectors: np.ndarray,
                 *, interactions: pl.DataFrame | None = None,
                 foreign: Mapping[str, np.ndarray] | None = None,
                 log_root: str | Path | None = None, posting_log=None, seeker_log=None,
                 ranking=None) -> None:
        from workers.matching.interaction_log import shard_log

        self.shard_id, self.plan = shard_id, plan
        self.ranking = ranking  # a ShardRanker (workers.matching.ranked), or None: the formula
        pv = np.asarray(posting_vectors, dtype=np.float32)
        self.jobs = JobIndex(postings, pv)
        self._prow = {r["posting_id"]: r for r in postings.iter_rows(named=True)}
        self._shown = {p: _shown(r) for p, r in self._prow.items()}
        self._pvec = dict(zip(postings["posting_id"].to_list(), pv, strict=True))
        self._foreign: dict[str, np.ndarray] = dict(foreign or {})
        self.posting_log = None
        if posting_log is not None:  # posting writes acknowledged since the start-up tables,
            self._replay(posting_log)  # before the history vectors use them
            self.posting_log = posting_log
        carried = None
        if seeker_log is not None:  # seeker writes since the start-up tables, folded in
            seekers, seeker_vectors, carried = self._replay_seekers(seeker_log, seekers,
                                                                    seeker_vectors)
        self.seekers = seekers
        self._svec = np.asarray(seeker_vectors, dtype=np.float32)
        self._at = {sid: i for i, sid in enumerate(seekers["seeker_id"].to_list())}
        self.log = None if log_root is None else shard_log(log_root, shard_id)
        parts = [f for f in (interactions, carried) if f is not None and f.height]
        if self.log is not None:
            recorded = self.log.read()
            if recorded.height:
                self._foreign.update(self.log.vectors())
                parts.append(recorded)
        mine = None
        if parts:
            cols = ["seeker_id", "posting_id", "event"]
            mine = pl.concat([f.select(cols) for f in parts], how="vertical") \
                .filter(pl.col("seeker_id").is_in(seekers["seeker_id"].implode()))
        self._set_state(mine)
        self.index = SeekerIndex(seekers, self._svec, self._gone)
        # seekers written since: rows and vectors by id, a small index of them searched beside
        # the base one (whose superseded rows are retired), folded in when it grows
        self._fresh: dict[str, tuple[dict, np.ndarray]] = {}
        self._dead: set[str] = set()
        self.delta: SeekerIndex | None = None
        self.seeker_log = seeker_log

    def _set_state(self, mine: pl.DataFrame | None) -> None:
        """Exclusions, liked postings and history vectors from interaction rows."""
        self.excluded = excluded_by_seeker(mine)
        self._liked = liked_by_seeker(mine)
        # only the liked postings' vectors: not a copy of every posting vector at start-up
        known = sorted({p for ps in self._liked.values() for p in ps
                        if p in self._pvec or p in self._foreign})
        self.history = history_vectors(mine, known, np.asarray(
            [self._vector(p) for p in known], dtype=np.float32)) if known else {}
        self._gone = seekers_by_excluded(self.excluded)

    def _replay_seekers(self, log, seekers: pl.DataFrame, vectors: np.ndarray):
        """(seekers, vectors, carried state rows) after the logged seeker writes."""
        last: dict[str, tuple[pl.DataFrame, np.ndarray] | None] = {}
        carried = []
        for op, frame, vecs in log.entries():
            if op == "vectors":
                self._foreign.update(zip(frame["posting_id"].to_list(), vecs, strict=True))
            elif op == "carry":
                carried.append(frame)
            else:
                for i, sid in enumerate(frame["seeker_id"].to_list()):
                    last[sid] = (frame[i], vecs[i]) if op == "upsert" else None
        if last:
            keep = ~seekers["seeker_id"].is_in(pl.Series(list(last), dtype=pl.Utf8).implode())
            up = [v for v in last.values() if v is not None]
            seekers = pl.concat([seekers.filter(keep)] + [f for f, _ in up], how="vertical")
            vectors = np.concatenate([np.asarray(vectors, np.float32)[keep.to_numpy()]]
                                     + [v[None, :] for _, v in up])
        return seekers, vectors, (pl.concat(carried) if carried else None)

    def _replay(self, posting_log) -> None:
        """Each posting's last logged write, applied at once (one index rebuild)."""
        last: dict[str, tuple[pl.DataFrame, np.ndarray] | None] = {}
        for op, frame, vecs in posting_log.entries():
            for i, pid in enumerate(frame["posting_id"].to_list()):
                last[pid] = (frame[i], vecs[i]) if op == "upsert" else None
        up = [v for v in last.values() if v is not None]
        if up:
            self.upsert_postings(pl.concat([f for f, _ in up], how="vertical_relaxed"),
                                 np.stack([v for _, v in up]))
        self.delete_postings([p for p, v in last.items() if v is None])

    def _vector(self, pid: str) -> np.ndarray:
        v = self._pvec.get(pid)
        return self._foreign[pid] if v is None else v

    # ------------------------------------------------------------------ reads
    def _holds(self, seeker_id: str) -> bool:
        return seeker_id in self._fresh or (seeker_id in self._at and seeker_id not in self._dead)

    def _row_vec(self, seeker_id: str) -> tuple[dict, np.ndarray] | None:
        got = self._fresh.get(seeker_id)
        if got is not None:
            return got
        i = self._at.get(seeker_id)
        if i is None or seeker_id in self._dead:
            return None
        return self.seekers.row(i, named=True), self._svec[i]

    def _query(self, seeker_id: str) -> SeekerQuery | None:
        got = self._row_vec(seeker_id)
        if got is None:
            return None
        return SeekerQuery.from_row(got[0], got[1], self.excluded.get(seeker_id, frozenset()),
                                    self.history.get(seeker_id))

    def _with_rows(self, got: list[Match]) -> tuple[list[Match], dict[str, dict]]:
        # only what a response shows, the merge and the sort views read: a full row would be
        # most of what a call sends back
        shown = self._shown
        return got, {m.item_id: shown[m.item_id] for m in got}

    def jobs_for(self, seeker_id: str, cfg: MatchConfig):
        """This shard's top-k for a seeker it holds, with the postings' rows; None if the
        seeker is not here."""
        q = self._query(seeker_id)
        return None if q is None else self._with_rows(self.jobs.recommend(q, cfg, cfg.k))

    def jobs_for_many(self, items: Sequence[tuple[str, MatchConfig]]) -> list:
        """:meth:`jobs_for` of each (seeker id, config): one actor call for many queries."""
        return [self.jobs_for(sid, cfg) for sid, cfg in items]

    def candidates_for_many(self, items: Sequence[tuple[str, MatchConfig]]) -> list:
        """:meth:`candidates_for` of each (posting id, config)."""
        return [self.candidates_for(pid, cfg) for pid, cfg in items]

    def jobs_query(self, q: SeekerQuery, cfg: MatchConfig):
        """This shard's top-k for an inline query, with the postings' rows."""
        return self._with_rows(self.jobs.recommend(q, cfg, cfg.k))

    def candidates_for(self, posting_id: str, cfg: MatchConfig):
        """The top-k seekers for a posting this shard holds, with their shareable profiles;
        None if the posting is not here."""
        row = self._prow.get(posting_id)
        if row is None:
            return None
        vec = self._pvec[posting_id]
        got = self.index.candidates_for(row, vec, cfg)
        if self.delta is None:
            return got, {m.item_id: self.index.profile(m.item_id) for m in got}
        new = self.delta.candidates_for(row, vec, cfg)
        # a seeker's score does not depend on the others: the exact top-k of the union
        got = merge_exact({0: got, 1: new}, cfg.k, 0, str)
        fresh = {m.item_id for m in new}
        return got, {m.item_id: (self.delta if m.item_id in fresh else self.index)
                     .profile(m.item_id) for m in got}

    def _ranking(self):
        if self.ranking is None:
            raise NotConfiguredError("this matching deployment has no learned ranker")
        return self.ranking

    def ranked_pool_many(self, items: Sequence[tuple[str | SeekerQuery, MatchConfig]]) -> list:
        """Per (seeker id or inline query, config), this shard's part of the learned pool
        (:class:`~workers.matching.ranked.LocalPool`); None for a seeker not held here."""
        ranking = self._ranking()
        qs = [it if isinstance(it, SeekerQuery) else self._query(it) for it, _ in items]
        out: list = [None] * len(items)
        by_cfg: dict[MatchConfig, list[int]] = {}
        for i, (q, (_, cfg)) in enumerate(zip(qs, items, strict=True)):
            if q is not None:
                by_cfg.setdefault(cfg, []).append(i)
        for cfg, at in by_cfg.items():  # one pass over the collaborative rows per config
            for i, got in zip(at, ranking.pools(self.jobs, [qs[i] for i in at], cfg),
                              strict=True):
                out[i] = got
        return out

    def ranked_rows_many(self, items: Sequence[tuple]) -> list:
        """Per (seeker id or inline query, config, posting ids, scores, feature rows) of the
        postings of a learned list held here: their Matches with reasons, and their rows."""
        ranking = self._ranking()
        out = []
        for key, _cfg, ids, scores, X in items:
            q = key if isinstance(key, SeekerQuery) else self._query(key)
            if q is None:
                raise NotFoundError(f"seeker {key!r} is not held by shard {self.shard_id}")
            out.append(self._with_rows(ranking.rows(self.jobs, q, ids, scores, X)))
        return out

    def seeker_row(self, seeker_id: str) -> dict | None:
        """The stored row of a seeker held here (it stays inside the service)."""
        got = self._row_vec(seeker_id)
        return None if got is None else got[0]

    def known(self, seeker_ids: Sequence[str], posting_ids: Sequence[str]):
        """(the seekers held here, {posting id: vector} of the postings held here)."""
        return ({s for s in seeker_ids if self._holds(s)},
                {p: self._pvec[p] for p in posting_ids if p in self._pvec})

    def area_plan(self) -> AreaPlan:
        """The deployment's plan (what a frontend that attaches reads)."""
        return self.plan

    def stats(self) -> dict:
        """Sizes, for health checks and benchmarks."""
        import os

        return {"shard": self.shard_id, "pid": os.getpid(), "postings": len(self._pvec),
                "seekers": len(self._at) - len(self._dead) + len(self._fresh),
                "fresh_seekers": len(self._fresh), "foreign_vectors": len(self._foreign),
                "logged": self.log is not None}

    # ------------------------------------------------------------------ writes
    def record(self, rows: Sequence[tuple[str, str, str, dt.datetime]],
               vectors: Mapping[str, np.ndarray]) -> int:
        """Log (durably) and apply the rows of the seekers held here; ``vectors``: the
        liked postings' vectors (those of other shards are logged with the rows). Returns
        the rows taken."""
        mine = [r for r in rows if self._holds(r[0])]
        if not mine:
            return 0
        if self.log is None:
            raise NotConfiguredError("this deployment records no interactions")
        need = {p: np.asarray(vectors[p], np.float32) for _, p, e, _ in mine
                if e in LIKED_EVENTS and p not in self._pvec and p in vectors}
        self.log.append(mine, need)  # durable before anything changes in memory
        self._foreign.update(need)
        self._apply(mine)
        return len(mine)

    def _apply(self, rows) -> None:
        """The in-memory effect of interaction rows (the in-process service's function)."""
        apply_interactions(rows, self.excluded, self._gone, self._liked, self.history,
                           lambda p: self._pvec.get(p, self._foreign.get(p)))

    def seeker_state(self, seeker_ids: Sequence[str]):
        """What a shard taking over these seekers needs: their interaction state as rows
        (``applied`` = excluded and liked, ``hidden`` = excluded, ``clicked`` = liked) and the
        vectors of the liked postings."""
        rows, vecs = [], {}
        for sid in seeker_ids:
            if not self._holds(sid):
                continue
            ex, lk = self.excluded.get(sid, frozenset()), self._liked.get(sid, frozenset())
            for p in sorted(ex | lk):
                rows.append((sid, p, "applied" if p in ex and p in lk else
                             "hidden" if p in ex else "clicked"))
                if p in lk and (p in self._pvec or p in self._foreign):
                    vecs[p] = self._vector(p)
        return rows, vecs

    def upsert_seekers(self, seekers: pl.DataFrame, vectors: np.ndarray,
                       carried: Sequence[tuple[str, str, str]],
                       liked_vectors: Mapping[str, np.ndarray]) -> int:
        """Take the new or changed seekers this shard should hold (by their desired areas),
        with their carried interaction state; drop its copy of those that moved away.
        Durable (the shard's seeker write log) before anything changes. Returns the seekers
        taken."""
        regions = seekers["desired_regions"].to_list()
        here = np.array([self.shard_id in self.plan.seeker_shards(areas_of(r)) for r in regions])
        ids = seekers["seeker_id"].to_list()
        away = [s for s, h in zip(ids, here, strict=True) if not h and self._holds(s)]
        taken = [s for s, h in zip(ids, here, strict=True) if h]
        taking = set(taken)
        mine = [r for r in carried if r[0] in taking]
        need = {p: np.asarray(v, np.float32) for p, v in liked_vectors.items()
                if p not in self._pvec and p not in self._foreign}
        if self.seeker_log is not None:  # vectors and state first: a torn write adds nothing
            if need:
                self.seeker_log.append("vectors", pl.DataFrame(
                    {"posting_id": list(need)}, schema={"posting_id": pl.Utf8}),
                    np.stack(list(need.values())))
            if mine:
                self.seeker_log.append("carry", pl.DataFrame(
                    mine, schema={"seeker_id": pl.Utf8, "posting_id": pl.Utf8, "event": pl.Utf8},
                    orient="row"), None)
            if taken:
                self.seeker_log.append("upsert", seekers.filter(pl.Series(here)),
                                       np.asarray(vectors, np.float32)[here])
        if away:
            self.delete_seekers(away, moved=True)
        if not taken:
            return 0
        self._foreign.update(need)
        vec = np.asarray(vectors, np.float32)[here]
        for row, v in zip(seekers.filter(pl.Series(here)).iter_rows(named=True), vec, strict=True):
            self._fresh[row["seeker_id"]] = (row, v)
        base = [s for s in taken if s in self._at]
        self._dead.update(base)
        self.index.retire(base)
        self._apply(mine)
        self._fresh_changed()
        return len(taken)

    def delete_seekers(self, seeker_ids: Sequence[str], moved: bool = False) -> int:
        """Remove seekers held here (durably first); returns how many were. ``moved``: they
        went to other shards (logged as ``away``, not as a deletion of the seekers)."""
        known = [s for s in seeker_ids if self._holds(s)]
        if not known:
            return 0
        if self.seeker_log is not None:
            self.seeker_log.append("away" if moved else "delete",
                                   pl.DataFrame({"seeker_id": known}), None)
        for s in known:
            self._fresh.pop(s, None)
            if s in self._at:
                self._dead.add(s)
        self.index.retire(known)
        self._fresh_changed()
        return len(known)

    def _fresh_changed(self) -> None:
        """Rebuild the small index of written seekers, or fold them into the base one when
        they are many (a base rebuild is O(seekers))."""
        if len(self._fresh) + len(self._dead) > max(FOLD_AT, self.seekers.height // 20):
            keep = ~self.seekers["seeker_id"].is_in(
                pl.Series(sorted(self._dead | set(self._fresh)), dtype=pl.Utf8).implode())
            rows = [r for r, _ in self._fresh.values()]
            self.seekers = pl.concat([self.seekers.filter(keep),
                                      pl.DataFrame(rows, schema=self.seekers.schema)])
            self._svec = np.concatenate([self._svec[keep.to_numpy()]] + [
                v[None, :] for _, v in self._fresh.values()]).astype(np.float32)
            self._at = {sid: i for i, sid in enumerate(self.seekers["seeker_id"].to_list())}
            self.index = SeekerIndex(self.seekers, self._svec, self._gone)
            self._fresh, self._dead, self.delta = {}, set(), None
            return
        if not self._fresh:
            self.delta = None
            return
        rows = [r for r, _ in self._fresh.values()]
        self.delta = SeekerIndex(pl.DataFrame(rows, schema=self.seekers.schema),
                                 np.stack([v for _, v in self._fresh.values()]), self._gone)

    def upsert_postings(self, postings: pl.DataFrame, vectors: np.ndarray) -> int:
        """Add or replace postings whose area this shard owns; drop the others' earlier
        versions (a posting that changed area). Returns the postings now here."""
        if postings.height == 0:
            return 0
        sgg = postings["sigungu"].to_list() if "sigungu" in postings.columns \
            else [None] * postings.height
        here = np.array([self.plan.posting_shard(a, g) == self.shard_id for a, g in
                         zip(postings["sido"].to_list(), sgg, strict=True)])
        away = [p for p, h in zip(postings["posting_id"].to_list(), here, strict=True)
                if not h and p in self._pvec]
        if self.posting_log is not None and (away or here.any()):
            # the whole write: replaying it moves the same postings away again
            self.posting_log.append("upsert", postings, np.asarray(vectors, np.float32))
        if away:
            self.delete_postings(away, moved=True)
        if here.any():
            sub, vec = postings.filter(pl.Series(here)), np.asarray(vectors, np.float32)[here]
            self.jobs.upsert(sub, vec)
            if self.ranking is not None:
                self.ranking.noted(sub)
            for r, v in zip(sub.iter_rows(named=True), vec, strict=True):
                self._prow[r["posting_id"]], self._pvec[r["posting_id"]] = r, v
                self._shown[r["posting_id"]] = _shown(r)
        return int(here.sum())

    def delete_postings(self, posting_ids: Sequence[str], moved: bool = False) -> int:
        """Remove postings held here; returns how many were (``moved``: as
        :meth:`delete_seekers`)."""
        known = [p for p in posting_ids if p in self._pvec]
        if known and self.posting_log is not None:
            self.posting_log.append("away" if moved else "delete",
                                    pl.DataFrame({"posting_id": known}), None)
        if known:
            self.jobs.delete(known)
            for p in known:
                del self._prow[p], self._pvec[p], self._shown[p]
        return len(known)


def build_shards(plan: AreaPlan, postings: pl.DataFrame, posting_vectors: np.ndarray,
                 seekers: pl.DataFrame, seeker_vectors: np.ndarray, *,
                 interactions: pl.DataFrame | None = None,
                 log_root: str | Path | None = None, ranking=None) -> list[dict]:
    """The constructor arguments of every :class:`MatchShard` (what a launcher sends each
    shard: only its postings, its seekers and their log; ``ranking``: one
    :class:`~workers.matching.ranked.ShardRanker` every shard reads)."""
    out = []
    for s, (p, k) in enumerate(zip(plan.split_postings(postings), plan.split_seekers(seekers),
                                   strict=True)):
        sub, sk = postings[p], seekers[k]
        inter = None
        if interactions is not None and interactions.height:
            inter = interactions.filter(pl.col("seeker_id").is_in(sk["seeker_id"].implode()))
        out.append({
            "shard_id": s, "plan": plan, "postings": sub,
            "posting_vectors": np.asarray(posting_vectors)[p], "seekers": sk,
            "seeker_vectors": np.asarray(seeker_vectors)[k], "interactions": inter,
            "foreign": foreign_vectors(inter, sk["seeker_id"].to_list(),
                                       sub["posting_id"].to_list(), postings, posting_vectors),
            "log_root": None if log_root is None else str(log_root), "ranking": ranking,
        })
    return out

