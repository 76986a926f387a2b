"""What an ingestion batch's resolved postings say about the places the others leave open.

Many real addresses leave out the province ("중구 삼일대로 343": six 중구) or name only a
street ("테헤란로 424"). Read alone they are ambiguous or unknown; read against the rest of
the batch they often are not. :class:`RegionEvidence` collects, from every posting whose
region resolved on its own,

* the company's districts (시/군/구; a 시's 구 counts as its own district), and
* each street name's districts ("테헤란로37길" counts for 테헤란로), and
* each 읍/면/동 name's districts, from the postings whose region reached that 동,

and :meth:`RegionEvidence.settle` answers an open posting when the evidence is clear:
among the districts compatible with the address's own readings (or, when it has none, with
the districts it names without their suffix: "래미안 용산" rules out 경기도), one holds at least
:data:`AGREEMENT` of that source's postings (the company's: at least one posting; a street's:
at least :data:`MIN_STREET` postings when the address gives no reading at all). When the
sources point to different districts, or none is clear, the posting
stays unresolved and is rejected with the candidates in the reason.
"""

from __future__ import annotations

import re
from collections import Counter

from core.regions import RegionResolver, ResolvedRegion

AGREEMENT = 0.8  # share of a source's compatible postings that must name the district
MIN_STREET = 2  # postings naming a street before it alone places an address

Path = tuple[str, ...]

# "테헤란로37길" -> 테헤란로, "가산디지털1로" stays, "올림픽로35다길" -> 올림픽로, "명동길" stays
# (a building number may follow without a space: "세종대로39", "테헤란로37길27")
_STREET = re.compile(
    r"^([가-힣A-Za-z0-9]*[가-힣](?:\d+)?(?:대로|로))(?:\d+[가-힣]?(?:번)?길)?(?:\d+(?:-\d+)?)?$"
)
_LANE = re.compile(r"^([가-힣]{2,}길)(?:\d+(?:-\d+)?)?$")
_DONG = re.compile(r"^([가-힣]+\d*(?:\.\d+)?(?:동|가|읍|면))(?:\d+(?:-\d+)?)?$")
_SPLIT = re.compile(r"[\s,()\[\]]+")


def streets(text: str) -> list[str]:
    """The street names written in ``text`` (lane numbers dropped)."""
    out = []
    for tok in _SPLIT.split(text):
        m = _STREET.match(tok) or _LANE.match(tok)
        if m and len(m.group(1)) >= 3 and m.group(1) not in out:
            out.append(m.group(1))
    return out


def dongs(text: str) -> list[str]:
    """The 읍/면/동 names written in ``text`` ("신당동291-32" -> 신당동)."""
    out = []
    for tok in _SPLIT.split(text):
        m = _DONG.match(tok)
        if m and len(m.group(1)) >= 2 and m.group(1) not in out:
            out.append(m.group(1))
    return out


def district(path: Path) -> Path:
    """The 시/군/구 part of a region path (a 시's 구 included: 성남시 분당구)."""
    if len(path) >= 3 and path[1].endswith("시") and path[2].endswith("구"):
        return path[:3]
    return path[:2]


def _path(region: ResolvedRegion) -> Path:
    return tuple(region.name.split(" "))


def _compatible(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


class RegionEvidence:
    """Districts per company and per street, learnt from a batch's resolved postings."""

    def __init__(self, resolver: RegionResolver) -> None:
        self.resolver = resolver
        self._company: dict[str, Counter[Path]] = {}
        self._street: dict[str, Counter[Path]] = {}
        self._dong: dict[str, Counter[Path]] = {}

    def observe(self, company: str | None, text: str, region: ResolvedRegion) -> None:
        """Record that ``text`` (of ``company``'s posting) resolved to ``region``."""
        path = district(_path(region))
        if len(path) < 2:
            return  # a province alone says nothing about a district
        if company:
            self._company.setdefault(company, Counter())[path] += 1
        for name in streets(text):
            self._street.setdefault(name, Counter())[path] += 1
        for name in _path(region)[2:]:
            if _DONG.match(name):
                self._dong.setdefault(name, Counter())[path] += 1

    def settle(self, company: str | None, text: str) -> tuple[ResolvedRegion | None, str]:
        """The region the evidence gives ``text``, or ``None`` and why not."""
        readings = self.resolver.candidates(text) or self.resolver.bare_districts(text)
        paths = [_path(r) for r in readings]
        verdicts: dict[str, Path] = {}
        if company and company in self._company:
            v = self._verdict(self._company[company], paths, 1)
            if v is not None:
                verdicts["the company's other postings"] = v
        for kind, names, table in (("on", streets(text), self._street),
                                   ("in", dongs(text), self._dong)):
            for name in names:
                v = self._verdict(table.get(name, Counter()), paths, 1 if paths else MIN_STREET)
                if v is not None:
                    verdicts[f"other postings {kind} {name}"] = v
                    break
        found = set(verdicts.values())
        shown = ", ".join(r.name for r in readings) or "none"
        if len(found) != 1:
            why = (f"{' and '.join(verdicts)} disagree" if found
                   else "nothing in the batch settles it")
            return None, f"readings: {shown}; {why}"
        (place,) = found
        matches = [p for p in paths if _compatible(p, place)]
        best = max(matches, key=len) if matches else place
        if len(best) < len(place):
            best = place
        return self.resolver.lookup(*best), f"settled by {', '.join(verdicts)}"

    @staticmethod
    def _verdict(counts: Counter[Path], paths: list[Path], minimum: int) -> Path | None:
        ok = {d: n for d, n in counts.items() if not paths or any(_compatible(d, p) for p in paths)}
        total = sum(ok.values())
        if not total:
            return None
        top, n = max(ok.items(), key=lambda kv: (kv[1], kv[0]))
        if n >= minimum and n >= AGREEMENT * total:
            return top
        return None


def resolution_share(counts: dict, rejects) -> dict:
    """Resolved share of the records whose address names a place, from an ingest result.

    ``counts`` and ``rejects`` are an :class:`~core.ingest.pipeline.IngestResult`'s. Records
    rejected for other reasons are left out (their region may never have been read);
    ``unknown_region`` rejects whose detail says the address "names no place" (blank,
    없음, 재택 …) are not places.
    """
    region = rejects.filter(rejects["reason"] == "unknown_region")["detail"].to_list()
    no_place = sum(1 for d in region if d.endswith("names no place"))
    unresolved = len(region) - no_place
    other = counts["rejected"] - len(region)
    places = counts["read"] - no_place - other
    return {
        "read": counts["read"],
        "no_place": no_place,
        "other_rejects": other,
        "places": places,
        "resolved": places - unresolved,
        "unresolved": unresolved,
        "resolved_share": round((places - unresolved) / places, 4) if places else None,
    }
