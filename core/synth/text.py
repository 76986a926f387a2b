"""Korean posting text for the synthetic corpus: titles, duties, qualifications, preferences.

The output is *clean* text (no markup, no contact details): it is what ingestion would
store. :mod:`core.synth.xml` dirties a copy (``<br>``, entities, phone numbers) for the XML.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache

from core.schema import EDUCATION_LEVELS
from core.synth import vocab as V
from core.synth.occupations import OccProfile
from core.synth.vocab_mid import MID, RELATED


@dataclass(frozen=True, slots=True)
class MidBank:
    keywords: tuple[str, ...]
    duties: tuple[str, ...]
    certs: tuple[str, ...]
    majors: tuple[str, ...]


def _split(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split("|") if x.strip())


@cache
def mid_bank(mid: str) -> MidBank:
    _tier, _pt, kw, duties, certs, majors = MID[mid]
    return MidBank(_split(kw), _split(duties), _split(certs), _split(majors))


@dataclass(frozen=True, slots=True)
class PostingText:
    title: str
    description: str
    preferences: str
    certificates: str | None
    major: str | None
    work_hours: str


_STEM_TRIM = re.compile(r"(제?\d+(\.\d+)*)?(동|읍|면|가)$")


def place_stem(emd: str) -> str:
    """"상현2동" → "상현": the part of a 동 name a road or station is named after."""
    first = emd.split(".")[0]
    stem = _STEM_TRIM.sub("", first)
    return re.sub(r"\d+$", "", stem) or first


def loc_short(sigungu: str, gu: str, emd: str) -> str:
    """"용인 수지", "수원", "조치원": how titles abbreviate a place."""
    if not sigungu:
        return place_stem(emd)
    s = sigungu[:-1] if len(sigungu) > 2 and sigungu[-1] in "시군구" else sigungu
    if gu:
        g = gu[:-1] if len(gu) > 2 else gu
        return f"{s} {g}"
    return s


def education_text(lo: int, hi: int) -> str:
    """Worknet's eduNm style: "학력무관", "고졸 이상", "대졸(2~3년)-대졸(4년)", "고졸"."""
    if lo == 0 and hi == 7:
        return "학력무관"
    if hi == 7:
        return f"{EDUCATION_LEVELS[lo]} 이상"
    if lo == hi:
        return EDUCATION_LEVELS[lo]
    return f"{EDUCATION_LEVELS[lo]}-{EDUCATION_LEVELS[hi]}"


def career_text(career: str, years: int) -> str:
    if career == "entry":
        return "신입"
    if career == "experienced":
        return f"경력 {years}년 이상"
    return "경력무관"


_EMP_WORD = {
    "permanent": "정규직", "permanent_part_time": "시간제", "fixed_term": "계약직",
    "fixed_term_part_time": "파트타임", "dispatch": "파견직", "daily": "일용직", "other": "기타",
}

_HOURS_FULL = ("09:00~18:00", "08:30~17:30", "08:00~17:00", "09:00~18:00", "07:00~16:00",
               "10:00~19:00")
_HOURS_PART = ("09:00~13:00", "14:00~18:00", "10:00~15:00", "18:00~22:00", "07:00~11:00",
               "11:00~15:00")
_DAYS = {"주5일근무": "주 5일", "주6일근무": "주 6일", "격주 토요일 근무": "주 5.5일(격주 토요일)",
         "주 4일 근무": "주 4일", "주3일근무": "주 3일", "기타": "협의"}


def work_hours(holiday: str, part_time: bool, r: random.Random) -> str:
    hours = r.choice(_HOURS_PART if part_time else _HOURS_FULL)
    days = _DAYS.get(holiday, "주 5일")
    if not part_time and r.random() < 0.15:
        return f"{days} 근무, 교대근무({r.choice(('2조2교대', '3조2교대', '4조3교대'))})"
    return f"{days} 근무, {hours}"


def _title(p: OccProfile, bank: MidBank, loc: str, company: str, career: str, years: int,
           emp: str, r: random.Random) -> str:
    rr = r.random
    a = r.choice(p.aliases)
    k = r.choice(bank.keywords)
    k2 = r.choice(bank.keywords)
    x = rr()
    if x < 0.10:
        return f"{a} 모집"
    if x < 0.18:
        return f"{a} 구합니다"
    if x < 0.28:
        car = career_text(career, years)
        return f"[{loc}] {k} {a} 모집({car})"
    if x < 0.34:
        return f"[{loc}] {a} 채용"
    if x < 0.40:
        return f"{k} 및 {k2} 직원 구합니다" if k != k2 else f"{k} 직원 구합니다"
    if x < 0.47:
        return a
    if x < 0.51:
        return f"{k}/{k2}" if k != k2 else k
    if x < 0.54:
        return k
    if x < 0.60:
        return f"[{_EMP_WORD[emp]}] {a} 모집"
    if x < 0.65:
        return f"{company} {a} 채용"
    if x < 0.70:
        return f"{a} ({r.choice(V.SHIFT_TITLE)}) 모집"
    if x < 0.74:
        return f"급구! {a}"
    if x < 0.80:
        return f"{loc} {a} {_EMP_WORD[emp]} 채용"
    if x < 0.85 and p.qualifier:
        return f"{p.qualifier} {a} 모집"
    if x < 0.90:
        return f"{k} 담당자 모집 ({career_text(career, years)})"
    if x < 0.95:
        return f"{a} {r.choice(('1명', '2명', '0명', '00명', '1~2명'))} 채용"
    return f"{a} 신입/경력 모집" if career == "any" else f"{k} {a} 모집"


def _duty_items(p: OccProfile, bank: MidBank, r: random.Random, short: bool) -> list[str]:
    rr = r.random
    a = r.choice(p.aliases)
    items: list[str] = []
    if short:
        return [r.choice((f"{a} 업무", r.choice(bank.duties), f"{r.choice(bank.keywords)} 업무"))]
    k = 1 + int(rr() * min(3, len(bank.duties)))
    items.extend(r.sample(bank.duties, k))
    if rr() < 0.6:
        items.insert(0, r.choice((f"{a} 업무 전반", f"{a} 관련 업무", f"{a} 업무 담당",
                                  f"{r.choice(bank.keywords)} 관련 {a} 업무")))
    rel = RELATED.get(p.mid_code)
    if rel and rr() < 0.3:
        items.append(r.choice(mid_bank(r.choice(rel)).duties))
    if rr() < 0.35:
        items.append(r.choice(V.MAJOR[p.major_code][2]))
    return items


def build_text(p: OccProfile, *, loc: str, company: str, career: str, years: int,
               edu_lo: int, edu_hi: int, emp: str, holiday: str, part_time: bool,
               r: random.Random, vague: bool = False) -> PostingText:
    """All free text of one posting (clean; no PII).

    ``vague`` postings say next to nothing about the job (title and duties from a shared
    pool), as many real ones do: they bound how well any model can classify the corpus.
    """
    bank = mid_bank(p.mid_code)
    major = V.MAJOR[p.major_code]
    rr = r.random
    if vague:
        title = r.choice(V.VAGUE_TITLES).format(company=company, loc=loc)
    else:
        title = _title(p, bank, loc, company, career, years, emp, r)
    x = rr()
    short = x < 0.18
    long = x > 0.62
    bullet = r.choice(V.BULLETS)
    lines: list[str] = []
    head = "" if short else r.choice(V.DUTY_HEADS)
    if head:
        lines.append(head)
    if vague:
        lines.extend(bullet + d for d in r.sample(V.VAGUE_DUTIES, 1 + int(rr() * 2)))
    else:
        lines.extend(bullet + d for d in _duty_items(p, bank, r, short))
    hours = work_hours(holiday, part_time, r)
    if long:
        lines.append(r.choice(("[근무조건]", "■ 근무조건", "<근무조건>")))
        lines.append(f"{bullet}근무시간: {hours}")
        lines.extend(bullet + c for c in r.sample(V.WORK_CONDITIONS, 1 + int(rr() * 2)))
        lines.append(r.choice(("[복리후생]", "■ 복리후생", "<복리후생>")))
        lines.append(bullet + ", ".join(r.sample(V.WELFARE, 2 + int(rr() * 4))))
        lines.extend(r.sample(V.PROCESS, 1 + int(rr() * 2)))
    elif not short and rr() < 0.4:
        lines.append(f"{bullet}{', '.join(r.sample(V.WELFARE, 2 + int(rr() * 3)))}")
    if rr() < (0.45 if long else 0.15):
        lines.append(r.choice(V.UNEMPLOYMENT_NOTICES))
    certs = None
    if bank.certs and not vague and rr() < 0.45:
        certs = ", ".join(r.sample(bank.certs, 1 + int(rr() < 0.25 and len(bank.certs) > 1)))
    if not short or rr() < 0.3:
        lines.append(r.choice(V.QUAL_HEADS))
        quals = [f"학력: {education_text(edu_lo, edu_hi)}",
                 f"경력: {career_text(career, years)}"]
        if certs and not vague:
            quals.append(f"{certs.split(', ')[0]} 소지자" + (" 필수" if rr() < 0.5 else ""))
        quals.extend(r.sample(major[3] if rr() < 0.5 else V.GENERIC_QUALS, 1 + int(rr() * 2)))
        if rr() < 0.3 and not vague:
            quals.append(r.choice(bank.duties) + " 가능자")
        lines.extend(bullet + q for q in quals)
    pref_pool = (list(major[4]) + [f"{c} 소지자" for c in bank.certs[:2]]
                 if not vague and rr() < 0.6 else list(V.GENERIC_PREFS))
    prefs = r.sample(pref_pool, 1 + int(rr() * 3))
    if rr() < 0.4:
        prefs.append(r.choice(V.GENERIC_PREFS))
    prefs = list(dict.fromkeys(prefs))
    majors = None
    if bank.majors and not vague and p.tier in ("P", "T", "M") and rr() < 0.6:
        majors = r.choice(bank.majors)
    return PostingText(
        title=title,
        description="\n".join(lines),
        preferences=", ".join(prefs),
        certificates=certs,
        major=majors,
        work_hours=hours,
    )
