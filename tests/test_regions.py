"""Region resolution, checked against the reference table itself and haversine distances."""

from __future__ import annotations

import math
import random

import polars as pl
import pytest

from core.reference import SIDO_SHORT, regions
from core.regions import RegionResolver, ResolvedRegion

_PARTS = ("sido", "sigungu", "gu_or_eupmyeondong", "eupmyeondong", "ri")


@pytest.fixture(scope="module")
def resolver() -> RegionResolver:
    return RegionResolver()


def table_coords(*parts: str) -> tuple[float, float]:
    """Coordinates of the table row with exactly these name parts (the ground truth)."""
    padded = list(parts) + [""] * (5 - len(parts))
    expr = pl.lit(True)
    for col, value in zip(_PARTS, padded, strict=True):
        expr = expr & (pl.col(col) == value)
    rows = regions().filter(expr)
    assert rows.height == 1, (parts, rows)
    return rows["lat"][0], rows["lng"][0]


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def assert_at(hit: ResolvedRegion | None, *parts: str) -> None:
    assert hit is not None, parts
    assert hit.name == " ".join(parts)
    assert (hit.lat, hit.lng) == table_coords(*parts)
    assert hit.level == len(parts)
    assert hit.sido == parts[0]


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("경기 용인시 수지구", ("경기도", "용인시", "수지구")),
        ("서울 서초구", ("서울특별시", "서초구")),
        ("서울시 강남구", ("서울특별시", "강남구")),
        ("세종특별자치시", ("세종특별자치시",)),
        ("세종 조치원읍", ("세종특별자치시", "조치원읍")),
        ("부산 해운대구", ("부산광역시", "해운대구")),
        ("경남 창원시 성산구", ("경상남도", "창원시", "성산구")),
        ("경기 용인 수지구", ("경기도", "용인시", "수지구")),  # 시 left out
        ("제주 제주시", ("제주특별자치도", "제주시")),
        ("수지구", ("경기도", "용인시", "수지구")),  # unique 구 without province
    ],
)
def test_short_forms(resolver, text, parts):
    assert_at(resolver.resolve(text), *parts)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("서울특별시 노원구 동일로174길 13, 3층 (공릉동)", ("서울특별시", "노원구", "공릉동")),
        ("경기도 용인시 수지구 문정로 7 3층 (상현동)", ("경기도", "용인시", "수지구", "상현동")),
        ("경기도 용인시 수지구 문정로 7", ("경기도", "용인시", "수지구")),
        ("[06236] 서울특별시 강남구 테헤란로 123, 5층", ("서울특별시", "강남구")),
        ("경기도 용인시 처인구 양지면 송문리 123-4", ("경기도", "용인시", "처인구", "양지면", "송문리")),
        ("경기도 부천시 원미구 중동 1140", ("경기도", "부천시", "중동")),  # abolished 구 skipped
        ("서울특별시 종로구 세종대로 209 (세종로)", ("서울특별시", "종로구", "세종로")),
        ("인천 미추홀구 도화2·3동", ("인천광역시", "미추홀구", "도화2,3동")),
        ("경기 광주시 오포읍 신현로 1", ("경기도", "광주시", "오포읍")),
    ],
)
def test_long_addresses(resolver, text, parts):
    assert_at(resolver.resolve(text), *parts)


@pytest.mark.parametrize(
    ("renamed", "old"),
    [
        ("강원특별자치도 춘천시", ("강원도", "춘천시")),
        ("강원 춘천시", ("강원도", "춘천시")),
        ("강원특별자치도 강릉시 강릉대로 33 (홍제동)", ("강원도", "강릉시", "홍제동")),
        ("전북특별자치도 전주시 완산구", ("전라북도", "전주시", "완산구")),
        ("전북 군산시", ("전라북도", "군산시")),
        ("대구광역시 군위군 군위읍", ("경상북도", "군위군", "군위읍")),  # moved in 2023
    ],
)
def test_renamed_provinces(resolver, renamed, old):
    assert_at(resolver.resolve(renamed), *old)


def test_ambiguous_names(resolver):
    # several provinces have these: without a province nothing can be chosen
    assert resolver.resolve("중구") is None
    assert resolver.resolve("고성군") is None
    seoul, daegu = resolver.resolve("서울 중구"), resolver.resolve("대구 중구")
    assert_at(seoul, "서울특별시", "중구")
    assert_at(daegu, "대구광역시", "중구")
    assert haversine_km(seoul.lat, seoul.lng, daegu.lat, daegu.lng) > 200
    gw, gn = resolver.resolve("강원 고성군"), resolver.resolve("경남 고성군")
    assert_at(gw, "강원도", "고성군")
    assert_at(gn, "경상남도", "고성군")
    assert haversine_km(gw.lat, gw.lng, gn.lat, gn.lng) > 300
    # 광주시 is a city of 경기도; 광주 (광역시) is 250 km away
    gg, gj = resolver.resolve("경기 광주시"), resolver.resolve("광주 북구")
    assert_at(gg, "경기도", "광주시")
    assert_at(gj, "광주광역시", "북구")
    assert haversine_km(gg.lat, gg.lng, gj.lat, gj.lng) > 200
    assert_at(resolver.resolve("광주시 오포읍"), "경기도", "광주시", "오포읍")
    assert_at(resolver.resolve("광주광역시"), "광주광역시")


@pytest.mark.parametrize("text", ["", "   ", "해외", "전국", "xyz", "12345", "화성"])
def test_unknown_is_none(resolver, text):
    assert resolver.resolve(text) is None


def test_regions_without_coordinates(resolver):
    table = regions()
    missing = table.filter(pl.col("lat").is_null())
    assert missing.height == 32
    with_coords = table.filter(pl.col("lat").is_not_null())
    for row in missing.iter_rows(named=True):
        parts = tuple(row[p] for p in _PARTS if row[p])
        hit = resolver.lookup(*parts)
        assert hit is not None, parts
        assert hit.lat is not None and 33 <= hit.lat <= 38.7
        # below: children's mean when the region has sub-regions, else the nearest ancestor
        expr = pl.lit(True)
        for col, value in zip(_PARTS, parts, strict=False):
            expr = expr & (pl.col(col) == value)
        below = with_coords.filter(expr)
        if below.height:
            assert hit.name == " ".join(parts)
            assert hit.lat == pytest.approx(below["lat"].mean())
            assert hit.lng == pytest.approx(below["lng"].mean())
        else:
            assert " ".join(parts).startswith(hit.name) and hit.level < len(parts)
            assert (hit.lat, hit.lng) == table_coords(*hit.name.split())
    # 여주시 (no centroid) sits among its 동/읍/면, not at the 경기도 centroid 50+ km away
    yeoju = resolver.resolve("경기 여주시")
    oh = table_coords("경기도", "여주시", "오금동")
    assert haversine_km(yeoju.lat, yeoju.lng, *oh) < 20
    assert_at(resolver.resolve("서울 동작구 상도제1동"), "서울특별시", "동작구")


def test_every_region_resolves_to_itself(resolver):
    """A seeded sample of table rows: the written-out name resolves to that very row."""
    table = regions().filter(pl.col("lat").is_not_null())
    rng = random.Random(7)
    rows = [table.row(i, named=True) for i in rng.sample(range(table.height), 400)]
    for row in rows:
        parts = tuple(row[p] for p in _PARTS if row[p])
        for text in (" ".join(parts), " ".join((SIDO_SHORT[parts[0]],) + parts[1:])):
            hit = resolver.resolve(text)
            assert hit is not None, text
            assert hit.name == " ".join(parts), text
            assert haversine_km(hit.lat, hit.lng, row["lat"], row["lng"]) < 1e-6


def test_results_are_cached(resolver):
    a = resolver.resolve("경기 용인시 수지구")
    assert resolver.resolve("경기 용인시 수지구") is a
    assert resolver.resolve(None) is None
