"""The ingestion pipeline: sources -> canonical postings + rejects, with conserved counts.

Every record read ends in exactly one of ``postings`` or ``rejects`` (with a reason code
from :data:`core.ingest.normalise.REJECT_REASONS` and the raw record as JSON), so
``read == accepted + rejected``. Duplicate ids: the first record with an id is kept and
every later one is rejected as ``duplicate_id``, whatever became of the first.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from core.errors import InvalidInputError, JobrecError, MalformedSourceError
from core.ingest.columns import KEEP_PREFIX, ColumnMap, load_map
from core.ingest.normalise import Normaliser, Reject
from core.ingest.records import SourceRecord
from core.ingest.worknet_xml import (
    DETAIL_ROOTS,
    XmlItem,
    expand_sources,
    read_xml,
    worknet_fields,
)
from core.schema import POSTING_SCHEMA, REJECT_SCHEMA, validate_postings
from core.text import scrub_pii

FORMATS: tuple[str, ...] = ("worknet-xml", "csv", "parquet", "work24-api")
_SUFFIX = {"worknet-xml": ".xml", "csv": ".csv", "parquet": ".parquet"}


@dataclass(frozen=True)
class IngestResult:
    """Accepted postings (canonical schema), rejects (REJECT_SCHEMA) and counts.

    ``counts``: ``read``, ``accepted``, ``rejected`` and ``by_reason`` (reason -> count).
    """

    postings: pl.DataFrame
    rejects: pl.DataFrame
    counts: dict[str, Any] = field(default_factory=dict)

    def write(self, out: Path | str, rejects_out: Path | str) -> None:
        """Write both tables as Parquet (parent directories are created)."""
        for frame, path in ((self.postings, Path(out)), (self.rejects, Path(rejects_out))):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.write_parquet(path)
            except OSError as exc:
                raise InvalidInputError(
                    f"{path}: cannot write: {exc.strerror or exc}", field="out"
                ) from exc


def _scrub_raw(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_pii(value)
    if isinstance(value, Mapping):
        return {str(k): _scrub_raw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_raw(v) for v in value]
    return value


class Ingestor:
    """Collects records from any reader; :meth:`result` builds the two tables.

    A record whose address only the batch's other postings can settle waits until
    :meth:`result`, which retries it against everything read (it then follows the others
    in the output). ``keep`` names extra text columns copied from the records' ``keep:``
    fields after the canonical ones.
    """

    def __init__(
        self,
        *,
        ref_date: dt.date | None = None,
        normaliser: Normaliser | None = None,
        keep: tuple[str, ...] = (),
    ) -> None:
        self.normaliser = normaliser or Normaliser(ref_date=ref_date)
        self.keep = keep
        self._rows: list[dict[str, Any]] = []
        self._kept: list[dict[str, Any]] = []
        self._rejects: list[dict[str, Any]] = []
        self._pending: list[tuple[SourceRecord, str]] = []
        self._seen: set[str] = set()
        self.read = 0
        self.settled = 0  # postings whose region only the batch's evidence settled

    def add(self, rec: SourceRecord) -> None:
        """Normalise one record into a posting or a reject."""
        self.read += 1
        if rec.reject is not None:
            self._reject(rec, None, *rec.reject)
            return
        fields = rec.fields or {}
        pid = fields.get("posting_id")
        pid = str(pid).strip() if pid is not None else ""
        if pid:
            if pid in self._seen:
                self._reject(rec, pid, "duplicate_id", f"posting id {pid!r} was already read")
                return
            self._seen.add(pid)
        try:
            self._accept(fields, self.normaliser.row(fields))
        except Reject as rej:
            if rej.pending:
                self._pending.append((rec, pid))
            else:
                self._reject(rec, pid or None, rej.reason, rej.detail)

    def _accept(self, fields: dict[str, Any], row: dict[str, Any]) -> None:
        self._rows.append(row)
        if self.keep:
            self._kept.append({k: _kept_text(fields.get(KEEP_PREFIX + k)) for k in self.keep})

    def _settle_pending(self) -> None:
        pending, self._pending = self._pending, []
        for rec, pid in pending:
            fields = rec.fields or {}
            try:
                self._accept(fields, self.normaliser.row(fields, settle=True))
                self.settled += 1
            except Reject as rej:
                self._reject(rec, pid or None, rej.reason, rej.detail)

    def reject(self, rec: SourceRecord, posting_id: str | None, reason: str, detail: str) -> None:
        """Count ``rec`` as read and rejected without normalising it."""
        self.read += 1
        self._reject(rec, posting_id, reason, detail)

    def _reject(self, rec: SourceRecord, pid: str | None, reason: str, detail: str) -> None:
        self._rejects.append(
            {
                "source": rec.source,
                "record_index": rec.index,
                "posting_id": pid,
                "reason": reason,
                "detail": scrub_pii(detail),
                # PII is scrubbed here too: the rejects file is stored like the postings
                "raw": json.dumps(_scrub_raw(rec.raw), ensure_ascii=False, default=str),
            }
        )

    def result(self) -> IngestResult:
        """The tables and counts; the postings are validated against the canonical schema."""
        self._settle_pending()
        postings = pl.DataFrame(self._rows, schema=POSTING_SCHEMA, orient="row")
        validate_postings(postings)
        if self.keep:
            kept = pl.DataFrame(self._kept, schema={k: pl.Utf8() for k in self.keep}, orient="row")
            postings = postings.hstack(kept)
        rejects = pl.DataFrame(self._rejects, schema=REJECT_SCHEMA, orient="row")
        by_reason = dict(sorted(Counter(r["reason"] for r in self._rejects).items()))
        counts = {
            "read": self.read,
            "accepted": postings.height,
            "rejected": rejects.height,
            "by_reason": by_reason,
        }
        if counts["read"] != counts["accepted"] + counts["rejected"]:  # pragma: no cover
            raise JobrecError(f"ingestion lost records: {counts}")
        return IngestResult(postings, rejects, counts)


def _kept_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


# -- Worknet XML: join list items with details ---------------------------------------------


_PROLOG = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>|\s)*", re.DOTALL)
_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")


def _root_tag(path: Path) -> str:
    """The root element's name, read from the file's start without parsing all of it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read: {exc.strerror or exc}", field="source") from exc
    head = head.removeprefix(b"\xef\xbb\xbf")
    m = _ROOT.match(head, _PROLOG.match(head).end())
    if not m:
        raise MalformedSourceError(f"{path}: malformed XML at line 1: no root element", field="source")
    return m.group(1).decode("ascii")


def worknet_records(
    list_items: Iterable[XmlItem], detail_items: Iterable[XmlItem], ing: Ingestor
) -> Iterator[SourceRecord]:
    """Join details onto list items by wantedAuthNo; yields one record per list item.

    Details are consumed first. A detail without an id, a second detail for one id, and a
    detail whose id no list item has are rejected through ``ing`` (missing_id,
    duplicate_id, detail_without_list).
    """
    details: dict[str, XmlItem] = {}
    for item in detail_items:
        pid = item.fields.get("wantedAuthNo", "").strip()
        rec = SourceRecord(item.source, item.index, None, {"detail": item.fields})
        if not pid:
            ing.reject(rec, None, "missing_id", "detail response without wantedAuthNo")
        elif pid in details:
            ing.reject(rec, pid, "duplicate_id", f"second detail response for {pid!r}")
        else:
            details[pid] = item
    for item in list_items:
        pid = item.fields.get("wantedAuthNo", "").strip()
        det = details.pop(pid, None) if pid else None
        raw: dict[str, Any] = {"list": item.fields}
        if det is not None:
            raw["detail"] = det.fields
            raw["detail_source"] = f"{det.source}#{det.index}"
        yield SourceRecord(
            item.source, item.index, worknet_fields(item.fields, det.fields if det else None), raw
        )
    for pid, det in details.items():
        ing.reject(
            SourceRecord(det.source, det.index, None, {"detail": det.fields}),
            pid,
            "detail_without_list",
            f"detail response for {pid!r} has no list item (no registration date or wage type)",
        )


def _xml_items(files: list[Path], kinds: tuple[str, ...]) -> Iterator[XmlItem]:
    for path in files:
        for item in read_xml(path):
            if item.kind in kinds:
                yield item


def _ingest_xml(files: list[Path], ing: Ingestor) -> None:
    # details first, so list files stream through without being held in memory; files
    # with other roots go with the lists, where read_xml raises for error responses
    detail_files, list_files = [], []
    for path in files:
        (detail_files if _root_tag(path) in DETAIL_ROOTS else list_files).append(path)
    for rec in worknet_records(
        _xml_items(list_files, ("list",)), _xml_items(detail_files, ("detail",)), ing
    ):
        ing.add(rec)


def ingest(
    sources: Iterable[Path | str],
    fmt: str,
    *,
    column_map: Mapping[str, Any] | Path | str | ColumnMap | None = None,
    ref_date: dt.date | None = None,
    api_key: str | None = None,
    api_url: str | None = None,
    detail_url: str | None = None,
    max_pages: int | None = None,
    display: int = 100,
) -> IngestResult:
    """Read ``sources`` of format ``fmt`` (one of :data:`FORMATS`) into an IngestResult.

    ``column_map`` (CSV/Parquet) lays a mapping over the default header mapping (see
    :mod:`core.ingest.columns` for its keep/defaults/accept_unclassified options);
    ``ref_date`` fixes the century of two-digit years (default today). ``work24-api``
    fetches from the live API instead of reading ``sources`` (``api_key`` required).
    """
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", field="format")
    # Ingestion builds millions of small acyclic objects; the cyclic GC's repeated full
    # scans of them cost about a third of the run, so it is paused meanwhile.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _ingest(
            sources, fmt, column_map=column_map, ref_date=ref_date, api_key=api_key,
            api_url=api_url, detail_url=detail_url, max_pages=max_pages, display=display,
        )
    finally:
        if was_enabled:
            gc.enable()


def _ingest(
    sources: Iterable[Path | str],
    fmt: str,
    *,
    column_map: Mapping[str, Any] | Path | str | ColumnMap | None,
    ref_date: dt.date | None,
    api_key: str | None,
    api_url: str | None,
    detail_url: str | None,
    max_pages: int | None,
    display: int,
) -> IngestResult:
    spec = load_map(column_map) if fmt in ("csv", "parquet") else None
    if spec is not None:
        ing = Ingestor(
            normaliser=Normaliser(ref_date=ref_date, defaults=spec.defaults,
                                  accept_unclassified=spec.accept_unclassified),
            keep=spec.keep,
        )
    else:
        ing = Ingestor(ref_date=ref_date)
    if fmt == "work24-api":
        from core.ingest.work24_api import Work24Client

        options: dict[str, Any] = {"display": display}
        if api_url:
            options["list_url"] = api_url
            options["detail_url"] = detail_url or api_url  # Worknet style: one URL, callTp
        elif detail_url:
            options["detail_url"] = detail_url
        try:
            client = Work24Client(api_key or "", **options)
            if max_pages is not None and max_pages < 1:
                raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        except ValueError as exc:
            raise InvalidInputError(str(exc), field="api") from None
        lists, details = client.fetch(max_pages=max_pages)
        for rec in worknet_records(lists, details, ing):
            ing.add(rec)
        return ing.result()
    files = expand_sources(sources, _SUFFIX[fmt])
    if not files:
        raise InvalidInputError("no input sources given", field="source")
    if fmt == "worknet-xml":
        _ingest_xml(files, ing)
    else:
        mapping = spec.mapping
        if fmt == "csv":
            from core.ingest.csv_source import read_csv as reader
        else:
            from core.ingest.parquet_source import read_parquet as reader
        if not spec.table.empty:
            from core.ingest.tables import read_table

            def reader(path, mapping):
                return read_table(path, mapping, spec.table)
        for path in files:
            for rec in reader(path, mapping):
                ing.add(rec)
    return ing.result()
