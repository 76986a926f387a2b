"""Source headers to ingestion fields: the lookup key of a header and the position map."""

from __future__ import annotations

import unicodedata

from core.errors import InvalidInputError


def _key(header: str) -> str:
    return "".join(unicodedata.normalize("NFC", header).lstrip("\ufeff").split())


def map_headers(
    headers: list[str],
    mapping: dict[str, str | None],
    source: str,
    id_fields: tuple[str, ...] = ("posting_id",),
) -> dict[int, str]:
    """Column position -> field for ``headers``; the first column mapped to a field wins.

    Some column must map to one of ``id_fields``.
    """
    out: dict[int, str] = {}
    taken: set[str] = set()
    for i, header in enumerate(headers):
        target = mapping.get(_key(header))
        if target and target not in taken:
            out[i] = target
            taken.add(target)
    if not taken.intersection(id_fields):
        raise InvalidInputError(
            f"{source}: no column maps to {' or '.join(id_fields)} "
            f"(headers: {', '.join(headers)}); "
            "pass --column-map FILE.json",
            field="column_map",
        )
    return out
