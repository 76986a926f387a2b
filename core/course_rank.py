"""Ranking training courses for a posting or a job seeker, with the reasons shown to users.

Among the courses passing :mod:`core.course_rules`, the score of a course is

    w_vector * cos(query vector, course vector)         (same encoder as postings)
  + w_family * [the course's NCS 대분류 covers one of the query's KECO mid groups]
  + w_gap    * [the course prepares for a certificate in the query's skill gap]

and results are ordered by score (rounded to 1e-6), then start date, then course id. The
query's skill gap is, for a posting, the certificates it asks for minus those the viewer
holds; for a seeker, the certificates postings in the desired occupations ask for
(:class:`CertificateDemand`) minus those held.

:class:`CourseIndex` holds one set of courses (a shard's course collection) with its
vectors, family matrix, certificate index and a coarse lat/lng grid; queries in one grid
cell share one candidate block (one matmul), online courses are candidates everywhere.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import polars as pl

from core.course_rules import COURSE_RULES, CourseRuleConfig, anchor_columns, courses_columns
from core.courses import (
    TRAINING_TYPE_LABELS,
    certificate_key,
    keco_mids_for_ncs,
    ncs_major_for_keco_mid,
    split_certificates,
)
from core.errors import InvalidInputError
from core.reference import keco_groups, keco_rows
from core.rules import haversine_km

_CELL_DEG = 0.2  # grid cell: 0.2° lat x 0.25° lng, about 22 km in Korea
_CELL_LNG = 0.25
_KM_PER_DEG = 111.0


@dataclass(frozen=True)
class CourseRankConfig:
    """Weights of the score and the demand threshold (bad values raise InvalidInputError)."""

    w_vector: float = 1.0
    w_family: float = 0.5
    w_gap: float = 0.6
    min_certificate_share: float = 0.05  # share of an occupation's postings asking for it

    def __post_init__(self) -> None:
        for name in ("w_vector", "w_family", "w_gap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise InvalidInputError(f"{name} must be a finite number >= 0, got {v!r}", field=name)
        s = self.min_certificate_share
        if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 1:
            raise InvalidInputError(f"min_certificate_share must be in (0, 1], got {s!r}",
                                    field="min_certificate_share")


class CertificateDemand:
    """Which certificates postings of each KECO occupation ask for (the ``certificates``
    column of the posting corpus)."""

    def __init__(self, counts: Mapping[str, Counter], totals: Mapping[str, int],
                 names: Mapping[str, str]) -> None:
        self._counts = dict(counts)
        self._totals = dict(totals)
        self._names = dict(names)

    @classmethod
    def from_postings(cls, postings: pl.DataFrame) -> CertificateDemand:
        """Counts over a canonical posting table."""
        counts: dict[str, Counter] = {}
        totals: Counter = Counter()
        names: dict[str, str] = {}
        for code, certs in postings.select("occupation_code", "certificates").iter_rows():
            totals[code] += 1
            for name in split_certificates(certs):
                key = certificate_key(name)
                names.setdefault(key, name)
                counts.setdefault(code, Counter())[key] += 1
        return cls(counts, totals, names)

    def demanded(self, codes: Iterable[str], min_share: float) -> dict[str, str]:
        """Certificate key -> name, for certificates asked by at least ``min_share`` of the
        postings of any occupation in ``codes``."""
        out: dict[str, str] = {}
        for code in codes:
            total = self._totals.get(code, 0)
            for key, n in self._counts.get(code, Counter()).items():
                if total and n / total >= min_share:
                    out.setdefault(key, self._names[key])
        return out


@dataclass(frozen=True)
class CourseQuery:
    """What a course search needs to know about a posting or a seeker.

    ``anchors``: (lat, lng, sido) places the courses must be near (any of them);
    ``vector``: the query's encoder vector (None: no vector term); ``families``: KECO mid
    codes; ``gap``: certificate key -> name the query lacks; ``exclude``: course ids.
    """

    anchors: tuple[tuple[float, float, str | None], ...]
    vector: np.ndarray | None = None
    families: frozenset[str] = frozenset()
    gap: Mapping[str, str] = field(default_factory=dict)
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.anchors:
            raise InvalidInputError("a course query needs at least one place", field="location")
        for lat, lng, _ in self.anchors:
            if not (33.0 <= float(lat) <= 38.7 and 124.5 <= float(lng) <= 131.0):
                raise InvalidInputError(f"location ({lat}, {lng}) is outside Korea", field="location")


@dataclass(frozen=True)
class CourseRecommendation:
    """One recommended course with the facts behind it and readable reasons."""

    course_id: str
    title: str
    institution: str
    score: float
    distance_km: float | None  # None: online
    online: bool
    training_type: str
    start_date: dt.date
    end_date: dt.date | None
    cost: int | None
    self_pay: int | None
    employment_rate: float | None  # 6-month rate, else 3-month
    family: str | None  # the matched KECO mid code
    gap_certificates: tuple[str, ...]
    reasons: tuple[str, ...]


def posting_query(posting: Mapping, vector: np.ndarray | None = None,
                  held: Iterable[str] = (), exclude: Iterable[str] = ()) -> CourseQuery:
    """The course query of a posting (a canonical row); ``held``: the viewer's certificates."""
    have = {certificate_key(h) for h in held}
    gap = {certificate_key(c): c for c in split_certificates(posting.get("certificates"))
           if certificate_key(c) not in have}
    fams = frozenset(g.mid_code for g in keco_groups(posting["occupation_code"]))
    return CourseQuery(((posting["lat"], posting["lng"], posting["sido"]),), vector, fams, gap,
                       frozenset(exclude))


def seeker_query(anchors: Sequence[tuple[float, float, str | None]], occupation_codes: Iterable[str],
                 held: Iterable[str], demand: CertificateDemand | None, cfg: CourseRankConfig,
                 vector: np.ndarray | None = None) -> CourseQuery:
    """The course query of a seeker: near any anchor, for the desired occupations, ranked up
    for certificates the postings of those occupations ask for and the seeker lacks."""
    codes = list(occupation_codes)
    fams = frozenset(g.mid_code for c in codes for g in keco_groups(c))
    have = {certificate_key(h) for h in held}
    wanted = demand.demanded(codes, cfg.min_certificate_share) if demand is not None else {}
    gap = {k: v for k, v in wanted.items() if k not in have}
    return CourseQuery(tuple(anchors), vector, fams, gap)


class CourseIndex:
    """A set of courses ready to be searched (see the module docstring)."""

    def __init__(self, courses: pl.DataFrame, vectors: np.ndarray | None,
                 cfg: CourseRankConfig | None = None) -> None:
        self.cfg = cfg or CourseRankConfig()
        self.df = courses
        n = courses.height
        if vectors is not None:
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape[0] != n:
                raise InvalidInputError(f"{vectors.shape[0]} vectors for {n} courses", field="vectors")
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms > 0, norms, 1.0)
        self.vectors = vectors
        self.cols = courses_columns(courses)
        self.ids = np.asarray(courses["course_id"].to_list(), dtype=object)
        self._rows = courses.to_dicts()
        # the family of a course is its NCS 대분류 (the KECO mid groups it covers)
        self.ncs_major = np.array([int(c[:2]) for c in courses["ncs_code"].to_list()], dtype=np.int16)
        self._cert_rows: dict[str, list[int]] = {}
        for i, text in enumerate(courses["certificate"].to_list()):
            for name in split_certificates(text):
                self._cert_rows.setdefault(certificate_key(name), []).append(i)
        lat, lng = self.cols["lat"], self.cols["lng"]
        self._cell = np.stack([np.floor(lat / _CELL_DEG), np.floor(lng / _CELL_LNG)], 1).astype(np.int64)
        self._online = np.flatnonzero(self.cols["online"])
        self._by_cell: dict[tuple[int, int], np.ndarray] = {}
        geo = np.flatnonzero(~self.cols["online"])
        if geo.size:
            keys = self._cell[geo]
            order = np.lexsort((keys[:, 1], keys[:, 0]))
            uniq, starts = np.unique(keys[order], axis=0, return_index=True)
            bounds = list(starts) + [order.size]
            for j, (a, b) in enumerate(uniq.tolist()):
                self._by_cell[(a, b)] = geo[order[bounds[j]:bounds[j + 1]]]

    def __len__(self) -> int:
        return self.df.height

    def _candidates(self, anchors, rules: CourseRuleConfig) -> np.ndarray:
        """Rows that may lie within the radius of any anchor (a superset), plus online ones."""
        r = rules.max_radius_km
        parts = [self._online] if rules.include_online else []
        for lat, lng, _ in anchors:
            dlat = int(math.ceil(r / (_KM_PER_DEG * _CELL_DEG))) + 1
            coslat = max(0.2, math.cos(math.radians(abs(lat) + r / _KM_PER_DEG)))
            dlng = int(math.ceil(r / (_KM_PER_DEG * coslat * _CELL_LNG))) + 1
            ca, cb = math.floor(lat / _CELL_DEG), math.floor(lng / _CELL_LNG)
            for a in range(ca - dlat, ca + dlat + 1):
                for b in range(cb - dlng, cb + dlng + 1):
                    hit = self._by_cell.get((a, b))
                    if hit is not None:
                        parts.append(hit)
        if not parts:
            return np.zeros(0, dtype=np.int64)
        rows = np.concatenate(parts)
        # cells are disjoint and online rows are in no cell: one anchor has no duplicates
        return rows if len(anchors) == 1 else np.unique(rows)

    def eligible(self, query: CourseQuery, rules: CourseRuleConfig) -> tuple[np.ndarray, np.ndarray]:
        """(rows, distance km) of the courses passing every rule for ``query``; the distance
        is to the nearest anchor within its radius (``inf`` for online courses)."""
        cand = self._candidates(query.anchors, rules)
        if cand.size == 0:
            return cand, np.zeros(0)
        c = {name: col[cand] for name, col in self.cols.items()}
        lat, lng, sido = zip(*query.anchors, strict=True)
        q = anchor_columns(lat, lng, sido)
        passed = COURSE_RULES.pair_mask(q, c, rules)  # (anchors, candidates)
        ok = passed.any(axis=0)
        d = haversine_km(q["lat"][:, None], q["lng"][:, None], c["lat"][None, :], c["lng"][None, :])
        dist = np.where(passed, d, np.inf).min(axis=0)
        if query.exclude:
            ok &= ~np.isin(self.ids[cand], list(query.exclude))
        return cand[ok], np.where(c["online"][ok], np.inf, dist[ok])

    def search(self, query: CourseQuery, k: int, rules: CourseRuleConfig) -> list[CourseRecommendation]:
        """The top-``k`` courses for ``query`` under ``rules``."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be an int >= 1, got {k!r}", field="k")
        rows, d = self.eligible(query, rules)
        if rows.size == 0:
            return []
        score, fam_hit, _ = self._score(query, rows)
        start = self.cols["start_days"][rows]
        order = np.lexsort((self.ids[rows], start, -np.round(score, 6)))[:k]
        return [self._recommendation(int(rows[j]), float(score[j]), float(d[j]), query,
                                     bool(fam_hit[j]), rules) for j in order]

    def _score(self, query: CourseQuery, rows: np.ndarray):
        cfg = self.cfg
        score = np.zeros(rows.size, dtype=np.float64)
        if query.vector is not None and self.vectors is not None and cfg.w_vector:
            qv = np.asarray(query.vector, dtype=np.float32)
            nq = float(np.linalg.norm(qv))
            if nq > 0:
                score += cfg.w_vector * (self.vectors[rows] @ (qv / nq)).astype(np.float64)
        majors = sorted({int(x) for x in map(ncs_major_for_keco_mid, query.families) if x})
        fam_hit = np.isin(self.ncs_major[rows], majors) if majors else np.zeros(rows.size, bool)
        score += cfg.w_family * fam_hit
        gap_rows = {i for key in query.gap for i in self._cert_rows.get(key, ())}
        gap_hit = np.isin(rows, list(gap_rows)) if gap_rows else np.zeros(rows.size, bool)
        score += cfg.w_gap * gap_hit
        return score, fam_hit, gap_hit

    def _recommendation(self, i: int, score: float, dist: float, query: CourseQuery,
                        fam_hit: bool, rules: CourseRuleConfig) -> CourseRecommendation:
        row = self._rows[i]
        ref = rules.effective_ref_date()
        online = bool(row["online"])
        distance = None if online or not math.isfinite(dist) else round(dist, 3)
        gaps = tuple(query.gap[certificate_key(n)] for n in split_certificates(row["certificate"])
                     if certificate_key(n) in query.gap)
        fam = None
        if fam_hit:
            mids = [m for m in keco_mids_for_ncs(row["ncs_code"]) if m in query.families]
            fam = sorted(mids)[0] if mids else None
        rate = row["employment_rate_6m"] if row["employment_rate_6m"] is not None else row["employment_rate_3m"]
        reasons = [_place_reason(distance, row)]
        reasons.append(_date_reason(row["start_date"], row["end_date"], ref))
        reasons.append(_cost_reason(row["cost"], row["self_pay"]))
        if rate is not None:
            which = "6개월" if row["employment_rate_6m"] is not None else "3개월"
            reasons.append(f"취업률 {rate:.1f}% ({which})")
        if fam is not None:
            reasons.append(f"관련 직종군: {_mid_name(fam)} (KECO {fam})")
        for g in gaps:
            reasons.append(f"부족한 자격 취득: {g}")
        return CourseRecommendation(
            course_id=row["course_id"], title=row["title"], institution=row["institution"],
            score=round(score, 6), distance_km=distance, online=online,
            training_type=row["training_type"], start_date=row["start_date"],
            end_date=row["end_date"], cost=row["cost"], self_pay=row["self_pay"],
            employment_rate=rate, family=fam, gap_certificates=gaps, reasons=tuple(reasons),
        )


@cache
def _mid_names() -> dict[str, str]:
    return dict(keco_rows().select("mid_code", "mid_name").unique().iter_rows())


def _mid_name(mid: str) -> str:
    return _mid_names().get(mid, mid)


def _place_reason(distance: float | None, row: Mapping) -> str:
    if distance is None:
        return f"온라인({TRAINING_TYPE_LABELS['online']}) 과정"
    kind = TRAINING_TYPE_LABELS.get(row["training_type"], "")
    return f"거리 {distance:.1f}km ({row['address']}, {kind} 과정)"


def _date_reason(start: dt.date, end: dt.date | None, ref: dt.date) -> str:
    days = (start - ref).days
    if days >= 0:
        return f"{start.isoformat()} 개강 ({days}일 후)" if days else f"{start.isoformat()} 오늘 개강"
    return f"진행 중 ({start.isoformat()} 개강" + (f", {end.isoformat()} 종료)" if end else ")")


def _won(x: int) -> str:
    return f"{x / 10_000:,.0f}만원" if x >= 10_000 else f"{x:,}원"


def _cost_reason(cost: int | None, self_pay: int | None) -> str:
    if self_pay is None:
        return f"수강비 {_won(cost)}" if cost is not None else "수강비 정보 없음"
    if self_pay == 0:
        return "자부담 없음 (전액 지원)"
    return f"자부담 {_won(self_pay)}" + (f" (수강비 {_won(cost)})" if cost else "")


__all__ = ["CertificateDemand", "CourseIndex", "CourseQuery", "CourseRankConfig",
           "CourseRecommendation", "posting_query", "resolve_anchors", "seeker_query",
           "stored_seeker_fields"]


def resolve_anchors(
    lat: float | None, lng: float | None, sido: str | None, home_region: str | None,
    desired_regions: Sequence[str], regions=None, *, prefix: str = "seeker",
) -> list[tuple[float, float, str | None]]:
    """A seeker's places: home (coordinates, else ``home_region`` resolved) and each desired
    region resolved to its centroid. An unresolvable region is an error naming its field."""
    from core.ingest.normalise import _full_sido
    from core.regions import default_resolver, nearest_sido

    res = regions or default_resolver()
    out: list[tuple[float, float, str | None]] = []
    if lat is not None and lng is not None:
        prov = _full_sido(sido)
        if prov is None and home_region:
            hit = res.resolve(home_region)
            prov = hit.sido if hit is not None else None
        if prov is None:
            prov = nearest_sido(float(lat), float(lng))
        out.append((float(lat), float(lng), prov))
    elif home_region:
        hit = res.resolve(home_region)
        if hit is None:
            raise InvalidInputError(f"region {home_region!r} is not known", field=f"{prefix}.home_region")
        out.append((hit.lat, hit.lng, hit.sido))
    for i, text in enumerate(desired_regions):
        hit = res.resolve(text)
        if hit is None:
            raise InvalidInputError(f"region {text!r} is not known",
                                    field=f"{prefix}.desired_regions[{i}]")
        out.append((hit.lat, hit.lng, hit.sido))
    if not out:
        raise InvalidInputError("give the seeker's home (lat/lng or home_region) or a desired region",
                                field=f"{prefix}.home_region")
    return out


def stored_seeker_fields(row: Mapping) -> dict:
    """A stored seeker row (``core.seekers.SEEKER_SCHEMA``) as the fields a course query is
    built from, the same keys as an inline ``CourseSeekerProfile``: the home point (its
    province is the nearest region's) and each desired region as "시도 시군구"."""
    lat, lng = row.get("home_lat"), row.get("home_lng")
    has_home = lat is not None and lng is not None
    return {
        "lat": float(lat) if has_home else None,
        "lng": float(lng) if has_home else None,
        "sido": None,
        "home_region": None,
        "desired_regions": [" ".join(p for p in (r["sido"], r.get("sigungu")) if p)
                            for r in row.get("desired_regions") or []],
        "desired_occupation_codes": list(row.get("desired_occupations") or []),
        "certificates": list(row.get("certificates") or []),
        "resume_text": (row.get("resume_text") or "").strip(),
    }
