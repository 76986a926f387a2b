"""Per-occupation profiles for the synthetic corpus: popularity, tier, surface names.

Everything here is a pure function of the shipped KECO table and constant seeds, so the
profiles are identical in every process (no dependency on ``hash()`` randomisation).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np

from core.reference import keco_primary
from core.synth.vocab_mid import MID

# Worknet's most posted occupations and their share of all postings (relative weights; the
# whole list gets POPULAR_SHARE of the mass, the Zipf tail the rest).
POPULAR: tuple[tuple[str, float], ...] = (
    ("시설 요양보호사(노인요양사)", 4.0),
    ("재가 요양보호사", 2.5),
    ("요양 보호사 및 간병인", 1.0),
    ("사무 보조원(일반사업체)", 2.5),
    ("총무 및 일반 사무원", 2.5),
    ("경리 사무원(일반사업체)", 2.0),
    ("단순 경리 사무원", 1.0),
    ("회계 사무원(일반 사업체)", 0.8),
    ("일반 영업원", 2.0),
    ("한식 조리사(일반 음식점)", 1.5),
    ("사업체 구내식당 급식 조리사", 1.0),
    ("주방 보조원(일반 음식점)", 1.5),
    ("단체 급식 보조원", 0.8),
    ("일반 음식점 서빙원", 1.0),
    ("제조 단순 종사원", 2.5),
    ("기계·금속 분야 단순 종사원", 1.2),
    ("식품 분야 단순 종사원", 1.0),
    ("전기·전자 분야 단순 종사원", 0.8),
    ("주입·포장·상표부착기 등 기타 기계 조작원", 0.6),
    ("경·소형 화물차 운전원", 1.0),
    ("중·대형 화물차 운전원(트레일러 포함)", 1.0),
    ("노선버스 운전원(시내, 마을, 시외, 고속)", 0.8),
    ("택시 운전원", 0.6),
    ("배송·납품 운전원(납품영업 포함)", 1.0),
    ("지게차 운전원", 1.2),
    ("일반 택배원(퀵서비스 포함)", 0.6),
    ("건물 청소원(공공건물,아파트,사무실,병원,상가,공장 등)", 2.0),
    ("아파트·빌라 경비원", 1.5),
    ("건물 경비원(청사,학교,병원,상가,빌딩,공장 등)", 1.0),
    ("간호조무사(요양병원 제외)", 1.2),
    ("일반 간호사", 1.2),
    ("사회복지사(사회복지시설)", 1.0),
    ("보육 교사", 1.2),
    ("생산·품질 사무원 및 관리원(기계·자동차·금속)", 0.8),
    ("전기용접원(아크,알곤,티그용접원)", 0.8),
    ("CNC 선반 조작원(NC 선반 조작원)", 0.6),
    ("머시닝센터(MCT) 조작원", 0.5),
    ("일반상점 판매원", 0.8),
    ("매장 계산원", 0.8),
    ("텔레마케터(콜센터)", 0.6),
    ("콜센터 상담원(콜센터·고객센터·CS센터)", 0.8),
    ("물리치료사", 0.6),
    ("미용사", 0.6),
    ("건설·채굴 단순 종사원", 0.8),
    ("자동차 엔진·섀시·전기·전자 정비원", 0.5),
    ("웹 개발자(웹 엔지니어·웹 프로그래머)", 0.5),
    ("JAVA 프로그래밍 언어 전문가", 0.3),
    ("영양사", 0.4),
    ("음료 조리사(바리스타 포함)", 0.5),
    ("수학 강사", 0.4),
    ("영어 강사", 0.5),
    ("내선 전기공(건물 내 전기공사원)", 0.5),
    ("아파트 전기관리원", 0.4),
    ("자동차 부품 조립·검사원", 0.6),
    ("플라스틱 사출성형기 조작원", 0.4),
    ("하역·적재 종사원", 0.6),
    ("주차 관리·안내원", 0.4),
    ("재봉사(의류·직물)", 0.4),
    ("장애인 생활지도원(장애인활동보조원 포함)", 0.5),
    ("방과후 교사 및 지도사", 0.4),
    ("재가 간병인", 0.4),
    ("간병인(재가 제외)", 0.4),
    ("육아 도우미(베이비시터)", 0.3),
    ("가사 도우미", 0.3),
    ("농업 단순 종사원", 0.3),
    ("조경원", 0.2),
)
POPULAR_SHARE = 0.5
_TAIL_SEED = 20_240_601  # fixed: the popularity order must not depend on the caller's seed

TIER_TAIL_FACTOR: dict[str, float] = {
    "L": 3.0, "S": 2.5, "K": 2.5, "O": 2.0, "T": 1.2, "M": 0.6, "P": 0.4,
}
# Monthly wage medians (KRW) per tier, and mid-group multipliers.
TIER_MONTHLY: dict[str, int] = {
    "M": 4_500_000, "P": 3_800_000, "T": 3_000_000, "O": 2_500_000,
    "S": 2_400_000, "K": 2_900_000, "L": 2_250_000,
}
MID_WAGE_MULT: dict[str, float] = {
    "041": 3.2, "01C": 1.5, "036": 1.6, "078": 2.0, "039": 1.1, "023": 1.3, "024": 1.2,
    "025": 1.2, "026": 1.2, "042": 1.15, "084": 1.3, "081": 1.15, "082": 1.1, "083": 1.15,
    "098": 1.15, "015": 1.2, "032": 0.95, "065": 0.97, "069": 0.96,
}

_M_WORDS = ("관리자", "부서장", "공장장", "관리소장", "현장소장", "점장", "지점장", "영업소장",
            "고위", "임원")
_P_WORDS = ("연구원", "개발자", "분석가", "전문가", "컨설턴트", "설계가")


@dataclass(frozen=True, slots=True)
class OccProfile:
    """What the generator needs to know about one occupation."""

    code: str
    name: str
    mid_code: str
    major_code: str
    tier: str
    research: bool
    part_time_rate: float
    monthly_base: int
    aliases: tuple[str, ...]
    qualifier: str


def stable_unit(text: str) -> float:
    """A number in [0, 1) fixed by ``text`` (crc32: stable across processes, unlike hash())."""
    return zlib.crc32(text.encode("utf-8")) / 2**32


def _tier(name: str, mid: str, major: str) -> str:
    tier = MID[mid][0]
    if any(w in name for w in _M_WORDS) and "매니저" not in name:
        return "M"
    if "단순" in name or "견습" in name:
        return "L"
    if "보조원" in name and major in ("08", "09", "10", "11", "12"):
        return "L"
    if tier in ("T", "O", "S") and any(w in name for w in _P_WORDS):
        return "P"
    if "사무원" in name and tier in ("S", "K", "L"):
        return "O"
    return tier


_SUFFIX_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("사무원", ("사무직", "사무 직원", "담당자")),
    ("보조원", ("보조",)),
    ("운전원", ("기사", "운전기사")),
    ("상담원", ("상담사", "상담직")),
    ("판매원", ("판매직", "판매 사원")),
    ("조작원", ("오퍼레이터", "생산직")),
    ("조립원", ("조립 생산직",)),
    ("청소원", ("미화원", "청소 직원")),
    ("경비원", ("경비", "경비 근무자")),
    ("배달원", ("배달 기사",)),
    ("택배원", ("택배 기사",)),
    ("조리사", ("조리원", "조리 실무자")),
    ("기술자", ("엔지니어",)),
    ("개발자", ("개발",)),
    ("종사원", ("직원",)),
    ("정비원", ("정비사", "정비 기사")),
    ("수리원", ("수리 기사", "A/S 기사")),
    ("서빙원", ("서빙", "홀 직원")),
    ("검사원", ("검사 생산직",)),
    ("관리원", ("관리 직원",)),
)
_PAREN = re.compile(r"\(([^()]*)\)")
# generic head nouns: "환경공학 기술자 및 연구원" also reads "환경공학 연구원"
_HEADS = frozenset({"연구원", "기술자", "관리자", "개발자", "전문가", "시험원", "기사", "조작원",
                    "조립원", "검사원", "수리원", "정비원", "설치원", "운영자", "강사"})


def aliases(name: str) -> tuple[tuple[str, ...], str]:
    """Surface forms a posting may use for an occupation, and its parenthesised qualifier."""
    m = _PAREN.search(name)
    qualifier = m.group(1).split(",")[0].split("·")[0].strip() if m else ""
    if "제외" in qualifier or "포함" in qualifier or len(qualifier) > 8:
        qualifier = ""
    base = _PAREN.sub("", name).strip()
    base = re.sub(r"^(기타|그 외|그외)\s+", "", base)
    out: list[str] = []
    if " 등 " in base:  # "도로정지기, 덤프트럭 등 기타 건설·채굴 기계 운전원"
        items, head = base.split(" 등 ", 1)
        head = re.sub(r"^(기타|그 외)\s+", "", head)
        last = head.split()[-1]
        first_item = re.split(r"[,·]\s*", items)[0].strip()
        base = head
        if first_item and " " not in first_item:
            out.append(f"{first_item} {last}")
    parts = [p.strip() for p in base.split(" 및 ") if p.strip()]
    if len(parts) > 1 and " " in parts[-1] and not re.search(r"[원사자가관공인직수의]$", parts[0]):
        parts[0] = parts[0] + " " + parts[-1].split()[-1]
    first_words = parts[0].split() if parts else []
    for i, part in enumerate(parts):
        if i > 0 and part in _HEADS and len(first_words) > 1:
            part = " ".join(first_words[:-1] + [part])
        out.append(part)
    for part in list(out):
        words = part.split()
        if words and "·" in words[0] and len(words) > 1:
            for piece in words[0].split("·")[:3]:
                out.append(" ".join([piece] + words[1:]))
        for suffix, variants in _SUFFIX_VARIANTS:
            if part.endswith(suffix):
                stem = part[: -len(suffix)].rstrip()
                if stem:
                    out.extend(f"{stem} {v}" if " " in v or len(stem) > 4 else stem + v
                               for v in variants)
                break
        if " " in part and len(part) <= 12:
            out.append(part.replace(" ", ""))
    seen: dict[str, None] = {}
    for a in out:
        a = a.strip(" ·")
        if len(a) >= 2:
            seen.setdefault(a, None)
    return tuple(seen) or (name,), qualifier


@cache
def profiles() -> tuple[OccProfile, ...]:
    """One profile per KECO occupation code, in KECO file order."""
    out = []
    for r in keco_primary().iter_rows(named=True):
        name, mid, major = r["name"], r["mid_code"], r["major_code"]
        tier = _tier(name, mid, major)
        base = TIER_MONTHLY[tier] * MID_WAGE_MULT.get(mid, 1.0)
        # a fixed per-occupation wage level, +-10 %
        base *= 0.9 + 0.2 * stable_unit("wage:" + r["code"])
        pt = MID[mid][1]
        if tier == "L":
            pt = max(pt, 0.15)
        als, qual = aliases(name)
        out.append(OccProfile(
            code=r["code"], name=name, mid_code=mid, major_code=major, tier=tier,
            research="연구" in name, part_time_rate=pt, monthly_base=int(base),
            aliases=als, qualifier=qual,
        ))
    return tuple(out)


@cache
def popularity() -> np.ndarray:
    """Probability of each occupation (aligned with :func:`profiles`): Zipf-like skew.

    The curated Worknet top list takes ``POPULAR_SHARE`` of the mass; the remaining codes
    are ordered by a tier-weighted fixed random score and get Zipf weights by rank.
    """
    profs = profiles()
    names = [p.name for p in profs]
    weights = np.zeros(len(profs))
    index: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        index.setdefault(n, []).append(i)
    popular_idx: list[int] = []
    for name, w in POPULAR:
        idx = index.get(name)
        if not idx:
            raise ValueError(f"popular occupation {name!r} is not in the KECO table")
        for i in idx:
            weights[i] += w / len(idx)
            popular_idx.append(i)
    weights *= POPULAR_SHARE / weights.sum()
    tail = np.array([i for i in range(len(profs)) if weights[i] == 0])
    rng = np.random.default_rng(_TAIL_SEED)
    noise = rng.lognormal(0.0, 0.8, size=len(profs))
    score = np.array([
        TIER_TAIL_FACTOR[p.tier] * (0.5 if p.research else 1.0)
        * (0.7 if p.name.startswith("기타") else 1.0) for p in profs
    ]) * noise
    order = tail[np.argsort(-score[tail], kind="stable")]
    ranks = np.empty(len(order))
    ranks[:] = np.arange(len(order))
    tail_w = 1.0 / (ranks + 20.0) ** 1.05
    weights[order] = (1.0 - POPULAR_SHARE) * tail_w / tail_w.sum()
    return weights / weights.sum()
