"""Reference data shipped inside the package: administrative regions and KECO occupations.

Both tables are copied from the public sources into ``core/data`` so jobrec never needs
network access or files outside the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import polars as pl

# Worknet's short province names and the renamed special self-governing provinces map to
# the full names used by the region table.
SIDO_ALIASES: dict[str, str] = {
    "서울": "서울특별시",
    "서울시": "서울특별시",
    "부산": "부산광역시",
    "부산시": "부산광역시",
    "대구": "대구광역시",
    "대구시": "대구광역시",
    "인천": "인천광역시",
    "인천시": "인천광역시",
    "광주": "광주광역시",
    "광주시": "광주광역시",
    "대전": "대전광역시",
    "대전시": "대전광역시",
    "울산": "울산광역시",
    "울산시": "울산광역시",
    "세종": "세종특별자치시",
    "세종시": "세종특별자치시",
    "경기": "경기도",
    "강원": "강원도",
    "강원특별자치도": "강원도",
    "충북": "충청북도",
    "충남": "충청남도",
    "전북": "전라북도",
    "전북특별자치도": "전라북도",
    "전남": "전라남도",
    "경북": "경상북도",
    "경남": "경상남도",
    "제주": "제주특별자치도",
    "제주도": "제주특별자치도",
}

SIDO_SHORT: dict[str, str] = {
    "서울특별시": "서울",
    "부산광역시": "부산",
    "대구광역시": "대구",
    "인천광역시": "인천",
    "광주광역시": "광주",
    "대전광역시": "대전",
    "울산광역시": "울산",
    "세종특별자치시": "세종",
    "경기도": "경기",
    "강원도": "강원",
    "충청북도": "충북",
    "충청남도": "충남",
    "전라북도": "전북",
    "전라남도": "전남",
    "경상북도": "경북",
    "경상남도": "경남",
    "제주특별자치도": "제주",
}


def _read_csv(name: str) -> pl.DataFrame:
    with resources.files("core").joinpath("data", name).open("rb") as fh:
        return pl.read_csv(fh, infer_schema_length=0)  # every column as text


@cache
def regions() -> pl.DataFrame:
    """All administrative regions: sido, sigungu, gu_or_eupmyeondong, eupmyeondong, ri, lat, lng.

    Empty name parts are empty strings; the 32 regions without a centroid have null lat/lng.
    """
    df = _read_csv("kr_admin_regions.csv")
    return df.with_columns(
        [pl.col(c).fill_null("") for c in ("sido", "sigungu", "gu_or_eupmyeondong", "eupmyeondong", "ri")]
        + [pl.col("lat").cast(pl.Float64), pl.col("lng").cast(pl.Float64)]
    )


@cache
def keco_rows() -> pl.DataFrame:
    """The KECO table as shipped: 1,172 rows, 1,090 distinct codes (a code may sit in several groups)."""
    return _read_csv("keco_occupations.csv")


@cache
def keco_primary() -> pl.DataFrame:
    """One row per occupation code: its primary group.

    For the 76 codes listed under more than one mid/major group, the primary group is the
    first one listed in the KECO table (file order); :func:`keco_groups` gives all of them.
    """
    return keco_rows().unique(subset="code", keep="first", maintain_order=True)


@dataclass(frozen=True, slots=True)
class Occupation:
    code: str
    name: str
    mid_code: str
    mid_name: str
    major_code: str
    major_name: str


@cache
def occupations() -> dict[str, Occupation]:
    """Occupation code -> its primary :class:`Occupation`."""
    return {r["code"]: Occupation(**r) for r in keco_primary().iter_rows(named=True)}


@cache
def _groups() -> dict[str, tuple[Occupation, ...]]:
    out: dict[str, list[Occupation]] = {}
    for r in keco_rows().iter_rows(named=True):
        out.setdefault(r["code"], []).append(Occupation(**r))
    return {k: tuple(v) for k, v in out.items()}


def keco_groups(code: str) -> tuple[Occupation, ...]:
    """Every (mid, major) group an occupation code is listed under, primary first."""
    return _groups().get(code, ())


@cache
def major_codes() -> tuple[str, ...]:
    """The 13 major group codes, sorted."""
    return tuple(sorted(keco_rows()["major_code"].unique().to_list()))


@cache
def mid_codes() -> tuple[str, ...]:
    """The 112 mid group codes, sorted."""
    return tuple(sorted(keco_rows()["mid_code"].unique().to_list()))
