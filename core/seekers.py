"""The canonical job-seeker schema and interaction log, beside the posting schema.

A seeker table is a ``polars.DataFrame`` with exactly the columns of :data:`SEEKER_SCHEMA`;
:func:`validate_seekers` checks what ingestion and the generator guarantee. Desired regions
are canonical (``sido``, ``sigungu``) pairs: ``sigungu`` null means the whole province, and
a 시 with 구 (수원시) covers all its 구 because postings carry the 시 as their ``sigungu``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from core.errors import InvalidInputError
from core.regions import RegionResolver, canonical_sigungu, default_resolver
from core.schema import EMPLOYMENT_TYPES

MAX_DESIRED_OCCUPATIONS = 3
MAX_DESIRED_REGIONS = 3

REGION_STRUCT = pl.Struct({"sido": pl.Utf8(), "sigungu": pl.Utf8()})
CAREER_STRUCT = pl.Struct({"occupation_code": pl.Utf8(), "years": pl.Int16()})

SEEKER_SCHEMA: dict[str, pl.DataType] = {
    "seeker_id": pl.Utf8(),
    "desired_occupations": pl.List(pl.Utf8()),  # 1-3 KECO 6-digit codes, most wanted first
    "desired_regions": pl.List(REGION_STRUCT),  # 1-3 canonical regions
    "home_lat": pl.Float64(),  # optional home
    "home_lng": pl.Float64(),
    "max_commute_km": pl.Float64(),  # optional; needs a home
    "education_level": pl.Int8(),  # 0..7 as postings' min_education_level
    "career_years": pl.Int16(),
    "career_history": pl.List(CAREER_STRUCT),  # most recent first
    "certificates": pl.List(pl.Utf8()),
    "desired_monthly_wage": pl.Int64(),  # optional, KRW per month
    "desired_employment_types": pl.List(pl.Utf8()),  # empty = any
    "resume_text": pl.Utf8(),  # PII-scrubbed 자기소개
    "birth_year": pl.Int16(),  # optional; never leaves the service
    "registered_on": pl.Date(),
    "active": pl.Boolean(),
}
SEEKER_REQUIRED: tuple[str, ...] = (
    "seeker_id", "desired_occupations", "desired_regions", "education_level", "career_years",
    "career_history", "certificates", "desired_employment_types", "resume_text",
    "registered_on", "active",
)

INTERACTION_EVENTS: tuple[str, ...] = ("shown", "clicked", "applied", "hidden")
INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "seeker_id": pl.Utf8(),
    "posting_id": pl.Utf8(),
    "event": pl.Utf8(),
    "at": pl.Datetime("us"),
}
# events after which a posting is never recommended to that seeker again
EXCLUDING_EVENTS: frozenset[str] = frozenset({"applied", "hidden"})

SEEKER_REJECT_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Utf8(),
    "record_index": pl.Int64(),
    "seeker_id": pl.Utf8(),
    "reason": pl.Utf8(),
    "detail": pl.Utf8(),
    "raw": pl.Utf8(),  # JSON, PII-scrubbed
}

_REGION_SPLIT = re.compile(r"\s*[,;/|·]\s*|\s*\n\s*")
_WHOLE = re.compile(r"\s*(?:전체|전지역|전역|전\s*지역|일대)$")


@dataclass(frozen=True, slots=True)
class Area:
    """A canonical region: a province (``sigungu`` None) or one 시/군/구 in it."""

    sido: str
    sigungu: str | None = None

    def contains(self, sido: str | None, sigungu: str | None) -> bool:
        """True if a location in (``sido``, ``sigungu``) lies in this region."""
        return sido == self.sido and (self.sigungu is None or sigungu == self.sigungu)

    @property
    def label(self) -> str:
        """"경기도 수원시" or "경기도"."""
        return self.sido if self.sigungu is None else f"{self.sido} {self.sigungu}"


def resolve_area(text: str, resolver: RegionResolver | None = None) -> Area | None:
    """The canonical region a seeker means by ``text`` ("경기 수원시", "서울 전체", "부산").

    A 구 or 동 inside a 시/군/구 widens to that 시/군/구 (desired regions are at 시도 or
    시군구 level); an unknown or ambiguous text gives None.
    """
    resolver = resolver or default_resolver()
    t = _WHOLE.sub("", text.strip())
    if not t:
        return None
    hit = resolver.resolve(t)
    if hit is None:
        return None
    return Area(hit.sido, canonical_sigungu(hit.sido, hit.sigungu) if hit.level >= 2 else None)


def parse_areas(value: str, resolver: RegionResolver | None = None) -> list[Area]:
    """Canonical regions of a 희망지역 cell ("경기 수원시, 경기 용인시"); raises on unknown ones.

    Duplicates and regions already covered by a listed province are dropped, order kept.
    """
    out: list[Area] = []
    for part in _REGION_SPLIT.split(value.strip()):
        if not part:
            continue
        area = resolve_area(part, resolver)
        if area is None:
            raise InvalidInputError(f"desired region {part!r} matches no known region",
                                    field="desired_regions")
        out.append(area)
    return dedupe_areas(out)


def dedupe_areas(areas: list[Area]) -> list[Area]:
    """``areas`` without repeats or 시/군/구 inside a listed province (order kept)."""
    provinces = {a.sido for a in areas if a.sigungu is None}
    out: list[Area] = []
    for a in areas:
        if a in out or (a.sigungu is not None and a.sido in provinces):
            continue
        out.append(a)
    return out


def areas_of(row_regions) -> list[Area]:
    """The :class:`Area` list of a ``desired_regions`` cell (list of dicts)."""
    return [Area(r["sido"], r["sigungu"]) for r in (row_regions or [])]


def seeker_text(row) -> str:
    """The text the posting encoder sees for a seeker: desired occupations' names, career
    history (occupation names, most recent first), certificates, then the résumé."""
    from core.reference import occupations

    occ = occupations()

    def name(code: str) -> str:
        o = occ.get(code)
        return o.name if o is not None else code

    parts = [" ".join(name(c) for c in row["desired_occupations"])]
    hist = [f"{name(h['occupation_code'])} {h['years']}년" for h in (row["career_history"] or [])]
    if hist:
        parts.append(" ".join(hist))
    if row["certificates"]:
        parts.append(" ".join(row["certificates"]))
    if row["resume_text"]:
        parts.append(row["resume_text"])
    return " . ".join(parts)[:600]


def empty_seekers() -> pl.DataFrame:
    """An empty frame with :data:`SEEKER_SCHEMA`."""
    return pl.DataFrame(schema=SEEKER_SCHEMA)


def validate_seekers(df: pl.DataFrame) -> None:
    """Raise :class:`InvalidInputError` unless ``df`` satisfies the seeker invariants."""
    if dict(df.schema) != SEEKER_SCHEMA:
        raise InvalidInputError(
            f"seeker table does not have the canonical schema: got {list(df.schema.items())}"
        )
    for col in SEEKER_REQUIRED:
        n = df[col].null_count()
        if n:
            raise InvalidInputError(f"column {col!r} has {n} null values", field=col)
    if df.height and df["seeker_id"].n_unique() != df.height:
        raise InvalidInputError("seeker_id values are not unique", field="seeker_id")
    occ_n = df["desired_occupations"].list.len()
    reg_n = df["desired_regions"].list.len()
    home = df["home_lat"].is_not_null() & df["home_lng"].is_not_null()
    checks = {
        "desired_occupations": ~occ_n.is_between(1, MAX_DESIRED_OCCUPATIONS)
        | ~df["desired_occupations"].list.eval(pl.element().str.contains(r"^\d{6}$")).list.all(),
        "desired_regions": ~reg_n.is_between(1, MAX_DESIRED_REGIONS)
        | df["desired_regions"].list.eval(pl.element().struct.field("sido").is_null()).list.any(),
        "education_level": ~df["education_level"].is_between(0, 7),
        "career_years": df["career_years"] < 0,
        "max_commute_km": df["max_commute_km"].is_not_null()
        & (~home | (df["max_commute_km"] <= 0)),
        "desired_monthly_wage": df["desired_monthly_wage"].is_not_null()
        & (df["desired_monthly_wage"] <= 0),
        "desired_employment_types": ~df["desired_employment_types"]
        .list.eval(pl.element().is_in(list(EMPLOYMENT_TYPES))).list.all(),
        "home_lat": df["home_lat"].is_not_null() & ~df["home_lat"].is_between(33.0, 38.7),
        "home_lng": df["home_lng"].is_not_null() & ~df["home_lng"].is_between(124.5, 131.0),
    }
    for col, bad in checks.items():
        n = int(bad.fill_null(False).sum())
        if n:
            raise InvalidInputError(f"column {col!r} has {n} invalid values", field=col)


def validate_interactions(df: pl.DataFrame) -> None:
    """Raise unless ``df`` has :data:`INTERACTION_SCHEMA` and known events only."""
    if dict(df.schema) != INTERACTION_SCHEMA:
        raise InvalidInputError(
            f"interaction table does not have the canonical schema: got {list(df.schema.items())}"
        )
    bad = df.filter(~pl.col("event").is_in(list(INTERACTION_EVENTS)) | pl.col("event").is_null())
    if bad.height:
        raise InvalidInputError(f"{bad.height} interactions have an unknown event", field="event")
