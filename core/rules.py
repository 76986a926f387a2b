"""The recommendation rules, shared by the batch refresh and the online path.

For a viewed posting ``q`` and a candidate ``c`` (see :class:`RuleConfig` for the knobs):

- distance: great-circle distance <= 20 km when q is in the capital area (서울/경기/인천),
  <= 40 km otherwise;
- education: ``c.min_education_level <= q.min_education_level`` (``strict``); the
  ``lenient_no_requirement`` policy drops the check when q is 학력무관 (level 0), as the
  old prototype did;
- career: q ``entry`` -> c is not ``experienced``; q states a minimum of N >= 1 years ->
  c requires at most N years; q ``any`` has no career filter;
- c is not expired (``closes_on`` null or >= the reference date), c is not q;
- at most ``max_per_company`` results from one company (applied while selecting the top-k,
  see :func:`select_top_k`).

:func:`passes` is the scalar reference; :class:`RuleArrays` and :func:`candidate_mask` are
the vectorised form the shards use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from core.errors import InvalidInputError
from core.schema import CAPITAL_AREA_SIDO

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
EDUCATION_POLICIES: tuple[str, ...] = ("strict", "lenient_no_requirement")

# career codes used by the vectorised form
CAREER_CODES: dict[str, int] = {"entry": 0, "experienced": 1, "any": 2}
_CAREER_ENTRY, _CAREER_EXPERIENCED, _CAREER_ANY = 0, 1, 2
# closes_on as days since the epoch; null (open-ended) sorts after every real date
NO_EXPIRY_DAYS = np.iinfo(np.int32).max
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class RuleConfig:
    """Knobs of the rules. ``ref_date`` None means today (evaluated at query time).

    Bad values raise :class:`~core.errors.InvalidInputError` (a ``ValueError``) naming the field.
    """

    capital_radius_km: float = 20.0
    other_radius_km: float = 40.0
    education_policy: str = "strict"
    career_filter: bool = True
    exclude_expired: bool = True
    max_per_company: int = 2
    ref_date: date | None = None

    def __post_init__(self) -> None:
        for name in ("capital_radius_km", "other_radius_km"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise InvalidInputError(f"{name} must be a finite number, got {v!r}", field=name)
            if v <= 0:
                raise InvalidInputError(f"{name} must be > 0 km, got {v!r}", field=name)
        if self.education_policy not in EDUCATION_POLICIES:
            raise InvalidInputError(
                f"education_policy must be one of {EDUCATION_POLICIES}, "
                f"got {self.education_policy!r}",
                field="education_policy",
            )
        for name in ("career_filter", "exclude_expired"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(
                    f"{name} must be a bool, got {getattr(self, name)!r}", field=name
                )
        mpc = self.max_per_company
        if isinstance(mpc, bool) or not isinstance(mpc, int) or mpc < 0:
            raise InvalidInputError(
                f"max_per_company must be an int >= 0 (0 = unlimited), got {mpc!r}",
                field="max_per_company",
            )
        if self.ref_date is not None and not isinstance(self.ref_date, date):
            raise InvalidInputError(
                f"ref_date must be a datetime.date or None, got {self.ref_date!r}", field="ref_date"
            )

    @property
    def max_radius_km(self) -> float:
        """The larger of the two radii (what a shard halo must cover)."""
        return max(self.capital_radius_km, self.other_radius_km)

    def effective_ref_date(self) -> date:
        """``ref_date`` or today."""
        return self.ref_date if self.ref_date is not None else date.today()


def haversine_km(lat1, lng1, lat2, lng2):
    """Great-circle distance in km; numpy-vectorised (broadcasts its arguments)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lng2) - np.radians(lng1)
    a = np.sin(dp / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def radius_for(sido: str | None, cfg: RuleConfig) -> float:
    """The distance radius of a viewed posting in province ``sido``."""
    return cfg.capital_radius_km if sido in CAPITAL_AREA_SIDO else cfg.other_radius_km


def _years(v) -> int:
    return 0 if v is None else int(v)


def passes(q: Mapping, c: Mapping, cfg: RuleConfig, distance_km: float) -> bool:
    """Scalar reference: does candidate ``c`` pass every per-pair rule for viewed posting ``q``?

    ``max_per_company`` is a selection constraint, not a pair rule: see :func:`select_top_k`.
    """
    if c["posting_id"] == q["posting_id"]:
        return False
    if distance_km > radius_for(q["sido"], cfg):
        return False
    q_edu, c_edu = int(q["min_education_level"]), int(c["min_education_level"])
    if not (cfg.education_policy == "lenient_no_requirement" and q_edu == 0) and c_edu > q_edu:
        return False
    if cfg.career_filter and q["career"] != "any":
        if q["career"] == "entry" and c["career"] == "experienced":
            return False
        n = _years(q.get("min_career_years"))
        if n >= 1 and _years(c.get("min_career_years")) > n:
            return False
    if cfg.exclude_expired:
        closes = c.get("closes_on")
        if closes is not None and closes < cfg.effective_ref_date():
            return False
    return True


def date_to_days(d: date | None) -> int:
    """Days since 1970-01-01; None maps to :data:`NO_EXPIRY_DAYS`."""
    return NO_EXPIRY_DAYS if d is None else (d - _EPOCH).days


@dataclass
class RuleArrays:
    """Columnar rule attributes of a set of postings (one entry per posting)."""

    education: np.ndarray  # int8 min_education_level
    career: np.ndarray  # int8 CAREER_CODES
    min_years: np.ndarray  # int16, null -> 0
    closes_days: np.ndarray  # int32 days since epoch, null -> NO_EXPIRY_DAYS
    capital: np.ndarray  # bool: q's sido is in the capital area

    @classmethod
    def from_columns(
        cls,
        education: Sequence,
        career: Sequence[str],
        min_years: Sequence,
        closes_on: Sequence,
        sido: Sequence[str],
    ) -> RuleArrays:
        """Build from python/polars column values (nulls allowed where the schema allows)."""
        try:
            car = np.array([CAREER_CODES[c] for c in career], dtype=np.int8)
        except KeyError as exc:
            raise ValueError(f"unknown career value {exc.args[0]!r}") from None
        return cls(
            education=np.asarray(education, dtype=np.int8),
            career=car,
            min_years=np.array([_years(v) for v in min_years], dtype=np.int16),
            closes_days=np.array([date_to_days(d) for d in closes_on], dtype=np.int32),
            capital=np.array([s in CAPITAL_AREA_SIDO for s in sido], dtype=bool),
        )

    def take(self, idx) -> RuleArrays:
        """The subset at positions ``idx``."""
        return RuleArrays(
            self.education[idx],
            self.career[idx],
            self.min_years[idx],
            self.closes_days[idx],
            self.capital[idx],
        )


def query_radius(capital: np.ndarray, cfg: RuleConfig) -> np.ndarray:
    """Per-query radius (km) from the capital-area flags."""
    return np.where(capital, cfg.capital_radius_km, cfg.other_radius_km)


def candidate_mask(q: RuleArrays, i: int, c: RuleArrays, cfg: RuleConfig) -> np.ndarray:
    """Vectorised non-distance rules of query ``q[i]`` over all candidates ``c`` (bool array).

    Distance and "not itself" are checked by the caller (they need coordinates and ids).
    """
    mask = np.ones(c.education.shape, dtype=bool)
    q_edu = int(q.education[i])
    if not (cfg.education_policy == "lenient_no_requirement" and q_edu == 0):
        mask &= c.education <= q_edu
    if cfg.career_filter and q.career[i] != _CAREER_ANY:
        if q.career[i] == _CAREER_ENTRY:
            mask &= c.career != _CAREER_EXPERIENCED
        n = int(q.min_years[i])
        if n >= 1:
            mask &= c.min_years <= n
    if cfg.exclude_expired:
        mask &= c.closes_days >= date_to_days(cfg.effective_ref_date())
    return mask


def select_top_k(
    scores: np.ndarray,
    ids: Sequence[str],
    companies: Sequence,
    k: int,
    max_per_company: int,
) -> list[int]:
    """Positions of the top-``k`` by score desc, then id asc, taking at most
    ``max_per_company`` per company (0 = unlimited) while selecting.

    Scores of disqualified candidates must be ``-inf`` (they are never selected).
    """
    scores = np.asarray(scores)
    valid = np.flatnonzero(np.isfinite(scores))
    if valid.size == 0 or k <= 0:
        return []
    ids_arr = np.asarray(ids, dtype=object)
    t = min(valid.size, max(4 * k, 32))
    while True:
        if t < valid.size:
            part = valid[np.argpartition(-scores[valid], t - 1)[:t]]
            # ties with the t-th score may lie outside the partition: take them all
            thr = scores[part].min()
            part = valid[scores[valid] >= thr]
        else:
            part = valid
        order = sorted(part.tolist(), key=lambda j: (-float(scores[j]), ids_arr[j]))
        picked: list[int] = []
        per: dict = {}
        for j in order:
            comp = companies[j]
            if max_per_company and per.get(comp, 0) >= max_per_company:
                continue
            per[comp] = per.get(comp, 0) + 1
            picked.append(j)
            if len(picked) == k:
                return picked
        if part.size >= valid.size:
            return picked
        t = min(valid.size, t * 4)
