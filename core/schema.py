"""The canonical posting schema, used by every package.

A posting table is a ``polars.DataFrame`` with exactly the columns of
:data:`POSTING_SCHEMA` (extras may be null). :func:`conform` coerces a frame to it and
:func:`validate_postings` checks the invariants ingestion guarantees.
"""

from __future__ import annotations

import polars as pl

from core.errors import InvalidInputError

# Education levels as Worknet orders them; 0 means "no requirement" (학력무관).
EDUCATION_LEVELS: dict[int, str] = {
    0: "학력무관",
    1: "초졸이하",
    2: "중졸",
    3: "고졸",
    4: "대졸(2~3년)",
    5: "대졸(4년)",
    6: "석사",
    7: "박사",
}
EDUCATION_CODES: dict[str, int] = {v: k for k, v in EDUCATION_LEVELS.items()}

# career: entry 신입, experienced 경력, any 관계없음 / 신입·경력
CAREER_VALUES: tuple[str, ...] = ("entry", "experienced", "any")
WAGE_TYPES: tuple[str, ...] = ("hourly", "daily", "monthly", "yearly")
EMPLOYMENT_TYPES: tuple[str, ...] = (
    "permanent",  # 기간의 정함이 없는 근로계약
    "permanent_part_time",  # 기간의 정함이 없는 근로계약(시간(선택)제)
    "fixed_term",  # 기간의 정함이 있는 근로계약
    "fixed_term_part_time",  # 기간의 정함이 있는 근로계약(시간(선택)제)
    "dispatch",  # 파견근로
    "daily",  # 일용직
    "other",
)

# 서울, 경기, 인천: the capital area uses the smaller distance radius.
CAPITAL_AREA_SIDO: frozenset[str] = frozenset({"서울특별시", "경기도", "인천광역시"})

POSTING_SCHEMA: dict[str, pl.DataType] = {
    "posting_id": pl.Utf8(),
    "company": pl.Utf8(),
    "title": pl.Utf8(),
    "description": pl.Utf8(),
    # six-digit KECO; null for a source that classifies no occupation (accept_unclassified)
    "occupation_code": pl.Utf8(),
    "region": pl.Utf8(),
    "sido": pl.Utf8(),  # resolved province (full name), drives the capital-area radius
    # resolved 시/군/구 (a 시 with 구 such as 수원시 names the 시); null for 세종 and for
    # locations resolved only to their province
    "sigungu": pl.Utf8(),
    "lat": pl.Float64(),
    "lng": pl.Float64(),
    "min_education_level": pl.Int8(),
    "max_education_level": pl.Int8(),
    "career": pl.Utf8(),
    "min_career_years": pl.Int16(),
    "wage_type": pl.Utf8(),
    "wage_min": pl.Int64(),
    "wage_max": pl.Int64(),
    "monthly_wage": pl.Int64(),
    "employment_type": pl.Utf8(),
    "registered_on": pl.Date(),
    "closes_on": pl.Date(),
    # optional extras
    "holiday_type": pl.Utf8(),
    "major": pl.Utf8(),
    "certificates": pl.Utf8(),
    "preferences": pl.Utf8(),
    "near_station": pl.Utf8(),
    "work_hours": pl.Utf8(),
}

REQUIRED_COLUMNS: tuple[str, ...] = (
    "posting_id",
    "company",
    "title",
    "description",
    "region",
    "sido",
    "lat",
    "lng",
    "min_education_level",
    "max_education_level",
    "career",
    "min_career_years",
    "employment_type",
    "registered_on",
)
NULLABLE_COLUMNS: tuple[str, ...] = tuple(c for c in POSTING_SCHEMA if c not in REQUIRED_COLUMNS)

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Utf8(),  # file name or URL the record came from
    "record_index": pl.Int64(),  # position of the record inside its source
    "posting_id": pl.Utf8(),  # may be null (that is one of the reasons)
    "reason": pl.Utf8(),  # machine-readable reason code, e.g. "unknown_region"
    "detail": pl.Utf8(),  # human-readable explanation
    "raw": pl.Utf8(),  # the record as read, JSON-encoded, so nothing is lost
}


def empty_postings() -> pl.DataFrame:
    """An empty frame with the canonical schema."""
    return pl.DataFrame(schema=POSTING_SCHEMA)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Return ``df`` with exactly the canonical columns, in order, cast to their types.

    Missing optional columns are added as nulls; a missing required column is an error.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidInputError(f"posting table lacks required columns: {missing}", field=missing[0])
    exprs = []
    for name, dtype in POSTING_SCHEMA.items():
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype, strict=True))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    try:
        return df.select(exprs)
    except pl.exceptions.PolarsError as exc:  # bad cast: name the column polars names
        raise InvalidInputError(f"posting table has a column of the wrong type: {exc}") from exc


def validate_postings(df: pl.DataFrame) -> None:
    """Raise :class:`InvalidInputError` unless ``df`` satisfies the canonical invariants."""
    if dict(df.schema) != POSTING_SCHEMA:
        raise InvalidInputError(
            "posting table does not have the canonical schema: "
            f"expected {list(POSTING_SCHEMA.items())}, got {list(df.schema.items())}"
        )
    checks = {
        "career": ~pl.col("career").is_in(list(CAREER_VALUES)),
        "wage_type": pl.col("wage_type").is_not_null()
        & ~pl.col("wage_type").is_in(list(WAGE_TYPES)),
        "employment_type": ~pl.col("employment_type").is_in(list(EMPLOYMENT_TYPES)),
        "min_education_level": ~pl.col("min_education_level").is_between(0, 7),
        "max_education_level": ~pl.col("max_education_level").is_between(0, 7)
        | (pl.col("max_education_level") < pl.col("min_education_level")),
        "lat": ~pl.col("lat").is_between(33.0, 38.7),
        "lng": ~pl.col("lng").is_between(124.5, 131.0),
        "occupation_code": ~pl.col("occupation_code").str.contains(r"^\d{6}$"),
        "min_career_years": pl.col("min_career_years") < 0,
    }
    # one pass over the frame: the online path validates single inline postings
    counts = df.select(
        [pl.col(c).null_count().alias(f"null:{c}") for c in REQUIRED_COLUMNS]
        + [(pl.col("posting_id").n_unique() != pl.len()).alias("dup:posting_id")]
        + [bad.fill_null(False).sum().alias(f"bad:{c}") for c, bad in checks.items()]
    ).row(0, named=True)
    for col in REQUIRED_COLUMNS:
        if counts[f"null:{col}"]:
            raise InvalidInputError(
                f"column {col!r} has {counts[f'null:{col}']} null values", field=col
            )
    if df.height and counts["dup:posting_id"]:
        raise InvalidInputError("posting_id values are not unique", field="posting_id")
    for col in checks:
        if counts[f"bad:{col}"]:
            raise InvalidInputError(
                f"column {col!r} has {counts[f'bad:{col}']} invalid values", field=col
            )
