"""Ingestion of Worknet/Work24 postings: XML (files or the live API), CSV and Parquet.

``ingest(sources, fmt)`` returns an :class:`IngestResult` whose postings follow
:mod:`core.schema` and whose rejects keep every record that could not be used, with a
reason code (:data:`REJECT_REASONS`).
"""

from core.ingest.normalise import FIELDS, REJECT_REASONS, Normaliser
from core.ingest.pipeline import FORMATS, Ingestor, IngestResult, ingest

__all__ = [
    "FIELDS",
    "FORMATS",
    "REJECT_REASONS",
    "IngestResult",
    "Ingestor",
    "Normaliser",
    "ingest",
]
