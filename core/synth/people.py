"""Synthetic job seekers (training courses: :mod:`core.synth.courses`)."""

from __future__ import annotations

import random

import numpy as np
import polars as pl

from core.synth import vocab as V
from core.synth.occupations import popularity, profiles
from core.synth.places import jitter, places
from core.synth.postings import CAREER_DIST, EDU_DIST
from core.synth.text import mid_bank

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

_INTROS = (
    "성실하고 책임감 있게 일하겠습니다.", "꼼꼼한 성격으로 맡은 일을 끝까지 해냅니다.",
    "고객 응대 경험이 많아 친절합니다.", "체력에 자신 있고 장기 근무를 희망합니다.",
    "새로운 업무도 빠르게 배웁니다.", "집에서 가까운 곳에서 오래 일하고 싶습니다.",
    "관련 자격증을 취득하고 현장 경험을 쌓았습니다.", "팀원들과 협력하여 성과를 낸 경험이 있습니다.",
)



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
