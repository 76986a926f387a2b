"""Lazy column views for the rule kernel (:mod:`core.rules`): gather only the columns
and rows a rule set actually reads."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

Columns = Mapping[str, np.ndarray]
"""Named columns of one side of a pair (queries or candidates), one entry per item."""


class RowView(Mapping[str, np.ndarray]):
    """Columns of ``source`` at ``rows``, gathered lazily on first access (the kernel then
    reads only the columns its rules use, and the distance rule only the rows still
    alive). ``extra`` columns are given directly (e.g. ``row``)."""

    __slots__ = ("source", "rows", "extra", "_cache")

    def __init__(self, source: Columns, rows: np.ndarray, extra: Columns | None = None) -> None:
        self.source, self.rows = source, rows
        self.extra = dict(extra or {})
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        v = self.extra.get(name)
        if v is None:
            v = self._cache.get(name)
            if v is None:
                v = self._cache[name] = self.source[name][self.rows]
        return v

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self.source), **self.extra})

    def __len__(self) -> int:
        return len({**dict.fromkeys(self.source), **self.extra})

    def subset(self, idx: np.ndarray | slice) -> RowView:
        """The view of ``rows[idx]``."""
        return RowView(self.source, self.rows[idx], {k: v[idx] for k, v in self.extra.items()})


def subset(cols: Columns, idx: np.ndarray | slice) -> Columns:
    """``cols`` at ``idx``, lazily."""
    if isinstance(cols, RowView):
        return cols.subset(idx)
    return _Lazy(cols, idx)


class _Lazy(Mapping[str, np.ndarray]):
    """``{k: cols[k][idx]}``, computed per key on access."""

    def __init__(self, cols: Columns, idx: np.ndarray | slice) -> None:
        self.cols, self.idx = cols, idx

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name][self.idx]

    def __iter__(self) -> Iterator[str]:
        return iter(self.cols)

    def __len__(self) -> int:
        return len(self.cols)


class First(Mapping[str, np.ndarray]):
    """The values of a one-query ``cols`` as Python scalars (rules then compare them with
    whole candidate columns: no broadcasting, no per-call numpy overhead)."""

    def __init__(self, cols: Columns) -> None:
        self.cols = cols

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name][0].item()

    def __iter__(self) -> Iterator[str]:
        return iter(self.cols)

    def __len__(self) -> int:
        return len(self.cols)


class Axis(Mapping[str, np.ndarray]):
    """1-d columns of ``cols`` as ``(m, 1)`` (``axis=1``) or ``(1, n)`` (``axis=0``)."""

    def __init__(self, cols: Columns, axis: int) -> None:
        self.cols, self.axis = cols, axis

    def __getitem__(self, name: str) -> np.ndarray:
        v = self.cols[name]
        return v[None, :] if self.axis == 0 else v[:, None]

    def __iter__(self) -> Iterator[str]:
        return iter(self.cols)

    def __len__(self) -> int:
        return len(self.cols)


def length(cols: Columns) -> int:
    """Items in ``cols`` (without gathering anything from a lazy view)."""
    if isinstance(cols, RowView):
        return len(cols.rows)
    for v in cols.values():
        return len(v)
    return 0
