"""Synthetic HRD training courses (seekers: :mod:`core.synth.seekers`)."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import polars as pl

from core.synth import vocab as V
from core.synth.occupations import popularity, profiles
from core.synth.places import jitter, places
from core.synth.postings import DEFAULT_REF_DATE
from core.synth.text import loc_short, mid_bank

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

_SUPPORT = ("국민내일배움카드", "국민내일배움카드", "국가기간·전략산업직종훈련", "K-디지털 트레이닝",
            "산업구조변화대응 특화훈련", "사업주훈련")


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
