"""Synthetic job seekers and HRD training courses (schemas may evolve)."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import polars as pl

from core.synth import vocab as V
from core.synth.occupations import popularity, profiles
from core.synth.places import jitter, places
from core.synth.postings import CAREER_DIST, DEFAULT_REF_DATE, EDU_DIST
from core.synth.text import loc_short, mid_bank

SEEKER_SCHEMA: dict[str, pl.DataType] = {
    "seeker_id": pl.Utf8(),
    "desired_occupation_codes": pl.List(pl.Utf8()),
    "region": pl.Utf8(),
    "sido": pl.Utf8(),
    "lat": pl.Float64(),
    "lng": pl.Float64(),
    "education_level": pl.Int8(),
    "career_years": pl.Int16(),
    "desired_wage": pl.Int64(),
    "resume_text": pl.Utf8(),
}

COURSE_SCHEMA: dict[str, pl.DataType] = {
    "course_id": pl.Utf8(),
    "title": pl.Utf8(),
    "description": pl.Utf8(),
    "institution": pl.Utf8(),
    "occupation_code": pl.Utf8(),
    "region": pl.Utf8(),
    "sido": pl.Utf8(),
    "lat": pl.Float64(),
    "lng": pl.Float64(),
    "start_date": pl.Date(),
    "end_date": pl.Date(),
    "training_hours": pl.Int32(),
    "cost": pl.Int64(),
    "support_type": pl.Utf8(),
    "capacity": pl.Int16(),
}

_INTROS = (
    "성실하고 책임감 있게 일하겠습니다.", "꼼꼼한 성격으로 맡은 일을 끝까지 해냅니다.",
    "고객 응대 경험이 많아 친절합니다.", "체력에 자신 있고 장기 근무를 희망합니다.",
    "새로운 업무도 빠르게 배웁니다.", "집에서 가까운 곳에서 오래 일하고 싶습니다.",
    "관련 자격증을 취득하고 현장 경험을 쌓았습니다.", "팀원들과 협력하여 성과를 낸 경험이 있습니다.",
)
_SUPPORT = ("국민내일배움카드", "국민내일배움카드", "국가기간·전략산업직종훈련", "K-디지털 트레이닝",
            "산업구조변화대응 특화훈련", "사업주훈련")


def generate_seekers(m: int, seed: int, *, postings: pl.DataFrame | None = None) -> pl.DataFrame:
    """``m`` synthetic job seekers, deterministic for ``seed``.

    Columns (:data:`SEEKER_SCHEMA`): ``seeker_id``; ``desired_occupation_codes`` (1-3 KECO
    codes, related ones from the same mid group); ``region`` (Worknet short form), ``sido``,
    ``lat``/``lng`` (home); ``education_level`` (0-7 as in the posting schema);
    ``career_years``; ``desired_wage`` (KRW per month); ``resume_text`` (Korean free text,
    no contact details). With ``postings``, each seeker is modelled on a random posting
    (its occupation, a home within about 8 km, usually meeting its requirements), so
    seekers have matches in that corpus.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(f"m must be a non-negative int, got {m!r}")
    rng = np.random.default_rng(seed)
    profs = profiles()
    code_index = {p.code: i for i, p in enumerate(profs)}
    plc = places()
    by_mid: dict[str, list[int]] = {}
    for i, p in enumerate(profs):
        by_mid.setdefault(p.mid_code, []).append(i)
    if postings is not None and postings.height:
        anchor = rng.choice(postings.height, m)
        a = postings[anchor]
        occ = np.array([code_index.get(c, 0) for c in a["occupation_code"].to_list()])
        lat0, lng0 = a["lat"].to_numpy(), a["lng"].to_numpy()
        lat, lng = jitter(rng, lat0, lng0, max_km=8.0)
        region = a["region"].to_list()
        sido = a["sido"].to_list()
        need_edu = a["min_education_level"].to_numpy().astype(np.int64)
        meets = rng.random(m) < 0.85
        edu = np.where(meets, np.minimum(need_edu + (rng.random(m) < 0.3), 7),
                       np.maximum(need_edu - 1, 0))
        need_years = a["min_career_years"].fill_null(0).to_numpy().astype(np.int64)
        years = np.where(rng.random(m) < 0.8, need_years + rng.poisson(1.5, m),
                         np.maximum(need_years - 1, 0))
        mw = a["monthly_wage"].to_numpy()
        base = np.array([profs[o].monthly_base for o in occ], dtype=np.float64)
        wage_base = np.where(np.isnan(mw.astype(np.float64)), base, mw)
    else:
        occ = rng.choice(len(profs), m, p=popularity())
        home = rng.choice(len(plc.prob), m, p=plc.prob)
        lat, lng = jitter(rng, plc.lat[home], plc.lng[home], max_km=1.5)
        region = plc.region[home].tolist()
        sido = plc.sido[home].tolist()
        tier = np.array([profs[o].tier for o in occ])
        edu = np.zeros(m, dtype=np.int64)
        years = np.zeros(m, dtype=np.int64)
        for t, (values, probs) in EDU_DIST.items():
            idx = np.flatnonzero(tier == t)
            if len(idx):
                edu[idx] = np.asarray(values)[rng.choice(len(values), len(idx), p=probs)]
                years[idx] = rng.poisson(CAREER_DIST[t][1] + 1.0, len(idx))
        wage_base = np.array([profs[o].monthly_base for o in occ], dtype=np.float64)
    wage = np.round(wage_base * rng.lognormal(0.0, 0.1, m), -4).astype(np.int64)

    r = random.Random(int(rng.integers(0, 2**63)))
    codes: list[list[str]] = []
    resumes: list[str] = []
    for i, o in enumerate(occ.tolist()):
        p = profs[o]
        want = [p.code]
        sib = by_mid[p.mid_code]
        for _ in range(int(r.random() * 3)):
            c = profs[r.choice(sib)].code
            if c not in want:
                want.append(c)
        codes.append(want)
        bank = mid_bank(p.mid_code)
        y = int(years[i])
        lines = [f"[희망직종] {r.choice(p.aliases)}"]
        if y:
            duties = r.sample(bank.duties, min(len(bank.duties), 1 + int(r.random() * 2)))
            lines.append(f"[경력] {r.choice(V.COMPANY_STEMS)}{r.choice(V.MAJOR[p.major_code][1])} "
                         f"{y}년 근무 - " + ", ".join(duties))
        else:
            lines.append("[경력] 신입")
        if bank.certs and r.random() < 0.5:
            lines.append(f"[자격증] {r.choice(bank.certs)}")
        lines.append(f"[희망지역] {region[i]}")
        lines.append(f"[자기소개] {r.choice(_INTROS)}")
        resumes.append("\n".join(lines))
    return pl.DataFrame({
        "seeker_id": [f"S{seed % 1000:03d}{i + 1:07d}" for i in range(m)],
        "desired_occupation_codes": codes,
        "region": region,
        "sido": sido,
        "lat": np.round(lat, 6),
        "lng": np.round(lng, 6),
        "education_level": edu,
        "career_years": np.minimum(years, 40),
        "desired_wage": wage,
        "resume_text": resumes,
    }, schema=SEEKER_SCHEMA)


def generate_courses(c: int, seed: int, *, ref_date: dt.date | None = None) -> pl.DataFrame:
    """``c`` synthetic HRD-Net training courses, deterministic for ``seed``.

    Columns (:data:`COURSE_SCHEMA`): ``course_id``, ``title``, ``description``,
    ``institution``, ``occupation_code`` (the KECO occupation trained for), ``region``,
    ``sido``, ``lat``/``lng``, ``start_date``/``end_date`` (starting from 30 days before to
    90 days after ``ref_date``), ``training_hours``, ``cost`` (KRW, before subsidy),
    ``support_type`` (내일배움카드, K-디지털 트레이닝…), ``capacity`` (seats).
    """
    if isinstance(c, bool) or not isinstance(c, int) or c < 0:
        raise ValueError(f"c must be a non-negative int, got {c!r}")
    ref = ref_date or DEFAULT_REF_DATE
    rng = np.random.default_rng(seed)
    profs = profiles()
    pop = popularity().copy()
    # training targets trades and services more than management or doctors
    pop *= np.array([0.15 if p.tier == "M" or p.mid_code == "041" else 1.0 for p in profs])
    pop /= pop.sum()
    occ = rng.choice(len(profs), c, p=pop)
    plc = places()
    home = rng.choice(len(plc.prob), c, p=plc.prob)
    lat, lng = jitter(rng, plc.lat[home], plc.lng[home])
    start = ref.toordinal() + rng.integers(-30, 91, c)
    hours = rng.choice((40, 80, 120, 160, 240, 320, 480, 600, 720, 900), c)
    days = np.maximum(7, (hours / 6).astype(np.int64) + rng.integers(0, 20, c))
    cost = np.round(hours * rng.integers(2_500, 7_000, c), -3)
    r = random.Random(int(rng.integers(0, 2**63)))
    titles, descs, insts, support = [], [], [], []
    for i, o in enumerate(occ.tolist()):
        p = profs[o]
        bank = mid_bank(p.mid_code)
        a = r.choice(p.aliases)
        k = r.choice(bank.keywords)
        cert = r.choice(bank.certs) if bank.certs else None
        x = r.random()
        if cert and x < 0.3:
            title = f"{cert} 자격취득과정"
        elif x < 0.5:
            title = f"(산대특){a} 양성과정"
        elif x < 0.7:
            title = f"{k} 실무자 양성과정"
        elif x < 0.85:
            title = f"[국기]{a} 취업과정"
        else:
            title = f"{k} 전문가 과정(NCS 기반)"
        h = int(home[i])
        city = loc_short(plc.sigungu[h], "", plc.emd[h]).split()[0]
        stem = r.choice(V.COMPANY_STEMS)
        if p.mid_code in ("044", "068"):
            inst = f"{stem}요양보호사교육원"
        elif p.major_code in ("09", "10", "08") and r.random() < 0.3:
            inst = f"한국폴리텍대학 {city}캠퍼스"
        elif p.major_code == "02" and r.random() < 0.5:
            inst = f"{stem}IT아카데미"
        else:
            inst = r.choice((f"{stem}직업전문학교", f"{stem}{k}학원", f"{city}{stem}평생교육원"))
        items = r.sample(bank.duties, min(3, len(bank.duties)))
        lines = [f"[훈련목표] {a} 직무 수행에 필요한 실무 능력 습득",
                 "[훈련내용]"] + [f"- {d} 실습" for d in items]
        if cert:
            lines.append(f"[취득 가능 자격] {cert}")
        lines.append(f"[훈련대상] {r.choice(('실업자', '재직자', '실업자 및 재직자', '청년 구직자'))}")
        titles.append(title)
        descs.append("\n".join(lines))
        insts.append(inst)
        support.append("K-디지털 트레이닝" if p.major_code == "02" and r.random() < 0.5
                       else r.choice(_SUPPORT))
    epoch = dt.date(1970, 1, 1).toordinal()
    return pl.DataFrame({
        "course_id": [f"AIG{ref.year}{seed % 100:02d}{i + 1:07d}" for i in range(c)],
        "title": titles,
        "description": descs,
        "institution": insts,
        "occupation_code": [profs[o].code for o in occ.tolist()],
        "region": plc.region[home].tolist(),
        "sido": plc.sido[home].tolist(),
        "lat": np.round(lat, 6),
        "lng": np.round(lng, 6),
        "start_date": pl.Series(start - epoch, dtype=pl.Int32).cast(pl.Date),
        "end_date": pl.Series(start + days - epoch, dtype=pl.Int32).cast(pl.Date),
        "training_hours": hours,
        "cost": cost.astype(np.int64),
        "support_type": support,
        "capacity": rng.integers(10, 41, c),
    }, schema=COURSE_SCHEMA)
