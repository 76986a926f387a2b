"""CSV (Korean headers, column maps, encodings) and Parquet ingestion."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import polars as pl
import pytest

from core.errors import InvalidInputError, MalformedSourceError
from core.ingest import ingest
from core.schema import validate_postings
from tests.helpers import coords

FIXTURES = Path(__file__).parent / "fixtures" / "worknet"
REF = dt.date(2025, 11, 23)

KOREAN_HEADERS = ["구인인증번호", "회사명", "구인제목", "직무내용", "모집직종", "근무지역", "학력",
                  "경력", "임금형태", "최소임금", "최대임금", "근무형태", "고용형태", "등록일", "마감일"]
ROWS = [
    ["K2000000000001", "가나상사", "사무 보조원 모집", "서류 정리<br>전화 010-1111-2222", "사무 보조원",
     "서울 서초구", "고졸 이상", "신입", "월급", "2,300,000", "", "주5일근무",
     "기간의 정함이 없는 근로계약", "2025-11-01", "채용시까지"],
    ["K2000000000002", "다라푸드", "주방 보조 (단체급식)", "조리 보조", "단체 급식 보조원",
     "전북특별자치도 전주시 완산구", "학력무관", "관계없음", "시급", "10030", "12000", "주6일근무",
     "기간의 정함이 있는 근로계약(시간(선택)제)", "20251102", "25-12-31"],
    ["K2000000000003", "마바건설", "현장 용접원", "배관 용접", "용접원(824100)",
     "경남 창원시 성산구", "고졸-대졸(2~3년)", "경력 (최소5년) 필수", "일급", "250000", "", "주6일근무",
     "일용직", "25-11-03", ""],
    ["K2000000000004", "사아IT", "백엔드 개발", "API 개발", "우주선 조종사",  # unknown occupation
     "서울 강남구", "대졸(4년)", "경력", "연봉", "50000000", "", "주5일근무", "정규직", "25-11-03", ""],
    ["K2000000000001", "가나상사", "중복", "", "사무 보조원", "서울 서초구", "고졸", "신입", "월급",
     "2000000", "", "", "", "25-11-03", ""],
]


def write_csv(path: Path, headers: list[str], rows: list[list[str]], encoding: str = "utf-8-sig") -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(headers)
    w.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def check_korean_result(res) -> None:
    assert res.counts["read"] == 5
    assert res.counts["by_reason"] == {"duplicate_id": 1, "unknown_occupation": 1}
    validate_postings(res.postings)
    p = {r["posting_id"]: r for r in res.postings.iter_rows(named=True)}
    a, b, c = p["K2000000000001"], p["K2000000000002"], p["K2000000000003"]
    assert a["occupation_code"] == "029500"  # by name: 사무 보조원
    assert b["occupation_code"] == "532302"  # 단체 급식 보조원, exact name
    assert c["occupation_code"] == "824100"
    assert a["description"] == "서류 정리\n전화 [전화번호]"
    assert (a["lat"], a["lng"]) == coords("서울특별시", "서초구")
    assert (b["sido"], (b["lat"], b["lng"])) == ("전라북도", coords("전라북도", "전주시", "완산구"))
    assert (a["min_education_level"], a["max_education_level"]) == (3, 7)
    assert (b["min_education_level"], b["max_education_level"]) == (0, 7)
    assert (c["min_education_level"], c["max_education_level"]) == (3, 4)
    assert (c["career"], c["min_career_years"]) == ("experienced", 5)
    assert (b["wage_type"], b["wage_min"], b["wage_max"]) == ("hourly", 10_030, 12_000)
    assert a["closes_on"] is None and b["closes_on"] == dt.date(2025, 12, 31)
    assert [a["registered_on"], b["registered_on"], c["registered_on"]] == [
        dt.date(2025, 11, 1), dt.date(2025, 11, 2), dt.date(2025, 11, 3)]
    assert [a["employment_type"], b["employment_type"], c["employment_type"]] == [
        "permanent", "fixed_term_part_time", "daily"]


def test_csv_with_korean_headers(tmp_path):
    src = write_csv(tmp_path / "export.csv", KOREAN_HEADERS, ROWS)
    check_korean_result(ingest([src], "csv", ref_date=REF))


def test_csv_in_cp949(tmp_path):
    # what Korean Excel writes
    write_csv(tmp_path / "export.csv", KOREAN_HEADERS, ROWS, encoding="cp949")
    check_korean_result(ingest([tmp_path], "csv", ref_date=REF))


def test_csv_column_map_file(tmp_path):
    headers = ["공고번호", "업체", "채용명", "업무", "직종", "지역", "요구학력", "요구경력", "급여구분",
               "급여하한", "급여상한", "휴무", "계약", "게시일", "종료일"]
    src = write_csv(tmp_path / "custom.csv", headers, ROWS)
    with pytest.raises(InvalidInputError, match="no column maps to posting_id"):
        ingest([src], "csv", ref_date=REF)
    fields = ["posting_id", "company", "title", "duties", "occupation_name", "region", "education",
              "career", "wage_type", "wage_min", "wage_max", "holiday_type", "employment_type_name",
              "registered_on", "closes_on"]
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps(dict(zip(headers, fields, strict=True)), ensure_ascii=False), encoding="utf-8")
    check_korean_result(ingest([src], "csv", column_map=mapping, ref_date=REF))
    # a map can also switch a default column off: without 모집직종 names nothing resolves
    korean = write_csv(tmp_path / "k.csv", KOREAN_HEADERS, ROWS)
    res = ingest([korean], "csv", column_map={"모집직종": None}, ref_date=REF)
    assert res.counts["by_reason"] == {"duplicate_id": 1, "unknown_occupation": 4}


def test_bad_column_maps(tmp_path):
    src = write_csv(tmp_path / "k.csv", KOREAN_HEADERS, ROWS)
    with pytest.raises(InvalidInputError, match="unknown field 'salary'"):
        ingest([src], "csv", column_map={"급여": "salary"})
    bad = tmp_path / "map.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        ingest([src], "csv", column_map=bad)


def test_malformed_rows_and_files(tmp_path):
    src = write_csv(tmp_path / "ragged.csv", KOREAN_HEADERS, ROWS[:1], encoding="utf-8")
    with open(src, "a", encoding="utf-8") as fh:
        fh.write("K9,짧은,행\n\n")  # a short row, then a blank line (not a record)
    res = ingest([src], "csv", ref_date=REF)
    assert res.counts == {"read": 2, "accepted": 1, "rejected": 1, "by_reason": {"malformed_row": 1}}
    raw = json.loads(res.rejects["raw"][0])
    assert raw["구인인증번호"] == "K9" and "line 3" in res.rejects["detail"][0]
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"a,b\n1,\x002\n")
    with pytest.raises(MalformedSourceError, match=r"nul\.csv: NUL byte at line 2"):
        ingest([nul], "csv")
    quote = tmp_path / "quote.csv"
    quote.write_text('구인인증번호,회사명\nK1,"unterminated\n', encoding="utf-8")
    with pytest.raises(MalformedSourceError, match=r"quote\.csv: malformed CSV"):
        ingest([quote], "csv")


def test_duplicates_across_files_first_kept(tmp_path):
    write_csv(tmp_path / "a.csv", KOREAN_HEADERS, ROWS[:1])
    second = [list(ROWS[0])]
    second[0][2] = "나중 제목"
    write_csv(tmp_path / "b.csv", KOREAN_HEADERS, second)
    res = ingest([tmp_path], "csv", ref_date=REF)
    assert res.postings["title"].to_list() == ["사무 보조원 모집"]
    assert res.rejects["reason"].to_list() == ["duplicate_id"]
    assert res.rejects["source"][0].endswith("b.csv")


def test_parquet_round_trip(tmp_path):
    first = ingest([FIXTURES], "worknet-xml", ref_date=REF)
    path = tmp_path / "canonical.parquet"
    first.postings.write_parquet(path)
    again = ingest([path], "parquet", ref_date=REF)
    assert again.counts == {"read": first.postings.height, "accepted": first.postings.height,
                            "rejected": 0, "by_reason": {}}
    assert again.postings.equals(first.postings)
    # and through CSV: canonical English headers are understood too
    csv_path = tmp_path / "canonical.csv"
    first.postings.write_csv(csv_path)
    via_csv = ingest([csv_path], "csv", ref_date=REF)
    assert via_csv.postings.equals(first.postings)


def test_parquet_with_korean_columns_and_rejects(tmp_path):
    df = pl.DataFrame([dict(zip(KOREAN_HEADERS, r, strict=True)) for r in ROWS])
    path = tmp_path / "export.parquet"
    df.write_parquet(path)
    check_korean_result(ingest([path], "parquet", ref_date=REF))


def test_parquet_garbage_is_clear_error(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(MalformedSourceError, match=r"bad\.parquet: not a readable Parquet file"):
        ingest([bad], "parquet")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match=r"holds no \*\.parquet files"):
        ingest([empty], "parquet")


def test_occupation_names_resolve_to_keco_codes():
    from core.parsing import OccupationResolver
    from core.reference import keco_primary

    occ = OccupationResolver()
    table = keco_primary()
    by_name: dict[str, set[str]] = {}
    for row in table.iter_rows(named=True):
        by_name.setdefault(row["name"], set()).add(row["code"])
    for row in table.iter_rows(named=True):
        got = occ.resolve(None, row["name"])
        if len(by_name[row["name"]]) == 1:
            assert got == row["code"], row
        else:  # KECO repeats a name for a code and its parent: the parent is the answer
            assert got == min(by_name[row["name"]]) and got.endswith("00"), row
        assert occ.resolve(None, f"{row['name']}({row['code']})") == row["code"]
    # spacing and the middle dot do not matter; near names fall back to containment
    assert occ.resolve(None, "사무보조원") == "029500"
    assert occ.resolve(None, "사무 보조원") == "029500"
    assert occ.resolve(None, "용접 원") == "824100"
    assert occ.resolve(None, "건설 채굴 단순 종사원") == "706000"
    assert occ.resolve(None, "우주선 조종사") is None
    assert occ.resolve("999999") is None and occ.resolve("29500") == "029500"
