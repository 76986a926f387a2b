"""The ``postings`` collection kind: job postings searched with :data:`core.rules.POSTING_RULES`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from core.errors import InvalidInputError
from core.rules import CAREER_CODES, POSTING_RULES, posting_rule_columns
from core.schema import POSTING_SCHEMA, conform, validate_postings
from workers.engine.collection import CollectionKind, register_kind
from workers.engine.types import Recommendation

POSTINGS = "postings"

_RULE_COLUMNS = {
    "education": (np.int8, ()),
    "career": (np.int8, ()),
    "min_years": (np.int16, ()),
    "closes_days": (np.int32, ()),
    "capital": (np.bool_, ()),
}


def _encode(df: pl.DataFrame) -> dict[str, np.ndarray]:
    return posting_rule_columns(
        df["min_education_level"].to_list(),
        df["career"].to_list(),
        df["min_career_years"].to_list(),
        df["closes_on"].to_list(),
        df["sido"].to_list(),
    )


def _query_columns(item: Mapping[str, object]) -> dict[str, np.ndarray]:
    return posting_rule_columns(
        [item["min_education_level"]],
        [item["career"]],
        [item.get("min_career_years")],
        [None],  # a query's own expiry plays no part
        [item["sido"]],
    )


def check_query_posting(posting: Mapping[str, object]) -> None:
    """Raise :class:`InvalidInputError` naming the field if ``posting`` cannot be a query."""
    for f in ("lat", "lng", "sido", "min_education_level", "career"):
        if posting.get(f) is None:
            raise InvalidInputError(f"inline posting lacks {f!r}", field=f)
    for f in ("lat", "lng"):
        if not np.isfinite(float(posting[f])):
            raise InvalidInputError(f"posting lacks a valid {f!r}", field=f)
    if posting["career"] not in CAREER_CODES:
        raise InvalidInputError(f"unknown career {posting['career']!r}", field="career")
    if not 0 <= int(posting["min_education_level"]) <= 7:
        raise InvalidInputError("min_education_level must be in 0..7", field="min_education_level")
    if not 0 <= int(posting.get("min_career_years") or 0) <= 60:
        raise InvalidInputError("min_career_years must be in 0..60", field="min_career_years")


def _result(item_id: str, score: float, distance_km: float, labels: tuple) -> Recommendation:
    title, company, region = labels
    return Recommendation(item_id, score, distance_km, title, company, region)


POSTING_KIND: CollectionKind[Recommendation] = register_kind(
    CollectionKind(
        name=POSTINGS,
        id_column="posting_id",
        schema=POSTING_SCHEMA,
        conform=conform,
        validate=validate_postings,
        rules=POSTING_RULES,
        rule_columns=_RULE_COLUMNS,
        encode=_encode,
        labels=("title", "company", "region"),
        query_columns=_query_columns,
        check_item=check_query_posting,
        result=_result,
    )
)
