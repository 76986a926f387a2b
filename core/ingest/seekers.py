"""Job-seeker ingestion: CSV (Korean headers) or Parquet -> canonical seekers + rejects.

Every record read ends in exactly one of ``seekers`` or ``rejects`` (reason code from
:data:`SEEKER_REJECT_REASONS`, the raw record as PII-scrubbed JSON). The résumé is scrubbed
(:func:`core.pii.scrub_resume`, with the record's own name when it has one) before it is
stored; the name column itself is read only for that and never stored.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from core.errors import InvalidInputError, JobrecError
from core.ingest.headers import _key
from core.ingest.records import SourceRecord
from core.ingest.tables import TABLE_KEYS, TableSpec, read_table, table_spec
from core.ingest.worknet_xml import expand_sources
from core.parsing import (
    OccupationResolver,
    default_occupations,
    education_level,
    employment_type,
    parse_date,
    wage_from_text,
)
from core.pii import scrub_resume
from core.regions import RegionResolver, default_resolver
from core.seekers import (
    MAX_DESIRED_OCCUPATIONS,
    MAX_DESIRED_REGIONS,
    SEEKER_REJECT_SCHEMA,
    SEEKER_SCHEMA,
    Area,
    dedupe_areas,
    parse_areas,
    validate_seekers,
)
from core.wages import monthly_wage

SEEKER_FIELDS: tuple[str, ...] = (
    "seeker_id", "name", "desired_occupations", "desired_regions", "home_address", "home_lat",
    "home_lng", "max_commute_km", "education", "career", "career_history", "certificates",
    "desired_wage", "desired_employment_types", "resume_text", "birth_year", "registered_on",
    "active",
)

KOREAN_SEEKER_HEADERS: dict[str, str] = {
    "구직자번호": "seeker_id", "구직번호": "seeker_id", "구직신청번호": "seeker_id",
    "성명": "name", "이름": "name",
    "희망직종": "desired_occupations", "희망직종코드": "desired_occupations",
    "희망지역": "desired_regions", "희망근무지역": "desired_regions", "희망근무지": "desired_regions",
    "거주지": "home_address", "주소": "home_address",
    "위도": "home_lat", "경도": "home_lng",
    "최대통근거리": "max_commute_km", "통근가능거리": "max_commute_km",
    "최종학력": "education", "학력": "education",
    "경력": "career", "총경력": "career", "경력년수": "career",
    "경력사항": "career_history", "경력이력": "career_history",
    "자격증": "certificates", "자격면허": "certificates", "보유자격증": "certificates",
    "희망임금": "desired_wage", "희망급여": "desired_wage", "희망월급": "desired_wage",
    "희망고용형태": "desired_employment_types", "고용형태": "desired_employment_types",
    "자기소개": "resume_text", "자기소개서": "resume_text", "이력서": "resume_text",
    "출생연도": "birth_year", "출생년도": "birth_year",
    "등록일": "registered_on", "구직등록일": "registered_on",
    "활성": "active", "구직상태": "active",
}
# canonical column names map to themselves (a generated seekers.parquet re-ingests)
_CANONICAL = {
    "desired_regions": "desired_regions", "desired_occupations": "desired_occupations",
    "education_level": "education", "career_years": "career",
    "desired_monthly_wage": "desired_wage",
}
SEEKER_COLUMN_MAP: dict[str, str] = {
    **{f: f for f in SEEKER_FIELDS}, **_CANONICAL, **KOREAN_SEEKER_HEADERS,
}

SEEKER_REJECT_REASONS: dict[str, str] = {
    "missing_id": "no seeker id (구직자번호)",
    "duplicate_id": "the id was already read; the first record with an id is kept",
    "missing_occupation": "no desired occupation",
    "unknown_occupation": "a desired occupation matches no KECO code or name",
    "too_many_occupations": f"more than {MAX_DESIRED_OCCUPATIONS} desired occupations",
    "missing_region": "no desired region",
    "unknown_region": "a desired region (or the home address) matches no known region",
    "too_many_regions": f"more than {MAX_DESIRED_REGIONS} desired regions",
    "invalid_education": "education level unreadable",
    "invalid_career": "career years or history unreadable",
    "unparseable_wage": "desired wage unreadable",
    "invalid_employment_type": "a desired employment type is unreadable",
    "invalid_location": "home coordinates out of Korea or commute distance without a home",
    "unparseable_date": "registration date or birth year unreadable",
    "malformed_row": "a CSV row with a different number of fields than the header",
}
_FIELD_REASON = {
    "education": "invalid_education", "career": "invalid_career", "wage": "unparseable_wage",
    "employment_type": "invalid_employment_type", "date": "unparseable_date",
    "desired_regions": "unknown_region", "location": "invalid_location",
}
_LIST_SPLIT = re.compile(r"\s*[,;|/·]\s*|\s*\n\s*")
_HISTORY_ITEM = re.compile(r"^(?P<occ>.+?)\s*[:：]?\s*(?P<years>\d+(?:\.\d+)?)\s*(?:년)?$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_ACTIVE = {"1": True, "true": True, "y": True, "yes": True, "활성": True, "구직중": True,
           "0": False, "false": False, "n": False, "no": False, "비활성": False, "취업": False,
           "구직중단": False, "취업완료": False}


class SeekerReject(Exception):  # noqa: N818 - control flow inside ingestion, never escapes it
    """A record that cannot become a seeker: ``reason`` is a key of SEEKER_REJECT_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _blank(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    if isinstance(v, list | tuple):
        return len(v) == 0
    return isinstance(v, str) and not v.strip()


def _items(v: Any) -> list[Any]:
    """A list cell as a list; a text cell split on , ; | / · or new lines."""
    if _blank(v):
        return []
    if isinstance(v, list | tuple):
        return [x for x in v if not _blank(x)]
    return [p for p in _LIST_SPLIT.split(str(v).strip()) if p]


class SeekerNormaliser:
    """One source record (fields named as :data:`SEEKER_FIELDS`) -> one canonical seeker row."""

    def __init__(self, *, ref_date: dt.date | None = None,
                 regions: RegionResolver | None = None,
                 occupations: OccupationResolver | None = None) -> None:
        self.ref_date = ref_date
        self.regions = regions or default_resolver()
        self.occupations = occupations or default_occupations()

    def row(self, f: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical row, or :class:`SeekerReject`."""
        try:
            return self._row(f)
        except InvalidInputError as exc:
            raise SeekerReject(_FIELD_REASON.get(exc.field or "", "invalid_career"), str(exc)) from None

    def _occupation(self, v: Any) -> str:
        code = self.occupations.resolve(v, None) if re.fullmatch(r"\d{6}", str(v).strip()) else None
        code = code or self.occupations.resolve(None, str(v))
        if code is None:
            raise SeekerReject("unknown_occupation", f"desired occupation {v!r} is not in KECO")
        return code

    def _row(self, f: Mapping[str, Any]) -> dict[str, Any]:
        sid = str(f["seeker_id"]).strip()
        occ_items = _items(f.get("desired_occupations"))
        if not occ_items:
            raise SeekerReject("missing_occupation", "the record has no desired occupation")
        occs: list[str] = []
        for item in occ_items:
            code = self._occupation(item)
            if code not in occs:
                occs.append(code)
        if len(occs) > MAX_DESIRED_OCCUPATIONS:
            raise SeekerReject("too_many_occupations",
                               f"{len(occs)} desired occupations (at most {MAX_DESIRED_OCCUPATIONS})")
        areas = self._areas(f.get("desired_regions"))
        home_lat, home_lng = self._home(f)
        commute = self._float(f.get("max_commute_km"), "location")
        if commute is not None and (commute <= 0 or home_lat is None):
            raise SeekerReject("invalid_location",
                               f"max commute {commute!r} km needs a home and must be > 0")
        edu = 0 if _blank(f.get("education")) else education_level(
            f["education"] if not isinstance(f["education"], str) else f["education"].strip())
        history = self._history(f.get("career_history"))
        years = self._years(f.get("career"))
        if years is None:
            years = sum(h["years"] for h in history)
        emp = []
        for item in _items(f.get("desired_employment_types")):
            t = employment_type(item, None) if re.fullmatch(r"\d+|[a-z_]+", str(item)) \
                else employment_type(None, item)
            if t not in emp:
                emp.append(t)
        registered = parse_date(f.get("registered_on"), ref_date=self.ref_date) \
            if not _blank(f.get("registered_on")) else (self.ref_date or dt.date.today())
        if registered is None:
            raise SeekerReject("unparseable_date", f"registration date {f.get('registered_on')!r}")
        birth = self._float(f.get("birth_year"), "date")
        if birth is not None and not 1900 <= birth <= (self.ref_date or dt.date.today()).year:
            raise SeekerReject("unparseable_date", f"birth year {f.get('birth_year')!r}")
        names = tuple(str(n) for n in _items(f.get("name")))
        return {
            "seeker_id": sid,
            "desired_occupations": occs,
            "desired_regions": [{"sido": a.sido, "sigungu": a.sigungu} for a in areas],
            "home_lat": home_lat,
            "home_lng": home_lng,
            "max_commute_km": commute,
            "education_level": edu,
            "career_years": years,
            "career_history": history,
            "certificates": [scrub_resume(str(c)) for c in _items(f.get("certificates"))],
            "desired_monthly_wage": self._wage(f.get("desired_wage")),
            "desired_employment_types": emp,
            "resume_text": scrub_resume(None if _blank(f.get("resume_text"))
                                        else str(f["resume_text"]), names=names),
            "birth_year": None if birth is None else int(birth),
            "registered_on": registered,
            "active": self._active(f.get("active")),
        }

    def _areas(self, v: Any) -> list[Area]:
        if _blank(v):
            raise SeekerReject("missing_region", "the record has no desired region")
        if isinstance(v, list | tuple):
            areas: list[Area] = []
            for item in v:
                if isinstance(item, Mapping):
                    if _blank(item.get("sido")):
                        raise SeekerReject("unknown_region", f"desired region {item!r} has no sido")
                    areas.extend(parse_areas(" ".join(
                        str(x) for x in (item["sido"], item.get("sigungu")) if x), self.regions))
                else:
                    areas.extend(parse_areas(str(item), self.regions))
            areas = dedupe_areas(areas)
        else:
            areas = parse_areas(str(v), self.regions)
        if not areas:
            raise SeekerReject("missing_region", "the record has no desired region")
        if len(areas) > MAX_DESIRED_REGIONS:
            raise SeekerReject("too_many_regions",
                               f"{len(areas)} desired regions (at most {MAX_DESIRED_REGIONS})")
        return areas

    def _home(self, f: Mapping[str, Any]) -> tuple[float | None, float | None]:
        lat = self._float(f.get("home_lat"), "location")
        lng = self._float(f.get("home_lng"), "location")
        if lat is not None or lng is not None:
            if lat is None or lng is None or not (33.0 <= lat <= 38.7 and 124.5 <= lng <= 131.0):
                raise SeekerReject("invalid_location", f"home ({lat}, {lng}) is not in Korea")
            return lat, lng
        if _blank(f.get("home_address")):
            return None, None
        hit = self.regions.resolve(str(f["home_address"]))
        if hit is None:
            raise SeekerReject("unknown_region", f"home address {f['home_address']!r} is unknown")
        return hit.lat, hit.lng

    @staticmethod
    def _float(v: Any, fld: str) -> float | None:
        if _blank(v):
            return None
        try:
            x = float(str(v).replace("km", "").strip()) if isinstance(v, str) else float(v)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{v!r} is not a number", field=fld) from None
        if not math.isfinite(x):
            raise InvalidInputError(f"{v!r} is not a finite number", field=fld)
        return x

    @staticmethod
    def _years(v: Any) -> int | None:
        if _blank(v):
            return None
        if isinstance(v, int | float) and not isinstance(v, bool):
            if v < 0 or v > 70:
                raise InvalidInputError(f"career years {v!r} out of range", field="career")
            return int(v)
        t = re.sub(r"\s+", "", str(v))
        if t in ("신입", "없음", "무경력"):
            return 0
        m = re.fullmatch(r"(?:경력)?(?:(\d+)년)?(?:(\d+)개월)?", t)
        if _NUMBER.match(t):
            return int(float(t))
        if m and (m.group(1) or m.group(2)):
            return int(m.group(1) or 0) + int(m.group(2) or 0) // 12
        raise InvalidInputError(f"career {v!r} is not a number of years", field="career")

    def _history(self, v: Any) -> list[dict[str, Any]]:
        out = []
        for item in _items(v):
            if isinstance(item, Mapping):
                occ, years = item.get("occupation_code"), item.get("years")
            else:
                m = _HISTORY_ITEM.match(str(item).strip())
                if not m:
                    raise InvalidInputError(f"career history item {item!r} is not 'occupation N년'",
                                            field="career")
                occ, years = m.group("occ"), m.group("years")
            code = self.occupations.resolve(occ, None) if re.fullmatch(r"\d{6}", str(occ)) \
                else self.occupations.resolve(None, str(occ))
            if code is None:
                raise SeekerReject("unknown_occupation", f"career history occupation {occ!r}")
            y = self._years(years)
            out.append({"occupation_code": code, "years": 0 if y is None else y})
        return out

    @staticmethod
    def _wage(v: Any) -> int | None:
        if _blank(v):
            return None
        if isinstance(v, int | float) and not isinstance(v, bool):
            amount, kind = int(v), "monthly"
        else:
            text = str(v).strip()
            if text in ("회사내규", "협의", "면접후결정", "회사내규에따름"):
                return None
            if _NUMBER.match(text.replace(",", "")):
                amount, kind = int(float(text.replace(",", ""))), "monthly"
            else:
                kind, lo, hi = wage_from_text(text if re.match(r"^(시급|일급|월급|연봉|월|연)", text)
                                              else f"월급 {text}")
                amount = lo if lo is not None else hi
                if amount is None or kind is None:
                    raise InvalidInputError(f"desired wage {v!r} is unreadable", field="wage")
        if amount <= 0:
            raise InvalidInputError(f"desired wage {v!r} is not positive", field="wage")
        # amounts below 10,000 are 만원 (Worknet's 희망임금 field is often in 만원)
        if kind == "monthly" and amount < 10_000:
            amount *= 10_000
        return monthly_wage(kind, amount, None)

    @staticmethod
    def _active(v: Any) -> bool:
        if _blank(v):
            return True
        if isinstance(v, bool):
            return v
        hit = _ACTIVE.get(str(v).strip().lower())
        if hit is None:
            raise InvalidInputError(f"active flag {v!r} is unreadable", field="date")
        return hit


@dataclass(frozen=True)
class SeekerIngestResult:
    """Accepted seekers (:data:`SEEKER_SCHEMA`), rejects and counts (read/accepted/rejected)."""

    seekers: pl.DataFrame
    rejects: pl.DataFrame
    counts: dict[str, Any] = field(default_factory=dict)

    def write(self, out: Path | str, rejects_out: Path | str) -> None:
        """Write both tables as Parquet."""
        for frame, path in ((self.seekers, Path(out)), (self.rejects, Path(rejects_out))):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.write_parquet(path)
            except OSError as exc:
                raise InvalidInputError(f"{path}: cannot write: {exc.strerror or exc}",
                                        field="out") from exc


def _scrub_raw(raw: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, str):
            return scrub_resume(v)
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items() if _key(str(k)) not in ("성명", "이름", "name")}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(raw), ensure_ascii=False, default=str)


def seeker_map_options(spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict[str, Any],
                                                          TableSpec]:
    """A seeker column map's header mapping, defaults and multi-file options.

    The flat form is ``{header: field}``; the object form is ``{columns, defaults, joins,
    values, compose}`` (keys starting with ``_`` are comments).
    """
    if not isinstance(spec.get("columns"), Mapping):
        return spec, {}, TableSpec()
    extra = {k for k in spec if not k.startswith("_")} - {"columns", "defaults", *TABLE_KEYS}
    if extra:
        raise InvalidInputError(f"seeker column map has unknown key {sorted(extra)[0]!r}; "
                                "expected columns, defaults, joins, values, compose",
                                field="column_map")
    defaults = spec.get("defaults", {})
    if not isinstance(defaults, Mapping) or any(k not in SEEKER_FIELDS for k in defaults):
        raise InvalidInputError(
            f"seeker column map 'defaults' must be an object of seeker fields ({', '.join(SEEKER_FIELDS)})",
            field="column_map")
    return spec["columns"], dict(defaults), table_spec(spec)


def ingest_seekers(sources: Iterable[Path | str], fmt: str, *,
                   column_map: Mapping[str, Any] | None = None,
                   ref_date: dt.date | None = None) -> SeekerIngestResult:
    """Read seeker ``sources`` (``csv`` or ``parquet``) into a :class:`SeekerIngestResult`."""
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"seekers come as csv or parquet, not {fmt!r}", field="format")
    files = expand_sources(sources, "." + fmt)
    if not files:
        raise InvalidInputError("no input sources given", field="source")
    mapping: dict[str, str | None] = {_key(k): v for k, v in SEEKER_COLUMN_MAP.items()}
    flat, defaults, table = seeker_map_options(column_map or {})
    for header, fld in flat.items():
        if fld not in (None, "") and fld not in SEEKER_FIELDS:
            raise InvalidInputError(f"column map sends {header!r} to unknown seeker field {fld!r}",
                                    field="column_map")
        mapping[_key(str(header))] = fld or None
    if not table.empty:
        def reader(path, mapping, id_fields):
            return read_table(path, mapping, table, id_fields=id_fields)
    elif fmt == "csv":
        from core.ingest.csv_source import read_csv as reader
    else:
        from core.ingest.parquet_source import read_parquet as reader
    norm = SeekerNormaliser(ref_date=ref_date)
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    seen: set[str] = set()
    read = 0

    def reject(rec: SourceRecord, sid: str | None, reason: str, detail: str) -> None:
        rejects.append({"source": rec.source, "record_index": rec.index, "seeker_id": sid,
                        "reason": reason, "detail": scrub_resume(detail), "raw": _scrub_raw(rec.raw)})

    for path in files:
        for rec in reader(path, mapping, id_fields=("seeker_id",)):
            read += 1
            if rec.reject is not None:
                reject(rec, None, *rec.reject)
                continue
            f = rec.fields or {}
            if defaults:
                f = {**defaults, **{k: v for k, v in f.items() if not _blank(v)}}
            sid = "" if _blank(f.get("seeker_id")) else str(f["seeker_id"]).strip()
            if not sid:
                reject(rec, None, "missing_id", "the record has no seeker id")
                continue
            if sid in seen:
                reject(rec, sid, "duplicate_id", f"seeker id {sid!r} was already read")
                continue
            seen.add(sid)
            try:
                rows.append(norm.row(f))
            except SeekerReject as rej:
                reject(rec, sid, rej.reason, rej.detail)
    seekers = pl.DataFrame(rows, schema=SEEKER_SCHEMA, orient="row")
    validate_seekers(seekers)
    rej = pl.DataFrame(rejects, schema=SEEKER_REJECT_SCHEMA, orient="row")
    counts = {"read": read, "accepted": seekers.height, "rejected": rej.height,
              "by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items()))}
    if read != seekers.height + rej.height:  # pragma: no cover
        raise JobrecError(f"seeker ingestion lost records: {counts}")
    return SeekerIngestResult(seekers, rej, counts)
