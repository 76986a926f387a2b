"""Online matching: the plain service behind gRPC ``RecommendJobs`` / ``RecommendCandidates``.

Postings live in geo shards (:class:`~workers.matching.index.JobIndex`, fanned out and merged
exactly as in the batch); seekers in a :class:`~workers.matching.index.SeekerIndex`. The same
:class:`~core.matching.MatchConfig` rules and scores as ``jobrec match``, so batch == online.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from core.errors import InvalidInputError, NotConfiguredError, NotFoundError
from core.matching import Match, MatchConfig, SeekerQuery, sort_view
from core.pii import scrub_resume
from core.seekers import (
    INTERACTION_EVENTS,
    MAX_DESIRED_OCCUPATIONS,
    MAX_DESIRED_REGIONS,
    Area,
    seeker_text,
)
from workers.jobs.match import (
    LocalShards,
    apply_interactions,
    excluded_by_seeker,
    history_vectors,
    liked_by_seeker,
    recommend_fanout,
    seekers_by_excluded,
    shard_postings,
)
from workers.matching.index import JobIndex, SeekerIndex


class LexicalEncoder:
    """A deterministic text encoder: hashed character 2-3-grams, L2-normalised (no model
    files; the benchmark's default and a fallback where no W-BERT is trained)."""

    def __init__(self, dim: int = 512) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = dim
        self._hv = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 3), n_features=dim,
                                     alternate_sign=False, norm="l2")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text."""
        return self._hv.transform(list(texts)).toarray().astype(np.float32)


class MatchService:
    """Jobs for seekers and candidates for postings, from in-memory shards."""

    def __init__(self, postings: pl.DataFrame, posting_vectors: np.ndarray, seekers: pl.DataFrame,
                 seeker_vectors: np.ndarray, encoder, *, interactions: pl.DataFrame | None = None,
                 num_shards: int = 2, config: MatchConfig | None = None,
                 ranker=None, ranker_pool: int = 300, interaction_log=None) -> None:
        """``ranker``: a :class:`core.ranker.Ranker` or a :class:`workers.ranker_slot.RankerSlot`
        (hot-swapped versions); None: the formula orders the jobs. ``interaction_log``: an
        :class:`~workers.matching.interaction_log.InteractionLog` that :meth:`record_interactions`
        writes to (its contents are read on top of ``interactions``); None: writes refused."""
        self.config = config or MatchConfig()
        self.interaction_log = interaction_log
        if interaction_log is not None:
            recorded = interaction_log.read()
            if recorded.height:
                interactions = recorded if interactions is None else \
                    pl.concat([interactions, recorded], how="vertical")
        self.interactions = interactions
        self.encoder = encoder
        parts = shard_postings(postings, num_shards)
        self.shards = LocalShards([JobIndex(postings[p], posting_vectors[p]) for p in parts])
        self.ranker, self.ranker_pool = ranker, ranker_pool
        if ranker is not None:
            from core.collab import CollabModel

            # the ranker's pools are global (one index over every posting), as in the batch
            self._rank_index = JobIndex(postings, posting_vectors)
            self._collab = CollabModel(interactions)
        self.postings = {r["posting_id"]: r for r in postings.iter_rows(named=True)}
        self._pvec = {pid: posting_vectors[i] for i, pid in enumerate(postings["posting_id"])}
        self.seekers = {r["seeker_id"]: r for r in seekers.iter_rows(named=True)}
        self._svec = {sid: seeker_vectors[i] for i, sid in enumerate(seekers["seeker_id"])}
        self.excluded = excluded_by_seeker(interactions)
        self.history = history_vectors(interactions, postings["posting_id"].to_list(),
                                       posting_vectors)
        self._liked = liked_by_seeker(interactions)
        self._gone = seekers_by_excluded(self.excluded)
        self._write_lock = threading.Lock()
        self.seeker_index = SeekerIndex(seekers, seeker_vectors, self._gone)

    def _cfg(self, k: int | None, ref_date: dt.date | None, wage_hard: bool) -> MatchConfig:
        return call_config(self.config, k, ref_date, wage_hard)

    def recommend_jobs(self, *, seeker_id: str | None = None, profile: Mapping | None = None,
                       k: int | None = None, sort: str = "score", ref_date: dt.date | None = None,
                       wage_hard: bool = False) -> list[Match]:
        """The top-``k`` jobs of a stored seeker or an inline ``profile`` (canonical row)."""
        cfg = self._cfg(k, ref_date, wage_hard)
        if seeker_id is not None:
            row = self.seekers.get(seeker_id)
            if row is None:
                raise NotFoundError(f"seeker {seeker_id!r} is not known")
            vec = self._svec[seeker_id]
        elif profile is not None:
            row = check_profile(profile)
            vec = self.encoder.encode([seeker_text(row)])[0]
        else:
            raise InvalidInputError("give a seeker_id or a profile", field="seeker")
        sid = row["seeker_id"]
        q = SeekerQuery.from_row(row, vec, self.excluded.get(sid, frozenset()), self.history.get(sid))
        ranker = self.ranker.current() if hasattr(self.ranker, "current") else self.ranker
        if ranker is not None:
            return sort_view(self._ranked(q, cfg, ranker), sort, frame_lookup=self.postings)
        holders = [s for s in range(len(self.shards.indexes)) if self.shards.holds(s, q.areas)]
        company = lambda pid: self.postings[pid]["company"]  # noqa: E731
        got = recommend_fanout(self.shards, [holders], [q], cfg, company)[0]
        return sort_view(got, sort, frame_lookup=self.postings)

    def jobs_with_rows(self, **kw) -> tuple[list[Match], Mapping[str, dict]]:
        """:meth:`recommend_jobs` and the postings' rows (what the servicer shows)."""
        got = self.recommend_jobs(**kw)
        return got, {m.item_id: self.postings[m.item_id] for m in got}

    def candidates_with_profiles(self, posting_id: str, **kw) -> tuple[list[Match], Mapping]:
        """:meth:`recommend_candidates` and the seekers' shareable profiles."""
        got = self.recommend_candidates(posting_id, **kw)
        return got, {m.item_id: self.seeker_index.profile(m.item_id) for m in got}

    def seeker_row(self, seeker_id: str) -> dict | None:
        """A stored seeker's row, or None."""
        return self.seekers.get(seeker_id)

    def upsert_seekers(self, profiles) -> int:
        """Refused: seekers are written through the matching shards."""
        raise NotConfiguredError("UpsertSeekers writes to the matching shards: serve with "
                                 "--match-root DIR")

    def delete_seekers(self, seeker_ids) -> int:
        """Refused: seekers are written through the matching shards."""
        raise NotConfiguredError("DeleteSeekers writes to the matching shards: serve with "
                                 "--match-root DIR")

    def seeker_count(self) -> int:
        """Seekers held."""
        return len(self.seekers)

    def _ranked(self, q: SeekerQuery, cfg: MatchConfig, ranker) -> list[Match]:
        """The learned order of ``q``'s rule-passing pool: the batch's own function, so
        ``RecommendJobs`` == ``jobrec match --ranker``."""
        import json

        from workers.jobs.rank import ranked_frame

        f = ranked_frame([q], self._rank_index, self._collab, ranker, cfg, self.ranker_pool)
        return [Match(pid, float(sc), json.loads(r)) for pid, sc, r in
                f.select("posting_id", "score", "reasons").iter_rows()]

    def record_interactions(self, rows: Sequence[Mapping]) -> int:
        """Log interactions (``seeker_id``, ``posting_id``, ``event``, ``at`` or None = now)
        durably, then apply them: an application or a hidden posting leaves that seeker's
        next ``recommend_jobs`` (and the posting's candidates) at once, a click or an
        application joins the seeker's history vector. All rows or none: an unknown event,
        seeker or posting rejects the call, naming the row. Returns the rows recorded.

        The collaborative features of a loaded ranker are fitted on the log at start-up:
        they see these rows after the next restart or retraining, the exclusions at once."""
        if self.interaction_log is None:
            raise NotConfiguredError("this server records no interactions: start it with "
                                     "--interaction-log DIR")
        if not rows:
            raise InvalidInputError("interactions must not be empty", field="interactions")
        clean = check_interaction_rows(rows, self.seekers.__contains__,
                                       self.postings.__contains__)
        with self._write_lock:
            self.interaction_log.append(clean)  # durable before anything changes in memory
            self._apply(clean)
        return len(clean)

    def _apply(self, rows: Sequence[tuple]) -> None:
        """The in-memory effect of logged rows."""
        apply_interactions(rows, self.excluded, self._gone, self._liked, self.history,
                           self._pvec.get)

    def recommend_candidates(self, posting_id: str, *, k: int | None = None,
                             sort: str = "score") -> list[Match]:
        """The top-``k`` active seekers for a stored posting."""
        check_candidate_sort(sort)
        row = self.postings.get(posting_id)
        if row is None:
            raise NotFoundError(f"posting {posting_id!r} is not known")
        got = self.seeker_index.candidates_for(row, self._pvec[posting_id], self._cfg(k, None, False))
        return sort_view(got, sort)

    def upsert_postings(self, postings: pl.DataFrame, vectors: np.ndarray) -> None:
        """New or changed postings are recommendable at once: each joins the shard already
        holding its region (a new region goes to shard 0), leaving any other shard that held
        an earlier version of it; one index rebuild per shard touched."""
        targets: dict[int, list[int]] = {}
        for i, r in enumerate(postings.iter_rows(named=True)):
            self.postings[r["posting_id"]] = r
            self._pvec[r["posting_id"]] = vectors[i]
            area = Area(r["sido"], r.get("sigungu"))
            target = next((s for s, ix in enumerate(self.shards.indexes) if ix.holds(area)), 0)
            targets.setdefault(target, []).append(i)
        for s, rows in targets.items():
            ids = postings[rows]["posting_id"].to_list()
            for other, ix in enumerate(self.shards.indexes):
                if other != s:
                    ix.delete(ids)
            self.shards.indexes[s].upsert(postings[rows], np.asarray(vectors)[rows])
        if self.ranker is not None:
            self._rank_index.upsert(postings, np.asarray(vectors))

    def delete_postings(self, posting_ids: Sequence[str]) -> int:
        """Withdrawn postings are never recommended again; returns how many were known."""
        known = [p for p in posting_ids if p in self.postings]
        for ix in self.shards.indexes + ([self._rank_index] if self.ranker is not None else []):
            ix.delete(known)
        for p in known:
            del self.postings[p]
            del self._pvec[p]
        return len(known)


def call_config(config: MatchConfig, k: int | None, ref_date: dt.date | None,
                wage_hard: bool) -> MatchConfig:
    """``config`` with one call's k, reference date and wage rule (None: the configured)."""
    return dataclasses.replace(config, k=k or config.k, ref_date=ref_date or config.ref_date,
                               wage_hard=wage_hard)


def check_candidate_sort(sort: str) -> None:
    """Candidates sort by score or distance only (raises InvalidInputError)."""
    if sort not in ("score", "distance"):
        raise InvalidInputError(f"candidates sort by score or distance, not {sort!r}",
                                field="sort")


def check_interaction_rows(rows: Sequence[Mapping], seeker_known, posting_known) -> list[tuple]:
    """RecordInteractions rows as ``(seeker_id, posting_id, event, at)`` with a naive UTC
    ``at`` (None: now); raises naming the first bad row (an unknown event, seeker or posting,
    a bad time): a write is all rows or none."""
    if not rows:
        raise InvalidInputError("interactions must not be empty", field="interactions")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    clean = []
    for i, r in enumerate(rows):
        at = f"interactions[{i}]"
        if r.get("event") not in INTERACTION_EVENTS:
            raise InvalidInputError(f"{at}.event must be one of "
                                    f"{', '.join(INTERACTION_EVENTS)}, not {r.get('event')!r}",
                                    field=f"{at}.event")
        if not seeker_known(r.get("seeker_id")):
            raise NotFoundError(f"{at}: seeker {r.get('seeker_id')!r} is not known")
        if not posting_known(r.get("posting_id")):
            raise NotFoundError(f"{at}: posting {r.get('posting_id')!r} is not known")
        when = r.get("at") or now
        if not isinstance(when, dt.datetime):
            raise InvalidInputError(f"{at}.at must be a datetime", field=f"{at}.at")
        if when.tzinfo is not None:  # the table keeps UTC without a zone
            when = when.astimezone(dt.UTC).replace(tzinfo=None)
        clean.append((r["seeker_id"], r["posting_id"], r["event"], when))
    return clean


MAX_SEEKER_WRITES = 1000  # seekers per UpsertSeekers / DeleteSeekers call


def seeker_frame(profiles: Sequence[Mapping]) -> pl.DataFrame:
    """UpsertSeekers profiles as a canonical seeker table (registered today, active); raises
    naming the first bad profile (no id, a duplicate id, a bad field, a region that is not
    canonical)."""
    from core.seekers import SEEKER_SCHEMA, validate_seekers

    if not profiles:
        raise InvalidInputError("seekers must not be empty", field="seekers")
    if len(profiles) > MAX_SEEKER_WRITES:
        raise InvalidInputError(f"at most {MAX_SEEKER_WRITES} seekers per call", field="seekers")
    today = dt.datetime.now(dt.UTC).date()
    rows, seen = [], set()
    for i, p in enumerate(profiles):
        sid = p.get("seeker_id")
        if not isinstance(sid, str) or not sid:
            raise InvalidInputError(f"seekers[{i}].seeker_id is required",
                                    field=f"seekers[{i}].seeker_id")
        if sid in seen:
            raise InvalidInputError(f"seekers[{i}]: seeker {sid!r} appears twice",
                                    field=f"seekers[{i}].seeker_id")
        seen.add(sid)
        try:
            row = check_profile(p)
        except InvalidInputError as exc:
            raise InvalidInputError(f"seekers[{i}]: {exc}", field=f"seekers[{i}]") from exc
        row["desired_regions"] = [_canonical_region(r, f"seekers[{i}].desired_regions[{j}]")
                                  for j, r in enumerate(row["desired_regions"])]
        rows.append({**row, "desired_employment_types": list(p.get("desired_employment_types")
                                                             or []),
                     "birth_year": None, "registered_on": today, "active": True})
    frame = pl.DataFrame(rows, schema=SEEKER_SCHEMA)
    validate_seekers(frame)
    return frame


def _canonical_region(r: Mapping, field: str) -> dict:
    """A desired region as the region table names it; raises if it is not a known one."""
    from core.seekers import resolve_area

    label = " ".join(x for x in (r["sido"], r.get("sigungu")) if x)
    area = resolve_area(label)
    if area is None or area.sido != r["sido"] or (r.get("sigungu") and area.sigungu is None
                                                  and r["sido"] != "세종특별자치시"):
        raise InvalidInputError(f"{field}: {label!r} is not a known province or 시/군/구",
                                field=field)
    return {"sido": area.sido, "sigungu": area.sigungu}


def check_profile(p: Mapping) -> dict:
    """An inline profile as a canonical seeker row; raises InvalidInputError naming a field."""
    occs = list(p.get("desired_occupations") or [])
    if not 1 <= len(occs) <= MAX_DESIRED_OCCUPATIONS or not all(
            isinstance(c, str) and len(c) == 6 and c.isdigit() for c in occs):
        raise InvalidInputError(f"desired_occupations: 1..{MAX_DESIRED_OCCUPATIONS} six-digit "
                                "KECO codes", field="profile.desired_occupations")
    regions = list(p.get("desired_regions") or [])
    if not 1 <= len(regions) <= MAX_DESIRED_REGIONS or not all(r.get("sido") for r in regions):
        raise InvalidInputError(f"desired_regions: 1..{MAX_DESIRED_REGIONS} regions with a sido",
                                field="profile.desired_regions")
    edu = int(p.get("education_level") or 0)
    if not 0 <= edu <= 7:
        raise InvalidInputError("education_level must be 0..7", field="profile.education_level")
    years = int(p.get("career_years") or 0)
    if years < 0:
        raise InvalidInputError("career_years must be >= 0", field="profile.career_years")
    home = (p.get("home_lat"), p.get("home_lng"))
    if p.get("max_commute_km") is not None and (None in home or p["max_commute_km"] <= 0):
        raise InvalidInputError("max_commute_km needs a home and must be > 0",
                                field="profile.max_commute_km")
    return {
        "seeker_id": p.get("seeker_id") or "", "desired_occupations": occs,
        "desired_regions": [{"sido": r["sido"], "sigungu": r.get("sigungu") or None} for r in regions],
        "home_lat": home[0], "home_lng": home[1], "max_commute_km": p.get("max_commute_km"),
        "education_level": edu, "career_years": years,
        "career_history": list(p.get("career_history") or []),
        "certificates": list(p.get("certificates") or []),
        "desired_monthly_wage": p.get("desired_monthly_wage"),
        "resume_text": scrub_resume(p.get("resume_text") or ""),
    }
