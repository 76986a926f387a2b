"""Synthetic job seekers (:data:`core.seekers.SEEKER_SCHEMA`) and their interaction log.

Seekers look like Worknet's registrants: ages with 48.9% aged 40+, education with about 58%
전문대졸 or above, desired regions near home (mostly one 시군구, some two or three, some a
whole province), career histories related to the desired occupations, wage expectations
around each occupation's pay, résumé text in the style of a 자기소개.

The interaction log comes from a **choice model with hidden preferences** that shares
nothing with jobrec's scoring: each seeker has a latent occupation (usually, not always, a
desired one) and a latent taste over KECO groups, a distance decay from home, a wage
attraction and Gumbel noise; each day some seekers browse a page of open postings and
click, apply to or hide some. The last day can be held out for evaluation.
"""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import polars as pl

from core.rules import haversine_km
from core.schema import EMPLOYMENT_TYPES
from core.seekers import INTERACTION_SCHEMA, SEEKER_SCHEMA
from core.synth import vocab as V
from core.synth.occupations import popularity, profiles
from core.synth.places import jitter, places
from core.synth.postings import DEFAULT_REF_DATE
from core.synth.text import mid_bank

# ages 20-29, 30-39, 40-49, 50-59, 60-69: 48.9% aged 40+
AGE_BANDS = ((20, 30, 0.26), (30, 40, 0.251), (40, 50, 0.19), (50, 60, 0.17), (60, 70, 0.129))
# levels 1..7; 4+ (전문대졸 or above) = 58%
EDU_P = {1: 0.01, 2: 0.03, 3: 0.28, 4: 0.24, 5: 0.35, 6: 0.07, 7: 0.02}
_TIER_SHIFT = {"M": 0.6, "P": 1.0, "R": 1.5, "T": 0.3, "O": 0.0, "S": -0.4, "K": -0.5, "L": -0.8}
_INTROS = (
    "성실하고 책임감 있게 일하겠습니다.", "꼼꼼한 성격으로 맡은 일을 끝까지 해냅니다.",
    "고객 응대 경험이 많아 친절하게 응대할 자신이 있습니다.", "체력에 자신 있고 장기 근무를 희망합니다.",
    "새로운 업무도 빠르게 배우는 편입니다.", "집에서 가까운 곳에서 오래 일하고 싶습니다.",
    "관련 자격증을 취득하고 현장 경험을 쌓았습니다.", "팀원들과 협력하여 성과를 낸 경험이 있습니다.",
    "시간 약속을 잘 지키고 근태가 좋습니다.", "경력을 살려 전문성을 키우고 싶습니다.",
)
_CLOSINGS = ("기회를 주시면 최선을 다하겠습니다.", "귀사에 꼭 필요한 사람이 되겠습니다.",
             "감사합니다.", "면접 기회를 주시면 감사하겠습니다.")
DAY_START_HOUR = 9


def _neighbours(plc) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Each (sido, 시군구) -> the other 시군구 of its province, nearest centroid first."""
    cent: dict[tuple[str, str], list[float]] = {}
    for s, g, la, ln in zip(plc.sido, plc.sigungu, plc.lat, plc.lng, strict=True):
        if not g:
            continue
        acc = cent.setdefault((s, g), [0.0, 0.0, 0])
        acc[0] += la
        acc[1] += ln
        acc[2] += 1
    keys = list(cent)
    lat = np.array([cent[k][0] / cent[k][2] for k in keys])
    lng = np.array([cent[k][1] / cent[k][2] for k in keys])
    out = {}
    for i, k in enumerate(keys):
        same = [j for j in range(len(keys)) if keys[j][0] == k[0] and j != i]
        d = haversine_km(lat[i], lng[i], lat[same], lng[same]) if same else np.array([])
        out[k] = [keys[same[j]] for j in np.argsort(d, kind="stable")]
    return out


def generate_seekers(m: int, seed: int, *, postings: pl.DataFrame | None = None,
                     ref_date: dt.date | None = None) -> pl.DataFrame:
    """``m`` synthetic seekers (:data:`SEEKER_SCHEMA`), deterministic for ``seed``.

    With ``postings``, each seeker is modelled on a random posting (its occupation and a home
    within about 8 km), so seekers have jobs to find in that corpus.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(f"m must be a non-negative int, got {m!r}")
    ref = ref_date or DEFAULT_REF_DATE
    rng = np.random.default_rng(seed)
    profs = profiles()
    code_index = {p.code: i for i, p in enumerate(profs)}
    plc = places()
    by_mid: dict[str, list[int]] = {}
    by_major: dict[str, list[int]] = {}
    for i, p in enumerate(profs):
        by_mid.setdefault(p.mid_code, []).append(i)
        by_major.setdefault(p.major_code, []).append(i)
    if postings is not None and postings.height:
        a = postings[rng.choice(postings.height, m)]
        occ = np.array([code_index.get(c, 0) for c in a["occupation_code"].to_list()])
        lat, lng = jitter(rng, a["lat"].to_numpy(), a["lng"].to_numpy(), max_km=8.0)
        sido = a["sido"].to_list()
        sgg = [g or "" for g in (a["sigungu"].to_list() if "sigungu" in a.columns else [""] * m)]
    else:
        occ = rng.choice(len(profs), m, p=popularity())
        home = rng.choice(len(plc.prob), m, p=plc.prob)
        lat, lng = jitter(rng, plc.lat[home], plc.lng[home], max_km=1.5)
        sido = plc.sido[home].tolist()
        sgg = plc.sigungu[home].tolist()
    band = rng.choice(len(AGE_BANDS), m, p=[b[2] for b in AGE_BANDS])
    age = np.array([rng.integers(AGE_BANDS[b][0], AGE_BANDS[b][1]) for b in band])
    levels = np.array(list(EDU_P))
    base_p = np.array(list(EDU_P.values()))
    edu = np.empty(m, dtype=np.int64)
    for t, shift in _TIER_SHIFT.items():
        idx = np.flatnonzero(np.array([profs[o].tier for o in occ]) == t)
        if len(idx):
            p = base_p * np.exp(shift * (levels - 3.5) / 4.0)
            edu[idx] = rng.choice(levels, len(idx), p=p / p.sum())
    # older seekers went to university less often (the 60+ are mostly 고졸 or below)
    old = (age >= 60) & (rng.random(m) < 0.5)
    edu = np.where(old, np.minimum(edu, 3), edu)
    school_end = np.select([edu <= 3, edu == 4, edu == 5], [19, 22, 24], 27)
    years = np.maximum(0, ((age - school_end) * rng.uniform(0.2, 0.9, m))).astype(np.int64)
    years = np.where(rng.random(m) < 0.15, 0, years)  # 신입 at any age (career break, new field)
    wage_mult = rng.lognormal(0.0, 0.12, m) * (1 + 0.025 * np.minimum(years, 15))
    wage = np.round(np.array([profs[o].monthly_base for o in occ]) * wage_mult, -4).astype(np.int64)
    has_wage = rng.random(m) < 0.85
    commute = np.where(rng.random(m) < 0.3, rng.choice((10.0, 15.0, 20.0, 30.0, 40.0), m), np.nan)
    neigh = _neighbours(plc)
    r = random.Random(int(rng.integers(0, 2**63)))
    rows = []
    for i in range(m):
        p = profs[int(occ[i])]
        want = [p.code]
        for _ in range(r.choices((0, 1, 2), (0.45, 0.35, 0.2))[0]):
            pool = by_mid[p.mid_code] if r.random() < 0.75 else by_major[p.major_code]
            c = profs[r.choice(pool)].code
            if c not in want:
                want.append(c)
        home_area = (sido[i], sgg[i] or None)
        x = r.random()
        if home_area[1] is None or x < 0.07:
            regions = [{"sido": sido[i], "sigungu": None}]
        else:
            regions = [{"sido": sido[i], "sigungu": home_area[1]}]
            near = neigh.get((sido[i], home_area[1]), [])
            extra = 0 if x < 0.67 else (1 if x < 0.9 else 2)
            for s2, g2 in near[:extra]:
                regions.append({"sido": s2, "sigungu": g2})
        y = int(years[i])
        history = []
        left = y
        while left > 0 and len(history) < 3:
            part = left if len(history) == 2 or r.random() < 0.5 else r.randint(1, left)
            q = r.random()
            code = (want[0] if q < 0.55 else profs[r.choice(by_mid[p.mid_code])].code if q < 0.85
                    else profs[r.choice(by_major[p.major_code])].code)
            history.append({"occupation_code": code, "years": part})
            left -= part
        bank = mid_bank(p.mid_code)
        certs = r.sample(bank.certs, min(len(bank.certs), r.choice((0, 0, 1, 1, 2)))) if bank.certs else []
        emp = [] if r.random() < 0.7 else r.sample(EMPLOYMENT_TYPES[:4], r.choice((1, 2)))
        lines = [f"희망직종: {r.choice(p.aliases)}"]
        for h in history:
            hp = profs[code_index[h["occupation_code"]]]
            duties = r.sample(mid_bank(hp.mid_code).duties,
                              min(len(mid_bank(hp.mid_code).duties), 1 + int(r.random() * 2)))
            lines.append(f"{r.choice(V.COMPANY_STEMS)}{r.choice(V.MAJOR[hp.major_code][1])}에서 "
                         f"{r.choice(hp.aliases)}(으)로 {h['years']}년 근무하며 " + ", ".join(duties)
                         + " 업무를 담당했습니다.")
        if not history:
            lines.append(f"{r.choice(bank.keywords)} 분야 신입으로 지원합니다.")
        if certs:
            lines.append("보유 자격증: " + ", ".join(certs))
        lines.append(r.choice(_INTROS))
        lines.append(r.choice(_CLOSINGS))
        rows.append({
            "seeker_id": f"S{seed % 1000:03d}{i + 1:07d}",
            "desired_occupations": want,
            "desired_regions": regions,
            "home_lat": round(float(lat[i]), 6),
            "home_lng": round(float(lng[i]), 6),
            "max_commute_km": None if np.isnan(commute[i]) else float(commute[i]),
            "education_level": int(edu[i]),
            "career_years": min(y, 50),
            "career_history": history,
            "certificates": certs,
            "desired_monthly_wage": int(wage[i]) if has_wage[i] else None,
            "desired_employment_types": emp,
            "resume_text": "\n".join(lines),
            "birth_year": ref.year - int(age[i]),
            "registered_on": ref - dt.timedelta(days=int(rng.integers(1, 181))),
            "active": bool(rng.random() < 0.93),
        })
    return pl.DataFrame(rows, schema=SEEKER_SCHEMA, orient="row")


def _area_index(postings: pl.DataFrame) -> dict[tuple[str, str | None], np.ndarray]:
    sido = postings["sido"].to_numpy()
    sgg = postings["sigungu"].fill_null("").to_numpy()
    out: dict[tuple[str, str | None], np.ndarray] = {}
    for s in np.unique(sido):
        ms = sido == s
        out[(s, None)] = np.flatnonzero(ms)
        for g in np.unique(sgg[ms]):
            if g:
                out[(s, g)] = np.flatnonzero(ms & (sgg == g))
    return out


def generate_interactions(seekers: pl.DataFrame, postings: pl.DataFrame, seed: int, *,
                          days: int = 7, ref_date: dt.date | None = None,
                          page: int = 25) -> pl.DataFrame:
    """The interaction log (:data:`INTERACTION_SCHEMA`) of ``days`` days before ``ref_date``.

    Hidden preferences per seeker: a latent occupation (a desired one with probability 0.7,
    else one from the career history or a KECO neighbour), affinity over the KECO tree with
    a per-seeker taste for the latent major group, distance decay from home, attraction to
    wages above the expectation, Gumbel noise. Each day a seeker browses with probability
    0.6: a page of open postings, mostly in the desired regions, drawn in proportion to a
    search engine's coarse relevance; events follow the noisy utility.
    """
    ref = ref_date or DEFAULT_REF_DATE
    rng = np.random.default_rng(seed + 7919)
    profs = {p.code: p for p in profiles()}
    codes = postings["occupation_code"].to_numpy()
    p_mid = np.array([profs[c].mid_code if c in profs else c[:3] for c in codes])
    p_major = np.array([profs[c].major_code if c in profs else c[:2] for c in codes])
    p_lat, p_lng = postings["lat"].to_numpy(), postings["lng"].to_numpy()
    p_wage = postings["monthly_wage"].to_numpy().astype(np.float64)
    reg = postings["registered_on"].cast(pl.Int32).to_numpy()  # days since the epoch
    closes = postings["closes_on"].cast(pl.Int32).fill_null(2**31 - 1).to_numpy()
    p_edu = postings["min_education_level"].to_numpy()
    p_exp = (postings["career"] == "experienced").to_numpy()
    p_years = postings["min_career_years"].fill_null(0).to_numpy()
    ids = postings["posting_id"].to_numpy()
    area = _area_index(postings)
    epoch = dt.date(1970, 1, 1)
    day_nums = [(ref - dt.timedelta(days=days - d) - epoch).days for d in range(days)]
    out_s, out_p, out_e, out_t = [], [], [], []
    for s in seekers.iter_rows(named=True):
        pool = np.unique(np.concatenate([area.get((r["sido"], r["sigungu"]), np.empty(0, np.int64))
                                         for r in s["desired_regions"]]).astype(np.int64))
        if pool.size == 0:
            continue
        # a few postings from outside the desired regions reach every seeker (search, friends)
        outside = rng.integers(0, len(ids), max(3, pool.size // 20))
        pool = np.unique(np.concatenate([pool, outside]))
        want = s["desired_occupations"]
        hist = [h["occupation_code"] for h in s["career_history"]]
        x = rng.random()
        latent = want[0] if x < 0.5 else rng.choice(want) if x < 0.7 else \
            (rng.choice(hist) if hist else rng.choice(want))
        lp = profs.get(latent)
        l_mid, l_major = (lp.mid_code, lp.major_code) if lp else (latent[:3], latent[:2])
        taste = rng.normal(0.0, 0.4)
        aff = np.where(codes[pool] == latent, 3.0, np.where(p_mid[pool] == l_mid, 1.9,
                       np.where(p_major[pool] == l_major, 0.7 + taste, 0.0)))
        aff += np.isin(codes[pool], want) * 0.8
        home = (s["home_lat"], s["home_lng"])
        dist = haversine_km(home[0], home[1], p_lat[pool], p_lng[pool])
        decay = rng.uniform(0.04, 0.12)
        w = p_wage[pool]
        known = w[~np.isnan(w)]
        desired = s["desired_monthly_wage"] or (float(np.median(known)) if known.size else 1.0)
        wage_term = np.where(np.isnan(w), -0.2, np.clip(np.log(np.maximum(w, 1) / max(desired, 1)),
                                                         -1.0, 0.7) * rng.uniform(0.8, 2.0))
        qualified = (p_edu[pool] <= s["education_level"]) & \
            (~p_exp[pool] | (s["career_years"] >= np.maximum(1, p_years[pool])))
        util = aff - decay * dist + wage_term - 2.5 * ~qualified
        engine = 0.5 * aff - 0.02 * dist  # what a browsing page roughly ranks by
        gone = np.zeros(pool.size, dtype=bool)  # applied or hidden: not shown again
        for d, day in enumerate(day_nums):
            if rng.random() >= 0.6:
                continue
            open_ = (reg[pool] <= day) & (closes[pool] >= day) & ~gone
            cand = np.flatnonzero(open_)
            if cand.size == 0:
                continue
            pr = np.exp(engine[cand] - engine[cand].max())
            shown = rng.choice(cand, min(page, cand.size), replace=False, p=pr / pr.sum())
            u = util[shown] + rng.gumbel(0.0, 1.0, shown.size)
            t0 = dt.datetime.combine(ref - dt.timedelta(days=days - d), dt.time(DAY_START_HOUR))
            for j, uj in zip(shown.tolist(), u.tolist(), strict=True):
                pid = ids[pool[j]]
                at = t0 + dt.timedelta(seconds=int(rng.integers(0, 12 * 3600)))
                events = ["shown"]
                if uj > 2.6:
                    events.append("clicked")
                    if uj > 3.6:
                        events.append("applied")
                elif uj < -2.5 and rng.random() < 0.3:
                    events.append("hidden")
                gone[j] = events[-1] in ("applied", "hidden")
                for k, ev in enumerate(events):
                    out_s.append(s["seeker_id"])
                    out_p.append(pid)
                    out_e.append(ev)
                    out_t.append(at + dt.timedelta(seconds=30 * k))
    return pl.DataFrame({"seeker_id": out_s, "posting_id": out_p, "event": out_e, "at": out_t},
                        schema=INTERACTION_SCHEMA)
