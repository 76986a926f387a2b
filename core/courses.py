"""The canonical training-course schema (HRD-Net / 국민내일배움카드 courses), used by every package.

A course table is a ``polars.DataFrame`` with exactly the columns of :data:`COURSE_SCHEMA`;
:func:`validate_courses` checks the invariants ingestion guarantees. One row is one *run*
of a course: HRD-Net's ``trprId`` (the course) plus ``trprDegr`` (its 회차), so
``course_id`` is ``f"{trpr_id}_{trpr_degr}"``.

NCS ↔ KECO. Courses are classified by NCS (국가직무능력표준: 8-digit ``ncsCd``, 대분류 =
first two digits), postings by KECO (6-digit occupation, 3-digit mid group). The bridge is
``core/data/ncs_keco.csv``: each of the 112 KECO mid groups is assigned to the one of the 24
NCS 대분류 whose name covers it (e.g. KECO 098 용접 → NCS 16 재료, 024 소프트웨어 → 20
정보통신). It is built from the two classifications' names only, so it is coarse: an NCS
대분류 stands for several KECO mid groups, and the encoder separates them.
"""

from __future__ import annotations

import csv
import re
from functools import cache
from importlib import resources

import polars as pl

from core.errors import InvalidInputError

# HRD-Net 훈련구분 (trainTargetCd / traingMthCd / srchTraGbn) -> canonical training type
TRAINING_TYPE_CODES: dict[str, str] = {
    "M1001": "classroom",  # 일반과정
    "M1005": "online",  # 인터넷과정
    "M1010": "blended",  # 혼합과정(BL)
    "M1014": "blended",  # 스마트혼합훈련
}
TRAINING_TYPE_NAMES: dict[str, str] = {
    "일반": "classroom", "일반과정": "classroom", "집체": "classroom", "classroom": "classroom",
    "인터넷": "online", "인터넷과정": "online", "원격": "online", "online": "online",
    "혼합": "blended", "혼합과정": "blended", "혼합과정(BL)": "blended",
    "스마트혼합훈련": "blended", "blended": "blended",
}
TRAINING_TYPES: tuple[str, ...] = ("classroom", "online", "blended")
TRAINING_TYPE_LABELS: dict[str, str] = {"classroom": "일반", "online": "인터넷", "blended": "혼합"}

COURSE_SCHEMA: dict[str, pl.DataType] = {
    "course_id": pl.Utf8(),  # trprId + "_" + trprDegr
    "trpr_id": pl.Utf8(),
    "trpr_degr": pl.Int32(),
    "title": pl.Utf8(),
    "institution": pl.Utf8(),  # subTitle / inoNm
    "institution_id": pl.Utf8(),  # trainstCstId
    "address": pl.Utf8(),  # as written: "서울 강남구" (list) or addr1 + addr2 (detail)
    "sido": pl.Utf8(),
    "sigungu": pl.Utf8(),
    "lat": pl.Float64(),
    "lng": pl.Float64(),
    "ncs_code": pl.Utf8(),  # ncsCd, 8 digits (shorter prefixes allowed: 대/중/소분류)
    "ncs_name": pl.Utf8(),  # ncsNm (detail)
    "start_date": pl.Date(),  # traStartDate
    "end_date": pl.Date(),  # traEndDate
    "training_type": pl.Utf8(),  # TRAINING_TYPES
    "online": pl.Boolean(),  # training_type == "online": no distance rule applies
    "cost": pl.Int64(),  # courseMan 수강비 (KRW)
    "real_cost": pl.Int64(),  # realMan 실제 훈련비
    "subsidy": pl.Int64(),  # perTrco 정부지원금 (detail)
    "self_pay": pl.Int64(),  # cost after subsidy: 본인부담액, else cost - subsidy
    "capacity": pl.Int32(),  # yardMan 정원
    "enrolled": pl.Int32(),  # regCourseMan 수강신청 인원
    "employment_rate_3m": pl.Float64(),  # eiEmplRate3, % (null: not yet measured)
    "employment_rate_6m": pl.Float64(),  # eiEmplRate6
    "satisfaction": pl.Float64(),  # stdgScor, 0..100
    "training_hours": pl.Int32(),  # trtm (detail)
    "target": pl.Utf8(),  # trainTarget, e.g. 국민내일배움카드(일반)
    "certificate": pl.Utf8(),  # certificates the course prepares for, ", "-joined
    "description": pl.Utf8(),  # contents + detail text
}
REQUIRED_COURSE_COLUMNS: tuple[str, ...] = (
    "course_id", "trpr_id", "trpr_degr", "title", "institution", "sido", "lat", "lng",
    "ncs_code", "start_date", "training_type", "online",
)

COURSE_REJECT_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Utf8(),
    "record_index": pl.Int64(),
    "course_id": pl.Utf8(),
    "reason": pl.Utf8(),
    "detail": pl.Utf8(),
    "raw": pl.Utf8(),
}

_NCS = re.compile(r"^\d{2}(?:\d{2}){0,3}$")
_CERT_SPLIT = re.compile(r"\s*(?:[,/·ㆍ;|\n]|\s및\s)\s*")


def empty_courses() -> pl.DataFrame:
    """An empty course frame with the canonical schema."""
    return pl.DataFrame(schema=COURSE_SCHEMA)


def course_id(trpr_id: str, trpr_degr: int) -> str:
    """The canonical id of one run of a course."""
    return f"{trpr_id}_{int(trpr_degr)}"


def validate_courses(df: pl.DataFrame) -> None:
    """Raise :class:`InvalidInputError` unless ``df`` satisfies the canonical course invariants."""
    if dict(df.schema) != COURSE_SCHEMA:
        raise InvalidInputError(
            "course table does not have the canonical schema: "
            f"expected {list(COURSE_SCHEMA.items())}, got {list(df.schema.items())}"
        )
    checks = {
        "training_type": ~pl.col("training_type").is_in(list(TRAINING_TYPES)),
        "online": pl.col("online") != (pl.col("training_type") == "online"),
        "lat": ~pl.col("lat").is_between(33.0, 38.7),
        "lng": ~pl.col("lng").is_between(124.5, 131.0),
        "ncs_code": ~pl.col("ncs_code").str.contains(_NCS.pattern),
        "end_date": pl.col("end_date") < pl.col("start_date"),
        "capacity": pl.col("capacity") < 0,
        "enrolled": pl.col("enrolled") < 0,
        "cost": pl.col("cost") < 0,
        "self_pay": pl.col("self_pay") < 0,
    }
    counts = df.select(
        [pl.col(c).null_count().alias(f"null:{c}") for c in REQUIRED_COURSE_COLUMNS]
        + [(pl.col("course_id").n_unique() != pl.len()).alias("dup")]
        + [bad.fill_null(False).sum().alias(f"bad:{c}") for c, bad in checks.items()]
    ).row(0, named=True)
    for col in REQUIRED_COURSE_COLUMNS:
        if counts[f"null:{col}"]:
            raise InvalidInputError(f"column {col!r} has {counts[f'null:{col}']} null values", field=col)
    if df.height and counts["dup"]:
        raise InvalidInputError("course_id values are not unique", field="course_id")
    for col in checks:
        if counts[f"bad:{col}"]:
            raise InvalidInputError(f"column {col!r} has {counts[f'bad:{col}']} invalid values", field=col)


def split_certificates(text: str | None) -> list[str]:
    """Certificate names in a free list ("지게차운전기능사, 용접기능사 / 전기기능사"), in order."""
    if not text:
        return []
    out: list[str] = []
    for part in _CERT_SPLIT.split(str(text)):
        name = part.strip().strip("\"'").removesuffix(" 소지자").removesuffix(" 우대").strip()
        if name[:1] in "([" and name[-1:] in ")]":  # a wrapped name "(지게차운전기능사)"
            name = name[1:-1].strip()
        if name and name not in out:
            out.append(name)
    return out


def certificate_key(name: str) -> str:
    """The comparison key of a certificate name (spaces and case ignored)."""
    return "".join(name.split()).lower()


# -- NCS <-> KECO ----------------------------------------------------------------------


@cache
def _ncs_table() -> tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, str]]:
    names: dict[str, str] = {}
    mids: dict[str, tuple[str, ...]] = {}
    major_of_mid: dict[str, str] = {}
    with resources.files("core").joinpath("data", "ncs_keco.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            major = row["ncs_major"]
            names[major] = row["ncs_major_name"]
            mids[major] = tuple(row["keco_mids"].split("|"))
            for m in mids[major]:
                major_of_mid[m] = major
    return names, mids, major_of_mid


def ncs_major_names() -> dict[str, str]:
    """NCS 대분류 code -> name (24 entries)."""
    return dict(_ncs_table()[0])


def keco_mids_for_ncs(ncs_code: str | None) -> tuple[str, ...]:
    """The KECO mid groups an NCS code's 대분류 covers (empty for an unknown code)."""
    if not ncs_code:
        return ()
    return _ncs_table()[1].get(str(ncs_code)[:2], ())


def ncs_major_for_keco_mid(mid_code: str) -> str | None:
    """The NCS 대분류 a KECO mid group belongs to."""
    return _ncs_table()[2].get(mid_code)


_TITLE_TAGS = re.compile(r"\[[^\]]{0,20}\]|\((?:산대특|국기|NCS 기반)\)")
MAX_COURSE_TEXT_CHARS = 600


def course_text(row) -> str:
    """The text the posting encoder sees for a course: title, NCS name, description lines
    (section headers such as ``[훈련내용]`` dropped) and certificates, capped like postings."""
    title = " ".join(_TITLE_TAGS.sub(" ", str(row.get("title") or "")).split())
    parts = [p for p in (title, row.get("ncs_name")) if p]
    for line in str(row.get("description") or "").splitlines():
        line = re.sub(r"^\s*(?:\[[^\]]*\]|[-·•*]+)\s*", "", line).strip()
        if len(line) >= 2 and line not in parts:
            parts.append(line)
    if row.get("certificate"):
        parts.append(str(row["certificate"]))
    return " . ".join(parts)[:MAX_COURSE_TEXT_CHARS]


def conform_courses(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with exactly the canonical course columns, in order, cast to their types
    (missing optional columns are nulls; a missing required column is an error)."""
    missing = [c for c in REQUIRED_COURSE_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidInputError(f"course table lacks required columns: {missing}", field=missing[0])
    exprs = [pl.col(n).cast(t, strict=True) if n in df.columns else pl.lit(None, dtype=t).alias(n)
             for n, t in COURSE_SCHEMA.items()]
    try:
        return df.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise InvalidInputError(f"course table has a column of the wrong type: {exc}") from exc
