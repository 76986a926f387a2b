"""Where synthetic jobs are: 읍/면/동-level places with coordinates and sampling weights."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from core.reference import SIDO_SHORT, regions

# Share of postings per province: the capital area takes about half, as on Worknet.
SIDO_SHARE: dict[str, float] = {
    "경기도": 0.26, "서울특별시": 0.19, "인천광역시": 0.055,
    "부산광역시": 0.055, "경상남도": 0.055, "경상북도": 0.045, "충청남도": 0.045,
    "대구광역시": 0.04, "충청북도": 0.033, "대전광역시": 0.028, "전라북도": 0.028,
    "전라남도": 0.027, "광주광역시": 0.024, "울산광역시": 0.022, "강원도": 0.024,
    "제주특별자치도": 0.013, "세종특별자치시": 0.008,
}
# Within a province, a 동 (urban) carries more jobs than an 읍, an 읍 more than a 면.
UNIT_WEIGHT: dict[str, float] = {"동": 3.0, "가": 1.0, "읍": 2.0, "면": 0.35}


@dataclass(frozen=True)
class Places:
    """Columnar place table (aligned arrays) plus the sampling distribution."""

    sido: np.ndarray  # full province name
    sigungu: np.ndarray  # 시/군/구 ("" for 세종)
    gu: np.ndarray  # 구 inside a 시, else ""
    emd: np.ndarray  # 읍/면/동
    lat: np.ndarray
    lng: np.ndarray
    region: np.ndarray  # Worknet short form: "경기 용인시 수지구"
    prob: np.ndarray


def _unit_weight(name: str) -> float:
    return UNIT_WEIGHT.get(name[-1:], 0.5)


@cache
def places() -> Places:
    """All 읍/면/동 with a centroid, with their Worknet region string and weight."""
    r = regions().filter(pl.col("lat").is_not_null() & (pl.col("ri") == ""))
    rows: list[tuple[str, str, str, str, float, float]] = []
    for sido, sgg, goe, emd, _ri, lat, lng in r.iter_rows():
        if sido == "세종특별자치시":
            if sgg and not goe:  # 세종 keeps its 읍/면/동 in the sigungu column
                rows.append((sido, "", "", sgg, lat, lng))
            continue
        if not sgg or not goe:
            continue
        if goe.endswith("구") and emd:
            rows.append((sido, sgg, goe, emd, lat, lng))
        elif not goe.endswith("구") and not emd:
            rows.append((sido, sgg, "", goe, lat, lng))
    sido = np.array([x[0] for x in rows])
    sgg = np.array([x[1] for x in rows])
    gu = np.array([x[2] for x in rows])
    emd = np.array([x[3] for x in rows])
    lat = np.array([x[4] for x in rows], dtype=np.float64)
    lng = np.array([x[5] for x in rows], dtype=np.float64)
    region = np.array([
        "세종특별자치시" if s == "세종특별자치시" else " ".join(p for p in (SIDO_SHORT[s], g, k) if p)
        for s, g, k in zip(sido, sgg, gu, strict=True)
    ])
    w = np.array([_unit_weight(e) for e in emd])
    prob = np.zeros(len(rows))
    for s, share in SIDO_SHARE.items():
        m = sido == s
        if m.any():
            prob[m] = share * w[m] / w[m].sum()
    prob /= prob.sum()
    return Places(sido, sgg, gu, emd, lat, lng, region, prob)


def jitter(rng: np.random.Generator, lat: np.ndarray, lng: np.ndarray, max_km: float = 0.9):
    """Move points uniformly within ``max_km`` of where they are (a company's building)."""
    n = len(lat)
    r = max_km * np.sqrt(rng.random(n))
    theta = rng.random(n) * 2 * np.pi
    dlat = r * np.cos(theta) / 111.0
    dlng = r * np.sin(theta) / (111.0 * np.cos(np.radians(lat)))
    return lat + dlat, lng + dlng
