"""HRD-Net / Work24 training Open API XML: course list, course detail and error responses.

- list (훈련과정 목록, ``outType=1``): ``<HRDNet><scn_cnt/><pageNum/><pageSize/><srchList>``
  with one ``<scn_list>`` per course run;
- detail (과정/기관정보, ``outType=2``): ``<HRDNet><inst_base_info>…</inst_base_info>
  <inst_detail_info>…</inst_detail_info>…`` (facility and equipment blocks are ignored);
- error: any root with an ``<error>`` child (Work24 answers a bad key with HTTP 200 and
  ``<GO24><error>인증키가 존재하지 않습니다</error></GO24>``) or a ``<message>`` child
  raises :class:`core.errors.UpstreamApiError`.

Field names are those of the Open API documentation (list: ``trprId``, ``trprDegr``,
``title``, ``subTitle``, ``address``, ``ncsCd``, ``traStartDate``, ``traEndDate``,
``courseMan``, ``realMan``, ``yardMan``, ``regCourseMan``, ``eiEmplRate3``, ``eiEmplRate6``,
``stdgScor``, ``trainTarget``, ``trainTargetCd``, ``trainstCstId``, ``certificate``,
``contents``; detail: ``inoNm``, ``addr1``, ``addr2``, ``ncsNm``, ``perTrco``,
``instPerTrco``, ``trtm``, ``traingMthCd``, ``tgcrGnrlTrneOwepAllt``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from core.errors import InvalidInputError, MalformedSourceError, UpstreamApiError
from core.ingest.worknet_xml import XmlItem, _flatten, _local, _malformed, _to_utf8

ROOT = "HRDNet"
LIST_ITEM = "scn_list"
DETAIL_BASE, DETAIL_EXTRA = "inst_base_info", "inst_detail_info"
_SCN_CNT = re.compile(rb"<scn_cnt>\s*(\d+)\s*</scn_cnt>")


def read_hrd_xml(path: Path) -> list[XmlItem]:
    """Items of one HRD-Net XML file (kind "list" or "detail"); raises on error responses."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read: {exc.strerror or exc}", field="source") from exc
    return parse_hrd_bytes(data, str(path))


def total_count(data: bytes) -> int | None:
    """``scn_cnt`` of a list response (the number of courses the search matched)."""
    m = _SCN_CNT.search(data[:4096])
    return int(m.group(1)) if m else None


def parse_hrd_bytes(data: bytes, source: str) -> list[XmlItem]:
    """Items of one HRD-Net document held in memory (a file or an API response)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise _malformed(exc, source) from None
    except ValueError:  # EUC-KR / CP949 declared documents
        try:
            root = ET.fromstring(_to_utf8(data, source))
        except ET.ParseError as exc:
            raise _malformed(exc, source) from None
    tag = _local(root.tag)
    children = {_local(c.tag): c for c in root}
    if "error" in children or "message" in children:
        msg = children.get("error", children.get("message"))
        code = children.get("messageCd")
        raise UpstreamApiError(
            f"{source}: HRD-Net API error: {(msg.text or '').strip() or 'no message'}",
            code=(code.text or "").strip() if code is not None else None,
        )
    if tag != ROOT:
        raise MalformedSourceError(
            f"{source}: not an HRD-Net response (root <{tag}>, expected <{ROOT}>)", field="source"
        )
    bases = [e for e in root if _local(e.tag) == DETAIL_BASE]
    if bases:
        return _details(root, bases, source)
    lists = [e for sl in root if _local(sl.tag) == "srchList" for e in sl if _local(e.tag) == LIST_ITEM]
    if not lists and "srchList" not in children and "scn_cnt" not in children:
        raise MalformedSourceError(
            f"{source}: HRD-Net response is neither a course list (<srchList>) nor a course "
            f"detail (<{DETAIL_BASE}>)",
            field="source",
        )
    return [XmlItem("list", source, i, _flatten(e)) for i, e in enumerate(lists)]


def _details(root: ET.Element, bases: list[ET.Element], source: str) -> list[XmlItem]:
    """One item per ``inst_base_info``; an ``inst_detail_info`` of the same course fills gaps."""
    extras: dict[tuple[str, str], dict[str, str]] = {}
    for e in root:
        if _local(e.tag) == DETAIL_EXTRA:
            f = _flatten(e)
            extras.setdefault((f.get("trprId", ""), f.get("trprDegr", "")), f)
    out = []
    for i, e in enumerate(bases):
        f = _flatten(e)
        key = (f.get("trprId", ""), f.get("trprDegr", ""))
        extra = extras.get(key) or (next(iter(extras.values())) if len(bases) == 1 and extras else {})
        for k, v in extra.items():
            if v and not f.get(k):
                f[k] = v
        out.append(XmlItem("detail", source, i, f))
    return out


# -- mapping to course ingestion fields ----------------------------------------------------

LIST_MAP: dict[str, str] = {
    "trprId": "trpr_id",
    "trprDegr": "trpr_degr",
    "title": "title",
    "subTitle": "institution",
    "trainstCstId": "institution_id",
    "address": "address",
    "ncsCd": "ncs_code",
    "traStartDate": "start_date",
    "traEndDate": "end_date",
    "trainTargetCd": "training_type",
    "courseMan": "cost",
    "realMan": "real_cost",
    "yardMan": "capacity",
    "regCourseMan": "enrolled",
    "eiEmplRate3": "employment_rate_3m",
    "eiEmplRate6": "employment_rate_6m",
    "stdgScor": "satisfaction",
    "trainTarget": "target",
    "certificate": "certificate",
    "contents": "description",
}
# detail values fill what the list left empty, except the detail's institution name and
# street address, which are the better source (the list gives only "서울 강남구")
DETAIL_MAP: dict[str, str] = {
    "trprId": "trpr_id",
    "trprDegr": "trpr_degr",
    "trprNm": "title",
    "inoNm": "institution",
    "instIno": "institution_id",
    "addr1": "street_address",
    "addr2": "street_address_detail",
    "ncsCd": "ncs_code",
    "ncsNm": "ncs_name",
    "perTrco": "subsidy",
    "instPerTrco": "real_cost",
    "traingMthCd": "training_type",
    "trtm": "training_hours",
    "totTraingTime": "training_hours",
    "trprTargetNm": "target",
    "tgcrGnrlTrneOwepAllt": "self_pay",
}
_DETAIL_WINS = frozenset({"institution", "street_address", "street_address_detail"})


def hrd_fields(listed: dict[str, str] | None, detail: dict[str, str] | None) -> dict[str, Any]:
    """Course ingestion fields of a list item joined with its detail (either may be None)."""
    out: dict[str, Any] = {}
    if listed:
        for tag, field in LIST_MAP.items():
            value = listed.get(tag)
            if value:
                out[field] = value
    if detail:
        for tag, field in DETAIL_MAP.items():
            value = detail.get(tag)
            if value and (field in _DETAIL_WINS or not out.get(field)):
                out[field] = value
    return out


def item_course_id(fields: dict[str, str]) -> str:
    """``trprId_trprDegr`` of a raw list or detail item ("" when the id is missing)."""
    tid = (fields.get("trprId") or "").strip()
    degr = (fields.get("trprDegr") or "").strip()
    return f"{tid}_{degr}" if tid and degr else ""
