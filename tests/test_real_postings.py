"""Real postings (tests/fixtures/real): column maps, packed Worknet cells, address forms."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from core.errors import InvalidInputError
from core.ingest import ingest
from core.ingest.region_context import dongs, resolution_share, streets
from core.ingest.worknet_list import career_education_region, conditions, dates
from core.regions import RegionResolver
from core.romanise import match_key, romanise
from core.schema import POSTING_SCHEMA, validate_postings
from jobrec.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "fixtures" / "real"
MAPS = ROOT / "core" / "ingest" / "maps"
CORPORA = {  # sample file, column map, label column
    "wanted": (REAL / "wanted_sample.csv", MAPS / "wanted.json", "job_group"),
    "worknet_list": (REAL / "worknet_list_sample.csv", MAPS / "worknet_list.json",
                     "occupation_groups"),
}
REF = dt.date(2024, 6, 1)


@pytest.fixture(scope="module")
def resolver() -> RegionResolver:
    return RegionResolver()


def at(resolver: RegionResolver, *parts: str):
    """The table's own answer for these name parts: the ground truth to compare with."""
    hit = resolver.lookup(*parts)
    assert hit is not None, parts
    return hit


# -- romanisation ------------------------------------------------------------------------


@pytest.mark.parametrize("hangul, official", [
    ("종로구", "Jongno-gu"), ("신라", "Silla"), ("강원도", "Gangwon-do"), ("설악", "Seorak"),
    ("강남구", "Gangnam-gu"), ("충청북도", "Chungcheongbuk-do"), ("전라남도", "Jeollanam-do"),
    ("왕십리", "Wangsimni"), ("별내", "Byeollae"), ("울릉군", "Ulleung-gun"),
    ("의정부시", "Uijeongbu-si"), ("역삼동", "Yeoksam-dong"), ("선릉", "Seolleung"),
])
def test_romanise_matches_official_spellings(hangul, official):
    assert match_key(romanise(hangul)) == match_key(official)


@pytest.mark.parametrize("text, parts", [
    ("479, Bongeunsa-ro, Gangnam-gu, Seoul", ("서울특별시", "강남구")),
    ("9F, 109, Teheran-ro, Gangnam-gu, Seoul, Republic of Korea [06134]", ("서울특별시", "강남구")),
    ("Bundang-gu, Seongnam-si, Gyeonggi-do", ("경기도", "성남시", "분당구")),
    ("33 Jeongdong-gil, Jung-gu, Seoul", ("서울특별시", "중구")),
    ("17, Gangnam-daero 61-gil, Seocho gu, Seoul", ("서울특별시", "서초구")),
    ("83 Uisadang-daero, Seoul", ("서울특별시",)),
])
def test_romanised_addresses(resolver, text, parts):
    assert resolver.resolve(text) == at(resolver, *parts)


def test_romanised_ambiguous_and_unknown(resolver):
    assert resolver.resolve("Jung-gu") is None
    assert len(resolver.candidates("Jung-gu")) == 6
    assert resolver.resolve("Netmarble Building") is None


# -- dong-only, 구 without province, parenthesised addresses ------------------------------


def test_dong_only(resolver):
    assert resolver.resolve("공릉동 123") == at(resolver, "서울특별시", "노원구", "공릉동")
    assert resolver.resolve("성수동1가 656-75 헤이그라운드") == at(
        resolver, "서울특별시", "성동구", "성수동1가")
    # a 동 several districts have is left open, with every reading listed
    assert resolver.resolve("역삼동 센터필드타워") is None
    names = {c.name for c in resolver.candidates("역삼동 센터필드타워")}
    assert at(resolver, "서울특별시", "강남구", "역삼동").name in names and len(names) == 2
    assert {c.sido for c in resolver.candidates("신당동291-32")} >= {"서울특별시", "대구광역시"}


def test_gu_without_province(resolver):
    assert resolver.resolve("중구 삼일대로 343") is None
    assert {c.sido for c in resolver.candidates("중구 삼일대로 343")} == {
        "서울특별시", "부산광역시", "대구광역시", "인천광역시", "대전광역시", "울산광역시"}
    # a later name found under only one of the readings settles it
    assert resolver.resolve("중구 명동 2가") == at(resolver, "서울특별시", "중구", "명동")
    assert resolver.resolve("수원 영통") == at(resolver, "경기도", "수원시", "영통구")
    assert resolver.resolve("화성") is None  # a city without its suffix and nothing after


def test_address_in_parentheses(resolver):
    assert resolver.resolve("패스트파이브 구로점 (서울 구로구 디지털로 300)") == at(
        resolver, "서울특별시", "구로구")


def test_street_and_dong_names():
    assert streets("서울 강남구 테헤란로37길27, 3층") == ["테헤란로"]
    assert streets("중구 세종대로39 대한상공회의소") == ["세종대로"]
    assert streets("가산디지털1로 128, 명동길 3") == ["가산디지털1로", "명동길"]
    assert dongs("신당동291-32 (역삼동, 조이타워)") == ["신당동", "역삼동"]


# -- the batch settles what one address leaves open ---------------------------------------


def _csv(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    path = tmp_path / "p.csv"
    pl.DataFrame(rows).write_csv(path)
    return path


def _posting(pid: str, company: str, address: str) -> dict[str, str]:
    return {"posting_id": pid, "company": company, "title": "개발자", "duties": "개발",
            "address": address, "job_group": "518"}


def _ingest(tmp_path: Path, rows: list[dict[str, str]]):
    return ingest([_csv(tmp_path, rows)], "csv", column_map=MAPS / "wanted.json", ref_date=REF)


def _where(res, pid: str) -> str | None:
    row = res.postings.filter(pl.col("posting_id") == pid)
    return row["region"][0] if row.height else None


def _point(res, pid: str) -> tuple[float, float]:
    row = res.postings.filter(pl.col("posting_id") == pid).row(0, named=True)
    return row["lat"], row["lng"]


def test_company_settles_gu_without_province(tmp_path, resolver):
    res = _ingest(tmp_path, [
        _posting("a", "가나", "서울특별시 중구 을지로 100"),
        _posting("b", "가나", "중구 삼일대로 343"),
        _posting("c", "다라", "중구 삼일대로 343"),  # another company: nothing settles it
    ])
    seoul_jung = at(resolver, "서울특별시", "중구")
    assert _point(res, "b") == (seoul_jung.lat, seoul_jung.lng)
    rej = res.rejects.row(0, named=True)
    assert (rej["posting_id"], rej["reason"]) == ("c", "unknown_region")
    assert "대구광역시 중구" in rej["detail"] and "not settled" in rej["detail"]


def test_street_and_dong_settle(tmp_path, resolver):
    res = _ingest(tmp_path, [
        _posting("a", "가", "서울특별시 강남구 테헤란로 201 (역삼동)"),
        _posting("b", "나", "서울 강남구 테헤란로37길 7"),
        _posting("c", "다", "테헤란로 424 대치타워 15층"),  # street only: two postings agree
        _posting("d", "라", "역삼동 센터필드타워"),  # ambiguous 동: a posting reached it
        _posting("e", "마", "없음"),
    ])
    gangnam = at(resolver, "서울특별시", "강남구")
    yeoksam = at(resolver, "서울특별시", "강남구", "역삼동")
    assert _point(res, "c") == (gangnam.lat, gangnam.lng)
    assert _point(res, "d") == (yeoksam.lat, yeoksam.lng)
    assert res.rejects["posting_id"].to_list() == ["e"]
    assert res.rejects["detail"][0].endswith("names no place")


def test_disagreeing_evidence_is_rejected(tmp_path):
    res = _ingest(tmp_path, [
        _posting("a", "가나", "대구광역시 중구 동성로 1"),
        _posting("b", "다라", "서울특별시 중구 삼일대로 300"),
        _posting("c", "가나", "중구 삼일대로 343"),  # company: 대구 중구; street: 서울 중구
    ])
    assert res.rejects["posting_id"].to_list() == ["c"]
    assert "disagree" in res.rejects["detail"][0]


# -- Worknet search-list cells -------------------------------------------------------------


def test_worknet_packed_cells():
    assert career_education_region("경력1년 학력무관 강원특별자치도 원주시 문막읍") == {
        "career": "경력1년", "education": "학력무관", "region": "강원특별자치도 원주시 문막읍"}
    assert career_education_region("신입/경력2년 고졸 ~ 대졸(4년) 서울 성동구") == {
        "career": "신입/경력2년", "education": "고졸~대졸(4년)", "region": "서울 성동구"}
    assert conditions("월급 270 만원 이상\n비정규 주6일\n08:00~17:00") == {
        "wage": "월급 270 만원 이상", "employment_type_name": "기타",
        "holiday_type": "주6일근무", "work_hours": "08:00~17:00"}
    assert conditions("회사내규에 따름\n정규 주5일")["employment_type_name"] == "정규직"
    assert dates("24/03/26 등록\n24/04/19 마감") == {
        "registered_on": "24/03/26", "closes_on": "24/04/19"}


def test_worknet_row_fields(tmp_path, resolver):
    row = {"posting_id": "K1", "title": "레미콘 운전기사", "duties": "담당업무 : 믹서트럭 운전",
           "career_education_region": "경력1년 고졸 ~ 대졸(4년) 강원특별자치도 원주시 문막읍",
           "conditions": "월급 270 만원 ~ 300 만원\n정규 주5일\n08:00~17:00",
           "dates": "24/03/26 등록\n24/04/19 마감", "occupation_groups": "084|085"}
    res = ingest([_csv(tmp_path, [row])], "csv", column_map=MAPS / "worknet_list.json",
                 ref_date=REF)
    got = res.postings.row(0, named=True)
    munmak = at(resolver, "강원도", "원주시", "문막읍")
    assert (got["lat"], got["lng"], got["sido"]) == (munmak.lat, munmak.lng, "강원도")
    assert (got["career"], got["min_career_years"]) == ("experienced", 1)
    assert (got["min_education_level"], got["max_education_level"]) == (3, 5)
    assert (got["wage_type"], got["wage_min"], got["wage_max"]) == ("monthly", 2_700_000, 3_000_000)
    assert got["employment_type"] == "permanent" and got["work_hours"] == "08:00~17:00"
    assert (got["registered_on"], got["closes_on"]) == (dt.date(2024, 3, 26), dt.date(2024, 4, 19))
    assert got["occupation_code"] is None and got["occupation_groups"] == "084|085"


# -- the samples, as a user ingests them ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_sample_ingests_through_the_cli(tmp_path, name, capsys):
    sample, cmap, label = CORPORA[name]
    out, rej = tmp_path / "p.parquet", tmp_path / "r.parquet"
    assert cli_main(["ingest", "--format", "csv", "--column-map", str(cmap), str(sample),
                     "--out", str(out), "--rejects", str(rej), "--ref-date", "2024-06-01"]) == 0
    postings, rejects = pl.read_parquet(out), pl.read_parquet(rej)
    source = pl.read_csv(sample, infer_schema_length=0)
    # nothing lost: every record is a posting or a reject with a reason
    assert postings.height + rejects.height == source.height
    assert set(postings["posting_id"]) | set(rejects["posting_id"]) == set(source["posting_id"])
    assert rejects["reason"].is_not_null().all()
    # canonical columns, then the label exactly as the source wrote it
    assert postings.columns == [*POSTING_SCHEMA, label]
    validate_postings(postings.drop(label))
    truth = dict(zip(source["posting_id"], source[label], strict=True))
    assert all(truth[p] == v for p, v in postings.select("posting_id", label).iter_rows())


@pytest.mark.parametrize("name, floor", [("wanted", 0.95), ("worknet_list", 1.0)])
def test_sample_resolved_share(name, floor):
    # measured on the samples: wanted 0.960 (214 of 223 places), worknet_list 1.0 (324);
    # on the full files (bench/real_regions.py) wanted resolves 98.2 % (3,957 of 4,028)
    sample, cmap, _ = CORPORA[name]
    res = ingest([sample], "csv", column_map=cmap, ref_date=REF)
    share = resolution_share(res.counts, res.rejects)
    assert share["places"] + share["no_place"] + share["other_rejects"] == share["read"]
    assert share["resolved_share"] >= floor, share


# -- column map options ----------------------------------------------------------------------


@pytest.mark.parametrize("spec, message", [
    ({"columns": {"id": "posting_id"}, "keep": ["title"]}, "canonical column"),
    ({"columns": {"id": "posting_id"}, "defaults": {"colour": "red"}}, "unknown field"),
    ({"columns": {"id": "posting_id"}, "kept": ["x"]}, "unknown key"),
    ({"columns": {"id": "posting_id"}, "keep": "x"}, "list of headers"),
    ({"columns": {"id": "posting_id"}, "accept_unclassified": "yes"}, "true or false"),
])
def test_bad_column_map_options(tmp_path, spec, message):
    path = tmp_path / "map.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    src = _csv(tmp_path, [{"id": "1", "title": "t"}])
    with pytest.raises(InvalidInputError, match=message):
        ingest([src], "csv", column_map=path)


def test_unclassified_needs_the_option(tmp_path):
    rows = [_posting("a", "가", "서울 강남구")]
    spec = json.loads((MAPS / "wanted.json").read_text(encoding="utf-8"))
    spec["accept_unclassified"] = False
    res = ingest([_csv(tmp_path, rows)], "csv", column_map=spec, ref_date=REF)
    assert res.counts["by_reason"] == {"unknown_occupation": 1}


def test_company_cannot_override_a_named_district(tmp_path, resolver):
    res = _ingest(tmp_path, [
        _posting("a", "가나", "경기도 수원시 영통구 광교로 1"),
        _posting("b", "가나", "래미안 용산"),  # 용산 is no district of 경기도: left open
        _posting("c", "가나", "광교비즈니스센터 102호"),  # nothing against the company's
    ])
    yeongtong = at(resolver, "경기도", "수원시", "영통구")
    assert _point(res, "c") == (yeongtong.lat, yeongtong.lng)
    assert res.rejects["posting_id"].to_list() == ["b"]
    assert "서울특별시 용산구" in res.rejects["detail"][0]
