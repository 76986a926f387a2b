"""Multi-file tabular sources: a column map's ``joins``, ``values`` and ``compose`` options.

Some exports split one record over several files (a résumé and its education, certificate
and language rows; a posting and its company row) and carry codes where the product reads
text. A column map may declare, in this order of application::

    "joins":   [{"file": "company.csv", "on": "recruitment_seq"},
                {"file": "resume_certificate.csv", "on": "resume_seq", "many": true}],
    "values":  {"job_code_seq1": {"디자인": "415200", "기타 직종": null}},
    "compose": {"title": ["모집직무", {"column": "check_box_keyword", "split": ";",
                                        "prefix": "직무"}],
                "desired_occupations": {"parts": [{"column": "job1"}, {"column": "job2"}],
                                        "sep": ";"}}

``joins`` files are read from the directory of each source file (so the same map serves
another export of the same layout); a join row adds its columns to the record (``many``: all
matching rows, each column's values joined with ``;``). ``values`` translates cells (a
value not listed stays as it is; ``null`` blanks it). ``compose`` builds a column from
literal text and column tokens, joined by spaces or ``sep`` (blank parts are skipped;
``3.0`` is written ``3``); a
composed column named like a canonical field feeds that field.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InvalidInputError, MalformedSourceError
from core.ingest.headers import map_headers
from core.ingest.records import SourceRecord

TABLE_KEYS: tuple[str, ...] = ("joins", "values", "compose")
_PART_KEYS = frozenset({"column", "split", "prefix", "suffix"})


@dataclass(frozen=True)
class Join:
    """One joined file: ``file`` (beside the source) matched on column ``on``."""

    file: str
    on: str
    many: bool = False

    def __post_init__(self) -> None:
        if not self.file or Path(self.file).name != self.file:
            raise ValueError(f"join file {self.file!r} must be a bare file name")
        if Path(self.file).suffix.lower() not in (".csv", ".parquet"):
            raise ValueError(f"join file {self.file!r} must be .csv or .parquet")
        if not self.on:
            raise ValueError(f"join {self.file!r} needs 'on' (the key column)")


@dataclass(frozen=True)
class TableSpec:
    """The multi-file options of a column map (all empty: a plain one-file source)."""

    joins: tuple[Join, ...] = ()
    values: dict[str, dict[str, str | None]] = field(default_factory=dict)
    compose: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    separators: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for col, table in self.values.items():
            if not isinstance(table, Mapping) or not all(
                    v is None or isinstance(v, str) for v in table.values()):
                raise ValueError(f"values for {col!r} must map source values to text or null")
        for name, parts in self.compose.items():
            if not parts:
                raise ValueError(f"compose {name!r} has no parts")
            for part in parts:
                if isinstance(part, str):
                    continue
                if not isinstance(part, Mapping) or "column" not in part \
                        or set(part) - _PART_KEYS:
                    raise ValueError(
                        f"compose {name!r}: a part is text or {{column, split, prefix, suffix}}, "
                        f"got {part!r}")

    @property
    def empty(self) -> bool:
        """True when the map declares no joins, values or compose."""
        return not (self.joins or self.values or self.compose)


def table_spec(options: Mapping[str, Any]) -> TableSpec:
    """The :class:`TableSpec` of a column map's object form (clear error when malformed)."""
    joins = options.get("joins", [])
    if not isinstance(joins, list) or not all(isinstance(j, Mapping) for j in joins):
        raise InvalidInputError("column map 'joins' must be a list of {file, on, many}",
                                field="column_map")
    values = options.get("values", {})
    compose = options.get("compose", {})
    if not isinstance(values, Mapping) or not isinstance(compose, Mapping):
        raise InvalidInputError("column map 'values' and 'compose' must be objects",
                                field="column_map")
    parsed = []
    for j in joins:
        extra = set(j) - {"file", "on", "many"}
        if extra:
            raise InvalidInputError(f"column map join has unknown key {sorted(extra)[0]!r}; "
                                    "expected file, on, many", field="column_map")
        parsed.append((str(j.get("file", "")), str(j.get("on", "")), bool(j.get("many", False))))
    try:
        return TableSpec(
            tuple(Join(*j) for j in parsed),
            {str(k): dict(v) if isinstance(v, Mapping) else v for k, v in values.items()},
            {str(k): tuple(v.get("parts") or ()) if isinstance(v, Mapping) else
             tuple(v) if isinstance(v, list) else () for k, v in compose.items()},
            {str(k): str(v.get("sep", " ")) for k, v in compose.items() if isinstance(v, Mapping)},
        )
    except ValueError as exc:
        raise InvalidInputError(f"column map: {exc}", field="column_map") from None


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or \
        (isinstance(v, str) and not v.strip())


def _token(v: Any) -> str:
    """A cell as a token: ``3.0`` -> ``3`` (codes read as floats by a spreadsheet)."""
    t = str(v).strip()
    if "." not in t:  # codes keep their leading zeros (KECO 026101)
        return t
    try:
        x = float(t)
    except ValueError:
        return t
    return str(int(x)) if math.isfinite(x) and x == int(x) and "e" not in t.lower() else t


def raw_rows(path: Path) -> tuple[list[str], Iterator[tuple[dict[str, Any], str | None]]]:
    """Headers and ``(row, problem)`` per data row of a CSV or Parquet file.

    ``problem`` is set for a CSV row with a different number of fields than the header.
    """
    source = str(path)
    if path.suffix.lower() == ".parquet":
        import polars as pl

        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars/arrow raise several types for a corrupt file
            raise MalformedSourceError(f"{source}: not a readable Parquet file: {exc}",
                                       field="source") from None
        return df.columns, ((row, None) for row in df.iter_rows(named=True))
    from core.ingest.csv_source import _decode

    try:
        text = _decode(path.read_bytes(), source)
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read: {exc.strerror or exc}",
                                field="source") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        headers = next(reader, None)
    except csv.Error as exc:
        raise MalformedSourceError(f"{source}: malformed CSV header: {exc}", field="source") from None
    if not headers:
        raise MalformedSourceError(f"{source}: empty CSV (no header row)", field="source")
    headers = [h.lstrip("\ufeff") for h in headers]

    def rows() -> Iterator[tuple[dict[str, Any], str | None]]:
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                raw: dict[str, Any] = dict(zip(headers, row, strict=False))
                if len(row) != len(headers):
                    raw["_extra_fields"] = row[len(headers):]
                    yield raw, (f"line {reader.line_num}: {len(row)} fields, header has "
                                f"{len(headers)}")
                else:
                    yield raw, None
        except csv.Error as exc:
            raise MalformedSourceError(f"{source}: malformed CSV at line {reader.line_num}: {exc}",
                                       field="source") from None
    return headers, rows()


class JoinedTable:
    """The rows of one source file with the spec's joins, values and compose applied."""

    def __init__(self, path: Path, spec: TableSpec) -> None:
        self.path = path
        self.spec = spec
        self._joined: list[tuple[Join, list[str], dict[str, list[dict[str, Any]]]]] = []
        for j in spec.joins:
            jpath = path.parent / j.file
            if not jpath.is_file():
                raise InvalidInputError(
                    f"{path}: the column map joins {j.file}, which is not beside it ({jpath})",
                    field="source")
            headers, rows = raw_rows(jpath)
            if j.on not in headers:
                raise InvalidInputError(f"{jpath}: no key column {j.on!r} to join on",
                                        field="column_map")
            index: dict[str, list[dict[str, Any]]] = {}
            for row, problem in rows:
                if problem is None and not _blank(row.get(j.on)):
                    index.setdefault(_token(row[j.on]), []).append(row)
            self._joined.append((j, [h for h in headers if h != j.on], index))

    def headers(self, base: list[str]) -> list[str]:
        """The source's headers followed by the joined and composed columns."""
        out = list(base)
        for _, cols, _ in self._joined:
            out += [c for c in cols if c not in out]
        out += [c for c in self.spec.compose if c not in out]
        return out

    def apply(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``raw`` with joined columns (source columns win), translated values, composed ones."""
        row = dict(raw)
        for j, cols, index in self._joined:
            key = row.get(j.on)
            hits = index.get(_token(key), []) if not _blank(key) else []
            if not j.many:
                hits = hits[:1]
            for c in cols:
                vals = [_token(h[c]) for h in hits if not _blank(h.get(c))]
                if _blank(row.get(c)):
                    row[c] = ";".join(vals) if vals else None
        for col, table in self.spec.values.items():
            v = row.get(col)
            if not _blank(v) and _token(v) in table:
                row[col] = table[_token(v)]
        for name, parts in self.spec.compose.items():
            row[name] = self._compose(parts, row, self.spec.separators.get(name, " "))
        return row

    @staticmethod
    def _compose(parts: tuple[Any, ...], row: Mapping[str, Any], sep: str) -> str | None:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            v = row.get(part["column"])
            if _blank(v):
                continue
            items = str(v).split(part["split"]) if part.get("split") else [str(v)]
            out += [f"{part.get('prefix', '')}{_token(i)}{part.get('suffix', '')}"
                    for i in items if i.strip()]
        text = sep.join(x for x in out if x)
        # literal text alone (every column part blank) says nothing about the record
        has_value = any(not isinstance(p, str) and not _blank(row.get(p["column"])) for p in parts)
        return text if has_value or all(isinstance(p, str) for p in parts) else None


def read_table(path: Path, mapping: dict[str, str | None], spec: TableSpec, *,
               id_fields: tuple[str, ...] = ("posting_id",)) -> Iterator[SourceRecord]:
    """Records of one CSV/Parquet file with ``spec`` applied, fields named through ``mapping``."""
    table = JoinedTable(path, spec)
    base, rows = raw_rows(path)
    headers = table.headers(base)
    columns = map_headers(headers, mapping, str(path), id_fields)
    for index, (raw, problem) in enumerate(rows):
        if problem is not None:
            yield SourceRecord(str(path), index, None, raw, reject=("malformed_row", problem))
            continue
        row = table.apply(raw)
        yield SourceRecord(str(path), index, {f: row.get(headers[i]) for i, f in columns.items()},
                           row)
