"""Worknet XML ingestion: list + detail join, every reject reason, counts, errors, CLI."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import polars as pl
import pytest

from core.errors import MalformedSourceError, UpstreamApiError
from core.ingest import REJECT_REASONS, ingest
from core.schema import POSTING_SCHEMA, REJECT_SCHEMA, validate_postings
from jobrec import cli
from tests.helpers import coords

FIXTURES = Path(__file__).parent / "fixtures" / "worknet"
REF = dt.date(2025, 11, 23)
PII = re.compile(r"\d{2,4}[-)]\d{3,4}-\d{4}|@|https?://|www\.|010-")


GOOD = {
    "wantedAuthNo": "K100000000000001",
    "company": "(주)테스트",
    "title": "사무원 모집",
    "salTpNm": "월급",
    "minSal": "2500000",
    "maxSal": "3000000",
    "region": "서울 강남구",
    "holidayTpNm": "주5일근무",
    "minEdubg": "고졸",
    "maxEdubg": "대졸(4년)",
    "career": "신입",
    "regDt": "25-11-20",
    "closeDt": "25-12-20",
    "empTpCd": "10",
    "jobsCd": "029500",
}


def wanted_xml(items: list[dict[str, str]]) -> str:
    body = "".join(
        "<wanted>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in it.items()) + "</wanted>\n"
        for it in items
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<wantedRoot><total>{len(items)}</total>\n{body}</wantedRoot>\n'


def detail_xml(items: list[dict[str, str]], root: str = "wantedDtlRoot") -> str:
    body = "".join(
        f"<wantedDtl><wantedAuthNo>{it['wantedAuthNo']}</wantedAuthNo><corpInfo><corpNm>"
        f"{escape(it.get('corpNm', '회사'))}</corpNm></corpInfo><wantedInfo>"
        + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in it.items() if k not in ("wantedAuthNo", "corpNm"))
        + "</wantedInfo></wantedDtl>\n"
        for it in items
    )
    if root == "wantedDtl":
        assert len(items) == 1
        return body
    return f"<{root}>\n{body}</{root}>\n"


def test_fixture_list_and_detail_join():
    res = ingest([FIXTURES], "worknet-xml", ref_date=REF)
    c = res.counts
    assert c["read"] == c["accepted"] + c["rejected"] == 10
    assert c["by_reason"] == {
        "detail_without_list": 1,
        "duplicate_id": 1,
        "missing_id": 1,
        "unknown_region": 1,
        "unparseable_date": 1,
        "unparseable_wage": 1,
    }
    validate_postings(res.postings)
    assert dict(res.rejects.schema) == REJECT_SCHEMA
    p = {r["posting_id"]: r for r in res.postings.iter_rows(named=True)}
    assert sorted(p) == ["K120012511210002", "K150012511230004", "K151612511200011", "K170012511220003"]

    a = p["K151612511200011"]  # list + detail
    assert a["title"] == "대기환경 측정·분석 연구원 모집 (경력 3년 이상)"  # wantedTitle wins
    assert a["company"] == "(주)한빛환경"
    assert a["occupation_code"] == "155500"
    assert a["region"] == "경기 용인시 수지구"
    # basicAddr + "(상현동)" from detailAddr is more specific than the short form
    assert (a["lat"], a["lng"]) == coords("경기도", "용인시", "수지구", "상현동")
    assert a["sido"] == "경기도"
    assert (a["min_education_level"], a["max_education_level"]) == (5, 7)
    assert (a["career"], a["min_career_years"]) == ("experienced", 3)
    assert (a["wage_type"], a["wage_min"], a["wage_max"], a["monthly_wage"]) == (
        "monthly", 2_500_000, 3_000_000, 2_500_000)
    assert a["employment_type"] == "permanent"
    assert a["registered_on"] == dt.date(2025, 11, 20)
    assert a["closes_on"] == dt.date(2025, 12, 20)  # "채용시까지 25-12-20"
    assert a["description"] == (
        "- 대기오염 측정 및 분석\n- 보고서 작성 & 발표\n문의: [전화번호], [이메일]\n대기환경기사 자격 소지자"
    )
    assert a["preferences"] == "유관업무 경력자 우대\n자세한 내용은 [URL] 참조"
    assert (a["major"], a["certificates"], a["near_station"]) == ("환경공학", "대기환경기사", "신분당선 수지구청역")
    assert a["work_hours"] == "주 5일 근무, 09:00~18:00"
    assert a["holiday_type"] == "주5일근무"

    b = p["K120012511210002"]  # occupation by name only, part-time hourly, open-ended
    assert b["occupation_code"] == "029500"  # "사무 보조원" -> 전산자료 입력원 및 사무 보조원
    assert (b["lat"], b["lng"]) == coords("서울특별시", "노원구", "공릉동")
    assert (b["career"], b["min_career_years"]) == ("any", 2)  # 신입/경력 + "경력(최소2년)"
    assert (b["min_education_level"], b["max_education_level"]) == (0, 7)
    assert b["closes_on"] is None
    assert b["employment_type"] == "fixed_term_part_time"
    # 4 days x 8 h + proportional weekly holiday pay, 209/48 h per weekly hour a month
    assert b["monthly_wage"] == round(10_030 * (32 + 6.4) * 209 / 48)

    c3 = p["K170012511220003"]  # 세종: address (조치원읍) beats the province-only region
    assert (c3["lat"], c3["lng"]) == coords("세종특별자치시", "조치원읍")
    assert (c3["wage_min"], c3["wage_max"], c3["monthly_wage"]) == (36_000_000, None, 3_000_000)
    assert c3["description"] == ""  # list item only

    d = p["K150012511230004"]  # renamed province, 면접 후 결정
    assert d["sido"] == "강원도"
    assert (d["lat"], d["lng"]) == coords("강원도", "고성군")
    assert (d["wage_type"], d["wage_min"], d["monthly_wage"]) == ("daily", None, None)
    assert d["employment_type"] == "daily"


def test_no_pii_anywhere_stored():
    res = ingest([FIXTURES], "worknet-xml", ref_date=REF)
    for col, dtype in POSTING_SCHEMA.items():
        if dtype == pl.Utf8():
            for value in res.postings[col].drop_nulls():
                assert not PII.search(value), (col, value)
    for value in res.rejects["raw"]:
        assert not PII.search(value), value
    # the raw record is kept (minus PII) so nothing is lost
    raw = json.loads(res.rejects.filter(pl.col("reason") == "detail_without_list")["raw"][0])
    assert raw["detail"]["wantedTitle"] == "목록에 없는 상세"


BAD_CASES: dict[str, list[dict[str, str]]] = {
    "missing_id": [{"wantedAuthNo": ""}],
    "missing_title": [{"title": ""}],
    "missing_company": [{"company": " "}],
    "unknown_occupation": [{"jobsCd": "999999"}, {"jobsCd": ""}],
    "unknown_region": [{"region": "해외"}, {"region": "중구"}],
    "invalid_education": [{"minEdubg": "박사", "maxEdubg": "고졸"}, {"minEdubg": "대학원졸업예정"}],
    "invalid_career": [{"career": "인턴"}],
    "unparseable_wage": [{"salTpNm": "주급"}, {"minSal": "abc"}, {"minSal": "3000000", "maxSal": "2000000"}],
    "unparseable_date": [{"regDt": ""}, {"regDt": "25-13-45"}, {"closeDt": "다음주쯤"}],
    "invalid_employment_type": [{"empTpCd": "99"}],
}


def test_every_reject_reason(tmp_path):
    items, expected = [], {}
    n = 0
    for reason, overrides in BAD_CASES.items():
        for ov in overrides:
            n += 1
            items.append({**GOOD, "wantedAuthNo": f"K9{n:014d}", **ov})
        expected[reason] = len(overrides)
    items.append(dict(GOOD))  # accepted
    items.append({**GOOD, "title": "같은 번호"})  # duplicate of the one before
    expected["duplicate_id"] = 1
    (tmp_path / "list.xml").write_text(wanted_xml(items), encoding="utf-8")
    orphan = {"wantedAuthNo": "K000000000000777", "wantedTitle": "상세만", "jobsNm": "용접원(824100)"}
    (tmp_path / "detail.xml").write_text(detail_xml([orphan]), encoding="utf-8")
    expected["detail_without_list"] = 1

    res = ingest([tmp_path], "worknet-xml", ref_date=REF)
    assert res.counts["by_reason"] == dict(sorted(expected.items()))
    assert res.counts["accepted"] == 1 and res.postings["title"][0] == "사무원 모집"
    assert res.counts["read"] == len(items) + 1 == res.counts["accepted"] + res.counts["rejected"]
    # every reason but the CSV-only one is exercised here; it is covered in the CSV tests
    assert set(expected) == set(REJECT_REASONS) - {"malformed_row"}
    # every reject points back at its record
    for r in res.rejects.iter_rows(named=True):
        raw = json.loads(r["raw"])
        if r["reason"] == "detail_without_list":
            assert raw["detail"]["wantedAuthNo"] == "K000000000000777"
        else:
            assert raw["list"] == {k: v.strip() for k, v in items[r["record_index"]].items()}


def test_join_does_not_depend_on_file_order(tmp_path):
    items = [{**GOOD, "wantedAuthNo": f"K{i:015d}", "jobsCd": ""} for i in range(5)]
    details = [{"wantedAuthNo": f"K{i:015d}", "jobsNm": "용접원(824100)", "jobCont": f"업무 {i}",
                "enterTpNm": "경력 (최소2년) 필수"} for i in range(5)]
    results = []
    for names in (("a_list.xml", "b_detail.xml"), ("b_list.xml", "a_detail.xml")):
        d = tmp_path / names[0][0]
        d.mkdir()
        (d / names[0]).write_text(wanted_xml(items), encoding="utf-8")
        (d / names[1]).write_text(detail_xml(details), encoding="utf-8")
        results.append(ingest([d], "worknet-xml", ref_date=REF))
    a, b = results
    assert a.postings.equals(b.postings)
    assert a.postings["occupation_code"].to_list() == ["824100"] * 5
    assert a.postings["description"].to_list() == [f"업무 {i}" for i in range(5)]
    # list says 신입, the detail's years do not turn a 신입 posting into an experienced one
    assert a.postings["min_career_years"].to_list() == [0] * 5


def test_single_detail_root_and_explicit_files(tmp_path):
    item = {**GOOD, "jobsCd": ""}
    (tmp_path / "l.xml").write_text(wanted_xml([item]), encoding="utf-8")
    one = {"wantedAuthNo": GOOD["wantedAuthNo"], "jobsNm": "바리스타", "eduNm": "고졸 이상"}
    (tmp_path / "d.xml").write_text(detail_xml([one], root="wantedDtl"), encoding="utf-8")
    res = ingest([tmp_path / "l.xml", tmp_path / "d.xml"], "worknet-xml", ref_date=REF)
    assert res.counts["accepted"] == 1
    assert res.postings["occupation_code"][0] == "531700"
    # minEdubg/maxEdubg of the list item win over eduNm
    assert res.postings["max_education_level"][0] == 5


def test_malformed_xml_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text("<wantedRoot>\n<wanted>\n<wantedAuthNo>K1</wantedAuth>\n</wanted>\n</wantedRoot>\n", encoding="utf-8")
    with pytest.raises(MalformedSourceError, match=r"broken\.xml: malformed XML at line 3"):
        ingest([bad], "worknet-xml")
    truncated = tmp_path / "cut.xml"
    truncated.write_text(wanted_xml([GOOD])[:-40], encoding="utf-8")
    with pytest.raises(MalformedSourceError, match=r"cut\.xml: malformed XML at line"):
        ingest([truncated], "worknet-xml")
    other = tmp_path / "other.xml"
    other.write_text("<rss><channel/></rss>", encoding="utf-8")
    with pytest.raises(MalformedSourceError, match="not a Worknet response"):
        ingest([other], "worknet-xml")


def test_error_response_raises(tmp_path):
    err = tmp_path / "err.xml"
    err.write_text("<GoogleError><message>인증키 정보가 올바르지 않습니다.</message>"
                   "<messageCd>006</messageCd></GoogleError>", encoding="utf-8")
    with pytest.raises(UpstreamApiError, match="인증키") as info:
        ingest([err], "worknet-xml")
    assert info.value.code == "006"


@pytest.fixture
def main(monkeypatch):
    """The real ``jobrec`` entry point, with only this package's sub-command registered."""
    monkeypatch.setattr(cli, "_REGISTRARS", ("core.ingest.cli",))
    return cli.main


def _table(stdout: str) -> dict[str, int]:
    out = {}
    for line in stdout.strip().splitlines():
        name, value = line.rsplit(None, 1)
        out[name.strip()] = int(value.replace(",", ""))
    return out


def test_cli_counts_and_outputs(tmp_path, capsys, main):
    out, rej = tmp_path / "o" / "postings.parquet", tmp_path / "rejects.parquet"
    code = main(["ingest", str(FIXTURES), "--format", "worknet-xml", "--out", str(out),
                 "--rejects", str(rej), "--ref-date", "2025-11-23"])
    assert code == 0
    table = _table(capsys.readouterr().out)
    postings, rejects = pl.read_parquet(out), pl.read_parquet(rej)
    validate_postings(postings)
    assert table["read"] == 10
    assert table["accepted"] == postings.height == 4
    assert table["rejected"] == rejects.height == 6
    assert table["read"] == table["accepted"] + table["rejected"]
    assert table["unparseable_wage"] == 1
    assert sum(v for k, v in table.items() if k not in ("read", "accepted", "rejected")) == 6


def test_cli_malformed_file_is_one_line_error(tmp_path, capsys, main):
    src = tmp_path / "in"
    shutil.copytree(FIXTURES, src)
    (src / "zz_broken.xml").write_text("<wantedRoot><wanted>\n<a>", encoding="utf-8")
    code = main(["ingest", str(src), "--format", "worknet-xml", "--out", str(tmp_path / "o.parquet")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert "zz_broken.xml" in err and "line 2" in err
    assert not (tmp_path / "o.parquet").exists()  # nothing half-written
    code = main(["ingest", str(tmp_path / "nope"), "--format", "worknet-xml", "--out", str(tmp_path / "o.parquet")])
    assert code == 2
    assert "no such file" in capsys.readouterr().err


def test_generated_corpus_round_trip(tmp_path):
    """Generator -> Worknet XML -> ingest gives back the generated postings."""
    from core.synth import generate_postings, write_worknet_xml

    df = generate_postings(400, seed=11)
    write_worknet_xml(df, tmp_path, per_file=150, seed=11)
    res = ingest([tmp_path], "worknet-xml")
    assert res.counts == {"read": 400, "accepted": 400, "rejected": 0, "by_reason": {}}
    joined = df.join(res.postings, on="posting_id", suffix="_in")
    assert joined.height == 400
    exact = ["company", "title", "occupation_code", "region", "sido", "min_education_level",
             "max_education_level", "career", "min_career_years", "wage_type", "wage_min",
             "wage_max", "monthly_wage", "employment_type", "registered_on", "closes_on",
             "holiday_type", "major", "certificates", "preferences", "near_station", "work_hours"]
    for col in exact:
        diff = joined.filter(pl.col(col).ne_missing(pl.col(f"{col}_in")))
        assert diff.height == 0, (col, diff.select(col, f"{col}_in").head(3).rows())
    # descriptions: the same text once the contact lines the XML writer added are dropped
    placeholder = re.compile(r"\[(전화번호|이메일|URL)\]")
    for orig, got in zip(joined["description"], joined["description_in"], strict=True):
        kept = "\n".join(line for line in got.split("\n") if not placeholder.search(line))
        assert kept == orig
        assert not PII.search(got)
    # coordinates: the generator puts a company within ~1 km of its 동 centroid, which the
    # address names; haversine against the generated point
    lat1, lng1 = joined["lat"].to_numpy(), joined["lng"].to_numpy()
    lat2, lng2 = joined["lat_in"].to_numpy(), joined["lng_in"].to_numpy()
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lng2 - lng1) / 2) ** 2
    km = 2 * 6371.0088 * np.arcsin(np.sqrt(a))
    assert np.median(km) < 1.0
    assert km.max() < 5.0


def test_streaming_parse_matches_whole_file(monkeypatch):
    """Files above the whole-file limit are streamed with iterparse: same records."""
    from core.ingest import worknet_xml

    whole = ingest([FIXTURES], "worknet-xml", ref_date=REF)
    monkeypatch.setattr(worknet_xml, "WHOLE_FILE_BYTES", -1)
    streamed = ingest([FIXTURES], "worknet-xml", ref_date=REF)
    assert streamed.postings.equals(whole.postings)
    assert streamed.rejects.equals(whole.rejects)


def test_streaming_malformed_and_error(tmp_path, monkeypatch):
    from core.ingest import worknet_xml

    monkeypatch.setattr(worknet_xml, "WHOLE_FILE_BYTES", -1)
    bad = tmp_path / "broken.xml"
    bad.write_text(wanted_xml([GOOD, GOOD])[:-30], encoding="utf-8")
    with pytest.raises(MalformedSourceError, match=r"broken\.xml: malformed XML at line \d+"):
        ingest([bad], "worknet-xml")
    bad.unlink()
    err = tmp_path / "err.xml"
    err.write_text("<error><message>일일 호출 한도 초과</message><messageCd>020</messageCd></error>",
                   encoding="utf-8")
    with pytest.raises(UpstreamApiError, match="호출 한도") as info:
        ingest([tmp_path], "worknet-xml")
    assert info.value.code == "020"


def test_euc_kr_documents(tmp_path):
    """Older Worknet responses come in EUC-KR, which expat cannot read by itself."""
    item = {**GOOD, "jobsCd": "", "title": "한글 제목 똠방각하"}  # 똠 is CP949-only
    detail = {"wantedAuthNo": GOOD["wantedAuthNo"], "jobsNm": "바리스타", "jobCont": "커피 제조"}
    for name, text in (("l.xml", wanted_xml([item])), ("d.xml", detail_xml([detail]))):
        body = text.replace('<?xml version="1.0" encoding="UTF-8"?>\n', "")
        (tmp_path / name).write_bytes(b'<?xml version="1.0" encoding="EUC-KR"?>\n' + body.encode("cp949"))
    res = ingest([tmp_path], "worknet-xml", ref_date=REF)
    assert res.counts["accepted"] == 1
    row = res.postings.row(0, named=True)
    assert (row["title"], row["occupation_code"], row["description"]) == ("한글 제목 똠방각하", "531700", "커피 제조")
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    with pytest.raises(MalformedSourceError, match=r"empty\.xml: malformed XML at line 1"):
        ingest([empty], "worknet-xml")
