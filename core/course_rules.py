"""The rules a training course must pass to be shown for a posting or a job seeker.

For a query anchor ``q`` (a posting's workplace, or a seeker's home / desired region: its
``lat``, ``lng`` and province) and a course ``c`` (see :class:`CourseRuleConfig`):

- place: ``c`` is online (인터넷 training: no place; ``include_online=False`` drops online
  courses), or its great-circle distance to q is <= 20 km when q is in the capital area
  (서울/경기/인천), <= 40 km otherwise;
- date: ``c`` starts on or after the reference date and at most ``horizon_days`` after it,
  or (``admit_running``) it has started but not ended (``end_date`` >= the reference date);
- seats: ``c`` is not full (``enrolled < capacity``; an unknown capacity is not full).

:func:`course_passes` is the scalar reference; :data:`COURSE_RULES` declares the rules in
the one rule kernel (:class:`core.rules.RuleSet`), over :func:`course_rule_columns`;
:func:`candidate_mask` is its course-only part. A
query with several anchors (a seeker's home and desired regions) passes a course when any
anchor does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from core.errors import InvalidInputError
from core.rules import RuleSet, date_to_days, haversine_km
from core.schema import CAPITAL_AREA_SIDO

NO_END_DAYS = np.iinfo(np.int32).max


@dataclass(frozen=True)
class CourseRuleConfig:
    """Knobs of the course rules; ``ref_date`` None means today (at query time)."""

    capital_radius_km: float = 20.0
    other_radius_km: float = 40.0
    include_online: bool = True
    horizon_days: int | None = 120  # None: no upper bound on the start date
    admit_running: bool = True
    exclude_full: bool = True
    ref_date: date | None = None

    def __post_init__(self) -> None:
        for name in ("capital_radius_km", "other_radius_km"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise InvalidInputError(f"{name} must be a finite number > 0 km, got {v!r}", field=name)
        for name in ("include_online", "admit_running", "exclude_full"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"{name} must be a bool, got {getattr(self, name)!r}", field=name)
        h = self.horizon_days
        if h is not None and (isinstance(h, bool) or not isinstance(h, int) or h < 0):
            raise InvalidInputError(f"horizon_days must be an int >= 0 or None, got {h!r}",
                                    field="horizon_days")
        if self.ref_date is not None and not isinstance(self.ref_date, date):
            raise InvalidInputError(f"ref_date must be a date or None, got {self.ref_date!r}",
                                    field="ref_date")

    @property
    def max_radius_km(self) -> float:
        """The larger radius (what a shard's course halo must cover)."""
        return max(self.capital_radius_km, self.other_radius_km)

    def effective_ref_date(self) -> date:
        """``ref_date`` or today."""
        return self.ref_date if self.ref_date is not None else date.today()

    def radius_for(self, sido: str | None) -> float:
        """The radius around an anchor in province ``sido``."""
        return self.capital_radius_km if sido in CAPITAL_AREA_SIDO else self.other_radius_km


def course_failures(q: Mapping, c: Mapping, cfg: CourseRuleConfig, distance_km: float) -> list[str]:
    """Scalar reference: the names of the rules course ``c`` fails for anchor ``q``
    ("place", "date", "seats"); empty when it passes."""
    out = []
    if c["online"]:
        if not cfg.include_online:
            out.append("place")
    elif distance_km > cfg.radius_for(q["sido"]):
        out.append("place")
    ref = cfg.effective_ref_date()
    start, end = c["start_date"], c.get("end_date")
    upcoming = start >= ref and (cfg.horizon_days is None or (start - ref).days <= cfg.horizon_days)
    running = cfg.admit_running and start < ref and (end is None or end >= ref)
    if not (upcoming or running):
        out.append("date")
    cap, enrolled = c.get("capacity"), c.get("enrolled") or 0
    if cfg.exclude_full and cap is not None and enrolled >= cap:
        out.append("seats")
    return out


def course_passes(q: Mapping, c: Mapping, cfg: CourseRuleConfig, distance_km: float) -> bool:
    """Does course ``c`` pass every rule for anchor ``q``?"""
    return not course_failures(q, c, cfg, distance_km)


def course_rule_columns(
    lat: Sequence, lng: Sequence, online: Sequence, start_date: Sequence, end_date: Sequence,
    capacity: Sequence, enrolled: Sequence,
) -> dict[str, np.ndarray]:
    """Columns of courses for the vectorised rules (nulls: open end, unknown capacity)."""
    return {
        "lat": np.asarray(lat, dtype=np.float64),
        "lng": np.asarray(lng, dtype=np.float64),
        "online": np.asarray(online, dtype=bool),
        "start_days": np.array([date_to_days(d) for d in start_date], dtype=np.int32),
        "end_days": np.array([NO_END_DAYS if d is None else date_to_days(d) for d in end_date],
                             dtype=np.int32),
        "capacity": np.array([-1 if v is None else int(v) for v in capacity], dtype=np.int32),
        "enrolled": np.array([0 if v is None else int(v) for v in enrolled], dtype=np.int32),
    }


def courses_columns(df) -> dict[str, np.ndarray]:
    """:func:`course_rule_columns` of a canonical course frame."""
    return course_rule_columns(
        df["lat"].to_numpy(), df["lng"].to_numpy(), df["online"].to_numpy(),
        df["start_date"].to_list(), df["end_date"].to_list(), df["capacity"].to_list(),
        df["enrolled"].to_list(),
    )


def anchor_columns(lat: Sequence, lng: Sequence, sido: Sequence[str | None]) -> dict[str, np.ndarray]:
    """Columns of query anchors: ``lat``, ``lng`` and ``capital`` (sido in the capital area)."""
    return {
        "lat": np.asarray(lat, dtype=np.float64),
        "lng": np.asarray(lng, dtype=np.float64),
        "capital": np.array([s in CAPITAL_AREA_SIDO for s in sido], dtype=bool),
    }


@dataclass(frozen=True)
class NearOrOnline:
    """Kernel rule: distance to the query anchor (exact haversine on the broadcast ``lat``,
    ``lng`` columns) <= its radius (``capital``), or the course is online (when
    ``include_online``; otherwise online courses fail)."""

    name: str = "place"

    def evaluate(self, q, c, cfg: CourseRuleConfig) -> np.ndarray:
        d = haversine_km(q["lat"], q["lng"], c["lat"], c["lng"])
        radius = np.where(q["capital"], cfg.capital_radius_km, cfg.other_radius_km)
        online = c["online"]
        near = (d <= radius) & ~online
        return near | online if cfg.include_online else near


@dataclass(frozen=True)
class CourseOnly:
    """Kernel rule on the course alone (``test(c, cfg)``, elementwise)."""

    name: str
    test: Callable[[Mapping[str, np.ndarray], CourseRuleConfig], np.ndarray]

    def evaluate(self, q, c, cfg: CourseRuleConfig) -> np.ndarray:
        return self.test(c, cfg)


def _date_ok(c, cfg: CourseRuleConfig) -> np.ndarray:
    ref = date_to_days(cfg.effective_ref_date())
    s, e = c["start_days"], c["end_days"]
    ok = s >= ref
    if cfg.horizon_days is not None:
        ok = ok & (s <= ref + cfg.horizon_days)
    if cfg.admit_running:
        ok = ok | ((s < ref) & (e >= ref))
    return ok


def _seats_ok(c, cfg: CourseRuleConfig) -> np.ndarray:
    if not cfg.exclude_full:
        return np.ones(np.shape(c["capacity"]), dtype=bool)
    return (c["capacity"] < 0) | (c["enrolled"] < c["capacity"])


COURSE_RULES: RuleSet[CourseRuleConfig] = RuleSet(
    name="courses",
    rules=(NearOrOnline(), CourseOnly("date", _date_ok), CourseOnly("seats", _seats_ok)),
)
"""The rules of the module docstring in the one rule kernel (:class:`core.rules.RuleSet`),
over anchor columns (:func:`anchor_columns`) and course columns (:func:`course_rule_columns`).
The place rule is a rule of its own (online courses are exempt), not the kernel's
``Within``."""


def candidate_mask(c: Mapping[str, np.ndarray], cfg: CourseRuleConfig) -> np.ndarray:
    """The rules that depend on the course alone (date, seats), one bool per course."""
    return _date_ok(c, cfg) & _seats_ok(c, cfg)


def pair_mask(
    q: Mapping[str, np.ndarray], c: Mapping[str, np.ndarray], cfg: CourseRuleConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(pass mask, distance km), both (m anchors x n courses): :data:`COURSE_RULES`."""
    dist = haversine_km(q["lat"][:, None], q["lng"][:, None], c["lat"][None, :], c["lng"][None, :])
    return COURSE_RULES.pair_mask(q, c, cfg), dist
