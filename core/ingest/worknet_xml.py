"""Worknet/Work24 Open API XML: list responses, detail responses and error responses.

A file holds one root: ``<wantedRoot>`` (list call, ``<wanted>`` items), ``<wantedDtl>``
(one detail response) or ``<wantedDtlRoot>`` (many ``<wantedDtl>``). Any root carrying
``<message>``/``<messageCd>`` is an error response and raises
:class:`core.errors.UpstreamApiError`. Files are streamed with ``iterparse``.

List items and details are joined on ``wantedAuthNo`` by :func:`join_records`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidInputError, MalformedSourceError, UpstreamApiError

LIST_ROOT, LIST_ITEM = "wantedRoot", "wanted"
DETAIL_ROOTS, DETAIL_ITEM = ("wantedDtl", "wantedDtlRoot"), "wantedDtl"


@dataclass(slots=True)
class XmlItem:
    """One ``<wanted>`` (kind "list") or ``<wantedDtl>`` (kind "detail") as a flat dict."""

    kind: str
    source: str
    index: int
    fields: dict[str, str]


def expand_sources(sources: Iterable[Path | str], suffix: str) -> list[Path]:
    """Files named by ``sources``; a directory stands for its ``*{suffix}`` files, sorted."""
    out: list[Path] = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            files = sorted(p for p in path.glob(f"*{suffix}") if p.is_file())
            if not files:
                raise InvalidInputError(f"{path}: directory holds no *{suffix} files", field="source")
            out.extend(files)
        elif path.is_file():
            out.append(path)
        else:
            raise InvalidInputError(f"{path}: no such file or directory", field="source")
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if tag[:1] == "{" else tag


def _flatten(elem: ET.Element) -> dict[str, str]:
    """Leaf elements under ``elem`` (any depth) as tag -> stripped text; first one wins."""
    out: dict[str, str] = {}
    for e in elem.iter():
        if not len(e):
            tag = e.tag
            if tag[0] == "{":  # namespaced documents are rare; strip the namespace
                tag = _local(tag)
            if tag not in out:
                text = e.text
                out[tag] = text.strip() if text else ""
    return out


# Files up to this size are parsed in one go by the C tree builder (several times faster
# than iterparse's per-element events); larger ones are streamed so memory stays bounded.
WHOLE_FILE_BYTES = 64 * 1024 * 1024


def read_xml(path: Path) -> Iterator[XmlItem]:
    """Items of one XML file; raises MalformedSourceError or UpstreamApiError."""
    try:
        if path.stat().st_size <= WHOLE_FILE_BYTES:
            data = path.read_bytes()
        else:
            data = None
            with open(path, "rb") as fh:
                yield from _iterparse(fh, str(path))
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read: {exc.strerror or exc}", field="source") from exc
    if data is not None:
        yield from parse_xml_bytes(data, str(path))


def parse_xml_bytes(data: bytes, source: str) -> list[XmlItem]:
    """Items of one XML document held in memory (a small file or an API response)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise _malformed(exc, source) from None
    except ValueError:  # expat has no multi-byte codecs: EUC-KR / CP949 responses
        try:
            root = ET.fromstring(_to_utf8(data, source))
        except ET.ParseError as exc:
            raise _malformed(exc, source) from None
    root_tag = _local(root.tag)
    if root_tag == LIST_ROOT:
        items = [e for e in root if _local(e.tag) == LIST_ITEM]
        kind = "list"
    elif root_tag == "wantedDtlRoot":
        items = [e for e in root if _local(e.tag) == DETAIL_ITEM]
        kind = "detail"
    elif root_tag == DETAIL_ITEM:
        items, kind = [root], "detail"
    else:
        items, kind = [], ""
    if not items:
        _check_root(root, root_tag, source)
    return [XmlItem(kind, source, i, _flatten(e)) for i, e in enumerate(items)]


_DECLARED = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"'][^>]*\?>")


def _to_utf8(data: bytes, source: str) -> bytes:
    """The document re-encoded as UTF-8, its declaration dropped (for EUC-KR/CP949)."""
    m = _DECLARED.match(data)
    if not m:
        raise MalformedSourceError(f"{source}: unsupported XML encoding", field="source")
    encoding = m.group(1).decode("ascii")
    if encoding.lower() in ("euc-kr", "euc_kr", "ks_c_5601-1987", "ksc5601"):
        encoding = "cp949"  # a superset, as Korean servers really send
    try:
        return data[m.end():].decode(encoding).encode("utf-8")
    except (LookupError, UnicodeDecodeError) as exc:
        raise MalformedSourceError(
            f"{source}: cannot decode XML declared as {encoding}: {exc}", field="source"
        ) from None


def _malformed(exc: ET.ParseError, source: str) -> MalformedSourceError:
    line, col = getattr(exc, "position", (0, 0))
    reason = str(exc).split(":", 1)[0]
    return MalformedSourceError(
        f"{source}: malformed XML at line {line}, column {col + 1}: {reason}", field="source"
    )


def _iterparse(fh: Any, source: str) -> Iterator[XmlItem]:
    root = root_tag = None
    index = 0
    stack_depth = 0
    try:
        for event, elem in ET.iterparse(fh, events=("start", "end")):
            if event == "start":
                stack_depth += 1
                if root is None:
                    root, root_tag = elem, _local(elem.tag)
                continue
            stack_depth -= 1
            tag = _local(elem.tag)
            if root_tag == LIST_ROOT and tag == LIST_ITEM and stack_depth == 1:
                yield XmlItem("list", source, index, _flatten(elem))
                index += 1
                root.clear()  # drop finished items so memory stays flat
            elif root_tag in DETAIL_ROOTS and tag == DETAIL_ITEM and (
                stack_depth == 0 or (root_tag == "wantedDtlRoot" and stack_depth == 1)
            ):
                yield XmlItem("detail", source, index, _flatten(elem))
                index += 1
                if elem is not root:
                    root.clear()
            elif stack_depth == 0:
                _check_root(elem, root_tag, source)
    except ET.ParseError as exc:
        raise _malformed(exc, source) from None
    except ValueError as exc:  # a multi-byte encoding in a file too large to load whole
        raise MalformedSourceError(
            f"{source}: {exc}; re-encode the file as UTF-8", field="source"
        ) from None


def _check_root(root: ET.Element, root_tag: str, source: str) -> None:
    """At the end of the document: error responses and unknown roots are errors."""
    children = {_local(c.tag): (c.text or "").strip() for c in root}
    if "message" in children or "messageCd" in children:
        raise UpstreamApiError(
            f"{source}: Work24 API error: {children.get('message') or 'no message'}",
            code=children.get("messageCd") or None,
        )
    if root_tag != LIST_ROOT and root_tag not in DETAIL_ROOTS:
        raise MalformedSourceError(
            f"{source}: not a Worknet response (root <{root_tag}>, expected <{LIST_ROOT}>, "
            f"<wantedDtl> or <wantedDtlRoot>)",
            field="source",
        )


# -- mapping to ingestion fields -----------------------------------------------------------

_LIST_MAP: dict[str, str] = {
    "wantedAuthNo": "posting_id",
    "company": "company",
    "title": "title",
    "salTpNm": "wage_type",
    "sal": "wage",
    "minSal": "wage_min",
    "maxSal": "wage_max",
    "region": "region",
    "holidayTpNm": "holiday_type",
    "minEdubg": "min_education_level",
    "maxEdubg": "max_education_level",
    "career": "career",
    "regDt": "registered_on",
    "closeDt": "closes_on",
    "basicAddr": "address",
    "detailAddr": "address_detail",
    "empTpCd": "employment_type",
    "jobsCd": "occupation_code",
}
# detail values only fill what the list item left empty, except where the detail is the
# richer source (the title, duties…); salTpNm in a detail is the wage text.
_DETAIL_MAP: dict[str, str] = {
    "wantedAuthNo": "posting_id",
    "corpNm": "company",
    "jobsNm": "occupation_name",
    "jobCont": "duties",
    "compAbl": "qualifications",
    "receiptCloseDt": "closes_on",
    "empTpNm": "employment_type_name",
    "salTpNm": "wage",
    "enterTpNm": "career_detail",
    "eduNm": "education",
    "major": "major",
    "certificate": "certificates",
    "pfCond": "preferences",
    "etcPfCond": "preferences_extra",
    "workRegion": "address",
    "nearLine": "near_station",
    "workdayWorkhrCont": "work_hours",
}
_DETAIL_WINS = frozenset({"duties", "qualifications"})


def worknet_fields(
    listed: dict[str, str] | None, detail: dict[str, str] | None
) -> dict[str, Any]:
    """Ingestion fields of a list item joined with its detail (either may be None)."""
    out: dict[str, Any] = {}
    if listed:
        for tag, field in _LIST_MAP.items():
            value = listed.get(tag)
            if value:
                out[field] = value
    if detail:
        for tag, field in _DETAIL_MAP.items():
            value = detail.get(tag)
            if value and (field in _DETAIL_WINS or not out.get(field)):
                out[field] = value
        title = detail.get("wantedTitle")
        if title:  # the mapping prefers wantedTitle over the list title
            out["title"] = title
    return out
