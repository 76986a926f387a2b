"""The columnar store of a collection: one growable numpy array per column (struct of
arrays), rows append-only, plus dictionary-encoded labels. No search logic here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np

ColumnSpec = Mapping[str, tuple[np.dtype | type, tuple[int, ...]]]
"""Column name -> (dtype, shape of one row: ``()`` for scalars, ``(3,)`` for xyz)."""


class ColumnStore(Mapping[str, np.ndarray]):
    """Rows ``0 .. n-1`` of the columns of ``spec``; :meth:`append` grows every column
    together (amortised 1.5x), ``store[name]`` is the live view ``[:n]`` (a mapping of
    column name to live column, so the rule kernel reads it directly)."""

    def __init__(self, spec: ColumnSpec) -> None:
        self.spec = dict(spec)
        self.n = 0
        self._cols = {
            name: np.zeros((0, *shape), dtype=dtype) for name, (dtype, shape) in self.spec.items()
        }

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name][: self.n]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._cols)

    def append(self, values: Mapping[str, np.ndarray], count: int) -> slice:
        """Append ``count`` rows; ``values`` gives every column (missing ones stay zero)."""
        unknown = set(values) - set(self._cols)
        if unknown:
            raise KeyError(f"unknown columns {sorted(unknown)}")
        need = self.n + count
        cap = next(iter(self._cols.values())).shape[0] if self._cols else 0
        if need > cap:
            new_cap = max(need, int(cap * 1.5) + 16)
            for name, a in self._cols.items():
                b = np.zeros((new_cap, *a.shape[1:]), dtype=a.dtype)
                b[: self.n] = a[: self.n]
                self._cols[name] = b
        s = slice(self.n, need)
        for name, v in values.items():
            self._cols[name][s] = v
        self.n = need
        return s

    def nbytes(self, exclude: Iterable[str] = ()) -> int:
        """Bytes of the live rows of every column but ``exclude``."""
        skip = set(exclude)
        return int(sum(self[name].nbytes for name in self._cols if name not in skip))


class Labels:
    """Dictionary encoding of a string column: int32 codes and the names they stand for."""

    __slots__ = ("_code", "names")

    def __init__(self) -> None:
        self._code: dict[object, int] = {}
        self.names: list[object] = []

    def encode(self, values: Iterable[object]) -> np.ndarray:
        """Codes of ``values``, adding unseen names."""
        code, names = self._code, self.names
        out = []
        for v in values:
            c = code.get(v)
            if c is None:
                c = code[v] = len(names)
                names.append(v)
            out.append(c)
        return np.asarray(out, dtype=np.int32)
