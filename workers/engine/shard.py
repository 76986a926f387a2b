"""One shard: the items of a few coarse H3 cells plus their halo, with exact filtered search.

A thin facade (no Ray here; :mod:`workers.actors` wraps it) over named collections
(:class:`workers.engine.collection.Collection`): ``"postings"`` now, any kind registered with
:func:`workers.engine.collection.register_kind` the moment something is loaded into it. Each
collection holds its own columns, vectors, cell index, rule set and write log. Retrieval
is exact:

1. candidates = items bucketed in fine H3 cells near the query: within the *measured*
   ring count of its cell (:func:`workers.engine.geo.rings_for`, batch path,
   :mod:`workers.engine.batch`) or whose centre is within the radius plus the cell's own radius
   (single query, :meth:`Collection.search`), so every item within the radius is a
   candidate;
2. the collection's rule set (:mod:`core.rules`) masks the candidates (exact haversine);
3. the exact inner product of L2-normalised float32 vectors ranks the survivors, and the
   top-k is selected with the per-group cap applied while selecting (score desc, then id
   asc; :mod:`workers.engine.scoring`). Nothing is post-filtered.

Durability: with a ``snapshot_dir`` each collection writes a base snapshot and appends
every upsert/delete batch to a log *before* answering (:mod:`workers.engine.persist`), so a
restarted shard (``__init__`` again) reloads exactly what it had acknowledged.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from core.course_rank import CourseQuery, CourseRecommendation, posting_query
from core.course_rules import CourseRuleConfig
from core.errors import JobrecError
from core.rules import RuleConfig
from workers.engine import batch
from workers.engine.collection import Collection, kind_by_name
from workers.engine.scoring import normalise, set_threads
from workers.engine.types import ByIdQuery, InlineQuery, Query, Recommendation
from workers.kinds import COURSES, POSTINGS
from workers.kinds.courses import CourseSearch, courses_for_postings

Answer = list[Recommendation] | JobrecError
"""One answer of :meth:`Shard.search_many`: the results, or the error of that query."""


class Shard:
    """The collections (items + vectors) of one territory and its halo, searchable exactly."""

    def __init__(
        self,
        shard_id: int,
        *,
        dim: int,
        fine_res: int = 7,
        halo_km: float = 40.0,
        rules: RuleConfig | None = None,
        snapshot_dir: str | Path | None = None,
        threads: int = 1,
    ) -> None:
        self.shard_id = int(shard_id)
        self.dim = int(dim)
        self.fine_res = int(fine_res)
        self.halo_km = float(halo_km)
        self.rules = rules or RuleConfig()
        set_threads(int(threads))
        self._dir = Path(snapshot_dir) / f"shard-{self.shard_id:03d}" if snapshot_dir else None
        self.collections: dict[str, Collection] = {}
        self._course_search = CourseSearch()
        self._batch_stats: dict[str, dict] = {}
        if self._dir is not None and self._dir.is_dir():
            for sub in sorted(p for p in self._dir.iterdir() if (p / "base.parquet").exists()):
                self.collection(sub.name)
        self.restored = any(c.restored for c in self.collections.values())

    def collection(self, name: str = POSTINGS) -> Collection:
        """The collection ``name``, created (empty, or restored from its snapshot) on first use."""
        c = self.collections.get(name)
        if c is None:
            c = self.collections[name] = Collection(
                kind_by_name(name), dim=self.dim, fine_res=self.fine_res,
                directory=self._dir / name if self._dir is not None else None,
            )  # fmt: skip
        return c

    # ------------------------------------------------------------------ writes
    def load(
        self, df: pl.DataFrame, vectors: np.ndarray, owned: np.ndarray, collection: str = POSTINGS
    ) -> int:
        """Replace a collection's content (bulk build) and write its base snapshot."""
        if collection == COURSES:
            self._course_search.invalidate()
        return self.collection(collection).load(df, vectors, owned)

    def upsert(
        self, df: pl.DataFrame, vectors: np.ndarray, owned: np.ndarray, collection: str = POSTINGS
    ) -> tuple[int, int]:
        """Insert or replace items; durable (logged) before returning (inserted, updated)."""
        if collection == COURSES:
            self._course_search.invalidate()
        return self.collection(collection).upsert(df, vectors, owned)

    def delete(self, ids: Sequence[str], collection: str = POSTINGS) -> list[str]:
        """Delete items; returns the ids that were not here. Durable before returning."""
        if collection == COURSES:
            self._course_search.invalidate()
        return self.collection(collection).delete(ids)

    # ------------------------------------------------------------------- reads
    def size(self, collection: str = POSTINGS) -> int:
        return self.collection(collection).size()

    def ids(self, collection: str = POSTINGS) -> list[str]:
        """Ids of the items stored (owned and halo)."""
        return self.collection(collection).item_ids()

    def owned_ids(self, collection: str = POSTINGS) -> list[str]:
        return self.collection(collection).owned_ids()

    def get(self, item_id: str, collection: str = POSTINGS) -> dict:
        """The canonical row of a stored item."""
        return self.collection(collection).get(item_id)

    def stats(self) -> dict:
        """Counts and memory figures (postings at the top level, every collection below)."""
        per = {name: c.stats() for name, c in self.collections.items()}
        p = per.get(POSTINGS, self.collection(POSTINGS).stats())
        return {
            "shard_id": self.shard_id,
            "postings": p["items"],
            "owned": p["owned"],
            "rows_incl_deleted": p["rows_incl_deleted"],
            "vector_bytes": sum(c["vector_bytes"] for c in per.values()),
            "metadata_bytes": sum(c["metadata_bytes"] for c in per.values()),
            "collections": per,
            "rss_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "restored": self.restored,
            "pid": os.getpid(),
        }

    def batch_stats(self, collection: str = POSTINGS) -> dict:
        """Counters of the last :meth:`recommend_owned` of ``collection``."""
        return dict(self._batch_stats.get(collection, {}))

    # ------------------------------------------------------------------ search
    def search(self, query: Query) -> list[Recommendation]:
        """Answer a validated query (the backend checked k, rules and the item)."""
        coll = self.collection(query.collection)
        cfg = query.rules or self.rules
        if isinstance(query, ByIdQuery):
            q = coll.query_of_row(coll.row(query.item_id))
        else:
            q = coll.query_of_item(query.item, query.vector)
        return coll.results(coll.search(q, query.k, cfg))

    def search_many(self, queries: Sequence[Query]) -> list[Answer]:
        """Several queries in one call (the backend coalesces concurrent requests to save
        the per-call overhead of Ray); one failing query does not fail its batch-mates."""
        out: list[Answer] = []
        for q in queries:
            try:
                out.append(self.search(q))
            except JobrecError as exc:
                out.append(exc)
        return out

    def similar(
        self, posting_id: str, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]:
        """Top-k recommendations of a stored posting (checks ``rules`` against the halo)."""
        rules = self._check_rules(rules)
        return self.search(ByIdQuery(posting_id, k, rules))

    def similar_to(
        self, posting: dict, vector: np.ndarray, k: int = 10, rules: RuleConfig | None = None
    ) -> list[Recommendation]:
        """Top-k for an inline posting (not indexed); excludes a stored posting of the same id."""
        rules = self._check_rules(rules)
        self.collection(POSTINGS).kind.check_item(posting)
        vec = normalise(vector, self.dim)[0]
        return self.search(InlineQuery(dict(posting), vec, k, rules))

    # ----------------------------------------------------------------- courses
    def courses(
        self, query: CourseQuery, k: int, rules: CourseRuleConfig
    ) -> list[CourseRecommendation]:
        """Top-``k`` courses of this shard for a validated course query."""
        return self._course_search.search(self.collection(COURSES), query, k, rules)

    def courses_for_posting(
        self, posting_id: str, k: int, rules: CourseRuleConfig, held: Sequence[str] = ()
    ) -> tuple[list[CourseRecommendation], list[str]]:
        """Courses for a stored posting (its row and vector from the postings collection),
        and the skill gap used (certificates it asks for minus ``held``)."""
        p = self.collection(POSTINGS)
        q = posting_query(p.get(posting_id), p.store["vector"][p.row(posting_id)], held)
        return self.courses(q, k, rules), list(q.gap.values())

    def courses_for_owned(self, k: int, rules: CourseRuleConfig) -> pl.DataFrame:
        """The top-``k`` courses of every posting this shard owns (the refresh's course
        table, :data:`workers.kinds.courses.COURSE_RECS_SCHEMA`)."""
        p = self.collection(POSTINGS)
        df, vec = p.alive_items()
        owned = df["posting_id"].is_in(p.owned_ids()).to_numpy()
        return courses_for_postings(df.filter(owned), vec[owned],
                                    lambda q, kk, r: self.courses(q, kk, r), k, rules)

    def _check_rules(self, rules: RuleConfig | None) -> RuleConfig:
        rules = rules or self.rules
        rules.check_halo(self.halo_km)
        return rules

    # ------------------------------------------------------------------- batch
    def recommend_owned(
        self,
        k: int = 10,
        rules: RuleConfig | None = None,
        group_res: int | None = None,
        collection: str = POSTINGS,
    ) -> pl.DataFrame:
        """Top-k of every owned item, as (posting_id, rank, rec_posting_id, score,
        distance_km). Queries sharing a cell share one candidate block, scored by one matmul."""
        rules = self._check_rules(rules)
        frame, stats = batch.recommend_owned(self.collection(collection), k, rules, group_res)
        self._batch_stats[collection] = stats.as_dict()
        return frame
