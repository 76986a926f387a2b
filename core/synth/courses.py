"""Synthetic HRD-Net training courses, with the ground truth kept for evaluation, and their
HRD-Net Open API XML (list ``<HRDNet><scn_cnt/><srchList><scn_list>…`` + detail
``<HRDNet><inst_base_info>…``).

Each course is generated *for* a KECO occupation (the truth, in a separate table that the
canonical schema never carries): its NCS code is that occupation's NCS 대분류 (via
``core/data/ncs_keco.csv``) with a sub-code per KECO mid group, its title, description and
certificate come from the occupation's vocabulary. Institutions are clustered in cities
(places drawn by population weight, a few institutions per field and city), addresses are
district-level as the list API gives them.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import polars as pl

from core.courses import (
    COURSE_SCHEMA,
    keco_mids_for_ncs,
    ncs_major_for_keco_mid,
    ncs_major_names,
)
from core.synth import vocab as V
from core.synth.occupations import popularity, profiles
from core.synth.places import jitter, places
from core.synth.postings import DEFAULT_REF_DATE
from core.synth.text import loc_short, mid_bank

TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "course_id": pl.Utf8(),
    "occupation_code": pl.Utf8(),  # the KECO occupation the course was generated for
    "mid_code": pl.Utf8(),  # its KECO mid group (the "occupation family")
}
_TARGETS = ("국민내일배움카드(일반)", "국민내일배움카드(일반)", "국민내일배움카드(구직자)",
            "국가기간전략산업직종", "산업구조변화대응")
_TYPE_CODE = {"classroom": "M1001", "online": "M1005", "blended": "M1010"}
# 국민내일배움카드 subsidises 45-85% of the fee; 국가기간 / K-디지털 courses are fully funded
_SUBSIDY = {"국가기간전략산업직종": 1.0, "K-디지털 트레이닝": 1.0}


@dataclass(frozen=True)
class CourseCorpus:
    """Generated courses (canonical :data:`~core.courses.COURSE_SCHEMA`) and their truth."""

    courses: pl.DataFrame
    truth: pl.DataFrame  # TRUTH_SCHEMA, same row order


def generate_courses(c: int, seed: int, *, ref_date: dt.date | None = None) -> pl.DataFrame:
    """``c`` synthetic courses in the canonical schema (see :func:`generate_course_corpus`)."""
    return generate_course_corpus(c, seed, ref_date=ref_date).courses


def generate_course_corpus(c: int, seed: int, *, ref_date: dt.date | None = None) -> CourseCorpus:
    """``c`` synthetic HRD-Net course runs and their ground truth, deterministic for ``seed``.

    Start dates spread from 45 days before to 120 days after ``ref_date`` (runs that have
    started are still listed, as HRD-Net lists them); office / IT courses are often 인터넷
    (online, 25%) or 혼합, hands-on trades rarely (3%); about 10% are full; employment
    rates exist only for courses with a track record (null otherwise, as HRD-Net's 'A'
    개설예정).
    """
    if isinstance(c, bool) or not isinstance(c, int) or c < 0:
        raise ValueError(f"c must be a non-negative int, got {c!r}")
    ref = ref_date or DEFAULT_REF_DATE
    rng = np.random.default_rng(seed)
    profs = profiles()
    pop = popularity().copy()
    # training targets trades, services and IT more than management or doctors
    pop *= np.array([0.1 if p.tier == "M" or p.mid_code in ("041", "042") else 1.0 for p in profs])
    pop /= pop.sum()
    occ = rng.choice(len(profs), c, p=pop)
    plc = places()
    r = random.Random(int(rng.integers(0, 2**63)))
    ncs_names = ncs_major_names()
    # a pool of institutions per NCS 대분류, each at a population-weighted place
    pools: dict[str, list[tuple[str, str, int, float, float]]] = {}
    rows: list[dict] = []
    truth: list[tuple[str, str, str]] = []
    start0 = ref.toordinal()
    for i, o in enumerate(occ.tolist()):
        p = profs[o]
        major = ncs_major_for_keco_mid(p.mid_code) or "02"
        pool = pools.setdefault(major, [])
        if not pool or r.random() < max(0.08, 4.0 / (len(pool) + 4)):
            pool.append(_institution(rng, r, plc, p, major, len(pools), len(pool)))
        inst_name, inst_id, h, ilat, ilng = pool[min(int(r.paretovariate(1.2)) - 1, len(pool) - 1)]
        bank = mid_bank(p.mid_code)
        alias = r.choice(p.aliases)
        kw = r.choice(bank.keywords)
        cert = r.choice(bank.certs) if bank.certs and r.random() < 0.65 else None
        x = r.random()
        if cert and x < 0.3:
            title = f"{cert} 자격취득과정"
        elif x < 0.5:
            title = f"(산대특){alias} 양성과정"
        elif x < 0.7:
            title = f"{kw} 실무자 양성과정"
        elif x < 0.85:
            title = f"[국기]{alias} 취업과정"
        else:
            title = f"{kw} 전문가 과정(NCS 기반)"
        # office, IT and service theory train online; hands-on trades almost never do
        desk = p.major_code in ("01", "02", "03", "05")
        y = r.random()
        ttype = ("online" if y < (0.25 if desk else 0.03) else
                 "blended" if y < (0.35 if desk else 0.08) else "classroom")
        hours = r.choice((40, 80, 120, 160, 240, 320, 480, 600, 720, 900))
        start = start0 + int(rng.integers(-45, 121))
        days = max(7, hours // 6 + int(rng.integers(0, 20)))
        cost = int(round(hours * int(rng.integers(2_500, 7_000)), -3))
        target = "K-디지털 트레이닝" if p.major_code == "02" and r.random() < 0.5 else r.choice(_TARGETS)
        rate = _SUBSIDY.get(target, r.choice((0.45, 0.55, 0.65, 0.75, 0.85)))
        subsidy = int(round(cost * rate, -3))
        capacity = int(rng.integers(10, 41))
        full = r.random() < 0.1
        enrolled = capacity if full else int(rng.integers(0, capacity))
        track = r.random() < 0.7
        items = r.sample(bank.duties, min(3, len(bank.duties)))
        lines = [f"[훈련목표] {alias} 직무 수행에 필요한 실무 능력 습득", "[훈련내용]"]
        lines += [f"- {d} 실습" for d in items]
        if cert:
            lines.append(f"[취득 가능 자격] {cert}")
        lines.append(f"[훈련대상] {r.choice(('실업자', '재직자', '실업자 및 재직자', '청년 구직자'))}")
        trpr_id = f"AIG{ref.year}{seed % 100:02d}{i + 1:07d}"
        degr = 1 + int(r.random() * 6)
        lat, lng = jitter(rng, np.array([ilat]), np.array([ilng]), max_km=0.3)
        mid_index = sorted(keco_mids_for_ncs(major)).index(p.mid_code) + 1
        rows.append({
            "course_id": f"{trpr_id}_{degr}",
            "trpr_id": trpr_id,
            "trpr_degr": degr,
            "title": title,
            "institution": inst_name,
            "institution_id": inst_id,
            "address": str(plc.region[h]),
            "sido": str(plc.sido[h]),
            "sigungu": str(plc.sigungu[h]) or None,
            "lat": round(float(lat[0]), 6),
            "lng": round(float(lng[0]), 6),
            "ncs_code": f"{major}{mid_index:02d}{1 + int(r.random() * 3):02d}{1 + int(r.random() * 4):02d}",
            "ncs_name": f"{ncs_names[major].split('/')[0]}-{kw}",
            "start_date": dt.date.fromordinal(start),
            "end_date": dt.date.fromordinal(start + days),
            "training_type": ttype,
            "online": ttype == "online",
            "cost": cost,
            "real_cost": cost,
            "subsidy": subsidy,
            "self_pay": cost - subsidy,
            "capacity": capacity,
            "enrolled": enrolled,
            "employment_rate_3m": round(float(rng.uniform(20, 85)), 1) if track else None,
            "employment_rate_6m": round(float(rng.uniform(30, 90)), 1) if track else None,
            "satisfaction": round(float(rng.uniform(70, 100)), 1) if track else None,
            "training_hours": hours,
            "target": target,
            "certificate": cert,
            "description": "\n".join(lines),
        })
        truth.append((rows[-1]["course_id"], p.code, p.mid_code))
    courses = pl.DataFrame(rows, schema=COURSE_SCHEMA, orient="row")
    truth_df = pl.DataFrame(truth, schema=TRUTH_SCHEMA, orient="row")
    return CourseCorpus(courses, truth_df)


def _institution(rng, r: random.Random, plc, p, major: str, salt: int, n: int):
    h = int(rng.choice(len(plc.prob), p=plc.prob))
    city = loc_short(str(plc.sigungu[h]), "", str(plc.emd[h])).split()[0]
    stem = r.choice(V.COMPANY_STEMS)
    if p.mid_code in ("044", "068"):
        name = f"{stem}요양보호사교육원"
    elif p.major_code in ("09", "10", "08") and r.random() < 0.3:
        name = f"한국폴리텍대학 {city}캠퍼스"
    elif p.major_code == "02" and r.random() < 0.5:
        name = f"{stem}IT아카데미"
    else:
        name = r.choice((f"{stem}직업전문학교", f"{city}{stem}평생교육원", f"{stem}{city}직업훈련원"))
    inst_id = f"5000{int(major):02d}{salt:02d}{n:04d}"
    return name, inst_id, h, float(plc.lat[h]), float(plc.lng[h])


# -- HRD-Net Open API XML --------------------------------------------------------------


def _el(tag: str, value) -> str:
    return f"<{tag}>{escape('' if value is None else str(value))}</{tag}>"


def _ymd(d: dt.date, dashed: bool) -> str:
    return d.isoformat() if dashed else d.strftime("%Y%m%d")


def list_item_xml(row: dict, *, dashed: bool = True) -> str:
    """One ``<scn_list>`` element for a canonical course row (list API fields only)."""
    parts = [
        _el("address", row["address"]), _el("certificate", row["certificate"]),
        _el("contents", row["description"]), _el("courseMan", row["cost"]),
        _el("eiEmplRate3", "A" if row["employment_rate_3m"] is None else row["employment_rate_3m"]),
        _el("eiEmplRate6", "A" if row["employment_rate_6m"] is None else row["employment_rate_6m"]),
        _el("instCd", row["institution_id"]), _el("ncsCd", row["ncs_code"]),
        _el("realMan", row["real_cost"]), _el("regCourseMan", row["enrolled"]),
        _el("stdgScor", "" if row["satisfaction"] is None else round(row["satisfaction"] * 100)),
        _el("subTitle", row["institution"]), _el("title", row["title"]),
        _el("traStartDate", _ymd(row["start_date"], dashed)),
        _el("traEndDate", _ymd(row["end_date"], dashed)),
        _el("trainTarget", row["target"]),
        _el("trainTargetCd", _TYPE_CODE[row["training_type"]]),
        _el("trainstCstId", row["institution_id"]), _el("trprDegr", row["trpr_degr"]),
        _el("trprId", row["trpr_id"]), _el("yardMan", row["capacity"]),
    ]
    return "<scn_list>" + "".join(parts) + "</scn_list>"


def list_page_xml(rows: list[dict], total: int, page: int, page_size: int) -> str:
    """A whole list response page."""
    body = "".join(list_item_xml(r, dashed=(i % 2 == 0)) for i, r in enumerate(rows))
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<HRDNet><scn_cnt>{total}</scn_cnt>'
            f"<pageNum>{page}</pageNum><pageSize>{page_size}</pageSize>"
            f"<srchList>{body}</srchList></HRDNet>")


def detail_xml(row: dict) -> str:
    """A 과정/기관정보 (detail) response for a canonical course row."""
    base = [
        _el("addr1", row["address"]), _el("addr2", ""), _el("inoNm", row["institution"]),
        _el("instIno", row["institution_id"]), _el("instPerTrco", row["real_cost"]),
        _el("ncsCd", row["ncs_code"]), _el("ncsNm", row["ncs_name"]), _el("ncsYn", "Y"),
        _el("perTrco", row["subsidy"]), _el("trDcnt", (row["end_date"] - row["start_date"]).days),
        _el("traingMthCd", _TYPE_CODE[row["training_type"]]), _el("trprDegr", row["trpr_degr"]),
        _el("trprId", row["trpr_id"]), _el("trprNm", row["title"]),
        _el("trprTargetNm", row["target"]), _el("trtm", row["training_hours"]),
    ]
    det = [_el("trprId", row["trpr_id"]), _el("trprDegr", row["trpr_degr"]),
           _el("tgcrGnrlTrneOwepAllt", row["self_pay"]),
           _el("totTraingTime", row["training_hours"])]
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<HRDNet><inst_base_info>' + "".join(base)
            + "</inst_base_info><inst_detail_info>" + "".join(det) + "</inst_detail_info></HRDNet>")


def write_hrd_xml(courses: pl.DataFrame, out_dir: Path | str, *, per_file: int = 100) -> list[Path]:
    """Write ``courses`` as HRD-Net list pages (``list_*.xml``) and one detail file per course
    (``detail_<course_id>.xml``); returns the paths written."""
    if per_file < 1:
        raise ValueError(f"per_file must be >= 1, got {per_file}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = courses.to_dicts()
    paths = []
    for k in range(0, len(rows), per_file):
        path = out / f"list_{k // per_file + 1:04d}.xml"
        path.write_text(list_page_xml(rows[k:k + per_file], len(rows), k // per_file + 1, per_file),
                        encoding="utf-8")
        paths.append(path)
    for row in rows:
        path = out / f"detail_{row['course_id']}.xml"
        path.write_text(detail_xml(row), encoding="utf-8")
        paths.append(path)
    return paths


__all__ = ["TRUTH_SCHEMA", "CourseCorpus", "generate_courses", "generate_course_corpus",
           "write_hrd_xml", "list_page_xml", "detail_xml"]
