"""Parquet files (canonical posting tables or exports) as ingestion records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

from core.errors import InvalidInputError, MalformedSourceError
from core.ingest.headers import map_headers
from core.ingest.records import SourceRecord


def read_parquet(
    path: Path, mapping: dict[str, str | None], *, id_fields: tuple[str, ...] = ("posting_id",)
) -> Iterator[SourceRecord]:
    """Records of one Parquet file, columns named through ``mapping``."""
    source = str(path)
    try:
        df = pl.read_parquet(path)
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read: {exc.strerror or exc}", field="source") from exc
    except Exception as exc:  # polars/arrow raise several types for a corrupt file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MalformedSourceError(f"{source}: not a readable Parquet file: {first}", field="source") from None
    columns = map_headers(df.columns, mapping, source, id_fields)
    names = df.columns
    for index, row in enumerate(df.iter_rows()):
        raw = dict(zip(names, row, strict=True))
        fields = {field: row[i] for i, field in columns.items()}
        yield SourceRecord(source, index, fields, raw)
