"""The record every reader yields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class SourceRecord:
    """One input record: where it came from, its ingestion fields and its raw form.

    ``fields`` uses the names of :data:`core.ingest.normalise.FIELDS`; ``raw`` is what was
    read, kept for the rejects file. A reader that already knows the record is bad sets
    ``reject`` to (reason, detail) and ``fields`` to None.
    """

    source: str
    index: int
    fields: dict[str, Any] | None
    raw: Any
    reject: tuple[str, str] | None = None
