"""Training courses in the geo shards: placement, the per-shard course collection and the
merge of per-shard answers.

Placement follows the postings' (:mod:`workers.sharding`): a course is stored by the shard
owning its place and by every shard whose territory lies within the halo (the largest
course radius), so the owner shard of a posting sees every course within the posting's
radius. Online courses have no place: every shard stores them (owned by the shard of
their institution). A seeker's query may name several places; each place is asked of its
owner shard and the answers are merged (:func:`merge_answers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from core.course_rank import CourseIndex, CourseQuery, CourseRankConfig, CourseRecommendation
from core.course_rules import CourseRuleConfig
from core.courses import COURSE_SCHEMA, validate_courses
from core.errors import InvalidInputError
from workers.sharding import ShardPlan, partition

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


class CourseCollection:
    """The courses one shard stores, searchable (a :class:`CourseIndex`), with an optional
    snapshot directory (``courses.parquet`` + ``course_vectors.npy``, written atomically)."""

    def __init__(self, rank: CourseRankConfig | None = None, directory: Path | None = None) -> None:
        self.rank = rank or CourseRankConfig()
        self.directory = Path(directory) if directory is not None else None
        self.df = pl.DataFrame(schema=COURSE_SCHEMA)
        self.vectors: np.ndarray | None = None
        self.owned = np.zeros(0, dtype=bool)
        self.index = CourseIndex(self.df, None, self.rank)
        if self.directory is not None and (self.directory / "courses.parquet").exists():
            df = pl.read_parquet(self.directory / "courses.parquet")
            vec_path = self.directory / "course_vectors.npy"
            vec = np.load(vec_path) if vec_path.exists() else None
            self._set(df.drop("_owned"), vec, df["_owned"].to_numpy())

    def _set(self, df: pl.DataFrame, vectors: np.ndarray | None, owned: np.ndarray) -> None:
        self.df, self.vectors, self.owned = df, vectors, np.asarray(owned, dtype=bool)
        self.index = CourseIndex(df, vectors, self.rank)

    def load(self, df: pl.DataFrame, vectors: np.ndarray | None, owned: np.ndarray) -> int:
        """Replace the courses (a daily refresh); returns the number stored."""
        validate_courses(df)
        if vectors is not None and len(vectors) != df.height:
            raise InvalidInputError(f"{len(vectors)} vectors for {df.height} courses", field="vectors")
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / "courses.parquet.tmp"
            df.with_columns(_owned=pl.Series(np.asarray(owned, dtype=bool))).write_parquet(tmp)
            if vectors is not None:
                np.save(self.directory / "course_vectors.tmp.npy", np.asarray(vectors, np.float32))
                (self.directory / "course_vectors.tmp.npy").replace(self.directory / "course_vectors.npy")
            tmp.replace(self.directory / "courses.parquet")
        self._set(df, None if vectors is None else np.asarray(vectors, np.float32), owned)
        return df.height

    def size(self) -> int:
        return self.df.height

    def owned_count(self) -> int:
        return int(self.owned.sum())

    def search(self, query: CourseQuery, k: int, rules: CourseRuleConfig) -> list[CourseRecommendation]:
        """Top-``k`` stored courses for ``query``."""
        return self.index.search(query, k, rules)


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
