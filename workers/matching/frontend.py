"""The stateless matching frontend: ``RecommendJobs`` / ``RecommendCandidates`` /
``RecordInteractions`` answered by :class:`~workers.matching.sharded.MatchShard` s.

The frontend holds the area plan, the encoder (for inline profiles) and the rule settings,
nothing per seeker or posting: any number of frontends serve the same shards, and one that
restarts loses nothing (every acknowledged write is in the shards' logs). The calls reach the
shards through a ``calls`` object: :class:`LocalShardCalls` in process, or
:class:`workers.matching.actors.RayShardCalls` over (detached, named) shard actors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import weakref
from collections.abc import Mapping, Sequence

import numpy as np

from core.collab import LIKED_EVENTS
from core.errors import InvalidInputError, NotConfiguredError, NotFoundError
from core.matching import Match, MatchConfig, SeekerQuery, sort_view
from core.seekers import seeker_text
from workers.coalesce import Coalescer
from workers.matching.index import merge_exact
from workers.matching.ranked import merge_pools
from workers.matching.service import (
    call_config,
    check_candidate_sort,
    check_interaction_rows,
    check_profile,
    seeker_frame,
)
from workers.matching.sharded import AreaPlan, MatchShard

_WRITES = frozenset({"record", "upsert_postings", "delete_postings", "upsert_seekers",
                     "delete_seekers"})


class LocalShardCalls:
    """Shards as objects in this process; writes are serialised (an actor does that by
    running one call at a time)."""

    def __init__(self, shards: Sequence[MatchShard]) -> None:
        self.shards = list(shards)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.shards)

    def call(self, shard_ids: Sequence[int], method: str, *args) -> list:
        """``method(*args)`` on each shard of ``shard_ids``, answers in that order."""
        if method in _WRITES:
            with self._lock:
                return [getattr(self.shards[s], method)(*args) for s in shard_ids]
        return [getattr(self.shards[s], method)(*args) for s in shard_ids]

    async def asend(self, shard: int, method: str, *args):
        """``method(*args)`` on one shard, awaited (a read: run in a worker thread)."""
        return await asyncio.to_thread(getattr(self.shards[shard], method), *args)


class ShardedMatchService:
    """Jobs for seekers and candidates for postings, from the shards that hold them (the
    same answers as :class:`~workers.matching.service.MatchService` and ``jobrec match``)."""

    def __init__(self, calls, plan: AreaPlan, encoder, config: MatchConfig | None = None,
                 *, records: bool = True, ranked: bool = False) -> None:
        """``records``: the shards log interactions (else RecordInteractions is refused);
        ``ranked``: the shards hold a learned ranker, which orders RecommendJobs
        (:mod:`workers.matching.ranked`)."""
        if len(calls) != plan.num_shards:
            raise ValueError(f"{len(calls)} shards for a plan of {plan.num_shards}")
        self.calls, self.plan, self.encoder = calls, plan, encoder
        self.config = config or MatchConfig()
        self.records, self.ranked = records, ranked
        self._all = list(range(plan.num_shards))
        # per event loop (futures belong to one loop): {loop: {(shard, method): Coalescer}}
        self._coalescers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _cfg(self, k: int | None, ref_date: dt.date | None, wage_hard: bool) -> MatchConfig:
        return call_config(self.config, k, ref_date, wage_hard)

    def jobs_with_rows(self, *, seeker_id: str | None = None, profile: Mapping | None = None,
                       k: int | None = None, sort: str = "score", ref_date: dt.date | None = None,
                       wage_hard: bool = False) -> tuple[list[Match], Mapping[str, dict]]:
        """The top-``k`` jobs of a stored seeker or an inline ``profile``, and their rows."""
        cfg = self._cfg(k, ref_date, wage_hard)
        if self.ranked:
            key, hs = (seeker_id, self._all) if seeker_id is not None else self._inline(profile)
            got = [a[0] for a in self.calls.call(hs, "ranked_pool_many", [(key, cfg)])]
            order, items = self._ranked_list(dict(zip(hs, got, strict=True)), key, cfg)
            return self._ranked_done(order, [self.calls.call([s], "ranked_rows_many", [it])[0][0]
                                             for s, it in items.items()], sort)
        if seeker_id is not None:
            # only the shards holding the seeker answer; they are the ones with its postings
            answers = dict(enumerate(self.calls.call(self._all, "jobs_for", seeker_id, cfg)))
        else:
            q, hs = self._inline(profile)
            answers = dict(zip(hs, self.calls.call(hs, "jobs_query", q, cfg), strict=True))
        return self._merged(answers, seeker_id, cfg, sort)

    async def ajobs_with_rows(self, *, seeker_id: str | None = None,
                              profile: Mapping | None = None, k: int | None = None,
                              sort: str = "score", ref_date: dt.date | None = None,
                              wage_hard: bool = False) -> tuple[list[Match], Mapping[str, dict]]:
        """:meth:`jobs_with_rows` without blocking the event loop: the calls of concurrent
        requests to one shard go out together (:class:`~workers.coalesce.Coalescer`)."""
        cfg = self._cfg(k, ref_date, wage_hard)
        if self.ranked:
            key, hs = (seeker_id, self._all) if seeker_id is not None else self._inline(profile)
            got = await asyncio.gather(*(self._co(s, "ranked_pool_many").submit((key, cfg))
                                         for s in hs))
            order, items = self._ranked_list(dict(zip(hs, got, strict=True)), key, cfg)
            done = await asyncio.gather(*(self._co(s, "ranked_rows_many").submit(it)
                                          for s, it in items.items()))
            return self._ranked_done(order, done, sort)
        if seeker_id is not None:
            got = await asyncio.gather(*(self._co(s, "jobs_for_many").submit((seeker_id, cfg))
                                         for s in self._all))
            answers = dict(zip(self._all, got, strict=True))
        else:
            q, hs = self._inline(profile)
            got = await asyncio.gather(*(self.calls.asend(s, "jobs_query", q, cfg) for s in hs))
            answers = dict(zip(hs, got, strict=True))
        return self._merged(answers, seeker_id, cfg, sort)

    def _co(self, shard: int, method: str) -> Coalescer:
        loop = asyncio.get_running_loop()
        per = self._coalescers.get(loop)
        if per is None:
            per = self._coalescers[loop] = {}
        co = per.get((shard, method))
        if co is None:
            co = per[(shard, method)] = Coalescer(
                lambda items, s=shard, m=method: self.calls.asend(s, m, items))
        return co

    def _inline(self, profile: Mapping | None) -> tuple[SeekerQuery, tuple[int, ...]]:
        if profile is None:
            raise InvalidInputError("give a seeker_id or a profile", field="seeker")
        row = check_profile(profile)
        q = SeekerQuery.from_row(row, self.encoder.encode([seeker_text(row)])[0])
        return q, self.plan.seeker_shards(q.areas)

    def _merged(self, answers: Mapping[int, tuple | None], seeker_id: str | None,
                cfg: MatchConfig, sort: str) -> tuple[list[Match], Mapping[str, dict]]:
        lists = {s: a for s, a in answers.items() if a is not None}
        if not lists:
            if seeker_id is not None:
                raise NotFoundError(f"seeker {seeker_id!r} is not known")
            return sort_view([], sort), {}
        rows: dict[str, dict] = {}
        for _, r in lists.values():
            rows.update(r)
        if len(lists) > 1:
            got = merge_exact({s: g for s, (g, _) in lists.items()}, cfg.k, cfg.max_per_company,
                              lambda pid: rows[pid]["company"])
        else:
            got = next(iter(lists.values()))[0]
        got = sort_view(got, sort, frame_lookup=rows)
        return got, {m.item_id: rows[m.item_id] for m in got}

    @staticmethod
    def _ranked_list(parts: Mapping[int, object], key, cfg: MatchConfig
                     ) -> tuple[list[str], dict[int, tuple]]:
        """The learned list from the shards' pools (None: the seeker is not held there): the
        posting ids in order, and what each shard holding some of them is asked for."""
        held = {s: p for s, p in parts.items() if p is not None}
        if not held and not isinstance(key, SeekerQuery):
            raise NotFoundError(f"seeker {key!r} is not known")
        listed = merge_pools(held, cfg.k, cfg.max_per_company)
        per: dict[int, list] = {}
        for s, pid, score, x in listed:
            per.setdefault(s, []).append((pid, score, x))
        items = {s: (key, cfg, [p for p, _, _ in v], np.array([sc for _, sc, _ in v]),
                     np.stack([x for _, _, x in v])) for s, v in per.items()}
        return [pid for _, pid, _, _ in listed], items

    @staticmethod
    def _ranked_done(order: Sequence[str], answers: Sequence[tuple], sort: str
                     ) -> tuple[list[Match], Mapping[str, dict]]:
        by: dict[str, Match] = {}
        rows: dict[str, dict] = {}
        for matches, r in answers:
            by.update((m.item_id, m) for m in matches)
            rows.update(r)
        got = sort_view([by[p] for p in order], sort, frame_lookup=rows)
        return got, {m.item_id: rows[m.item_id] for m in got}

    def recommend_jobs(self, **kw) -> list[Match]:
        """:meth:`jobs_with_rows` without the rows."""
        return self.jobs_with_rows(**kw)[0]

    def candidates_with_profiles(self, posting_id: str, *, k: int | None = None,
                                 sort: str = "score") -> tuple[list[Match], Mapping[str, dict]]:
        """The top-``k`` active seekers for a stored posting, and their shareable profiles."""
        check_candidate_sort(sort)
        cfg = self._cfg(k, None, False)
        got = [a for a in self.calls.call(self._all, "candidates_for", posting_id, cfg)
               if a is not None]
        if not got:
            raise NotFoundError(f"posting {posting_id!r} is not known")
        matches, profiles = got[0]  # a posting lives in one shard
        return sort_view(matches, sort), profiles

    async def acandidates_with_profiles(self, posting_id: str, *, k: int | None = None,
                                        sort: str = "score"):
        """:meth:`candidates_with_profiles` without blocking the event loop (coalesced)."""
        check_candidate_sort(sort)
        cfg = self._cfg(k, None, False)
        got = [a for a in await asyncio.gather(*(
            self._co(s, "candidates_for_many").submit((posting_id, cfg)) for s in self._all))
            if a is not None]
        if not got:
            raise NotFoundError(f"posting {posting_id!r} is not known")
        return sort_view(got[0][0], sort), got[0][1]

    def recommend_candidates(self, posting_id: str, **kw) -> list[Match]:
        """:meth:`candidates_with_profiles` without the profiles."""
        return self.candidates_with_profiles(posting_id, **kw)[0]

    def seeker_row(self, seeker_id: str) -> dict | None:
        """A stored seeker's row (it stays inside the service), or None."""
        return next((r for r in self.calls.call(self._all, "seeker_row", seeker_id)
                     if r is not None), None)

    def record_interactions(self, rows: Sequence[Mapping]) -> int:
        """Log and apply interactions in every shard holding their seekers; acknowledged
        (returns the rows) once each of those shards has logged them durably. All rows or
        none: an unknown event, seeker or posting rejects the call before any shard writes."""
        if not self.records:
            raise NotConfiguredError("this server records no interactions: start it with "
                                     "--interaction-log DIR")
        if not rows:
            raise InvalidInputError("interactions must not be empty", field="interactions")
        sids = sorted({r.get("seeker_id") for r in rows if isinstance(r.get("seeker_id"), str)})
        pids = sorted({r.get("posting_id") for r in rows if isinstance(r.get("posting_id"), str)})
        held, vectors, where = set(), {}, []
        for s, (hs, vs) in enumerate(self.calls.call(self._all, "known", sids, pids)):
            held |= hs
            vectors.update(vs)
            if hs:
                where.append(s)
        clean = check_interaction_rows(rows, held.__contains__, vectors.__contains__)
        liked = {p for _, p, e, _ in clean if e in LIKED_EVENTS}
        self.calls.call(where, "record", clean, {p: vectors[p] for p in liked})
        return len(clean)

    def upsert_seekers(self, profiles: Sequence[Mapping]) -> int:
        """New or changed seekers (profiles with a ``seeker_id``), matchable at once; each goes
        to the shards of its desired areas, with its exclusions and history carried from the
        shards that held it. Acknowledged once every shard taking it has logged it."""
        import numpy as np

        frame = seeker_frame(profiles)
        ids = frame["seeker_id"].to_list()
        vecs = np.asarray(self.encoder.encode([seeker_text(r) for r in frame.iter_rows(named=True)]),
                          dtype=np.float32)
        carried, liked = [], {}
        for rows, vs in self.calls.call(self._all, "seeker_state", ids):
            carried.extend(rows)
            liked.update(vs)
        carried = sorted(set(carried))  # a seeker in two shards: the same state twice
        self.calls.call(self._all, "upsert_seekers", frame, vecs, carried, liked)
        return len(ids)

    def delete_seekers(self, seeker_ids: Sequence[str]) -> int:
        """Seekers removed for good (never recommended nor proposed again); returns how many
        were known."""
        if not seeker_ids:
            raise InvalidInputError("seeker_ids must not be empty", field="seeker_ids")
        held: set[str] = set()
        for hs, _ in self.calls.call(self._all, "known", list(seeker_ids), []):
            held |= hs
        self.calls.call(self._all, "delete_seekers", sorted(held))
        return len(held)

    def upsert_postings(self, postings, vectors) -> None:
        """New or changed postings are recommendable at once, in the shard owning their area."""
        self.calls.call(self._all, "upsert_postings", postings, vectors)

    def delete_postings(self, posting_ids: Sequence[str]) -> int:
        """Withdrawn postings are never recommended again; returns how many were known."""
        return sum(self.calls.call(self._all, "delete_postings", list(posting_ids)))

    def seeker_count(self) -> int:
        """Seekers held by the shards (a seeker in two shards counts twice)."""
        return sum(st["seekers"] for st in self.stats())

    def health(self) -> dict:
        """Whether every shard answers (raises, or ``ok`` False, when one does not)."""
        stats = self.stats()
        return {"ok": len(stats) == self.plan.num_shards, "shards": len(stats),
                "postings": sum(st["postings"] for st in stats)}

    def stats(self) -> list[dict]:
        """Each shard's sizes."""
        return self.calls.call(self._all, "stats")
