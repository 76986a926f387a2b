"""The recommendation rules, shared by the batch refresh, the online path and the baseline.

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

:func:`passes` is the scalar reference. :class:`RuleSet` is the one vectorised kernel: a declared list of rules evaluated as a (queries x candidates) bool
matrix with the exact haversine distance. :data:`POSTING_RULES` declares the rules above
over the columns :func:`posting_rule_columns` encodes; the shards (batch and single query)
and the old-prototype baseline all evaluate it. Other item kinds declare their own
:class:`RuleSet` from the same rule types.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Generic, Protocol, TypeVar

import numpy as np

from core.colviews import Axis, Columns, First, length, subset
from core.errors import InvalidInputError
from core.schema import CAPITAL_AREA_SIDO

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
DEFAULT_K = 10
MAX_K = 100  # the one limit on k: server, backend, shards and the refresh
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

    def check_halo(self, halo_km: float) -> None:
        """Raise :class:`InvalidInputError` naming the radius that a shard halo of
        ``halo_km`` cannot answer exactly (the halo must hold every posting within it)."""
        for name in ("capital_radius_km", "other_radius_km"):
            if getattr(self, name) > halo_km:
                raise InvalidInputError(
                    f"{name}={getattr(self, name)} km exceeds the shard halo of {halo_km} km",
                    field=name,
                )


def check_k(k: object) -> int:
    """``k`` as an int in 1..:data:`MAX_K`, else :class:`InvalidInputError` (field ``k``)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be an int in 1..{MAX_K}, got {k!r}", field="k")
    return int(k)


def haversine_km(lat1, lng1, lat2, lng2):
    """Great-circle distance in km; numpy-vectorised (broadcasts its arguments)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lng2) - np.radians(lng1)
    a = np.sin(dp / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def haversine_km_grid(lat1, lng1, lat2, lng2) -> np.ndarray:
    """:func:`haversine_km` of every (row, column) pair of points ``(lat1, lng1)`` (m,) and
    ``(lat2, lng2)`` (n,), as an (m, n) array: the same operations in the same order (so the
    same bits), computed in place in three (m, n) buffers instead of a new one per step."""
    p1 = np.radians(np.asarray(lat1, np.float64))[:, None]
    p2 = np.radians(np.asarray(lat2, np.float64))[None, :]
    a = np.subtract(p2, p1)
    np.divide(a, 2.0, out=a)
    np.sin(a, out=a)
    np.square(a, out=a)
    b = np.subtract(np.radians(np.asarray(lng2, np.float64))[None, :],
                    np.radians(np.asarray(lng1, np.float64))[:, None])
    np.divide(b, 2.0, out=b)
    np.sin(b, out=b)
    np.square(b, out=b)
    np.multiply(np.multiply(np.cos(p1), np.cos(p2)), b, out=b)
    np.add(a, b, out=a)
    np.clip(a, 0.0, 1.0, out=a)
    np.sqrt(a, out=a)
    np.arcsin(a, out=a)
    np.multiply(2.0 * EARTH_RADIUS_KM, a, out=a)
    return a


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


def unit_xyz(lat, lng) -> np.ndarray:
    """Unit vectors (n, 3) of points on the sphere: the cosine of the central angle between
    two points is the dot product of theirs."""
    p, lam = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lng, np.float64))
    return np.stack([np.cos(p) * np.cos(lam), np.cos(p) * np.sin(lam), np.sin(p)], axis=-1)


# ------------------------------------------------------------------- the kernel
Cfg = TypeVar("Cfg")  # a rule configuration: RuleConfig for postings
NO_LIMIT = int(np.iinfo(np.int16).max)  # an AtMost limit no candidate value exceeds
DISTANCE_MARGIN_KM = 0.01  # cosine pre-check margin; pairs in the band get the haversine


def _all(x: object) -> bool:
    """``all`` of a Python bool (one query) or a bool array."""
    return x if isinstance(x, bool) else bool(np.all(x))


def where(cond: object, a: object, b: object) -> object:
    """``np.where`` that keeps Python scalars scalar (the one-query path): rule
    callables use it so one definition serves both forms. Arrays give int16/float64
    results as ``np.where`` does; pass ``a``/``b`` of the wanted dtype."""
    if isinstance(cond, bool):
        return a if cond else b
    return np.where(cond, a, b)


class Rule(Protocol[Cfg]):
    """A per-pair rule: ``evaluate`` gets query columns and candidate columns that broadcast
    against each other (``(m, 1)`` vs ``(1, n)``, or aligned ``(p,)``) and returns the pass
    mask, or None when the rule does not constrain anything under ``cfg``."""

    name: str

    def evaluate(self, q: Columns, c: Columns, cfg: Cfg) -> np.ndarray | None: ...


@dataclass(frozen=True)
class AtMost(Generic[Cfg]):
    """Candidate ``column`` <= a per-query limit ``limit(q, cfg)`` (:data:`NO_LIMIT`: no
    constraint for that query; None: the rule is off)."""

    name: str
    column: str
    limit: Callable[[Columns, Cfg], np.ndarray | None]

    def evaluate(self, q: Columns, c: Columns, cfg: Cfg) -> np.ndarray | None:
        lim = self.limit(q, cfg)
        if lim is None or _all(lim >= NO_LIMIT):
            return None
        return c[self.column] <= lim


@dataclass(frozen=True)
class Forbid(Generic[Cfg]):
    """Fails the pairs with ``q[query_column] == query_value`` and
    ``c[candidate_column] == candidate_value`` (when ``active(cfg)``)."""

    name: str
    query_column: str
    query_value: int
    candidate_column: str
    candidate_value: int
    active: Callable[[Cfg], bool]

    def evaluate(self, q: Columns, c: Columns, cfg: Cfg) -> np.ndarray | None:
        if not self.active(cfg):
            return None
        miss = q[self.query_column] != self.query_value
        if _all(miss):
            return None
        other = c[self.candidate_column] != self.candidate_value
        return other if miss is False else miss | other


@dataclass(frozen=True)
class AtLeast(Generic[Cfg]):
    """Candidate ``column`` >= ``bound(cfg)`` (None: off). Depends on the candidate alone,
    so a caller may apply it once per candidate (:meth:`RuleSet.candidate_mask`)."""

    name: str
    column: str
    bound: Callable[[Cfg], int | None]

    def evaluate(self, q: Columns, c: Columns, cfg: Cfg) -> np.ndarray | None:
        b = self.bound(cfg)
        return None if b is None else c[self.column] >= b


@dataclass(frozen=True)
class NotSame(Generic[Cfg]):
    """Fails a query paired with itself: equal ``column`` (an int key, e.g. the row; a
    query that is not stored uses -1)."""

    name: str = "not itself"
    column: str = "row"

    def evaluate(self, q: Columns, c: Columns, cfg: Cfg) -> np.ndarray | None:
        return q[self.column] != c[self.column]

    def clear(self, ok: np.ndarray, q: Columns, c: Columns) -> None:
        """Matrix form in place: clear the (few) pairs of a query with itself, found by
        looking the candidates' keys up among the queries' (sorted, unique) keys instead
        of an m x n comparison."""
        qk, ck = q[self.column], c[self.column]
        oq = np.argsort(qk, kind="stable")
        sq = qk[oq]
        if sq.size > 1 and not (sq[1:] != sq[:-1]).all():  # repeated query keys
            ok &= qk[:, None] != ck[None, :]
            return
        pos = np.minimum(np.searchsorted(sq, ck), max(sq.size - 1, 0))
        j = np.flatnonzero(sq[pos] == ck) if sq.size else np.zeros(0, np.int64)
        ok[oq[pos[j]], j] = False


@dataclass(frozen=True)
class Within(Generic[Cfg]):
    """Great-circle distance of q and c (columns ``lat``, ``lng`` in degrees and ``xyz``
    from :func:`unit_xyz`) <= ``radius(q, cfg)`` km, one radius per query."""

    radius: Callable[[Columns, Cfg], np.ndarray]
    name: str = "distance"


@dataclass(frozen=True)
class RuleSet(Generic[Cfg]):
    """The rules of one item kind, evaluated as one vectorised pass mask.

    ``rules`` are the per-pair rules, ``distance`` the radius rule (exact haversine),
    ``group_column`` / ``group_cap`` the selection constraint "at most cap per group"
    (:func:`select_top_k`; 0 = unlimited). ``split`` names an :class:`AtMost` rule the
    batch path may group queries by to drop candidates before scoring (an optimisation;
    the mask is the same).
    """

    name: str
    rules: tuple[Rule[Cfg], ...]
    distance: Within[Cfg] | None = None
    group_column: str | None = None
    group_cap: Callable[[Cfg], int] | None = None
    split: str | None = None

    def cap(self, cfg: Cfg) -> int:
        """Results per group allowed (0 = unlimited)."""
        return 0 if self.group_cap is None else int(self.group_cap(cfg))

    def rule(self, name: str) -> Rule[Cfg]:
        """The rule called ``name``."""
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def radius_km(self, q: Columns, cfg: Cfg) -> np.ndarray:
        """Per-query radius (km); ``inf`` when the set has no distance rule."""
        if self.distance is None:
            return np.full(length(q), np.inf)
        r = np.asarray(self.distance.radius(q, cfg), dtype=np.float64)
        return r if r.ndim == 1 else np.full(length(q), float(r))

    def radius_one(self, q: Columns, cfg: Cfg) -> float:
        """The radius (km) of a one-query ``q``."""
        if self.distance is None:
            return math.inf
        return float(self.distance.radius(First(q), cfg))

    def candidate_mask(self, c: Columns, cfg: Cfg) -> np.ndarray | None:
        """AND of the candidate-only rules (:class:`AtLeast`) per candidate; None if none apply."""
        out = None
        for r in self.rules:
            if isinstance(r, AtLeast):
                m = r.evaluate({}, c, cfg)
                if m is not None:
                    out = m if out is None else out & m
        return out

    def pair_mask(
        self,
        q: Columns,
        c: Columns,
        cfg: Cfg,
        *,
        known_within: int = 0,
        candidate_rules: bool = True,
    ) -> np.ndarray:
        """Pass mask (m queries x n candidates) of every rule, the distance exact.

        The first ``known_within`` candidates are known by the caller's geometry to lie
        within every query's radius (their distance is not computed again). With
        ``candidate_rules=False`` the :class:`AtLeast` rules are skipped (the caller has
        already dropped the candidates failing them).
        """
        m, n = length(q), length(c)
        one = m == 1  # one query: its values are scalars against candidate columns
        qb, cb = (First(q), c) if one else (Axis(q, 1), Axis(c, 0))
        shape = (n,) if one else (m, n)
        ok: np.ndarray | None = None
        same = []
        for r in self.rules:
            if isinstance(r, NotSame) and not one:
                same.append(r)
                continue
            if not candidate_rules and isinstance(r, AtLeast):
                continue
            res = r.evaluate(qb, cb, cfg)
            if res is None:
                continue
            if ok is None:
                ok = np.broadcast_to(res, shape).copy() if res.shape != shape else res
            else:
                ok &= res
        if ok is None:
            ok = np.ones(shape, dtype=bool)
        if one:
            ok = ok[None, :]
        for r in same:
            r.clear(ok, q, c)
        if self.distance is not None and known_within < n:
            self._distance_matrix(ok, q, c, cfg, known_within)
        return ok

    def _distance_matrix(self, ok: np.ndarray, q: Columns, c: Columns, cfg: Cfg, start: int):
        # cosine of the central angle (a 3-d dot product) settles all but a thin band
        # around the radius, where the haversine decides
        if ok.shape[0] == 1:  # one query: only the candidates still passing
            r = self.radius_one(q, cfg)
            cols = start + np.flatnonzero(ok[0, start:])
            if cols.size == 0:
                return
            cc = subset(c, cols)
            cos = cc["xyz"] @ q["xyz"][0]
            inside = cos >= math.cos(min(math.pi, (r + DISTANCE_MARGIN_KM) / EARTH_RADIUS_KM))
            near = math.cos(max(0.0, r - DISTANCE_MARGIN_KM) / EARTH_RADIUS_KM)
            band = np.flatnonzero(inside & (cos < near))
            if band.size:
                d = haversine_km(q["lat"][0], q["lng"][0], cc["lat"][band], cc["lng"][band])
                inside[band[d > r]] = False
            ok[0, cols] = inside
            return
        radius = self.radius_km(q, cfg)
        cos_far = np.cos(np.minimum(np.pi, (radius + DISTANCE_MARGIN_KM) / EARTH_RADIUS_KM))
        cos_near = np.cos(np.maximum(0.0, radius - DISTANCE_MARGIN_KM) / EARTH_RADIUS_KM)
        cc = subset(c, slice(start, None))
        view = ok[:, start:]
        cos = q["xyz"] @ cc["xyz"].T
        view &= cos >= cos_far[:, None]
        i, j = np.nonzero(view & (cos < cos_near[:, None]))
        if i.size:
            d = haversine_km(q["lat"][i], q["lng"][i], cc["lat"][j], cc["lng"][j])
            over = d > radius[i]
            view[i[over], j[over]] = False

    def pairs_mask(
        self, q: Columns, c: Columns, cfg: Cfg, *, distance_km: np.ndarray | None = None
    ) -> np.ndarray:
        """Pass mask of aligned pairs ``(q[i], c[i])``. The distance rule uses
        ``distance_km`` when given (e.g. the old prototype's region distances), else the
        exact haversine of the pairs' coordinates."""
        ok = np.ones(length(c), dtype=bool)
        for r in self.rules:
            res = r.evaluate(q, c, cfg)
            if res is not None:
                ok &= res
        if self.distance is not None:
            if distance_km is None:
                distance_km = haversine_km(q["lat"], q["lng"], c["lat"], c["lng"])
            ok &= np.asarray(distance_km) <= self.radius_km(q, cfg)
        return ok


# ------------------------------------------------------------------ postings
_NO_LIMIT16 = np.int16(NO_LIMIT)


def _int16(x):
    return x if isinstance(x, int) else x.astype(np.int16)


def _education_limit(q: Columns, cfg: RuleConfig) -> np.ndarray:
    edu = q["education"]
    if cfg.education_policy == "lenient_no_requirement":
        return where(edu == 0, _NO_LIMIT16, _int16(edu))
    return edu


def _years_limit(q: Columns, cfg: RuleConfig) -> np.ndarray | None:
    if not cfg.career_filter:
        return None
    qc, qy = q["career"], q["min_years"]
    return where((qc != _CAREER_ANY) & (qy >= 1), _int16(qy), _NO_LIMIT16)


def _ref_days(cfg: RuleConfig) -> int | None:
    return date_to_days(cfg.effective_ref_date()) if cfg.exclude_expired else None


def _posting_radius(q: Columns, cfg: RuleConfig) -> np.ndarray:
    return where(q["capital"], cfg.capital_radius_km, cfg.other_radius_km)


def _career_filter_on(cfg: RuleConfig) -> bool:
    return cfg.career_filter


def _company_cap(cfg: RuleConfig) -> int:
    return cfg.max_per_company


POSTING_RULES: RuleSet[RuleConfig] = RuleSet(
    name="postings",
    rules=(
        NotSame(),
        AtMost("education", "education", _education_limit),
        Forbid("entry sees no experienced", "career", _CAREER_ENTRY, "career",
               _CAREER_EXPERIENCED, _career_filter_on),  # fmt: skip
        AtMost("career years", "min_years", _years_limit),
        AtLeast("not expired", "closes_days", _ref_days),
    ),
    distance=Within(_posting_radius),
    group_column="company",
    group_cap=_company_cap,
    split="education",
)
"""The rules of the module docstring over :func:`posting_rule_columns` (plus ``lat``,
``lng``, ``xyz``, ``row``; ``company`` holds int codes for the cap)."""


def posting_rule_columns(
    education: Sequence,
    career: Sequence[str],
    min_years: Sequence,
    closes_on: Sequence,
    sido: Sequence[str | None],
) -> dict[str, np.ndarray]:
    """The rule columns of postings from python/polars column values (nulls allowed where
    the schema allows): ``education`` int8, ``career`` int8 (:data:`CAREER_CODES`),
    ``min_years`` int16 (null 0), ``closes_days`` int32 (null :data:`NO_EXPIRY_DAYS`),
    ``capital`` bool (sido in the capital area)."""
    try:
        car = np.array([CAREER_CODES[c] for c in career], dtype=np.int8)
    except KeyError as exc:
        raise InvalidInputError(f"unknown career {exc.args[0]!r}", field="career") from None
    return {
        "education": np.asarray(education, dtype=np.int8),
        "career": car,
        "min_years": np.array([_years(v) for v in min_years], dtype=np.int16),
        "closes_days": np.array([date_to_days(d) for d in closes_on], dtype=np.int32),
        "capital": np.array([s in CAPITAL_AREA_SIDO for s in sido], dtype=bool),
    }


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
