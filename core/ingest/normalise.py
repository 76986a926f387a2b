"""From one source record (fields named as in :data:`FIELDS`) to one canonical posting row.

Every reader (Worknet XML, CSV, Parquet, the live API) maps its record to the field names
below; :class:`Normaliser` then parses, resolves and scrubs them the same way for all of
them, or raises :class:`Reject` with a reason code from :data:`REJECT_REASONS`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from core.errors import InvalidInputError
from core.ingest.region_context import RegionEvidence
from core.ingest.worknet_list import UNPACKERS
from core.parsing import (
    OccupationResolver,
    career,
    default_occupations,
    education_range,
    employment_type,
    parse_date,
    wages,
)
from core.reference import SIDO_ALIASES, SIDO_SHORT
from core.regions import RegionResolver, canonical_sigungu, default_resolver
from core.text import clean_text, scrub_pii
from core.wages import monthly_wage

# The field names readers map their columns to. Canonical column names map to themselves;
# the others carry Worknet's raw forms that are combined here.
FIELDS: dict[str, str] = {
    "posting_id": "wantedAuthNo",
    "company": "company / corpNm",
    "title": "wantedTitle / title",
    "description": "duties and qualifications already combined (canonical files)",
    "duties": "jobCont",
    "qualifications": "compAbl",
    "occupation_code": "jobsCd, six-digit KECO",
    "occupation_name": "jobsNm, 'name(code)' or a name",
    "region": "region as written (Worknet short form)",
    "address": "basicAddr / workRegion (street address)",
    "address_detail": "detailAddr",
    "sido": "province (canonical files)",
    "sigungu": "시/군/구 (canonical files); resolved from the region/address otherwise",
    "lat": "latitude (canonical files)",
    "lng": "longitude (canonical files)",
    "min_education_level": "minEdubg or a level 0..7",
    "max_education_level": "maxEdubg or a level 0..7",
    "education": "eduNm, e.g. '대졸(4년)-박사'",
    "career": "career: 신입/경력/관계없음 or entry/experienced/any",
    "career_detail": "enterTpNm, e.g. '경력 (최소3년) 필수'",
    "min_career_years": "years (canonical files)",
    "wage_type": "salTpNm: 시급/일급/월급/연봉 or hourly/daily/monthly/yearly",
    "wage": "sal text, e.g. '월급 250만원 ~ 300만원'",
    "wage_min": "minSal (KRW)",
    "wage_max": "maxSal (KRW)",
    "monthly_wage": "ignored: always recomputed",
    "holiday_type": "holidayTpNm, e.g. 주5일근무",
    "employment_type": "empTpCd (10/11/20/21/4/3) or a canonical type",
    "employment_type_name": "empTpNm text",
    "registered_on": "regDt",
    "closes_on": "closeDt / receiptCloseDt",
    "major": "major",
    "certificates": "certificate",
    "preferences": "pfCond",
    "preferences_extra": "etcPfCond",
    "near_station": "nearLine",
    "work_hours": "workdayWorkhrCont",
    # packed cells of a Worknet search-list crawl (core.ingest.worknet_list)
    "career_education_region": "'경력1년 학력무관 경기도 오산시 황새로' -> career, education, region",
    "conditions": "'월급 270 만원 이상\\n정규 주5일\\n08:00~17:00' -> wage, type, days, hours",
    "dates": "'24/03/26 등록\\n24/04/19 마감' -> registered_on, closes_on",
}

# An address that names no place: rejected as unknown_region, said so in the detail.
_NO_PLACE = ("없음", "재택", "원격", "remote", "전국", "해외", "협의", "미정")

REJECT_REASONS: dict[str, str] = {
    "missing_id": "no posting id (wantedAuthNo)",
    "duplicate_id": "the id was already read; the first record with an id is kept",
    "detail_without_list": "a detail response whose id is in no list response (no dates/wage)",
    "missing_title": "no title",
    "missing_company": "no company name",
    "unknown_occupation": "no KECO code, and the occupation name matches none",
    "unknown_region": "the region/address resolves to no known region",
    "invalid_education": "education level unreadable, or maximum below minimum",
    "invalid_career": "career requirement unreadable",
    "unparseable_wage": "wage type or amount unreadable, or minimum above maximum",
    "unparseable_date": "registration date missing or unreadable, or close date unreadable",
    "invalid_employment_type": "employment type unreadable",
    "malformed_row": "a CSV row with a different number of fields than the header",
}

_FIELD_REASON = {
    "education": "invalid_education",
    "career": "invalid_career",
    "wage": "unparseable_wage",
    "date": "unparseable_date",
    "employment_type": "invalid_employment_type",
}

_TEXT_COLUMNS = ("major", "certificates", "near_station", "work_hours")


class Reject(Exception):  # noqa: N818 - control flow inside ingestion, never escapes it
    """A record that cannot become a posting: ``reason`` is a key of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str, *, pending: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        # the batch's other postings may still settle it (RegionEvidence): retry at the end
        self.pending = pending


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _text(value: Any) -> str:
    """Cleaned, PII-scrubbed text ("" for nothing)."""
    if _blank(value):
        return ""
    return scrub_pii(clean_text(str(value)))


def _opt_text(value: Any) -> str | None:
    out = _text(value)
    return out or None


def _join(*parts: Any) -> str:
    return "\n".join(p for p in (_text(x) for x in parts) if p)


class Normaliser:
    """Turns field dicts into canonical rows; caches parses of repeated values.

    ``defaults`` fill fields a record leaves blank; ``accept_unclassified`` keeps records
    that give no occupation at all (``occupation_code`` null). Regions that resolve are
    recorded in :attr:`evidence`; :meth:`row` with ``settle=True`` consults it for the
    addresses that did not.
    """

    def __init__(
        self,
        *,
        ref_date: dt.date | None = None,
        regions: RegionResolver | None = None,
        occupations: OccupationResolver | None = None,
        defaults: dict[str, Any] | None = None,
        accept_unclassified: bool = False,
    ) -> None:
        self.ref_date = ref_date or dt.date.today()
        self.regions = regions or default_resolver()
        self.occupations = occupations or default_occupations()
        self.defaults = dict(defaults or {})
        self.accept_unclassified = accept_unclassified
        self.evidence = RegionEvidence(self.regions)
        self._dates: dict[Any, dt.date | None] = {}

    def _fields(self, f: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Packed cells unpacked, then defaults for blanks; and whether company is the record's."""
        for name, unpack in UNPACKERS.items():
            if not _blank(f.get(name)):
                found = unpack(str(f[name]))
                f = {**{k: v for k, v in found.items() if _blank(f.get(k))},
                     **{k: v for k, v in f.items() if not _blank(v)}}
        own_company = not _blank(f.get("company"))
        if self.defaults:
            f = {**self.defaults, **{k: v for k, v in f.items() if not _blank(v)}}
        return f, own_company

    def row(self, f: dict[str, Any], *, settle: bool = False) -> dict[str, Any]:
        """The canonical row for fields ``f``; raises :class:`Reject`."""
        f, own_company = self._fields(f)
        pid = f.get("posting_id")
        if _blank(pid):
            raise Reject("missing_id", "the record has no posting id")
        title = _text(f.get("title"))
        if not title:
            raise Reject("missing_title", "the record has no title")
        company = _text(f.get("company"))
        if not company:
            raise Reject("missing_company", "the record has no company name")
        code = self.occupations.resolve(f.get("occupation_code"), f.get("occupation_name"))
        unclassified = (self.accept_unclassified and _blank(f.get("occupation_code"))
                        and _blank(f.get("occupation_name")))
        if code is None and not unclassified:
            raise Reject(
                "unknown_occupation",
                f"occupation code {f.get('occupation_code')!r} / name "
                f"{f.get('occupation_name')!r} is not in KECO",
            )
        region_text, sido, sigungu, lat, lng = self._region(
            f, company if own_company else None, settle
        )
        try:
            row = self._parsed(f, pid, title, company, code, region_text, sido, lat, lng)
        except InvalidInputError as exc:
            raise Reject(_FIELD_REASON.get(exc.field or "", "invalid_value"), str(exc)) from None
        row["sigungu"] = sigungu
        return row

    def _parsed(
        self, f: dict[str, Any], pid: Any, title: str, company: str, code: str | None,
        region_text: str, sido: str, lat: float, lng: float,
    ) -> dict[str, Any]:
        lo, hi = education_range(
            f.get("min_education_level"), f.get("max_education_level"), f.get("education")
        )
        kind, years = self._career(f)
        wtype, wmin, wmax = wages(f.get("wage_type"), f.get("wage_min"), f.get("wage_max"), f.get("wage"))
        holiday = _opt_text(f.get("holiday_type"))
        registered = self._date(f.get("registered_on"))
        if registered is None:
            raise InvalidInputError("registration date is missing", field="date")
        closes = self._date(f.get("closes_on"))
        description = (
            _text(f.get("description"))
            if not _blank(f.get("description"))
            else _join(f.get("duties"), f.get("qualifications"))
        )
        row = {
            "posting_id": str(pid).strip(),
            "company": company,
            "title": title,
            "description": description,
            "occupation_code": code,
            "region": region_text,
            "sido": sido,
            "lat": lat,
            "lng": lng,
            "min_education_level": lo,
            "max_education_level": hi,
            "career": kind,
            "min_career_years": years,
            "wage_type": wtype,
            "wage_min": wmin,
            "wage_max": wmax,
            "monthly_wage": monthly_wage(wtype, wmin if wmin is not None else wmax, holiday),
            "employment_type": employment_type(
                f.get("employment_type"), f.get("employment_type_name")
            ),
            "registered_on": registered,
            "closes_on": closes,
            "holiday_type": holiday,
            "preferences": _join(f.get("preferences"), f.get("preferences_extra")) or None,
        }
        for col in _TEXT_COLUMNS:
            row[col] = _opt_text(f.get(col))
        return row

    def _career(self, f: dict[str, Any]) -> tuple[str, int]:
        main, detail = f.get("career"), f.get("career_detail")
        if _blank(main) and _blank(detail):
            raise InvalidInputError("career is missing", field="career")
        kind = years = None
        if not _blank(main):
            kind, years = career(main)
        if not _blank(detail):
            d_kind, d_years = career(detail)
            kind = kind or d_kind
            if d_years is not None and kind != "entry":
                years = d_years
        given = f.get("min_career_years")
        if not _blank(given):
            try:
                years = int(float(given))
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"career years {given!r} is not a number", field="career"
                ) from None
            if years < 0:
                raise InvalidInputError(f"career years {given!r} is negative", field="career")
        return kind, 0 if kind == "entry" or years is None else years

    def _date(self, value: Any) -> dt.date | None:
        if isinstance(value, dt.date) or _blank(value):
            return parse_date(value, ref_date=self.ref_date)
        hit = self._dates.get(value, False)
        if hit is False:  # unreadable dates raise and are not cached
            hit = parse_date(value, ref_date=self.ref_date)
            self._dates[value] = hit
        return hit

    def _region(
        self, f: dict[str, Any], company: str | None = None, settle: bool = False
    ) -> tuple[str, str, str | None, float, float]:
        region = f.get("region")
        address = f.get("address")
        if not _blank(address) and not _blank(f.get("address_detail")):
            address = f"{address} {f['address_detail']}"
        written = _text(region) or _text(f.get("address"))
        lat, lng = f.get("lat"), f.get("lng")
        if _coord_ok(lat, lng):
            sido = _full_sido(f.get("sido"))
            hit = self._best(address, region)
            if sido is None:
                if hit is None:
                    raise Reject("unknown_region", f"no province for {written!r}")
                sido = hit.sido
            given = None if _blank(f.get("sigungu")) else str(f["sigungu"]).strip()
            sigungu = given or (hit.sigungu if hit is not None and hit.sido == sido else None)
            return written, sido, canonical_sigungu(sido, sigungu), float(lat), float(lng)
        hit = self._best(address, region)
        text = " ".join(_text(x) for x in (region, address) if not _blank(x))
        if hit is None:
            said = f"region {region!r} / address {f.get('address')!r}"
            low = text.lower()
            if not text or any(w in low for w in _NO_PLACE) and not self.regions.candidates(text):
                raise Reject("unknown_region", f"{said} names no place")
            if not settle:
                raise Reject("unknown_region", f"{said} matches no known region", pending=True)
            hit, why = self.evidence.settle(company, text)
            if hit is None:
                raise Reject("unknown_region", f"{said} is not settled: {why}")
        elif hit.level >= 2:
            self.evidence.observe(company, text, hit)
        return written, hit.sido, canonical_sigungu(hit.sido, hit.sigungu), hit.lat, hit.lng

    def _best(self, address: Any, region: Any):
        """The more specific of the address's and the region's resolution (address on ties)."""
        a = None if _blank(address) else self.regions.resolve(str(address))
        r = None if _blank(region) else self.regions.resolve(str(region))
        if a is None:
            return r
        if r is None or a.level >= r.level:
            return a
        return r


def _coord_ok(lat: Any, lng: Any) -> bool:
    try:
        la, ln = float(lat), float(lng)
    except (TypeError, ValueError):
        return False
    return 33.0 <= la <= 38.7 and 124.5 <= ln <= 131.0


def _full_sido(value: Any) -> str | None:
    if _blank(value):
        return None
    s = str(value).strip()
    if s in SIDO_SHORT:
        return s
    return SIDO_ALIASES.get(s)
