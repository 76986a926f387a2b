"""CSV exports (e.g. Worknet's Korean-header exports) as ingestion records.

Files are read as UTF-8 (with or without BOM) or, failing that, CP949 (what Korean Excel
writes). Every data row is one record; a row with a different number of fields than the
header is still a record and is rejected as ``malformed_row``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from core.errors import InvalidInputError, MalformedSourceError
from core.ingest.headers import map_headers
from core.ingest.records import SourceRecord

csv.field_size_limit(16 * 1024 * 1024)  # long posting texts


def _decode(data: bytes, source: str) -> str:
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise MalformedSourceError(f"{source}: neither UTF-8 nor CP949 text", field="source")


def read_csv(
    path: Path, mapping: dict[str, str | None], *, id_fields: tuple[str, ...] = ("posting_id",)
) -> Iterator[SourceRecord]:
    """Records of one CSV file, fields named through ``mapping``."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read: {exc.strerror or exc}", field="source") from exc
    text = _decode(data, source)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise MalformedSourceError(f"{source}: NUL byte at line {line}: not a text CSV", field="source")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        headers = next(reader, None)
        if not headers:
            raise MalformedSourceError(f"{source}: empty CSV (no header row)", field="source")
        columns = map_headers(headers, mapping, source, id_fields)
        index = 0
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line, not a record
            raw = dict(zip(headers, row, strict=False))
            if len(row) != len(headers):
                raw["_extra_fields"] = row[len(headers):]
                yield SourceRecord(
                    source, index, None, raw,
                    reject=("malformed_row", f"line {reader.line_num}: {len(row)} fields, "
                            f"header has {len(headers)}"),
                )
            else:
                fields = {field: row[i] for i, field in columns.items()}
                yield SourceRecord(source, index, fields, raw)
            index += 1
    except csv.Error as exc:
        raise MalformedSourceError(
            f"{source}: malformed CSV at line {reader.line_num}: {exc}", field="source"
        ) from None
