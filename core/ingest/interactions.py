"""Interaction logs (who applied to, clicked, was shown or hid which posting) -> canonical table.

Every row read ends in exactly one of ``interactions`` (:data:`core.seekers.INTERACTION_SCHEMA`)
or ``rejects`` (reason from :data:`INTERACTION_REJECT_REASONS`, the raw row as JSON). A log
whose source has no time column is accepted with ``at`` null and says so (``timed`` false in
the counts): the ranker then validates by seeker only. Where the source has a time column,
every row needs a readable time.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from core.errors import InvalidInputError, JobrecError
from core.ingest.headers import _key
from core.ingest.tables import TABLE_KEYS, TableSpec, read_table, table_spec
from core.ingest.worknet_xml import expand_sources
from core.seekers import INTERACTION_EVENTS, INTERACTION_SCHEMA, validate_interactions

INTERACTION_FIELDS: tuple[str, ...] = ("seeker_id", "posting_id", "event", "at")
INTERACTION_COLUMN_MAP: dict[str, str] = {
    **{f: f for f in INTERACTION_FIELDS},
    "구직자번호": "seeker_id", "구직번호": "seeker_id", "구직신청번호": "seeker_id",
    "구인인증번호": "posting_id", "구인번호": "posting_id", "공고번호": "posting_id",
    "이벤트": "event", "행동": "event", "구분": "event",
    "일시": "at", "발생일시": "at", "지원일시": "at", "시각": "at", "timestamp": "at",
    "time": "at",
}
# source spellings of the canonical events
EVENT_NAMES: dict[str, str] = {
    **{e: e for e in INTERACTION_EVENTS},
    "apply": "applied", "application": "applied", "지원": "applied", "입사지원": "applied",
    "click": "clicked", "view": "clicked", "클릭": "clicked", "조회": "clicked", "열람": "clicked",
    "show": "shown", "impression": "shown", "노출": "shown", "추천": "shown",
    "hide": "hidden", "숨김": "hidden", "관심없음": "hidden",
}
INTERACTION_REJECT_REASONS: dict[str, str] = {
    "missing_field": "no seeker id, posting id or event",
    "unknown_event": f"the event is none of {', '.join(INTERACTION_EVENTS)} (or a known spelling)",
    "bad_time": "the time is missing or unreadable (the source has a time column)",
    "duplicate": "the same seeker, posting, event and time was already read",
    "unknown_seeker": "the seeker id is not in the --seekers table",
    "unknown_posting": "the posting id is not in the --postings table",
    "malformed_row": "a CSV row with a different number of fields than the header",
}
INTERACTION_REJECT_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Utf8(), "record_index": pl.Int64(), "seeker_id": pl.Utf8(),
    "posting_id": pl.Utf8(), "reason": pl.Utf8(), "detail": pl.Utf8(), "raw": pl.Utf8(),
}
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y%m%d%H%M%S", "%Y%m%d", "%Y-%m-%d",
                 "%Y.%m.%d %H:%M:%S", "%Y.%m.%d", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d")


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or \
        (isinstance(v, str) and not v.strip())


def parse_time(v: Any) -> dt.datetime | None:
    """A log time (ISO 8601, ``YYYYMMDD[HHMMSS]``, dotted or slashed dates, epoch seconds or a
    datetime) as a naive datetime; None when unreadable."""
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None) if v.tzinfo is None else \
            v.astimezone(dt.timezone(dt.timedelta(hours=9))).replace(tzinfo=None)
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day)
    t = str(v).strip()
    if re.fullmatch(r"\d{10}(?:\.\d+)?", t):  # epoch seconds, read in KST
        return dt.datetime.fromtimestamp(float(t), dt.timezone(dt.timedelta(hours=9))) \
            .replace(tzinfo=None)
    try:
        got = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        got = None
        for f in _TIME_FORMATS:
            try:
                got = dt.datetime.strptime(t, f)
                break
            except ValueError:
                continue
    if got is None:
        return None
    return parse_time(got) if got.tzinfo is not None else got


@dataclass(frozen=True)
class InteractionIngestResult:
    """Accepted interactions, rejects and counts (read/accepted/rejected/by_reason/timed)."""

    interactions: pl.DataFrame
    rejects: pl.DataFrame
    counts: dict[str, Any] = field(default_factory=dict)

    def write(self, out: Path | str, rejects_out: Path | str) -> None:
        """Write both tables as Parquet."""
        for frame, path in ((self.interactions, Path(out)), (self.rejects, Path(rejects_out))):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.write_parquet(path)
            except OSError as exc:
                raise InvalidInputError(f"{path}: cannot write: {exc.strerror or exc}",
                                        field="out") from exc


def map_options(spec: Mapping[str, Any]) -> tuple[dict[str, str | None], dict[str, Any], TableSpec]:
    """The header mapping, defaults and multi-file options of an interaction column map
    (flat ``{header: field}`` or ``{columns, defaults, joins, values, compose}``)."""
    mapping: dict[str, str | None] = {_key(k): v for k, v in INTERACTION_COLUMN_MAP.items()}
    defaults: dict[str, Any] = {}
    table = TableSpec()
    flat: Mapping[str, Any] = spec
    if isinstance(spec.get("columns"), Mapping):
        extra = {k for k in spec if not k.startswith("_")} - {"columns", "defaults", *TABLE_KEYS}
        if extra:
            raise InvalidInputError(f"interaction column map has unknown key {sorted(extra)[0]!r}",
                                    field="column_map")
        defaults = dict(spec.get("defaults") or {})
        bad = [k for k in defaults if k not in ("event",)]
        if bad:
            raise InvalidInputError(
                f"interaction column map may default only 'event', not {bad[0]!r}",
                field="column_map")
        flat, table = spec["columns"], table_spec(spec)
    for header, fld in flat.items():
        if fld not in (None, "") and fld not in INTERACTION_FIELDS:
            raise InvalidInputError(
                f"column map sends {header!r} to unknown interaction field {fld!r}; "
                f"known: {', '.join(INTERACTION_FIELDS)}", field="column_map")
        mapping[_key(str(header))] = fld or None
    return mapping, defaults, table


def _ids(table: pl.DataFrame | None, col: str) -> set[str] | None:
    if table is None:
        return None
    if col not in table.columns:
        raise InvalidInputError(f"the reference table has no {col!r} column", field=col)
    return set(table[col].cast(pl.Utf8).drop_nulls().to_list())


def ingest_interactions(sources: Iterable[Path | str], fmt: str, *,
                        column_map: Mapping[str, Any] | None = None,
                        seekers: pl.DataFrame | None = None,
                        postings: pl.DataFrame | None = None) -> InteractionIngestResult:
    """Read interaction ``sources`` (``csv`` or ``parquet``) into the canonical table.

    ``seekers`` / ``postings`` (canonical tables), when given, reject rows naming ids they
    do not hold.
    """
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"interactions come as csv or parquet, not {fmt!r}", field="format")
    files = expand_sources(sources, "." + fmt)
    if not files:
        raise InvalidInputError("no input sources given", field="source")
    mapping, defaults, table = map_options(column_map or {})
    if defaults.get("event") is not None and EVENT_NAMES.get(str(defaults["event"]).strip().lower()) \
            is None:
        raise InvalidInputError(f"default event {defaults['event']!r} is not a known event",
                                field="column_map")
    known_s, known_p = _ids(seekers, "seeker_id"), _ids(postings, "posting_id")
    rows: list[tuple[str, str, str, dt.datetime | None]] = []
    rejects: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    timed: list[bool] = []
    read = 0

    def reject(rec, sid, pid, reason: str, detail: str) -> None:
        rejects.append({"source": rec.source, "record_index": rec.index, "seeker_id": sid,
                        "posting_id": pid, "reason": reason, "detail": detail,
                        "raw": json.dumps(rec.raw, ensure_ascii=False, default=str)})

    for path in files:
        has_time: bool | None = None
        if fmt == "csv" and table.empty:
            from core.ingest.csv_source import read_csv as reader
        elif table.empty:
            from core.ingest.parquet_source import read_parquet as reader
        else:
            def reader(p, m, id_fields):
                return read_table(p, m, table, id_fields=id_fields)
        for rec in reader(path, mapping, id_fields=("seeker_id",)):
            read += 1
            if rec.reject is not None:
                reject(rec, None, None, *rec.reject)
                continue
            f = rec.fields or {}
            if has_time is None:
                has_time = "at" in f
                timed.append(has_time)
            sid = None if _blank(f.get("seeker_id")) else str(f["seeker_id"]).strip()
            pid = None if _blank(f.get("posting_id")) else str(f["posting_id"]).strip()
            ev_raw = f.get("event") if not _blank(f.get("event")) else defaults.get("event")
            if sid is None or pid is None or _blank(ev_raw):
                missing = [n for n, v in (("seeker_id", sid), ("posting_id", pid),
                                          ("event", ev_raw)) if _blank(v)]
                reject(rec, sid, pid, "missing_field", f"no {', '.join(missing)}")
                continue
            event = EVENT_NAMES.get(str(ev_raw).strip().lower())
            if event is None:
                reject(rec, sid, pid, "unknown_event", f"event {ev_raw!r} is unknown")
                continue
            at = None
            if has_time:
                at = None if _blank(f.get("at")) else parse_time(f["at"])
                if at is None:
                    reject(rec, sid, pid, "bad_time", f"time {f.get('at')!r} is unreadable")
                    continue
            if known_s is not None and sid not in known_s:
                reject(rec, sid, pid, "unknown_seeker", f"seeker {sid!r} is not in --seekers")
                continue
            if known_p is not None and pid not in known_p:
                reject(rec, sid, pid, "unknown_posting", f"posting {pid!r} is not in --postings")
                continue
            key = (sid, pid, event, at)
            if key in seen:
                reject(rec, sid, pid, "duplicate", f"{event} of {sid} on {pid} at {at} was read")
                continue
            seen.add(key)
            rows.append(key)
    if timed and any(timed) and not all(timed):
        raise InvalidInputError("some sources have a time column and some do not: "
                                "give every source a time or none", field="at")
    out = pl.DataFrame(rows, schema=INTERACTION_SCHEMA, orient="row")
    validate_interactions(out)
    rej = pl.DataFrame(rejects, schema=INTERACTION_REJECT_SCHEMA, orient="row")
    counts = {"read": read, "accepted": out.height, "rejected": rej.height,
              "by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items())),
              "timed": bool(timed) and all(timed)}
    if read != out.height + rej.height:  # pragma: no cover
        raise JobrecError(f"interaction ingestion lost records: {counts}")
    return InteractionIngestResult(out, rej, counts)
