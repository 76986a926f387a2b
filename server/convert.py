"""The one module converting protobuf messages to and from canonical jobrec values.

Canonical values are the ones the rest of the code base uses: posting rows as dicts / polars
frames with :data:`core.schema.POSTING_SCHEMA`, ``core.rules.RuleConfig`` and
``workers.engine.types.Recommendation``. Nothing outside ``server/`` sees a protobuf type.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from core.errors import InvalidInputError
from core.rules import DEFAULT_K, MAX_K, RuleConfig
from core.schema import POSTING_SCHEMA, REQUIRED_COLUMNS, validate_postings
from server.generated.jobrec.v1 import courses_pb2 as cpb
from server.generated.jobrec.v1 import matching_pb2 as mpb
from server.generated.jobrec.v1 import recommendation_pb2 as pb
from workers.engine.types import Recommendation

_DATE_FIELDS = ("registered_on", "closes_on")
_INT_FIELDS = (
    "min_education_level",
    "max_education_level",
    "min_career_years",
    "wage_min",
    "wage_max",
    "monthly_wage",
)
_FLOAT_FIELDS = ("lat", "lng")
# the RuleConfig fields a request may override (the proto mirrors RuleConfig)
RULE_FIELDS: tuple[str, ...] = tuple(pb.RuleOverrides.DESCRIPTOR.fields_by_name)


def _parse_date(value: str, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"{value!r} is not an ISO date (YYYY-MM-DD)", field=field) from exc


def posting_to_dict(
    msg: pb.Posting, *, prefix: str = "posting", inline: bool = False, today: dt.date | None = None
) -> dict[str, Any]:
    """A ``Posting`` message as a canonical row dict (unset optional fields are ``None``).

    Empty required strings are errors naming ``prefix.field``. For ``inline`` query postings
    the id may be empty and ``registered_on`` defaults to ``today``.
    """
    row: dict[str, Any] = {}
    for name in POSTING_SCHEMA:
        has_presence = msg.DESCRIPTOR.fields_by_name[name].has_presence
        if has_presence and not msg.HasField(name):
            row[name] = None
            continue
        value = getattr(msg, name)
        if name in _DATE_FIELDS:
            value = None if value == "" else _parse_date(value, f"{prefix}.{name}")
        elif isinstance(value, str) and value == "" and name in REQUIRED_COLUMNS:
            value = None
        row[name] = value
    if inline:
        if row["posting_id"] is None:
            row["posting_id"] = ""
        if row["registered_on"] is None:
            row["registered_on"] = today or dt.date.today()
    missing = [c for c in REQUIRED_COLUMNS if row[c] is None]
    if missing:
        raise InvalidInputError(f"{missing[0]} is required", field=f"{prefix}.{missing[0]}")
    return row


def posting_from_row(row: Mapping[str, Any]) -> pb.Posting:
    """A ``Posting`` message from a canonical row (dict or polars named row)."""
    kwargs: dict[str, Any] = {}
    for name in POSTING_SCHEMA:
        value = row.get(name)
        if value is None:
            continue
        if name in _DATE_FIELDS:
            value = value.isoformat()
        elif name in _INT_FIELDS:
            value = int(value)
        elif name in _FLOAT_FIELDS:
            value = float(value)
        kwargs[name] = value
    return pb.Posting(**kwargs)


def rows_to_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Canonical row dicts as a frame with exactly :data:`POSTING_SCHEMA`."""
    try:
        return pl.DataFrame(list(rows), schema=POSTING_SCHEMA, orient="row")
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"posting values do not fit the canonical schema: {exc}") from exc


def validated_frame(
    rows: Sequence[Mapping[str, Any]], *, prefix: str, indexed: bool = True
) -> pl.DataFrame:
    """Rows as a validated canonical frame; an error names ``prefix[i].field`` of the culprit.

    With ``indexed`` errors read e.g. ``postings[3].lat``; without (a single inline posting)
    they read ``posting.lat``.
    """
    single = not indexed
    try:
        df = rows_to_frame(rows)
        validate_postings(df)
        return df
    except InvalidInputError as exc:
        if single:
            raise InvalidInputError(str(exc), field=f"{prefix}.{exc.field or 'posting'}") from exc
        first_exc = exc
    # Slow path, errors only: find the first offending posting so the caller can fix it.
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        pid = row.get("posting_id")
        if pid in seen:
            raise InvalidInputError(
                f"posting_id {pid!r} appears twice in the stream (also at {seen[pid]})",
                field=f"{prefix}[{i}].posting_id",
            ) from first_exc
        seen[pid] = i
        try:
            validate_postings(rows_to_frame([row]))
        except InvalidInputError as exc:
            raise InvalidInputError(
                str(exc), field=f"{prefix}[{i}].{exc.field or 'posting'}"
            ) from exc
    raise InvalidInputError(str(first_exc), field=prefix) from first_exc


def validate_k(k: int) -> int:
    """The effective ``k`` of a request: 0 (the protobuf default) means
    :data:`core.rules.DEFAULT_K`; 1..:data:`core.rules.MAX_K` allowed."""
    if k == 0:
        return DEFAULT_K
    if not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be between 1 and {MAX_K}, got {k}", field="k")
    return k


def rules_from_overrides(
    base: RuleConfig, overrides: pb.RuleOverrides | None, *, has: bool
) -> RuleConfig:
    """``base`` with the fields set in ``overrides`` replaced.

    Each field is validated on its own so an error names ``rules.<field>``.
    """
    if overrides is None or not has:
        return base
    changes: dict[str, Any] = {}
    for name in RULE_FIELDS:
        if not overrides.HasField(name):
            continue
        value = getattr(overrides, name)
        if name == "ref_date":
            value = _parse_date(value, "rules.ref_date")
        try:
            dataclasses.replace(base, **{name: value})
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(str(exc), field=f"rules.{name}") from exc
        changes[name] = value
    if not changes:
        return base
    try:
        return dataclasses.replace(base, **changes)
    except (ValueError, TypeError) as exc:  # a combination of fields is inconsistent
        raise InvalidInputError(str(exc), field="rules") from exc


def applied_rules(cfg: RuleConfig, *, today: dt.date | None = None) -> pb.AppliedRules:
    """The effective rule configuration as an ``AppliedRules`` message."""
    ref = cfg.ref_date or today or dt.date.today()
    return pb.AppliedRules(
        capital_radius_km=float(cfg.capital_radius_km),
        other_radius_km=float(cfg.other_radius_km),
        education_policy=str(cfg.education_policy),
        career_filter=bool(cfg.career_filter),
        exclude_expired=bool(cfg.exclude_expired),
        max_per_company=int(cfg.max_per_company),
        ref_date=ref.isoformat(),
    )


def recommendation_to_pb(rec: Recommendation, rank: int) -> pb.Recommendation:
    """A ``workers.engine.types.Recommendation`` as a message (``rank`` is 1-based)."""
    return pb.Recommendation(
        posting_id=str(rec.posting_id),
        score=float(rec.score),
        distance_km=float(rec.distance_km),
        title=str(rec.title or ""),
        company=str(rec.company or ""),
        region=str(rec.region or ""),
        rank=rank,
    )


def similar_response(
    recs: Iterable[Recommendation], *, query_posting_id: str, rules: RuleConfig, today: dt.date | None = None
) -> pb.SimilarPostingsResponse:
    """The ``SimilarPostingsResponse`` for a ranked list of recommendations."""
    return pb.SimilarPostingsResponse(
        recommendations=[recommendation_to_pb(r, i) for i, r in enumerate(recs, start=1)],
        query_posting_id=query_posting_id,
        rules=applied_rules(rules, today=today),
    )


# ======================================================================================
# Matching (issue 10): RecommendJobs / RecommendCandidates conversions (server/matching.py)
# ======================================================================================


def profile_from_pb(msg: mpb.SeekerProfile) -> dict[str, Any]:
    """An inline ``SeekerProfile`` as a plain dict for ``workers.matching.service.check_profile``."""
    return {
        "seeker_id": msg.seeker_id,
        "desired_occupations": list(msg.desired_occupations),
        "desired_regions": [{"sido": r.sido, "sigungu": r.sigungu if r.HasField("sigungu") else None}
                            for r in msg.desired_regions],
        "home_lat": msg.home_lat if msg.HasField("home_lat") else None,
        "home_lng": msg.home_lng if msg.HasField("home_lng") else None,
        "max_commute_km": msg.max_commute_km if msg.HasField("max_commute_km") else None,
        "education_level": msg.education_level,
        "career_years": msg.career_years,
        "career_history": [{"occupation_code": h.occupation_code, "years": h.years}
                           for h in msg.career_history],
        "certificates": list(msg.certificates),
        "desired_monthly_wage": msg.desired_monthly_wage if msg.HasField("desired_monthly_wage")
        else None,
        "resume_text": msg.resume_text,
    }


def interactions_from_pb(msg: mpb.RecordInteractionsRequest) -> list[dict[str, Any]]:
    """The rows of a ``RecordInteractionsRequest`` for
    ``workers.matching.service.MatchService.record_interactions`` (``at`` parsed here)."""
    rows = []
    for i, x in enumerate(msg.interactions):
        at = None
        if x.HasField("at"):
            try:
                at = dt.datetime.fromisoformat(x.at)
            except ValueError:
                raise InvalidInputError(f"{x.at!r} is not an ISO date-time",
                                        field=f"interactions[{i}].at") from None
        rows.append({"seeker_id": x.seeker_id, "posting_id": x.posting_id, "event": x.event,
                     "at": at})
    return rows


def match_reasons_to_pb(r: Mapping[str, Any]) -> mpb.MatchReasons:
    """Machine-readable reasons (``core.matching.reasons_for``) as a message."""
    kw: dict[str, Any] = {
        "matched_region": r.get("matched_region") or "",
        "occupation_relation": r.get("occupation_relation") or "other",
        "education_ok": bool(r.get("education_ok")),
        "career_ok": bool(r.get("career_ok")),
        "wage_vs_desired": r.get("wage_vs_desired") or "",
        "similarity": float(r.get("similarity") or 0.0),
    }
    for name in ("distance_km", "monthly_wage", "desired_wage"):
        if r.get(name) is not None:
            kw[name] = float(r[name]) if name == "distance_km" else int(r[name])
    return mpb.MatchReasons(**kw)


def job_match_to_pb(m: Any, posting: Mapping[str, Any]) -> mpb.JobMatch:
    """One recommended posting (``core.matching.Match``) with its display fields."""
    return mpb.JobMatch(posting_id=m.item_id, score=m.score, title=posting.get("title") or "",
                        company=posting.get("company") or "", region=posting.get("region") or "",
                        reasons=match_reasons_to_pb(m.reasons), reason_text=m.reason_text)


def candidate_to_pb(m: Any, profile: Mapping[str, Any]) -> mpb.CandidateMatch:
    """One recommended seeker: only the non-identifying ``profile`` fields, never the résumé."""
    return mpb.CandidateMatch(
        seeker_id=m.item_id, score=m.score,
        desired_occupations=list(profile["desired_occupations"]),
        desired_regions=list(profile["desired_regions"]),
        education_level=int(profile["education_level"]), career_years=int(profile["career_years"]),
        reasons=match_reasons_to_pb(m.reasons), reason_text=m.reason_text)


# ======================================================================================
# Courses (jobrec.v1.CourseService, proto/jobrec/v1/courses.proto) — issue 11
# ======================================================================================

DEFAULT_COURSE_K = 5
_COURSE_RULE_FIELDS = (
    "capital_radius_km", "other_radius_km", "include_online", "horizon_days", "admit_running",
    "exclude_full", "ref_date",
)


def validate_course_k(k: int) -> int:
    """0 means :data:`DEFAULT_COURSE_K`; 1..:data:`MAX_K` allowed."""
    return DEFAULT_COURSE_K if k == 0 else validate_k(k)


def course_rules_from_overrides(base: Any, overrides: Any, *, has: bool) -> Any:
    """``base`` (a ``core.course_rules.CourseRuleConfig``) with the fields set in
    ``overrides`` (a ``CourseRuleOverrides``) replaced; errors name ``rules.<field>``."""
    if overrides is None or not has:
        return base
    changes: dict[str, Any] = {}
    for name in _COURSE_RULE_FIELDS:
        if not overrides.HasField(name):
            continue
        value = getattr(overrides, name)
        if name == "ref_date":
            value = _parse_date(value, "rules.ref_date")
        elif name == "horizon_days" and value < 0:
            value = None
        try:
            dataclasses.replace(base, **{name: value})
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(str(exc), field=f"rules.{name}") from exc
        changes[name] = value
    return dataclasses.replace(base, **changes) if changes else base


def applied_course_rules(cfg: Any, *, today: dt.date | None = None) -> Any:
    """The effective course rules as an ``AppliedCourseRules`` message."""
    ref = cfg.ref_date or today or dt.date.today()
    return cpb.AppliedCourseRules(
        capital_radius_km=float(cfg.capital_radius_km),
        other_radius_km=float(cfg.other_radius_km),
        include_online=bool(cfg.include_online),
        horizon_days=-1 if cfg.horizon_days is None else int(cfg.horizon_days),
        admit_running=bool(cfg.admit_running),
        exclude_full=bool(cfg.exclude_full),
        ref_date=ref.isoformat(),
    )


def course_recommendation_to_pb(rec: Any, rank: int) -> Any:
    """A ``core.course_rank.CourseRecommendation`` as a message (``rank`` is 1-based)."""
    msg = cpb.CourseRecommendation(
        course_id=rec.course_id, title=rec.title, institution=rec.institution,
        score=float(rec.score), online=bool(rec.online), training_type=rec.training_type,
        start_date=rec.start_date.isoformat(), family_code=rec.family or "",
        gap_certificates=list(rec.gap_certificates), reasons=list(rec.reasons), rank=rank,
    )
    if rec.distance_km is not None:
        msg.distance_km = float(rec.distance_km)
    if rec.end_date is not None:
        msg.end_date = rec.end_date.isoformat()
    for name in ("cost", "self_pay"):
        if getattr(rec, name) is not None:
            setattr(msg, name, int(getattr(rec, name)))
    if rec.employment_rate is not None:
        msg.employment_rate = float(rec.employment_rate)
    return msg


def courses_response(
    recs: Iterable[Any], *, query_id: str, gap: Iterable[str], rules: Any,
    today: dt.date | None = None,
) -> Any:
    """The ``CoursesResponse`` for a ranked list of course recommendations."""
    return cpb.CoursesResponse(
        courses=[course_recommendation_to_pb(r, i) for i, r in enumerate(recs, start=1)],
        query_id=query_id, skill_gap=sorted(gap), rules=applied_course_rules(rules, today=today),
    )


def seeker_profile_fields(msg: Any) -> dict[str, Any]:
    """A ``CourseSeekerProfile`` as plain fields (``lat``/``lng`` None when both are 0)."""
    has_point = not (msg.lat == 0.0 and msg.lng == 0.0)
    codes = [c.strip() for c in msg.desired_occupation_codes if c.strip()]
    for i, c in enumerate(codes):
        if not (len(c) == 6 and c.isdigit()):
            raise InvalidInputError(f"{c!r} is not a six-digit KECO code",
                                    field=f"seeker.desired_occupation_codes[{i}]")
    return {
        "lat": msg.lat if has_point else None,
        "lng": msg.lng if has_point else None,
        "sido": msg.sido.strip() or None,
        "home_region": msg.home_region.strip() or None,
        "desired_regions": [r.strip() for r in msg.desired_regions if r.strip()],
        "desired_occupation_codes": codes,
        "certificates": [c.strip() for c in msg.certificates if c.strip()],
        "resume_text": msg.resume_text.strip(),
    }


def course_recommendation_from_pb(msg: Any) -> dict[str, Any]:
    """A ``CourseRecommendation`` message as a plain dict (for clients and tests)."""
    return {
        "course_id": msg.course_id, "rank": msg.rank, "score": msg.score, "title": msg.title,
        "institution": msg.institution, "online": msg.online,
        "distance_km": msg.distance_km if msg.HasField("distance_km") else None,
        "start_date": msg.start_date, "family_code": msg.family_code,
        "gap_certificates": list(msg.gap_certificates), "reasons": list(msg.reasons),
    }
