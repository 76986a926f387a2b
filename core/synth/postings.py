"""The synthetic posting generator (canonical schema)."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import polars as pl

from core.schema import conform, empty_postings
from core.synth import vocab as V
from core.synth.occupations import OccProfile, popularity, profiles
from core.synth.places import jitter, places
from core.synth.text import build_text, loc_short, place_stem
from core.synth.vocab_mid import RELATED
from core.wages import monthly_wage

# A fixed default keeps a seed's corpus identical whatever day it is generated on. Callers
# that filter on expiry must use the same reference date.
DEFAULT_REF_DATE = dt.date(2026, 11, 20)
MIN_HOURLY_WAGE = 10_320  # 2026 statutory minimum wage, KRW per hour
MIN_MONTHLY_WAGE = 2_160_000  # 10,320 x 209 h, rounded up to 10,000 KRW

TIERS = ("M", "P", "T", "O", "S", "K", "L")
# education minimum distribution per tier: (levels, probabilities)
EDU_DIST: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {
    "M": ((0, 3, 4, 5), (0.25, 0.15, 0.15, 0.45)),
    "P": ((0, 3, 4, 5, 6, 7), (0.08, 0.02, 0.10, 0.55, 0.18, 0.07)),
    "R": ((4, 5, 6, 7), (0.05, 0.45, 0.35, 0.15)),  # research occupations
    "T": ((0, 3, 4, 5), (0.20, 0.15, 0.30, 0.35)),
    "O": ((0, 3, 4, 5), (0.30, 0.40, 0.15, 0.15)),
    "S": ((0, 3, 4), (0.65, 0.30, 0.05)),
    "K": ((0, 2, 3), (0.70, 0.02, 0.28)),
    "L": ((0, 1, 2, 3), (0.85, 0.02, 0.03, 0.10)),
}
EDU_MID: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {
    "031": ((4, 5, 6), (0.05, 0.85, 0.10)),
    "041": ((5, 6), (0.85, 0.15)),
    "042": ((3, 4, 5), (0.10, 0.50, 0.40)),
    "043": ((3, 4, 5), (0.05, 0.60, 0.35)),
    "036": ((0, 5), (0.10, 0.90)),
}
# career kind (entry, experienced, any) and the mean extra years above 1 when experienced
CAREER_DIST: dict[str, tuple[tuple[float, float, float], float]] = {
    "M": ((0.02, 0.85, 0.13), 5.0), "P": ((0.12, 0.58, 0.30), 2.5),
    "T": ((0.22, 0.43, 0.35), 2.0), "O": ((0.28, 0.27, 0.45), 1.0),
    "S": ((0.18, 0.17, 0.65), 0.8), "K": ((0.12, 0.38, 0.50), 1.5),
    "L": ((0.08, 0.07, 0.85), 0.5),
}
# wage type (monthly, yearly, hourly, daily, undecided) per tier, full-time postings
WAGE_DIST: dict[str, tuple[float, float, float, float, float]] = {
    "M": (0.45, 0.45, 0.0, 0.0, 0.10), "P": (0.40, 0.45, 0.03, 0.0, 0.12),
    "T": (0.60, 0.28, 0.04, 0.0, 0.08), "O": (0.78, 0.10, 0.07, 0.0, 0.05),
    "S": (0.70, 0.03, 0.20, 0.02, 0.05), "K": (0.72, 0.05, 0.08, 0.10, 0.05),
    "L": (0.62, 0.0, 0.25, 0.08, 0.05),
}
WAGE_TYPE_NAMES = ("monthly", "yearly", "hourly", "daily", None)
VAGUE_RATE = 0.04
RELABEL_RATE = 0.04
HOLIDAY_FULL = (("주5일근무", "주6일근무", "격주 토요일 근무", "기타"), (0.72, 0.10, 0.10, 0.08))
HOLIDAY_PART = (("주5일근무", "주3일근무", "주 4일 근무", "기타"), (0.45, 0.25, 0.12, 0.18))


def _choice_by_group(rng, groups: np.ndarray, table: dict, n: int, default=None) -> np.ndarray:
    """Draw one value per row from ``table[group]`` = (values, probs), group by group."""
    out = np.zeros(n, dtype=np.int64) if default is None else np.full(n, default)
    for key in table:  # dict order is fixed by the literal: deterministic
        idx = np.flatnonzero(groups == key)
        if len(idx):
            values, probs = table[key]
            out[idx] = np.asarray(values)[rng.choice(len(values), len(idx), p=probs)]
    return out


def _company_names(rng: np.random.Generator, main_occ: np.ndarray, profs) -> list[str]:
    seeds = rng.integers(0, 2**63, size=len(main_occ))
    names: list[str] = []
    for occ, s in zip(main_occ.tolist(), seeds.tolist(), strict=True):
        r = random.Random(s)
        p: OccProfile = profs[occ]
        stem = r.choice(V.COMPANY_STEMS)
        pats = V.MID_COMPANY_PATTERNS.get(p.mid_code)
        if pats and r.random() < 0.8:
            name = r.choice(pats).format(s=stem, s2=r.choice(V.COMPANY_STEMS))
        else:
            word = r.choice(V.MAJOR[p.major_code][1])
            prefix = r.choice(V.LEGAL_PREFIX)
            name = f"{prefix}{stem}{word}"
            if not prefix and p.major_code not in ("03", "04", "06", "13") and r.random() < 0.3:
                name += "(주)"
        names.append(name)
    return names


def _dedupe_names(names: list[str], home: np.ndarray, plc) -> list[str]:
    """Distinct companies get distinct names: a repeated name gets its branch's place."""
    seen: dict[str, int] = {}
    out = []
    for name, h in zip(names, home.tolist(), strict=True):
        k = seen.get(name, 0)
        seen[name] = k + 1
        if k:
            where = loc_short(plc.sigungu[h], "", plc.emd[h]).split()[0]
            branch = f"{name} {where}{'점' if '(주)' not in name else '지사'}"
            k2 = seen.get(branch, 0)
            seen[branch] = k2 + 1
            name = branch if not k2 else f"{branch}{k2 + 1}"
        out.append(name)
    return out


def generate_postings(n: int, seed: int, *, ref_date: dt.date | None = None) -> pl.DataFrame:
    """``n`` synthetic Worknet-like postings in the canonical schema, deterministic for ``seed``.

    ``ref_date`` (default :data:`DEFAULT_REF_DATE`) anchors dates: postings are registered
    within 60 days before it; ``closes_on`` is 14-60 days after registration or null
    (채용시까지) for about 20 %, so some have already closed on ``ref_date``.
    Text columns are clean (no markup, no contact details).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    ref = ref_date or DEFAULT_REF_DATE
    rng = np.random.default_rng(seed)
    profs = profiles()
    pop = popularity()
    n_occ = len(profs)
    plc = places()
    if n == 0:
        return empty_postings()

    occ_major = np.array([p.major_code for p in profs])
    majors = tuple(sorted(set(occ_major.tolist())))
    major_p = np.array([pop[occ_major == m].sum() for m in majors])
    cond = {m: (np.flatnonzero(occ_major == m), pop[occ_major == m] / pop[occ_major == m].sum())
            for m in majors}

    # companies: an industry (major group), a main occupation, a home and a posting volume
    n_comp = max(1, int(n / 3.0))
    comp_major = np.asarray(majors)[rng.choice(len(majors), n_comp, p=major_p)]
    comp_main = np.zeros(n_comp, dtype=np.int64)
    for m in majors:
        idx = np.flatnonzero(comp_major == m)
        if len(idx):
            codes, p = cond[m]
            comp_main[idx] = codes[rng.choice(len(codes), len(idx), p=p)]
    comp_home = rng.choice(len(plc.prob), n_comp, p=plc.prob)
    comp_lat, comp_lng = jitter(rng, plc.lat[comp_home], plc.lng[comp_home])
    comp_w = np.minimum(rng.pareto(1.5, n_comp) + 1.0, 60.0)
    comp_office = 1000 + rng.integers(0, 900, n_comp)
    comp_name = _dedupe_names(_company_names(rng, comp_main, profs), comp_home, plc)

    # postings
    comp = rng.choice(n_comp, n, p=comp_w / comp_w.sum())
    u = rng.random(n)
    occ = comp_main[comp].copy()
    same_major = (u >= 0.5) & (u < 0.75)
    anywhere = u >= 0.75
    for m in majors:
        idx = np.flatnonzero(same_major & (comp_major[comp] == m))
        if len(idx):
            codes, p = cond[m]
            occ[idx] = codes[rng.choice(len(codes), len(idx), p=p)]
    idx = np.flatnonzero(anywhere)
    occ[idx] = rng.choice(n_occ, len(idx), p=pop)
    if n >= 10 * n_occ:
        occ = _cover_all(rng, occ, n_occ)

    # location: mostly the company's home, sometimes a branch elsewhere
    place = comp_home[comp].copy()
    lat = comp_lat[comp].copy()
    lng = comp_lng[comp].copy()
    v = rng.random(n)
    away = np.flatnonzero(v < 0.15)
    if len(away):
        same_sido = v[away] < 0.10
        new_place = rng.choice(len(plc.prob), len(away), p=plc.prob)
        home_sido = plc.sido[place[away]]
        for sido in sorted(set(home_sido[same_sido].tolist())):
            sel = np.flatnonzero(same_sido & (home_sido == sido))
            cand = np.flatnonzero(plc.sido == sido)
            new_place[sel] = rng.choice(cand, len(sel), p=plc.prob[cand] / plc.prob[cand].sum())
        place[away] = new_place
        lat[away], lng[away] = jitter(rng, plc.lat[new_place], plc.lng[new_place])

    # structured attributes per occupation profile
    tier = np.array([p.tier for p in profs])[occ]
    research = np.array([p.research for p in profs])[occ]
    mid = np.array([p.mid_code for p in profs])[occ]
    major = occ_major[occ]
    edu_group = np.where(research & (tier == "P"), "R", tier)
    edu_lo = _choice_by_group(rng, edu_group, EDU_DIST, n)
    mid_override = _choice_by_group(rng, mid, EDU_MID, n, default=-1)
    edu_lo = np.where(mid_override >= 0, mid_override, edu_lo)
    w = rng.random(n)
    span = 1 + (rng.random(n) < 0.5)
    edu_hi = np.where(
        (edu_lo == 0) | (w < 0.7), 7, np.where(w < 0.9, np.minimum(edu_lo + span, 7), edu_lo)
    )

    career_kind = np.empty(n, dtype=object)
    career_years = np.zeros(n, dtype=np.int64)
    for t in TIERS:
        idx = np.flatnonzero(tier == t)
        if not len(idx):
            continue
        probs, lam = CAREER_DIST[t]
        kinds = np.array(["entry", "experienced", "any"])[rng.choice(3, len(idx), p=probs)]
        career_kind[idx] = kinds
        yrs = 1 + rng.poisson(lam, len(idx))
        career_years[idx] = np.where(kinds == "experienced", np.minimum(yrs, 20), 0)

    pt_rate = np.array([p.part_time_rate for p in profs])[occ]
    part_time = rng.random(n) < pt_rate
    emp = np.where(part_time,
                   np.where(rng.random(n) < 0.35, "permanent_part_time", "fixed_term_part_time"),
                   "")
    full_idx = np.flatnonzero(~part_time)
    construction = major[full_idx] == "08"
    e_norm = np.array(["permanent", "fixed_term", "dispatch", "daily"])[
        rng.choice(4, len(full_idx), p=(0.76, 0.17, 0.03, 0.04))]
    e_cons = np.array(["permanent", "fixed_term", "dispatch", "daily"])[
        rng.choice(4, len(full_idx), p=(0.45, 0.15, 0.02, 0.38))]
    emp[full_idx] = np.where(construction, e_cons, e_norm)
    emp = emp.astype(object)

    holiday = np.where(
        part_time,
        np.asarray(HOLIDAY_PART[0])[rng.choice(4, n, p=HOLIDAY_PART[1])],
        np.asarray(HOLIDAY_FULL[0])[rng.choice(4, n, p=HOLIDAY_FULL[1])],
    )

    # wages
    wt_idx = np.zeros(n, dtype=np.int64)
    for t in TIERS:
        idx = np.flatnonzero(tier == t)
        if len(idx):
            wt_idx[idx] = rng.choice(5, len(idx), p=WAGE_DIST[t])
    y = rng.random(n)
    wt_idx = np.where(part_time & (wt_idx != 4), np.where(y < 0.8, 2, 0), wt_idx)
    wt_idx = np.where((emp == "daily") & (wt_idx != 4) & (y < 0.7), 3, wt_idx)
    base = np.array([p.monthly_base for p in profs], dtype=np.float64)[occ]
    base *= rng.lognormal(0.0, 0.12, n)
    monthly_amt = np.maximum(np.round(base, -4), MIN_MONTHLY_WAGE)
    monthly_amt = np.where(part_time, np.maximum(np.round(base * 0.55, -4), 1_000_000), monthly_amt)
    yearly_amt = np.maximum(np.round(base * 12.5, -6), 27_000_000)
    hourly_amt = np.maximum(np.round(base * np.where(part_time, 0.9, 1.0) / 209.0, -1),
                            MIN_HOURLY_WAGE)
    at_min = (rng.random(n) < 0.3) & np.isin(tier, ("L", "S"))
    hourly_amt = np.where(at_min, MIN_HOURLY_WAGE, hourly_amt)
    daily_amt = np.maximum(np.round(base / 21.7 * np.where(major == "08", 1.3, 1.0), -4), 90_000)
    amounts = np.stack([monthly_amt, yearly_amt, hourly_amt, daily_amt, np.zeros(n)], axis=1)
    wage_min = amounts[np.arange(n), wt_idx]
    shape = rng.random(n)
    steps = np.array([10_000, 1_000_000, 10, 10_000, 1])[wt_idx]
    upper = np.round(wage_min * (1.05 + 0.4 * rng.random(n)) / steps) * steps
    wage_max = np.where(shape < 0.55, np.maximum(upper, wage_min + steps),
                        np.where(shape < 0.9, np.nan, wage_min))
    undecided = wt_idx == 4

    # dates
    offset = rng.integers(0, 60, n)
    open_ended = rng.random(n) < 0.2
    duration = rng.integers(14, 61, n)
    ref_ord = ref.toordinal()
    reg_ord = ref_ord - offset
    close_ord = reg_ord + duration

    # Text usually describes the labelled occupation; some postings are vague, and some
    # employers pick a related code (e.g. 요양보호사 under 보건 vs 돌봄) than their text says.
    vague = rng.random(n) < VAGUE_RATE
    text_occ = occ.copy()
    relabel = np.flatnonzero((rng.random(n) < RELABEL_RATE) & ~vague)
    if len(relabel):
        text_occ[relabel] = _related_occupation(rng, occ[relabel], profs)

    # per-row text and ids (Python: string assembly)
    r = random.Random(int(rng.integers(0, 2**63)))
    comp_l = comp.tolist()
    occ_l = occ.tolist()
    text_l = text_occ.tolist()
    vague_l = vague.tolist()
    place_l = place.tolist()
    ck_l = career_kind.tolist()
    cy_l = career_years.tolist()
    lo_l = edu_lo.tolist()
    hi_l = edu_hi.tolist()
    emp_l = emp.tolist()
    hol_l = holiday.tolist()
    pt_l = part_time.tolist()
    sgg, gu, emd = plc.sigungu.tolist(), plc.gu.tolist(), plc.emd.tolist()
    titles, descs, prefs, certs, majs, hours, stations = [], [], [], [], [], [], []
    sido_l = plc.sido.tolist()
    for i in range(n):
        pl_i = place_l[i]
        t = build_text(
            profs[text_l[i]], vague=vague_l[i], loc=loc_short(sgg[pl_i], gu[pl_i], emd[pl_i]),
            company=comp_name[comp_l[i]], career=ck_l[i], years=cy_l[i], edu_lo=lo_l[i],
            edu_hi=hi_l[i], emp=emp_l[i], holiday=hol_l[i], part_time=pt_l[i], r=r,
        )
        titles.append(t.title)
        descs.append(t.description)
        prefs.append(t.preferences)
        certs.append(t.certificates)
        majs.append(t.major)
        hours.append(t.work_hours)
        lines = V.METRO_LINES.get(sido_l[pl_i])
        if lines and r.random() < 0.45:
            stations.append(f"{r.choice(lines)} {place_stem(emd[pl_i])}역")
        else:
            stations.append(None)

    wage_type = [WAGE_TYPE_NAMES[k] for k in wt_idx.tolist()]
    wmin = [None if u_ else int(v_) for u_, v_ in zip(undecided.tolist(), wage_min.tolist(),
                                                      strict=True)]
    wmax = [None if u_ or v_ != v_ else int(v_)
            for u_, v_ in zip(undecided.tolist(), wage_max.tolist(), strict=True)]
    mw = [monthly_wage(t, a if a is not None else b, h)
          for t, a, b, h in zip(wage_type, wmin, wmax, hol_l, strict=True)]

    epoch = dt.date(1970, 1, 1).toordinal()
    df = pl.DataFrame({
        "office": comp_office[comp],
        "reg_ord": reg_ord,
        "company": [comp_name[c] for c in comp_l],
        "title": titles,
        "description": descs,
        "occupation_code": [profs[o].code for o in occ_l],
        "region": plc.region[place].tolist(),
        "sido": plc.sido[place].tolist(),
        "sigungu": [x or None for x in plc.sigungu[place].tolist()],
        "lat": np.round(lat, 6),
        "lng": np.round(lng, 6),
        "min_education_level": edu_lo,
        "max_education_level": edu_hi,
        "career": ck_l,
        "min_career_years": career_years,
        "wage_type": wage_type,
        "wage_min": pl.Series(wmin, dtype=pl.Int64),
        "wage_max": pl.Series(wmax, dtype=pl.Int64),
        "monthly_wage": pl.Series(mw, dtype=pl.Int64),
        "employment_type": emp_l,
        "registered_on": pl.Series(reg_ord - epoch, dtype=pl.Int32).cast(pl.Date),
        "closes_on": pl.Series(np.where(open_ended, None, close_ord - epoch).tolist(),
                               dtype=pl.Int32).cast(pl.Date),
        "holiday_type": hol_l,
        "major": majs,
        "certificates": certs,
        "preferences": prefs,
        "near_station": stations,
        "work_hours": hours,
    })
    # Worknet-like 구인인증번호: K + office + 1 + registration date + sequence that day
    seq = pl.int_range(pl.len()).over(["office", "reg_ord"]) + 1
    df = df.with_columns(
        posting_id=pl.format(
            "K{}1{}{}", pl.col("office").cast(pl.Utf8),
            pl.col("registered_on").dt.strftime("%y%m%d"),
            seq.cast(pl.Utf8).str.zfill(4),
        )
    )
    return conform(df)


def _related_occupation(rng: np.random.Generator, occ: np.ndarray, profs) -> np.ndarray:
    """For each occupation, a random occupation of a related mid group (or its own group)."""
    by_mid: dict[str, list[int]] = {}
    for i, p in enumerate(profs):
        by_mid.setdefault(p.mid_code, []).append(i)
    out = occ.copy()
    u = rng.random((len(occ), 2))
    for j, o in enumerate(occ.tolist()):
        mid = profs[o].mid_code
        rel = RELATED.get(mid) or (mid,)
        cand = by_mid[rel[int(u[j, 0] * len(rel))]]
        out[j] = cand[int(u[j, 1] * len(cand))]
    return out


def _cover_all(rng: np.random.Generator, occ: np.ndarray, n_occ: int) -> np.ndarray:
    """Make every occupation appear at least once by relabelling rows of the most common."""
    counts = np.bincount(occ, minlength=n_occ)
    missing = np.flatnonzero(counts == 0)
    if not len(missing):
        return occ
    donors = np.flatnonzero(counts >= 20)
    rows = np.flatnonzero(np.isin(occ, donors))
    pick = rng.choice(rows, len(missing), replace=False)
    occ = occ.copy()
    occ[np.sort(pick)] = missing
    return occ
