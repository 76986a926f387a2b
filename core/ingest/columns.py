"""Column mappings for tabular sources (CSV, Parquet): source header -> ingestion field.

The default mapping understands Worknet's Korean export headers (구인인증번호, 회사명,
구인제목, 직무내용, 모집직종, 근무지역, 학력, 경력, 임금형태, 최소임금, 최대임금, 등록일,
마감일, …), the canonical column names of :mod:`core.schema` and Worknet's XML tag names.
A mapping file (JSON object ``{"header": "field"}``) adds to it and overrides it; mapping a
header to ``null`` or ``""`` ignores that column.

A mapping file may instead be an object with these keys (all but ``columns`` optional), for
sources that lack fields the canonical schema needs or carry columns it has no place for::

    {"columns": {"header": "field", ...},
     "keep": ["job_group"],              # copied verbatim into extra output columns
     "defaults": {"career": "관계없음"},   # field values where a record has none
     "accept_unclassified": true}        # no occupation given: keep, occupation_code null

Keys starting with ``_`` are comments. ``keep`` columns follow the canonical columns in the output, under their own header,
as text; ``defaults`` are the map author's declared assumptions about the whole source.
``joins``, ``values`` and ``compose`` read records spread over several files and turn codes
into text (:mod:`core.ingest.tables`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InvalidInputError
from core.ingest.headers import _key, map_headers  # noqa: F401 - re-exported
from core.ingest.normalise import FIELDS
from core.ingest.tables import TABLE_KEYS, TableSpec, table_spec

KOREAN_HEADERS: dict[str, str] = {
    "구인인증번호": "posting_id",
    "구인번호": "posting_id",
    "회사명": "company",
    "사업장명": "company",
    "기업명": "company",
    "구인제목": "title",
    "채용제목": "title",
    "제목": "title",
    "직무내용": "duties",
    "담당업무": "duties",
    "자격요건": "qualifications",
    "요구능력": "qualifications",
    "모집직종": "occupation_name",
    "직종": "occupation_name",
    "직종명": "occupation_name",
    "모집직종코드": "occupation_code",
    "직종코드": "occupation_code",
    "근무지역": "region",
    "근무예정지": "address",
    "근무지주소": "address",
    "주소": "address",
    "시도": "sido",
    "시군구": "sigungu",
    "위도": "lat",
    "경도": "lng",
    "학력": "education",
    "최소학력": "min_education_level",
    "최대학력": "max_education_level",
    "경력": "career",
    "경력조건": "career_detail",
    "최소경력": "min_career_years",
    "임금형태": "wage_type",
    "임금조건": "wage",
    "임금": "wage",
    "급여": "wage",
    "최소임금": "wage_min",
    "최대임금": "wage_max",
    "근무형태": "holiday_type",
    "휴일형태": "holiday_type",
    "고용형태": "employment_type_name",
    "고용형태코드": "employment_type",
    "등록일": "registered_on",
    "등록일자": "registered_on",
    "마감일": "closes_on",
    "마감일자": "closes_on",
    "접수마감일": "closes_on",
    "전공": "major",
    "자격면허": "certificates",
    "자격증": "certificates",
    "우대조건": "preferences",
    "기타우대조건": "preferences_extra",
    "인근전철역": "near_station",
    "근무시간": "work_hours",
}

WORKNET_TAGS: dict[str, str] = {
    "wantedAuthNo": "posting_id",
    "corpNm": "company",
    "wantedTitle": "title",
    "jobCont": "duties",
    "compAbl": "qualifications",
    "jobsCd": "occupation_code",
    "jobsNm": "occupation_name",
    "basicAddr": "address",
    "workRegion": "address",
    "detailAddr": "address_detail",
    "minEdubg": "min_education_level",
    "maxEdubg": "max_education_level",
    "eduNm": "education",
    "enterTpNm": "career_detail",
    "salTpNm": "wage_type",
    "sal": "wage",
    "minSal": "wage_min",
    "maxSal": "wage_max",
    "holidayTpNm": "holiday_type",
    "empTpCd": "employment_type",
    "empTpNm": "employment_type_name",
    "regDt": "registered_on",
    "closeDt": "closes_on",
    "receiptCloseDt": "closes_on",
    "certificate": "certificates",
    "pfCond": "preferences",
    "etcPfCond": "preferences_extra",
    "nearLine": "near_station",
    "workdayWorkhrCont": "work_hours",
}

DEFAULT_COLUMN_MAP: dict[str, str] = {
    **{name: name for name in FIELDS},
    **WORKNET_TAGS,
    **KOREAN_HEADERS,
}


KEEP_PREFIX = "keep:"  # mapping value of a kept column: "keep:<output column>"


@dataclass(frozen=True)
class ColumnMap:
    """A loaded column map: header mapping plus the source-wide options."""

    mapping: dict[str, str | None]
    keep: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    accept_unclassified: bool = False
    table: TableSpec = field(default_factory=TableSpec)

    def __post_init__(self) -> None:
        from core.schema import POSTING_SCHEMA

        clash = [k for k in self.keep if k in POSTING_SCHEMA]
        if clash:
            raise ValueError(f"kept column {clash[0]!r} has the name of a canonical column")
        unknown = [k for k in self.defaults if k not in FIELDS]
        if unknown:
            raise ValueError(f"default for unknown field {unknown[0]!r}")


def load_column_map(spec: Mapping[str, Any] | Path | str | None) -> dict[str, str | None]:
    """The default mapping with ``spec`` (a dict or a JSON file path) laid over it."""
    return load_map(spec).mapping


def load_map(spec: Mapping[str, Any] | Path | str | ColumnMap | None) -> ColumnMap:
    """The :class:`ColumnMap` of ``spec``: a flat ``{header: field}`` map or the object form."""
    if isinstance(spec, ColumnMap):
        return spec
    out: dict[str, str | None] = {_key(k): v for k, v in DEFAULT_COLUMN_MAP.items()}
    if spec is None:
        return ColumnMap(out)
    if not isinstance(spec, Mapping):
        path = Path(spec)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read column map: {exc}", field="column_map") from exc
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"{path}: column map is not valid JSON (line {exc.lineno}): {exc.msg}",
                field="column_map",
            ) from exc
        if not isinstance(spec, dict):
            raise InvalidInputError(f"{path}: column map must be a JSON object", field="column_map")
    options: Mapping[str, Any] = {}
    if isinstance(spec.get("columns"), Mapping):
        options, spec = spec, spec["columns"]
        extra = {k for k in options if not k.startswith("_")} - {
            "columns", "keep", "defaults", "accept_unclassified", *TABLE_KEYS}
        if extra:
            raise InvalidInputError(
                f"column map has unknown key {sorted(extra)[0]!r}; expected columns, keep, "
                "defaults, accept_unclassified, joins, values, compose", field="column_map",
            )
    for header, target in spec.items():
        if target not in (None, "") and target not in FIELDS:
            raise InvalidInputError(
                f"column map sends {header!r} to unknown field {target!r}; "
                f"known fields: {', '.join(FIELDS)}",
                field="column_map",
            )
        out[_key(str(header))] = target or None
    keep = options.get("keep", [])
    defaults = options.get("defaults", {})
    accept = options.get("accept_unclassified", False)
    if not (isinstance(keep, list) and all(isinstance(k, str) and k for k in keep)):
        raise InvalidInputError("column map 'keep' must be a list of headers", field="column_map")
    if not isinstance(defaults, Mapping):
        raise InvalidInputError("column map 'defaults' must be an object", field="column_map")
    if not isinstance(accept, bool):
        raise InvalidInputError("column map 'accept_unclassified' must be true or false",
                                field="column_map")
    for header in keep:
        out[_key(header)] = KEEP_PREFIX + header
    try:
        return ColumnMap(out, tuple(keep), dict(defaults), accept, table_spec(options))
    except ValueError as exc:
        raise InvalidInputError(f"column map: {exc}", field="column_map") from None
