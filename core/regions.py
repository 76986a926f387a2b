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
* Without a province or 시/군/구 at the start, a 읍/면/동 named anywhere in the text (also
  in parentheses) is looked up nationwide: "역삼동 센터필드타워" is 서울 강남구 역삼동 when
  no other region has that name.
* Several equally good readings ("중구 삼일대로 343": six 중구) are narrowed by the
  parenthesised or later names each reading contains; what stays tied resolves to the
  readings' common ancestor, or to ``None`` when they share none. :meth:`candidates`
  lists the tied readings so a caller holding more evidence (the ingestion batch's other
  postings) can choose.
* Romanised addresses ("479, Bongeunsa-ro, Gangnam-gu, Seoul") are read by matching each
  word against the Revised Romanization of the table's names (:mod:`core.romanise`) and
  resolving the Hangul names found, largest first.
* The 32 regions without a centroid use the mean of their sub-regions' centroids when they
  have any (여주시), otherwise their nearest ancestor that has one: the answer then is that
  ancestor.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from core.reference import SIDO_ALIASES, regions
from core.romanise import match_key, romanise

_PARTS = ("sido", "sigungu", "gu_or_eupmyeondong", "eupmyeondong", "ri")
_PAREN = re.compile(r"[(\[]([^()\[\]]*)[)\]]")
# "2·3", "2,3" and "2.3" name the same merged 동 ("상계6.7동"); unify the separator.
_DIGIT_SEP = re.compile(r"(?<=\d)[·.,ㆍ](?=\d)")
_JE = re.compile(r"^(.+?)제(\d.*동)$")  # "상도제1동" is also written "상도1동"
# A road name ("동일로174길", "세종대로", "중앙로1번길") or a number ends the region part.
_ROAD = re.compile(r"^\S*(?:로|길)(?:\d+(?:번)?(?:길|가)?)?$")
_STOP = re.compile(r"^[\d\-~]")
_TRIM = ",.;:·\"'"
# 읍/면/동/가 names the dong index may answer from anywhere in the text; 리 are too many
_DONG = re.compile(r"^\S+(?:동|가|읍|면)$")
_LOT = re.compile(r"(?<=[동가읍면])\d+(?:-\d+)?(?:번지)?$")
_LATIN = re.compile(r"[A-Za-z]{2,}")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
# romanised administrative suffixes, written after a space by some ("Gangnam gu")
_ROMAN_SUFFIX = frozenset({"gu", "si", "gun", "do", "dong", "eup", "myeon", "ri", "ga"})
# province suffixes removed for the romanised stem ("서울특별시" -> "Seoul")
_SIDO_SUFFIX = re.compile(r"(?:특별자치시|특별자치도|특별시|광역시|도)$")


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
        self._roman: dict[str, tuple[int, str]] = {}  # romanised key -> (level, Hangul name)
        self._cache: dict[str, ResolvedRegion | None] = {}
        self._paths_cache: dict[str, tuple[tuple[str, ...], ...]] = {}
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
        self._build_roman(own)

    def _build_roman(self, own: dict[tuple[str, ...], object]) -> None:
        names: dict[str, set[tuple[int, str]]] = {}
        for path in own:
            if len(path) > 4:
                continue
            name = path[-1]
            names.setdefault(match_key(romanise(name)), set()).add((len(path), name))
            if len(path) == 1:
                stem = _SIDO_SUFFIX.sub("", name)
                # "Seoul", "Gyeonggi-do": the stem alone and with -do / -si
                for key in (stem, stem + "도", stem + "시"):
                    names.setdefault(match_key(romanise(key)), set()).add((1, name))
        for key, found in names.items():
            if len({n for _, n in found}) == 1 and len(key) >= 4:
                self._roman[key] = min(found)

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

    def candidates(self, text: str | None) -> tuple[ResolvedRegion, ...]:
        """Every equally good reading of ``text`` (one when it resolves, none when unknown).

        More than one means ``text`` is ambiguous ("중구 청계천로 100"); :meth:`resolve` then
        answers their common ancestor or ``None``.
        """
        if text is None:
            return ()
        out = []
        for path in self._paths(text):
            hit = self._answer(path)
            if hit is not None and hit not in out:
                out.append(hit)
        return tuple(out)

    def bare_districts(self, text: str) -> tuple[ResolvedRegion, ...]:
        """시/군/구 named in ``text`` without their suffix ("래미안 용산" -> every 용산구/시/군).

        Too weak to resolve by, but a reading the text rules out ("용산" is no district
        of 경기도) must not be chosen by other evidence.
        """
        out: list[ResolvedRegion] = []
        for tok in unicodedata.normalize("NFC", text).split():
            key = _norm(tok)
            if len(key) < 2 or key[-1] in "시군구":
                continue
            for suffix in "구시군":
                for path in self._start.get(key + suffix, ()):
                    hit = self._answer(path)
                    if hit is not None and hit not in out:
                        out.append(hit)
        return tuple(out)

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
        if hit is None and len(node) == 2 and node[1][-1] == "시" and len(key) >= 2 \
                and key[-1] not in "시군구동읍면리":
            hit = kids.get(key + "구")  # "수원 영통": a 시's 구 without its suffix
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
        paths = self._paths(text)
        if not paths:
            return None
        node = paths[0] if len(paths) == 1 else _common_prefix(list(paths))
        if not node:
            return None  # "중구" alone: several provinces, nothing to choose by
        return self._answer(node)

    def _paths(self, text: str) -> tuple[tuple[str, ...], ...]:
        hit = self._paths_cache.get(text)
        if hit is None:
            hit = self._read(unicodedata.normalize("NFC", text))
            if not hit and _LATIN.search(text):
                hangul = self._from_roman(text)
                hit = self._read(hangul) if hangul else ()
            self._paths_cache[text] = hit
        return hit

    def _read(self, text: str) -> tuple[tuple[str, ...], ...]:
        """The best readings of ``text``, each narrowed by the names it contains."""
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
            if not cands and len(t0) >= 2 and t0[-1] not in "시군구":
                # "수원 영통": a city without its suffix counts only when a sub-region follows
                for path in self._start.get(t0 + "시", []) + self._start.get(t0 + "군", []):
                    node, m = self._descend(path, tokens, start + 1)
                    if m:
                        cands.append((m + 1, len(node), 0, node))
            if cands:
                break
        if not cands:
            inner = self._dong_only(tokens, hints)
            if not inner and hints:
                # "패스트파이브 구로점 (서울 구로구 디지털로 300)": the address is in parentheses
                for group in _PAREN.findall(text):
                    inner = self._read(group)
                    if inner:
                        break
            return inner
        cands.sort(key=lambda c: (c[0], c[1], c[2]), reverse=True)
        best = cands[0]
        rivals = list(dict.fromkeys(c[3] for c in cands if c[:3] == best[:3]))
        if len(rivals) == 1:
            return (self._apply_hints(rivals[0], hints),)
        # each reading narrowed by the names in the text; those a name singles out win
        words = hints + tokens[1:]
        narrowed = [self._apply_hints(r, words) for r in rivals]
        deeper = [n for n, r in zip(narrowed, rivals, strict=True) if len(n) > len(r)]
        if len(deeper) == 1:
            return (deeper[0],)
        prefix = _common_prefix(rivals)
        if prefix:
            return (self._apply_hints(prefix, hints),)
        return tuple(dict.fromkeys(deeper or narrowed))

    def _dong_only(self, tokens: list[str], hints: list[str]) -> tuple[tuple[str, ...], ...]:
        """Readings from a 읍/면/동 named anywhere ("역삼동 센터필드타워", "(공릉동)")."""
        for word in [*tokens, *(w for h in hints for w in h.split())]:
            key = _LOT.sub("", _norm(word))  # "신당동291-32": the lot number written on
            if not _DONG.match(key) or len(key) < 2:
                continue
            paths = [p for p in self._by_name.get(key, ()) if len(p) >= 3]
            if paths:
                return tuple(dict.fromkeys(paths))
        return ()

    def _from_roman(self, text: str) -> str:
        """Hangul region names found in romanised ``text``, province first ("서울특별시 강남구")."""
        words = _LATIN_WORD.findall(text)
        found: list[tuple[int, int, str]] = []
        i = 0
        while i < len(words):
            key = match_key(words[i])
            if i + 1 < len(words) and words[i + 1].lower() in _ROMAN_SUFFIX:
                hit = self._roman.get(key + words[i + 1].lower())
                if hit is not None:
                    found.append((hit[0], -i, hit[1]))
                    i += 2
                    continue
            hit = self._roman.get(key)
            if hit is not None:
                found.append((hit[0], -i, hit[1]))
            i += 1
        # largest region first; among equals the later word (English writes small to large)
        return " ".join(name for _, _, name in sorted(found))

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
def _centroids() -> tuple[np.ndarray, np.ndarray, list[str]]:
    df = regions().filter(pl.col("lat").is_not_null() & pl.col("lng").is_not_null())
    return df["lat"].to_numpy(), df["lng"].to_numpy(), df["sido"].to_list()


def nearest_sido(lat: float, lng: float) -> str:
    """The province of the administrative region whose centroid is nearest to a point (of
    21,784 centroids down to 리: a point inside Korea lands in its own province except
    within a few hundred metres of a border)."""
    from core.rules import haversine_km

    la, ln, sido = _centroids()
    return sido[int(np.argmin(haversine_km(lat, lng, la, ln)))]


@cache
def default_resolver() -> RegionResolver:
    """A process-wide resolver (the index is built once)."""
    return RegionResolver()
