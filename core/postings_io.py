"""Reading a postings file: the one reader every command uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from core.errors import InvalidInputError, MalformedSourceError
from core.schema import POSTING_SCHEMA, conform, validate_postings

SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson", ".json")
_TEXT_COLUMNS = {c: pl.Utf8 for c, t in POSTING_SCHEMA.items() if t == pl.Utf8()}


def read_postings(path: str | Path, *, canonical: bool = True, keep: Sequence[str] = ()) -> pl.DataFrame:
    """A postings table from ``.parquet``, ``.csv``, ``.jsonl``/``.ndjson`` or ``.json``.

    CSV columns that the canonical schema types as text are read as text (codes such as
    ``023100`` keep their leading zero); the others are inferred (ISO dates parsed). With ``canonical`` (default) the table is conformed to the
    canonical schema and validated; without it the columns are returned as read (training
    needs only a few of them). ``keep``: extra columns kept beside the canonical ones (a
    label column, for instance) when the file has them.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"postings file not found: {p}", field="postings")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(
            f"unsupported postings format {suffix!r} (parquet, csv, jsonl, json)", field="postings"
        )
    try:
        if suffix == ".parquet":
            df = pl.read_parquet(p)
        elif suffix == ".csv":
            df = pl.read_csv(p, try_parse_dates=True, schema_overrides=_TEXT_COLUMNS)
        elif suffix == ".json":
            df = pl.read_json(p)
        else:
            df = pl.read_ndjson(p)
    except pl.exceptions.PolarsError as exc:
        raise MalformedSourceError(f"cannot read {p}: {exc}") from exc
    if not canonical:
        return df
    extra = df.select([c for c in keep if c in df.columns and c not in POSTING_SCHEMA])
    out = conform(df)
    validate_postings(out)
    return out.hstack(extra) if extra.width else out
