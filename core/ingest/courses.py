"""Course ingestion: HRD-Net XML, CSV, Parquet or the live HRD-Net API -> canonical courses
(:data:`core.courses.COURSE_SCHEMA`) + rejects, with conserved counts.

Every record read ends in exactly one of ``courses`` or ``rejects`` (reason code from
:data:`COURSE_REJECT_REASONS`, the raw record as JSON), so ``read == accepted + rejected``.
List items and details are joined on ``trprId`` + ``trprDegr``; a detail without a list
item is rejected (the list is the only source of dates and seats).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from core.courses import (
    COURSE_REJECT_SCHEMA,
    COURSE_SCHEMA,
    TRAINING_TYPE_CODES,
    TRAINING_TYPE_NAMES,
    course_id,
    split_certificates,
    validate_courses,
)
from core.errors import InvalidInputError, JobrecError
from core.ingest.headers import _key
from core.ingest.hrd_xml import LIST_MAP, hrd_fields, item_course_id, read_hrd_xml
from core.ingest.normalise import Reject, _blank, _coord_ok, _full_sido, _text
from core.ingest.records import SourceRecord
from core.ingest.worknet_xml import XmlItem, expand_sources
from core.parsing import parse_date
from core.regions import RegionResolver, default_resolver
from core.text import scrub_pii

COURSE_FORMATS: tuple[str, ...] = ("hrd-xml", "csv", "parquet", "hrd-api")
_SUFFIX = {"hrd-xml": ".xml", "csv": ".csv", "parquet": ".parquet"}

COURSE_REJECT_REASONS: dict[str, str] = {
    "missing_id": "no course id (trprId) or no run number (trprDegr)",
    "invalid_id": "the run number (trprDegr) is not a whole number",
    "duplicate_id": "the course run was already read; the first record is kept",
    "detail_without_list": "a detail response whose course run is in no list response",
    "missing_title": "no course title",
    "missing_institution": "no training institution name",
    "invalid_ncs_code": "NCS code missing or not 2/4/6/8 digits",
    "unknown_region": "the address resolves to no known region",
    "unparseable_date": "start date missing or unreadable, end date unreadable or before the start",
    "invalid_training_type": "training type (훈련구분 M1001/M1005/M1010/M1014) missing or unknown",
    "invalid_number": "a fee, seat count, rate or score that is not a non-negative number",
    "malformed_row": "a CSV row with a different number of fields than the header",
}

# ingestion fields -> meaning; canonical column names map to themselves
COURSE_FIELDS: tuple[str, ...] = tuple(COURSE_SCHEMA) + (
    "street_address", "street_address_detail",
)
KOREAN_COURSE_HEADERS: dict[str, str] = {
    "훈련과정ID": "trpr_id", "과정ID": "trpr_id", "회차": "trpr_degr", "훈련회차": "trpr_degr",
    "과정명": "title", "훈련과정명": "title", "훈련기관": "institution", "훈련기관명": "institution",
    "훈련기관ID": "institution_id", "주소": "address", "지역": "address", "NCS코드": "ncs_code",
    "NCS명": "ncs_name", "훈련시작일": "start_date", "과정시작일": "start_date",
    "훈련종료일": "end_date", "과정종료일": "end_date", "훈련구분": "training_type",
    "수강비": "cost", "훈련비": "real_cost", "실제훈련비": "real_cost", "정부지원금": "subsidy",
    "본인부담액": "self_pay", "정원": "capacity", "수강신청인원": "enrolled",
    "취업률(3개월)": "employment_rate_3m", "취업률(6개월)": "employment_rate_6m",
    "만족도": "satisfaction", "총훈련시간": "training_hours", "훈련대상": "target",
    "자격증": "certificate", "과정내용": "description",
}
_RATE_CODES = frozenset("ABCD")  # 개설예정 / 진행중 / 미실시 / 수료자 없음: no rate yet
_NCS = re.compile(r"^\d{2}(?:\d{2}){0,3}$")
_INT_FIELDS = ("cost", "real_cost", "subsidy", "self_pay", "capacity", "enrolled", "training_hours")


def course_column_map(spec: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """Header -> course field: canonical names, HRD-Net tags, Korean headers, then ``spec``."""
    out: dict[str, str | None] = {_key(c): c for c in COURSE_FIELDS}
    out.update({_key(k): v for k, v in LIST_MAP.items()})
    out.update({_key(k): v for k, v in KOREAN_COURSE_HEADERS.items()})
    for header, f in (spec or {}).items():
        if f not in (None, "") and f not in COURSE_FIELDS:
            raise InvalidInputError(
                f"column map sends {header!r} to unknown course field {f!r}; known fields: "
                f"{', '.join(COURSE_FIELDS)}",
                field="column_map",
            )
        out[_key(str(header))] = f or None
    return out


def _number(value: Any, name: str, *, real: bool = False) -> float | int | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise Reject("invalid_number", f"{name} {value!r} is not a number")
    if isinstance(value, int | float):
        x = float(value)
    else:
        text = str(value).strip().replace(",", "").removesuffix("원").removesuffix("%").strip()
        if real and text.upper() in _RATE_CODES:
            return None
        try:
            x = float(text)
        except ValueError:
            raise Reject("invalid_number", f"{name} {value!r} is not a number") from None
    if not math.isfinite(x) or x < 0:
        raise Reject("invalid_number", f"{name} {value!r} is not a non-negative number")
    if real:
        return x
    if x != int(x):
        raise Reject("invalid_number", f"{name} {value!r} is not a whole number")
    return int(x)


class CourseNormaliser:
    """Turns course field dicts into canonical rows, or raises :class:`Reject`."""

    def __init__(self, *, ref_date: dt.date | None = None, regions: RegionResolver | None = None):
        self.ref_date = ref_date or dt.date.today()
        self.regions = regions or default_resolver()

    def ids(self, f: Mapping[str, Any]) -> tuple[str, int]:
        """(trpr_id, trpr_degr) of a record; a bare ``course_id`` "X_3" is split."""
        tid, degr = f.get("trpr_id"), f.get("trpr_degr")
        if _blank(tid) and not _blank(f.get("course_id")):
            tid, _, d = str(f["course_id"]).strip().rpartition("_")
            degr = degr if not _blank(degr) else d
        if _blank(tid) or _blank(degr):
            raise Reject("missing_id", "the record has no trprId or no trprDegr")
        try:
            n = int(str(degr).strip())
        except ValueError:
            raise Reject("invalid_id", f"trprDegr {degr!r} is not a whole number") from None
        if n < 0:
            raise Reject("invalid_id", f"trprDegr {degr!r} is negative")
        return str(tid).strip(), n

    def row(self, f: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical row for fields ``f``."""
        tid, degr = self.ids(f)
        title = _text(f.get("title"))
        if not title:
            raise Reject("missing_title", "the record has no course title")
        inst = _text(f.get("institution"))
        if not inst:
            raise Reject("missing_institution", "the record has no institution name")
        ncs = "" if _blank(f.get("ncs_code")) else str(f["ncs_code"]).strip()
        if not _NCS.match(ncs):
            raise Reject("invalid_ncs_code", f"NCS code {f.get('ncs_code')!r} is not 2/4/6/8 digits")
        address, sido, sigungu, lat, lng = self._place(f)
        start, end = self._dates(f)
        ttype = self._training_type(f.get("training_type"))
        nums = {k: _number(f.get(k), k) for k in _INT_FIELDS}
        rates = {k: _number(f.get(k), k, real=True)
                 for k in ("employment_rate_3m", "employment_rate_6m", "satisfaction")}
        for k in ("employment_rate_3m", "employment_rate_6m"):
            if rates[k] is not None and rates[k] > 100:
                raise Reject("invalid_number", f"{k} {f.get(k)!r} is above 100%")
        sat = rates["satisfaction"]
        if sat is not None and sat > 100:  # HRD-Net sends 만족도 scaled by 100 (8523 = 85.23)
            sat = sat / 100.0
            if sat > 100:
                raise Reject("invalid_number", f"satisfaction {f.get('satisfaction')!r} is above 100")
        if nums["self_pay"] is None and nums["subsidy"] is not None:
            base = nums["real_cost"] if nums["real_cost"] is not None else nums["cost"]
            if base is not None:
                nums["self_pay"] = max(0, base - nums["subsidy"])
        certs = split_certificates(_text(f.get("certificate")))
        return {
            "course_id": course_id(tid, degr),
            "trpr_id": tid,
            "trpr_degr": degr,
            "title": title,
            "institution": inst,
            "institution_id": None if _blank(f.get("institution_id")) else str(f["institution_id"]).strip(),
            "address": address,
            "sido": sido,
            "sigungu": sigungu,
            "lat": lat,
            "lng": lng,
            "ncs_code": ncs,
            "ncs_name": _text(f.get("ncs_name")) or None,
            "start_date": start,
            "end_date": end,
            "training_type": ttype,
            "online": ttype == "online",
            **nums,
            "employment_rate_3m": rates["employment_rate_3m"],
            "employment_rate_6m": rates["employment_rate_6m"],
            "satisfaction": None if sat is None else round(sat, 2),
            "target": _text(f.get("target")) or None,
            "certificate": ", ".join(certs) or None,
            "description": _text(f.get("description")),
        }

    def _training_type(self, value: Any) -> str:
        if _blank(value):
            raise Reject("invalid_training_type", "the record has no training type")
        text = str(value).strip()
        hit = TRAINING_TYPE_CODES.get(text.upper()) or TRAINING_TYPE_NAMES.get(text)
        if hit is None:
            raise Reject("invalid_training_type", f"training type {value!r} is not known")
        return hit

    def _dates(self, f: Mapping[str, Any]) -> tuple[dt.date, dt.date | None]:
        try:
            start = parse_date(f.get("start_date"), ref_date=self.ref_date)
            end = parse_date(f.get("end_date"), ref_date=self.ref_date)
        except InvalidInputError as exc:
            raise Reject("unparseable_date", str(exc)) from None
        if start is None:
            raise Reject("unparseable_date", "the record has no training start date")
        if end is not None and end < start:
            raise Reject("unparseable_date", f"end date {end} is before start date {start}")
        return start, end

    def _place(self, f: Mapping[str, Any]) -> tuple[str, str, str | None, float, float]:
        street = f.get("street_address")
        if not _blank(street) and not _blank(f.get("street_address_detail")):
            street = f"{street} {f['street_address_detail']}"
        written = _text(street) or _text(f.get("address"))
        lat, lng = f.get("lat"), f.get("lng")
        if _coord_ok(lat, lng) and _full_sido(f.get("sido")):
            sgg = _text(f.get("sigungu")) or None
            return written, _full_sido(f.get("sido")), sgg, float(lat), float(lng)
        hit = None
        for text in (street, f.get("address")):
            if not _blank(text):
                cand = self.regions.resolve(str(text))
                if cand is not None and (hit is None or cand.level > hit.level):
                    hit = cand
        if hit is None:
            raise Reject("unknown_region", f"address {written!r} matches no known region")
        if _coord_ok(lat, lng):
            return written, hit.sido, hit.sigungu, float(lat), float(lng)
        return written, hit.sido, hit.sigungu, hit.lat, hit.lng


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_pii(value)
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


@dataclass(frozen=True)
class CourseIngestResult:
    """Accepted courses (COURSE_SCHEMA), rejects (COURSE_REJECT_SCHEMA) and counts."""

    courses: pl.DataFrame
    rejects: pl.DataFrame
    counts: dict[str, Any] = field(default_factory=dict)

    def write(self, out: Path | str, rejects_out: Path | str) -> None:
        """Write both tables as Parquet (parent directories are created)."""
        for frame, path in ((self.courses, Path(out)), (self.rejects, Path(rejects_out))):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.write_parquet(path)
            except OSError as exc:
                raise InvalidInputError(f"{path}: cannot write: {exc.strerror or exc}", field="out") from exc


class CourseIngestor:
    """Collects course records; :meth:`result` builds the two tables."""

    def __init__(self, *, ref_date: dt.date | None = None) -> None:
        self.normaliser = CourseNormaliser(ref_date=ref_date)
        self._rows: list[dict[str, Any]] = []
        self._rejects: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self.read = 0

    def add(self, rec: SourceRecord) -> None:
        """Normalise one record into a course or a reject."""
        self.read += 1
        if rec.reject is not None:
            self._reject(rec, None, *rec.reject)
            return
        fields = rec.fields or {}
        try:
            cid = course_id(*self.normaliser.ids(fields))
        except Reject as rej:
            self._reject(rec, None, rej.reason, rej.detail)
            return
        if cid in self._seen:
            self._reject(rec, cid, "duplicate_id", f"course run {cid!r} was already read")
            return
        self._seen.add(cid)
        try:
            self._rows.append(self.normaliser.row(fields))
        except Reject as rej:
            self._reject(rec, cid, rej.reason, rej.detail)

    def reject(self, rec: SourceRecord, cid: str | None, reason: str, detail: str) -> None:
        """Count ``rec`` as read and rejected without normalising it."""
        self.read += 1
        self._reject(rec, cid, reason, detail)

    def _reject(self, rec: SourceRecord, cid: str | None, reason: str, detail: str) -> None:
        self._rejects.append({
            "source": rec.source, "record_index": rec.index, "course_id": cid, "reason": reason,
            "detail": scrub_pii(detail),
            "raw": json.dumps(_scrub(rec.raw), ensure_ascii=False, default=str),
        })

    def result(self) -> CourseIngestResult:
        """The tables and counts; the courses are validated against the canonical schema."""
        courses = pl.DataFrame(self._rows, schema=COURSE_SCHEMA, orient="row")
        validate_courses(courses)
        rejects = pl.DataFrame(self._rejects, schema=COURSE_REJECT_SCHEMA, orient="row")
        counts = {
            "read": self.read, "accepted": courses.height, "rejected": rejects.height,
            "by_reason": dict(sorted(Counter(r["reason"] for r in self._rejects).items())),
        }
        if counts["read"] != counts["accepted"] + counts["rejected"]:  # pragma: no cover
            raise JobrecError(f"course ingestion lost records: {counts}")
        return CourseIngestResult(courses, rejects, counts)


def hrd_records(
    list_items: Iterable[XmlItem], detail_items: Iterable[XmlItem], ing: CourseIngestor
) -> Iterator[SourceRecord]:
    """Join details onto list items by course run; yields one record per list item."""
    details: dict[str, XmlItem] = {}
    for item in detail_items:
        cid = item_course_id(item.fields)
        rec = SourceRecord(item.source, item.index, None, {"detail": item.fields})
        if not cid:
            ing.reject(rec, None, "missing_id", "detail response without trprId/trprDegr")
        elif cid in details:
            ing.reject(rec, cid, "duplicate_id", f"second detail response for {cid!r}")
        else:
            details[cid] = item
    for item in list_items:
        cid = item_course_id(item.fields)
        det = details.pop(cid, None) if cid else None
        raw: dict[str, Any] = {"list": item.fields}
        if det is not None:
            raw["detail"] = det.fields
            raw["detail_source"] = f"{det.source}#{det.index}"
        yield SourceRecord(item.source, item.index,
                           hrd_fields(item.fields, det.fields if det else None), raw)
    for cid, det in details.items():
        ing.reject(SourceRecord(det.source, det.index, None, {"detail": det.fields}), cid,
                   "detail_without_list",
                   f"detail response for {cid!r} has no list item (no dates or seats)")


def ingest_courses(
    sources: Iterable[Path | str],
    fmt: str,
    *,
    column_map: Mapping[str, str | None] | Path | str | None = None,
    ref_date: dt.date | None = None,
    client: Any = None,
    window: tuple[dt.date, dt.date] | None = None,
    max_pages: int | None = None,
) -> CourseIngestResult:
    """Read course ``sources`` of format ``fmt`` (one of :data:`COURSE_FORMATS`).

    ``hrd-api`` fetches through ``client`` (an :class:`core.ingest.hrd_api.HrdClient`) the
    courses starting within ``window`` instead of reading ``sources``.
    """
    if fmt not in COURSE_FORMATS:
        raise InvalidInputError(
            f"unknown course format {fmt!r}; expected one of {', '.join(COURSE_FORMATS)}", field="format"
        )
    ing = CourseIngestor(ref_date=ref_date)
    if fmt == "hrd-api":
        if client is None or window is None:
            raise InvalidInputError("hrd-api needs a client and a date window", field="api")
        lists, details = client.fetch(window[0], window[1], max_pages=max_pages)
        for rec in hrd_records(lists, details, ing):
            ing.add(rec)
        return ing.result()
    files = expand_sources(sources, _SUFFIX[fmt])
    if not files:
        raise InvalidInputError("no input sources given", field="source")
    if fmt == "hrd-xml":
        items = [it for path in files for it in read_hrd_xml(path)]
        for rec in hrd_records([i for i in items if i.kind == "list"],
                               [i for i in items if i.kind == "detail"], ing):
            ing.add(rec)
        return ing.result()
    mapping = course_column_map(_load_map(column_map))
    if fmt == "csv":
        from core.ingest.csv_source import read_csv as reader
    else:
        from core.ingest.parquet_source import read_parquet as reader
    for path in files:
        for rec in reader(path, mapping, id_fields=("trpr_id", "course_id")):
            ing.add(rec)
    return ing.result()


def _load_map(spec: Mapping[str, str | None] | Path | str | None) -> Mapping[str, str | None] | None:
    if spec is None or isinstance(spec, Mapping):
        return spec
    path = Path(spec)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read column map: {exc}", field="column_map") from exc
    if not isinstance(loaded, dict):
        raise InvalidInputError(f"{path}: column map must be a JSON object", field="column_map")
    return loaded
