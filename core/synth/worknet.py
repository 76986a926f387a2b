"""Write canonical postings as Worknet/Work24 Open API XML (list + detail responses).

The format is the one in ``notes/xmlformat.md`` that :mod:`core.ingest` reads. Text fields
are written the way Worknet serves them: lines joined with ``<br>`` (escaped in the XML),
occasional HTML entities and markup, and contact details (phone numbers, e-mail addresses,
URLs) in some postings. Ingestion must clean and scrub them; apart from the added contact
lines, clean_text(jobCont) + "\\n" + clean_text(compAbl) gives back ``description``.
"""

from __future__ import annotations

import datetime as dt
import random
import zlib
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import polars as pl

from core.errors import InvalidInputError
from core.reference import occupations
from core.schema import EDUCATION_LEVELS, POSTING_SCHEMA
from core.synth import vocab as V
from core.synth.places import places
from core.synth.text import education_text, place_stem

WAGE_NAMES = {"hourly": "시급", "daily": "일급", "monthly": "월급", "yearly": "연봉"}
EMP_CODES = {"permanent": "10", "permanent_part_time": "11", "fixed_term": "20",
             "fixed_term_part_time": "21", "dispatch": "4", "daily": "3", "other": ""}
EMP_NAMES = {
    "permanent": "기간의 정함이 없는 근로계약",
    "permanent_part_time": "기간의 정함이 없는 근로계약(시간(선택)제)",
    "fixed_term": "기간의 정함이 있는 근로계약",
    "fixed_term_part_time": "기간의 정함이 있는 근로계약(시간(선택)제)",
    "dispatch": "파견근로",
    "daily": "일용근로",
    "other": "기타",
}
_DOMAINS = ("hanbit", "daesung", "samwoo", "dongyang", "mirae", "saerom", "greenfood", "acetech",
            "smartcare", "koreahr", "nuri", "haesol", "sejin", "taekwang", "gaon")
_AREA_CODES = {"서울특별시": "02", "부산광역시": "051", "대구광역시": "053", "인천광역시": "032",
               "광주광역시": "062", "대전광역시": "042", "울산광역시": "052",
               "세종특별자치시": "044", "경기도": "031", "강원도": "033", "충청북도": "043",
               "충청남도": "041", "전라북도": "063", "전라남도": "061", "경상북도": "054",
               "경상남도": "055", "제주특별자치도": "064"}
_ROAD_SUFFIX = ("로", "로", "길", "대로")


def _money(amount: int) -> str:
    if amount % 10_000 == 0:
        return f"{amount // 10_000:,}만원"
    return f"{amount:,}원"


def sal_text(wage_type: str | None, lo: int | None, hi: int | None) -> str:
    """Worknet's ``sal``: "월급 250만원 ~ 300만원", "연봉 3,000만원 이상", "면접 후 결정"."""
    if wage_type is None or (lo is None and hi is None):
        return "면접 후 결정"
    name = WAGE_NAMES[wage_type]
    if lo is not None and hi is not None:
        return f"{name} {_money(lo)}" if lo == hi else f"{name} {_money(lo)} ~ {_money(hi)}"
    if lo is not None:
        return f"{name} {_money(lo)} 이상"
    return f"{name} {_money(hi)} 이하"


def _yymmdd(d: dt.date) -> str:
    return d.strftime("%y-%m-%d")


def _phone(r: random.Random, sido: str) -> str:
    if r.random() < 0.4:
        return f"010-{r.randint(2000, 9999)}-{r.randint(1000, 9999)}"
    return f"{_AREA_CODES.get(sido, '031')}-{r.randint(200, 999)}-{r.randint(1000, 9999)}"


def _edu_fields(lo: int, hi: int) -> tuple[str, str]:
    """(minEdubg, maxEdubg): an empty maximum means "and above"."""
    return EDUCATION_LEVELS[lo], ("" if hi == 7 else EDUCATION_LEVELS[hi])


def _career_fields(kind: str, years: int, r: random.Random) -> tuple[str, str]:
    """(list career, detail enterTpNm)."""
    if kind == "entry":
        return "신입", "신입"
    if kind == "experienced":
        return "경력", (f"경력 (최소{years}년) 필수" if years else "경력")
    return r.choice((("관계없음", "관계없음"), ("신입/경력", "신입 또는 경력"),
                     ("신입·경력", "관계없음")))


def _split_description(desc: str) -> tuple[list[str], list[str]]:
    """Duties (jobCont) and qualifications (compAbl): the last qualification heading splits."""
    lines = desc.split("\n") if desc else []
    heads = set(V.QUAL_HEADS)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() in heads:
            return lines[:i], lines[i:]
    return lines, []


def _dirty(lines: list[str], r: random.Random, noise: bool) -> str:
    """Join lines the way Worknet serves them: <br>, entities, some markup."""
    if not noise:
        return "\n".join(lines)
    out = list(lines)
    if out and r.random() < 0.1:
        i = r.randrange(len(out))
        out[i] = out[i].replace(" ", "&nbsp;", 1)
    if out and r.random() < 0.08:
        out[0] = f"<b>{out[0]}</b>"
    if out and r.random() < 0.05:
        i = r.randrange(len(out))
        out[i] = out[i].replace("(", "&#40;").replace(")", "&#41;")
    sep = r.choice(("<br>", "<br>", "<br/>", "\n", "<br />\n"))
    return sep.join(out)


def _nearest_places(df: pl.DataFrame) -> np.ndarray:
    """Index of the 읍/면/동 nearest to each posting, preferring its own region string."""
    plc = places()
    lat = df["lat"].to_numpy()
    lng = df["lng"].to_numpy()
    regions = df["region"].to_list()
    out = np.empty(df.height, dtype=np.int64)
    by_region: dict[str, list[int]] = {}
    for i, reg in enumerate(regions):
        by_region.setdefault(reg, []).append(i)
    place_by_region: dict[str, np.ndarray] = {}
    for j, reg in enumerate(plc.region.tolist()):
        place_by_region.setdefault(reg, []).append(j)  # type: ignore[arg-type]
    every = np.arange(len(plc.lat))
    for reg, rows in by_region.items():
        cand = np.asarray(place_by_region.get(reg, every))
        ri = np.asarray(rows)
        for s in range(0, len(ri), 2048):  # bounded memory for a global fallback
            chunk = ri[s:s + 2048]
            d = ((lat[chunk, None] - plc.lat[None, cand]) ** 2
                 + ((lng[chunk, None] - plc.lng[None, cand]) * 0.8) ** 2)
            out[chunk] = cand[np.argmin(d, axis=1)]
    return out


def write_worknet_xml(df: pl.DataFrame, out_dir: str | Path, *, per_file: int = 1000,
                      seed: int = 0, noise: bool = True) -> list[Path]:
    """Write ``df`` (canonical schema) as Worknet list + detail XML files; return their paths.

    Files come in pairs, ``wanted_list_NNNN.xml`` (``<wantedRoot>`` of ``<wanted>``) and
    ``wanted_detail_NNNN.xml`` (``<wantedDtlRoot>`` of ``<wantedDtl>``), ``per_file``
    postings each, joined on wantedAuthNo. With ``noise`` (default) text carries ``<br>``,
    entities and, in some postings, contact lines (phone/e-mail/URL) that ingestion must
    scrub; ``seed`` fixes which.
    """
    if per_file < 1:
        raise ValueError(f"per_file must be >= 1, got {per_file}")
    missing = [c for c in POSTING_SCHEMA if c not in df.columns]
    if missing:
        raise InvalidInputError(f"postings lack columns {missing}", field=missing[0])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plc = places()
    near = _nearest_places(df) if df.height else np.empty(0, dtype=np.int64)
    occ = occupations()
    r = random.Random(seed)
    total = df.height
    paths: list[Path] = []
    rows = df.iter_rows(named=True)
    n_files = (total + per_file - 1) // per_file
    for k in range(n_files):
        lst = ['<?xml version="1.0" encoding="UTF-8"?>\n<wantedRoot>\n',
               f"  <total>{total}</total><startPage>{k + 1}</startPage>"
               f"<display>{per_file}</display>\n"]
        det = ['<?xml version="1.0" encoding="UTF-8"?>\n<wantedDtlRoot>\n']
        for i in range(k * per_file, min(total, (k + 1) * per_file)):
            row = next(rows)
            w, d = _posting_xml(row, int(near[i]), plc, occ, r, noise)
            lst.append(w)
            det.append(d)
        lst.append("</wantedRoot>\n")
        det.append("</wantedDtlRoot>\n")
        lp = out / f"wanted_list_{k + 1:04d}.xml"
        dp = out / f"wanted_detail_{k + 1:04d}.xml"
        lp.write_text("".join(lst), encoding="utf-8")
        dp.write_text("".join(det), encoding="utf-8")
        paths.extend((lp, dp))
    return paths


def _el(tag: str, value: object) -> str:
    if value is None:
        return f"<{tag}/>"
    text = str(value)
    if "&" in text or "<" in text or ">" in text:
        text = escape(text)
    return f"<{tag}>{text}</{tag}>"


def _posting_xml(row: dict, place: int, plc, occ, r: random.Random, noise: bool) -> tuple[str, str]:
    pid = row["posting_id"]
    company = row["company"]
    cr = random.Random(zlib.crc32(company.encode("utf-8")))  # a company's fixed facts
    sido = row["sido"]
    code = row["occupation_code"]
    o = occ.get(code)
    major = o.major_code if o else "01"
    industry = cr.choice(V.MAJOR[major][0])
    busino = f"{cr.randint(100, 899)}{cr.randint(10, 99)}{cr.randint(10000, 99999)}"
    domain = f"{cr.choice(_DOMAINS)}{cr.randint(1, 999)}.co.kr"

    # address: road-name form, the 동 in parentheses; 읍/면 are part of the road address
    emd = plc.emd[place]
    head = " ".join(p for p in (sido, plc.sigungu[place], plc.gu[place]) if p)
    road = f"{place_stem(emd)}{r.choice(_ROAD_SUFFIX)}"
    if r.random() < 0.3:
        road += f"{r.randint(1, 60)}번길"
    num = r.randint(1, 300)
    floor = f"{r.randint(1, 12)}층"
    if emd.endswith(("읍", "면")):
        basic = f"{head} {emd} {road} {num}"
        detail = floor
        work_region = f"{basic}, {floor}"
    else:
        if r.random() < 0.35:  # 지번 주소
            basic = f"{head} {emd} {r.randint(1, 999)}-{r.randint(1, 30)}"
        else:
            basic = f"{head} {road} {num}"
        detail = f"{floor} ({emd})"
        work_region = f"{head} {road} {num}, {floor} ({emd})"

    wt, lo, hi = row["wage_type"], row["wage_min"], row["wage_max"]
    sal = sal_text(wt, lo, hi)
    sal_tp = WAGE_NAMES.get(wt, "") if wt else ""
    min_edu, max_edu = _edu_fields(row["min_education_level"], row["max_education_level"])
    career, enter = _career_fields(row["career"], row["min_career_years"] or 0, r)
    reg: dt.date = row["registered_on"]
    close: dt.date | None = row["closes_on"]
    reg_s = _yymmdd(reg) if r.random() < 0.8 else reg.strftime("%Y%m%d")
    if close is None:
        close_s = "채용시까지"
    else:
        close_s = _yymmdd(close) if r.random() < 0.85 else f"채용시까지 {_yymmdd(close)}"
    emp = row["employment_type"]
    jobs_cd = code if r.random() < 0.9 else ""
    jobs_nm = f"{o.name}({code})" if o else f"({code})"

    duties, quals = _split_description(row["description"] or "")
    if noise:
        x = r.random()
        if x < 0.10:
            duties = duties + [f"문의: {_phone(r, sido)} (담당자 {r.choice(V.SURNAMES)}과장)"]
        elif x < 0.15:
            duties = duties + [f"이력서 제출: recruit{r.randint(1, 99)}@{domain}"]
        elif x < 0.19:
            duties = duties + [f"자세한 사항은 http://www.{domain}/recruit 참고"]
    job_cont = _dirty(duties, r, noise)
    comp_abl = _dirty(quals, r, noise)
    prefs = row["preferences"]

    list_xml = (
        "  <wanted>"
        + _el("wantedAuthNo", pid) + _el("company", company) + _el("busino", busino)
        + _el("indTpNm", industry) + _el("title", row["title"]) + _el("salTpNm", sal_tp)
        + _el("sal", sal) + _el("minSal", lo if lo is not None else 0)
        + _el("maxSal", hi if hi is not None else ("" if r.random() < 0.5 else 0))
        + _el("region", row["region"]) + _el("holidayTpNm", row["holiday_type"] or "")
        + _el("minEdubg", min_edu) + _el("maxEdubg", max_edu) + _el("career", career)
        + _el("regDt", reg_s) + _el("closeDt", close_s) + _el("infoSvc", "VALIDATION")
        + _el("wantedInfoUrl",
              f"https://www.work24.go.kr/wk/a/b/1500/empDetailAuthView.do?wantedAuthNo={pid}")
        + _el("wantedMobileInfoUrl",
              f"https://m.work24.go.kr/wk/a/b/1500/empDetailAuthView.do?wantedAuthNo={pid}")
        + _el("zipCd", f"{cr.randint(10000, 63999)}")
        + _el("strtnmCd", f"{cr.randint(10**11, 10**12 - 1)}")
        + _el("basicAddr", basic) + _el("detailAddr", detail)
        + _el("empTpCd", EMP_CODES.get(emp, "")) + _el("jobsCd", jobs_cd)
        + _el("smodifyDtm", reg.strftime("%Y%m%d") + f"{r.randint(8, 18):02d}{r.randint(0, 59):02d}")
        + "</wanted>\n"
    )
    detail_xml = (
        "  <wantedDtl>" + _el("wantedAuthNo", pid)
        + "<corpInfo>" + _el("corpNm", company)
        + _el("reperNm", cr.choice(V.SURNAMES) + cr.choice(V.GIVEN))
        + _el("totPsncnt", cr.randint(3, 500)) + _el("indTpCdNm", industry)
        + _el("busiCont", f"{industry} 전문 기업") + _el("corpAddr", basic)
        + _el("homePg", f"http://www.{domain}") + _el("busiSize", cr.choice(V.BUSI_SIZE))
        + "</corpInfo><wantedInfo>"
        + _el("jobsNm", jobs_nm) + _el("wantedTitle", row["title"])
        + _el("relJobsNm", o.mid_name if o else "") + _el("jobCont", job_cont)
        + _el("receiptCloseDt", close_s) + _el("empTpNm", EMP_NAMES.get(emp, "기타"))
        + _el("collectPsncnt", r.choice((1, 1, 1, 2, 3, 5)))
        + _el("salTpNm", sal) + _el("enterTpNm", enter)
        + _el("eduNm", education_text(row["min_education_level"], row["max_education_level"]))
        + _el("forLang", "") + _el("major", row["major"] or "")
        + _el("certificate", row["certificates"] or "") + _el("compAbl", comp_abl)
        + _el("pfCond", prefs or "") + _el("etcPfCond", "")
        + _el("selMthd", r.choice(V.SELECTION)) + _el("rcptMthd", r.choice(V.RECEIPT))
        + _el("submitDoc", r.choice(V.SUBMIT_DOCS)) + _el("workRegion", work_region)
        + _el("nearLine", row["near_station"] or "")
        + _el("workdayWorkhrCont", row["work_hours"] or "")
        + _el("fourIns", "국민연금 고용보험 산재보험 건강보험") + _el("retirepay", "퇴직금")
        + _el("etcWelfare", ", ".join(r.sample(V.WELFARE, 2)))
        + "</wantedInfo><empchargeInfo>"
        + _el("empChargerDpt", r.choice(V.DEPARTMENTS)) + _el("contactTelNo", _phone(r, sido))
        + "<chargerFaxNo/></empchargeInfo></wantedDtl>\n"
    )
    return list_xml, detail_xml
