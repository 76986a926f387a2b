"""Resolve Worknet region strings and street addresses to the administrative region table.

Worknet writes regions in short form ("경기 용인시 수지구", "서울 서초구", "세종특별자치시");
addresses come in long form ("서울특별시 노원구 동일로174길 13, 3층 (공릉동)"). The resolver
walks the region tree of :func:`core.reference.regions` from the province down, token by
token, and answers the most specific region it reached that has coordinates.

Rules, in order:

* The province may be written in full, short ("경기"), with 시 ("서울시"), or under its
  renamed form ("강원특별자치도", "전북특별자치도"); the table keeps the old names.
* Without a province, the first token is looked up as a 시/군/구 anywhere; "중구" or
  "고성군" alone are ambiguous and resolve to ``None`` unless later tokens single one out
  ("중구 명동"). A bare "광주시" reads as 경기도 광주시 (its literal name), "광주 북구" as
  광주광역시 북구: the reading that matches more tokens, then the deeper region, wins.
* A 시/군 that moved province (군위군: 경상북도 → 대구광역시 in 2023) is found under its
  table province when the written province does not contain it.
* Tokens that are not children of the current region are skipped (e.g. 부천시's abolished
  구); the walk stops at the first road name or building number. Parenthesised names
  ("(공릉동)") are then searched for below the region reached.
* The 32 regions without a centroid use the mean of their sub-regions' centroids when they
  have any (여주시), otherwise their nearest ancestor that has one: the answer then is that
  ancestor.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

from core.reference import SIDO_ALIASES, regions

_PARTS = ("sido", "sigungu", "gu_or_eupmyeondong", "eupmyeondong", "ri")
_PAREN = re.compile(r"[(\[]([^()\[\]]*)[)\]]")
# "2·3", "2,3" and "2.3" name the same merged 동 ("상계6.7동"); unify the separator.
_DIGIT_SEP = re.compile(r"(?<=\d)[·.,ㆍ](?=\d)")
_JE = re.compile(r"^(.+?)제(\d.*동)$")  # "상도제1동" is also written "상도1동"
# A road name ("동일로174길", "세종대로", "중앙로1번길") or a number ends the region part.
_ROAD = re.compile(r"^\S*(?:로|길)(?:\d+(?:번)?(?:길|가)?)?$")
_STOP = re.compile(r"^[\d\-~]")
_TRIM = ",.;:·\"'"


@dataclass(frozen=True, slots=True)
class ResolvedRegion:
    """A resolved region: its province, 시/군/구, full name, centroid and depth (1 = 시도)."""

    sido: str
    sigungu: str | None
    name: str
    lat: float
    lng: float
    level: int


def _norm(token: str) -> str:
    return _DIGIT_SEP.sub(".", token.strip(_TRIM))


def _variants(name: str) -> list[str]:
    key = _norm(name)
    out = [key]
    m = _JE.match(key)
    if m:
        out.append(m.group(1) + m.group(2))
    return out


class RegionResolver:
    """Resolve region strings to :class:`ResolvedRegion`; results are cached per string."""

    def __init__(self) -> None:
        self._coords: dict[tuple[str, ...], tuple[float, float]] = {}
        self._children: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {}
        self._by_name: dict[str, list[tuple[str, ...]]] = {}
        self._start: dict[str, list[tuple[str, ...]]] = {}  # 시/군/구 names for sido-less text
        self._sido: dict[str, tuple[str, ...]] = {}
        self._known: frozenset[tuple[str, ...]] = frozenset()
        self._cache: dict[str, ResolvedRegion | None] = {}
        self._build()

    def _build(self) -> None:
        own: dict[tuple[str, ...], tuple[float, float] | None] = {}
        for row in regions().iter_rows(named=True):
            path = tuple(row[p] for p in _PARTS if row[p])
            if not path:
                continue
            lat, lng = row["lat"], row["lng"]
            own[path] = (lat, lng) if lat is not None and lng is not None else None
        # every prefix of a path is a region, even when the table has no row for it
        for path in list(own):
            for k in range(1, len(path)):
                own.setdefault(path[:k], None)
        for path in own:
            if len(path) > 1:
                parent = path[:-1]
                kids = self._children.setdefault(parent, {})
                for key in _variants(path[-1]):
                    kids.setdefault(key, path)
                for key in _variants(path[-1]):
                    self._by_name.setdefault(key, []).append(path)
            if len(path) == 2 or (len(path) == 3 and path[2].endswith("구") and path[1][-1] == "시"):
                for key in _variants(path[-1]):
                    self._start.setdefault(key, []).append(path)
        self._known = frozenset(own)
        # a region without a centroid takes the mean of its sub-regions' (여주시)
        sums: dict[tuple[str, ...], list[float]] = {}
        for path, c in own.items():
            if c is None:
                continue
            for k in range(1, len(path)):
                acc = sums.setdefault(path[:k], [0.0, 0.0, 0])
                acc[0] += c[0]
                acc[1] += c[1]
                acc[2] += 1
        for path, c in own.items():
            if c is not None:
                self._coords[path] = c
            elif path in sums:
                s = sums[path]
                self._coords[path] = (s[0] / s[2], s[1] / s[2])
        for full in {p[0] for p in own if len(p) == 1}:
            self._sido[full] = (full,)
        for alias, full in SIDO_ALIASES.items():
            self._sido[alias] = (full,)

    # -- public -------------------------------------------------------------------------

    def resolve(self, text: str | None) -> ResolvedRegion | None:
        """The most specific known region with coordinates for ``text``, or ``None``."""
        if text is None:
            return None
        hit = self._cache.get(text, False)
        if hit is not False:
            return hit
        result = self._resolve(text)
        self._cache[text] = result
        return result

    def lookup(self, *parts: str) -> ResolvedRegion | None:
        """The region with exactly these table name parts ("경기도", "용인시", "수지구")."""
        path = tuple(p for p in parts if p)
        if path not in self._known:
            return None
        return self._answer(path)

    # -- internals ----------------------------------------------------------------------

    def _answer(self, path: tuple[str, ...]) -> ResolvedRegion | None:
        while path and path not in self._coords:
            path = path[:-1]
        if not path:
            return None
        lat, lng = self._coords[path]
        return ResolvedRegion(
            sido=path[0],
            sigungu=path[1] if len(path) > 1 else None,
            name=" ".join(path),
            lat=lat,
            lng=lng,
            level=len(path),
        )

    def _child(self, node: tuple[str, ...], token: str) -> tuple[str, ...] | None:
        kids = self._children.get(node)
        if not kids:
            return None
        key = _norm(token)
        hit = kids.get(key)
        if hit is None and len(node) == 1 and key and key[-1] not in "시군구":
            # "경기 용인 수지구": a 시/군 written without its suffix
            hit = kids.get(key + "시") or kids.get(key + "군")
        return hit

    def _descend(self, node: tuple[str, ...], tokens: list[str], i: int) -> tuple[tuple[str, ...], int]:
        matched = 0
        while i < len(tokens):
            tok = tokens[i]
            child = self._child(node, tok)
            if child is not None:
                node = child
                matched += 1
            elif _STOP.match(tok) or _ROAD.match(tok):
                break
            i += 1
        return node, matched

    def _resolve(self, text: str) -> ResolvedRegion | None:
        text = unicodedata.normalize("NFC", text)
        hints = [h.strip() for group in _PAREN.findall(text) for h in group.split(",")]
        tokens = [t for t in (t.strip(_TRIM) for t in _PAREN.sub(" ", text).split()) if t]
        # (tokens matched, depth, prefer-province, path)
        cands: list[tuple[int, int, int, tuple[str, ...]]] = []
        for start in range(min(len(tokens), 3)):
            t0 = _norm(tokens[start])
            sido = self._sido.get(t0)
            if sido is not None:
                node, m = self._descend(sido, tokens, start + 1)
                if m == 0 and start + 1 < len(tokens):
                    moved = self._start.get(_norm(tokens[start + 1]), [])
                    if len(moved) == 1:  # a 시/군 filed under another province (군위군)
                        node, m2 = self._descend(moved[0], tokens, start + 2)
                        m = m2 + 1
                cands.append((m + 1, len(node), 1, node))
            for path in self._start.get(t0, []):
                node, m = self._descend(path, tokens, start + 1)
                cands.append((m + 1, len(node), 0, node))
            if cands:
                break
        if not cands:
            return None
        cands.sort(key=lambda c: (c[0], c[1], c[2]), reverse=True)
        best = cands[0]
        rivals = {c[3] for c in cands if c[:3] == best[:3]}
        if len(rivals) > 1:
            rivals_share = _common_prefix(list(rivals))
            if not rivals_share:
                return None  # "중구" alone: several provinces, nothing to choose by
            node = rivals_share
        else:
            node = best[3]
        node = self._apply_hints(node, hints)
        return self._answer(node)

    def _apply_hints(self, node: tuple[str, ...], hints: list[str]) -> tuple[str, ...]:
        for hint in hints:
            for word in hint.split():
                key = _norm(word)
                if not key or _STOP.match(key):
                    continue
                under = [
                    p for p in self._by_name.get(key, ())
                    if len(p) > len(node) and p[: len(node)] == node
                ]
                if len(under) == 1:
                    node = under[0]
                elif len(under) > 1:
                    shallow = min(len(p) for p in under)
                    top = [p for p in under if len(p) == shallow]
                    if len(top) == 1:
                        node = top[0]
        return node


def _common_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    first = paths[0]
    k = 0
    while k < len(first) and all(len(p) > k and p[k] == first[k] for p in paths):
        k += 1
    return first[:k]


# 세종 has no 시/군/구: the region table files its 읍/면/동 in the sigungu column.
_NO_SIGUNGU = frozenset({"세종특별자치시"})


def canonical_sigungu(sido: str | None, sigungu: str | None) -> str | None:
    """The canonical 시/군/구 of a resolved location: ``None`` for 세종 or when unknown.

    A 시 with 구 is named by the 시 (수원시 장안구 -> 수원시), as the region table does.
    """
    if not sigungu or sido in _NO_SIGUNGU:
        return None
    return sigungu


@cache
def default_resolver() -> RegionResolver:
    """A process-wide resolver (the index is built once)."""
    return RegionResolver()
