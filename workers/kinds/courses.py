"""Training courses in the geo shards: the ``courses`` collection kind, placement, the
per-shard course search and the merge of per-shard answers.

Placement follows the postings' (:mod:`workers.engine.sharding`): a course is stored by the shard
owning its place and by every shard whose territory lies within the halo (the largest
course radius), so the owner shard of a posting sees every course within the posting's
radius. Online courses have no place: every shard stores them (owned by the shard of
their institution). A seeker's query may name several places; each place is asked of its
owner shard and the answers are merged (:func:`merge_answers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from core.course_rank import CourseIndex, CourseQuery, CourseRankConfig, CourseRecommendation
from core.course_rules import COURSE_RULES, CourseRuleConfig, courses_columns
from core.courses import COURSE_SCHEMA, conform_courses, validate_courses
from core.errors import InvalidInputError
from core.schema import CAPITAL_AREA_SIDO
from workers.engine.collection import Collection, CollectionKind, register_kind
from workers.engine.sharding import ShardPlan, partition

COURSES = "courses"


def course_partition(plan: ShardPlan, courses: pl.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per shard: (row indices of ``courses`` it stores, owned flags of those rows)."""
    lat, lng = courses["lat"].to_numpy(), courses["lng"].to_numpy()
    owner, parts = partition(plan, lat, lng)
    online = np.flatnonzero(courses["online"].to_numpy())
    out = []
    for s, (idx, _owned) in enumerate(parts):
        rows = np.union1d(idx, online).astype(np.int64)
        out.append((rows, owner[rows] == s))
    return out


@dataclass(frozen=True)
class CourseMatch:
    """What the engine's generic :meth:`Collection.search` returns for a course (the course
    search proper is :func:`search_courses`)."""

    course_id: str
    score: float
    distance_km: float


def _encode(df: pl.DataFrame) -> dict[str, np.ndarray]:
    cols = courses_columns(df)
    return {name: cols[name] for name in _RULE_COLUMNS}


def _query_columns(item: Mapping[str, object]) -> dict[str, np.ndarray]:
    return {"capital": np.array([item.get("sido") in CAPITAL_AREA_SIDO])}


def _check_item(item: Mapping[str, object]) -> None:
    for f in ("lat", "lng"):
        v = item.get(f)
        if v is None or not np.isfinite(float(v)):
            raise InvalidInputError(f"a course query needs a valid {f!r}", field=f)


_RULE_COLUMNS = {
    "online": (np.bool_, ()),
    "start_days": (np.int32, ()),
    "end_days": (np.int32, ()),
    "capacity": (np.int32, ()),
    "enrolled": (np.int32, ()),
}

COURSE_KIND: CollectionKind[CourseMatch] = register_kind(
    CollectionKind(
        name=COURSES,
        id_column="course_id",
        schema=COURSE_SCHEMA,
        conform=conform_courses,
        validate=validate_courses,
        rules=COURSE_RULES,
        rule_columns=_RULE_COLUMNS,
        encode=_encode,
        labels=(),
        query_columns=_query_columns,
        check_item=_check_item,
        result=lambda cid, score, dist, _labels: CourseMatch(cid, score, dist),
    )
)


class CourseSearch:
    """The course search of one shard: a :class:`CourseIndex` over the live items of its
    ``courses`` collection, rebuilt after the collection changed (:meth:`invalidate`)."""

    def __init__(self, rank: CourseRankConfig | None = None) -> None:
        self.rank = rank or CourseRankConfig()
        self._index: CourseIndex | None = None

    def invalidate(self) -> None:
        self._index = None

    def index(self, coll: Collection) -> CourseIndex:
        if self._index is None:
            df, vec = coll.alive_items()
            self._index = CourseIndex(df, vec, self.rank)
        return self._index

    def search(self, coll: Collection, query: CourseQuery, k: int,
               rules: CourseRuleConfig) -> list[CourseRecommendation]:
        return self.index(coll).search(query, k, rules)


def merge_answers(answers: Sequence[Sequence[CourseRecommendation]], k: int) -> list[CourseRecommendation]:
    """The top-``k`` of several shards' answers to one query (a course seen twice keeps its
    better entry), in the ranking order (score, start date, course id)."""
    best: dict[str, CourseRecommendation] = {}
    for recs in answers:
        for r in recs:
            cur = best.get(r.course_id)
            if cur is None or _key(r) < _key(cur):
                best[r.course_id] = r
    return sorted(best.values(), key=_key)[:k]


def _key(r: CourseRecommendation):
    # a course near two anchors: the shorter distance wins (same score, same dates)
    return (-r.score, r.start_date, r.course_id, r.distance_km if r.distance_km is not None else -1.0)


COURSE_RECS_SCHEMA: dict[str, pl.DataType] = {
    "posting_id": pl.Utf8(),
    "rank": pl.Int16(),
    "course_id": pl.Utf8(),
    "score": pl.Float32(),
    "distance_km": pl.Float32(),  # null: online
    "start_date": pl.Date(),
    "self_pay": pl.Int64(),
    "gap_certificates": pl.List(pl.Utf8()),
    "reasons": pl.List(pl.Utf8()),
}


def course_recs_frame(pairs: Sequence[tuple[str, Sequence[CourseRecommendation]]]) -> pl.DataFrame:
    """The batch refresh's second table: (posting id, its ranked courses) as rows of
    :data:`COURSE_RECS_SCHEMA`."""
    rows = [
        (pid, rank, r.course_id, r.score, r.distance_km, r.start_date, r.self_pay,
         list(r.gap_certificates), list(r.reasons))
        for pid, recs in pairs for rank, r in enumerate(recs, start=1)
    ]
    return pl.DataFrame(rows, schema=COURSE_RECS_SCHEMA, orient="row")


def courses_for_postings(
    postings: pl.DataFrame, vectors: np.ndarray | None, search, k: int, rules: CourseRuleConfig,
) -> pl.DataFrame:
    """The course table of a batch refresh: the top-``k`` courses of every posting, found by
    ``search(query, k, rules)`` (a shard's or a whole :class:`CourseIndex`'s)."""
    from core.course_rank import posting_query

    pairs = []
    for i, p in enumerate(postings.iter_rows(named=True)):
        q = posting_query(p, None if vectors is None else vectors[i])
        pairs.append((p["posting_id"], search(q, k, rules)))
    return course_recs_frame(pairs)
