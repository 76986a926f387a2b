"""Course ingestion: HRD-Net list + detail XML (every reject reason), CSV, Parquet, the
synthetic HRD-Net XML round trip and ``jobrec ingest --kind courses``."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from core.courses import COURSE_REJECT_SCHEMA, COURSE_SCHEMA, split_certificates
from core.errors import InvalidInputError, MalformedSourceError, UpstreamApiError
from core.ingest.courses import COURSE_REJECT_REASONS, ingest_courses
from core.rules import haversine_km
from core.synth import generate_course_corpus, write_hrd_xml
from jobrec import cli

FIX = Path(__file__).parent / "fixtures" / "hrd"
REF = dt.date(2026, 11, 20)


@pytest.fixture()
def hrd_dir(tmp_path):
    d = tmp_path / "hrd"
    d.mkdir()
    for name in ("list_page1.xml", "detail_AIG20260000412345_3.xml", "detail_orphan.xml"):
        shutil.copy(FIX / name, d / name)
    return d


def test_list_and_detail_xml(hrd_dir):
    res = ingest_courses([hrd_dir], "hrd-xml", ref_date=REF)
    c, rej = res.courses, res.rejects
    assert dict(c.schema) == COURSE_SCHEMA and dict(rej.schema) == COURSE_REJECT_SCHEMA
    assert res.counts["read"] == 15 == res.counts["accepted"] + res.counts["rejected"]
    assert c["course_id"].to_list() == [
        "AIG20260000412345_3", "AIG20260000500001_1", "AIG20260000600007_7"]
    weld = c.row(0, named=True)
    # the detail's institution and street address win over the list's district
    assert weld["institution"] == "창원용접직업전문학교(본원)"
    assert weld["address"] == "경상남도 창원시 성산구 중앙대로 100 3층"
    assert (weld["sido"], weld["sigungu"]) == ("경상남도", "창원시")
    assert weld["ncs_code"] == "16010502" and weld["ncs_name"] == "용접"
    assert weld["start_date"] == dt.date(2026, 12, 1) and weld["end_date"] == dt.date(2027, 2, 26)
    assert (weld["cost"], weld["real_cost"], weld["subsidy"], weld["self_pay"]) == (
        1_800_000, 1_800_000, 1_350_000, 450_000)
    assert (weld["capacity"], weld["enrolled"], weld["training_hours"]) == (20, 12, 480)
    assert (weld["employment_rate_3m"], weld["employment_rate_6m"]) == (65.2, 72.0)
    assert weld["satisfaction"] == 85.23  # stdgScor is sent scaled by 100
    assert weld["certificate"] == "용접기능사, 특수용접기능사"
    assert weld["training_type"] == "classroom" and weld["online"] is False
    assert "055-123-4567" not in weld["description"] and "[전화번호]" in weld["description"]
    java = c.row(1, named=True)
    assert java["training_type"] == "online" and java["online"] is True
    assert java["employment_rate_3m"] is None  # 'A': 개설예정, no rate yet
    assert java["self_pay"] is None and java["start_date"] == dt.date(2026, 12, 15)
    cook = c.row(2, named=True)
    assert cook["training_type"] == "blended" and cook["satisfaction"] == 91.5
    assert cook["certificate"] is None and cook["employment_rate_6m"] is None

    by = {(r["record_index"], r["source"].rsplit("/", 1)[-1]): r for r in rej.to_dicts()}
    expect = {
        3: "missing_id", 4: "invalid_id", 5: "duplicate_id", 6: "missing_title",
        7: "missing_institution", 8: "invalid_ncs_code", 9: "unknown_region",
        10: "unparseable_date", 11: "invalid_training_type", 12: "invalid_number",
        13: "unparseable_date",
    }
    for i, reason in expect.items():
        assert by[(i, "list_page1.xml")]["reason"] == reason, i
    orphan = by[(0, "detail_orphan.xml")]
    assert orphan["reason"] == "detail_without_list" and orphan["course_id"] == "AIG20260000999999_2"
    assert set(res.counts["by_reason"]) <= set(COURSE_REJECT_REASONS)
    assert by[(5, "list_page1.xml")]["course_id"] == "AIG20260000500001_1"
    for r in rej.to_dicts():  # the raw record is kept, scrubbed
        assert json.loads(r["raw"]) and "010-1234-5678" not in r["raw"]


def test_duplicate_and_idless_details(hrd_dir, tmp_path):
    det = (FIX / "detail_AIG20260000412345_3.xml").read_text(encoding="utf-8")
    (hrd_dir / "detail_again.xml").write_text(det, encoding="utf-8")
    (hrd_dir / "detail_noid.xml").write_text(det.replace("<trprId>AIG20260000412345</trprId>", ""),
                                             encoding="utf-8")
    res = ingest_courses([hrd_dir], "hrd-xml", ref_date=REF)
    reasons = res.rejects.filter(pl.col("source").str.contains("detail_")).sort("source")
    assert dict(zip(reasons["source"].str.split("/").list.last(), reasons["reason"], strict=True)) == {
        "detail_again.xml": "duplicate_id", "detail_noid.xml": "missing_id",
        "detail_orphan.xml": "detail_without_list"}
    assert res.counts["read"] == 17 and res.courses.height == 3


def test_error_and_foreign_responses(tmp_path):
    with pytest.raises(UpstreamApiError, match="인증키가 존재하지 않습니다"):
        ingest_courses([FIX / "error.xml"], "hrd-xml")
    other = tmp_path / "x.xml"
    other.write_text("<wantedRoot><total>0</total></wantedRoot>", encoding="utf-8")
    with pytest.raises(MalformedSourceError, match="not an HRD-Net response"):
        ingest_courses([other], "hrd-xml")
    other.write_text("<HRDNet><scn_cnt>1</scn_cnt><srchList><scn_list>", encoding="utf-8")
    with pytest.raises(MalformedSourceError, match="malformed XML"):
        ingest_courses([other], "hrd-xml")
    other.write_text("<HRDNet><foo/></HRDNet>", encoding="utf-8")
    with pytest.raises(MalformedSourceError, match="neither a course list"):
        ingest_courses([other], "hrd-xml")
    with pytest.raises(InvalidInputError, match="unknown course format"):
        ingest_courses([other], "worknet-xml")


def test_euc_kr_list(tmp_path):
    text = (FIX / "list_page1.xml").read_text(encoding="utf-8")
    text = text.replace('encoding="UTF-8"', 'encoding="EUC-KR"')
    (tmp_path / "l.xml").write_bytes(text.encode("cp949"))
    res = ingest_courses([tmp_path / "l.xml"], "hrd-xml", ref_date=REF)
    assert res.courses.height == 3 and res.courses["institution"][2] == "해운대요리학원"


def test_generated_xml_round_trip(tmp_path):
    corpus = generate_course_corpus(250, 4, ref_date=REF)
    want = corpus.courses.sort("course_id")
    write_hrd_xml(want, tmp_path / "x", per_file=60)
    got = ingest_courses([tmp_path / "x"], "hrd-xml", ref_date=REF).courses.sort("course_id")
    assert got.height == want.height
    for col in COURSE_SCHEMA:
        if col in ("lat", "lng", "sigungu"):  # the XML carries the district, not the point
            continue
        assert got[col].equals(want[col]), col
    d = haversine_km(got["lat"].to_numpy(), got["lng"].to_numpy(),
                     want["lat"].to_numpy(), want["lng"].to_numpy())
    assert d.max() < 40.0 and (got["sido"] == want["sido"]).all()


def test_csv_and_parquet(tmp_path):
    c = generate_course_corpus(120, 5, ref_date=REF).courses
    c.write_parquet(tmp_path / "c.parquet")
    assert ingest_courses([tmp_path / "c.parquet"], "parquet").courses.equals(c)
    c.write_csv(tmp_path / "full.csv")  # multi-line descriptions, quoted
    assert ingest_courses([tmp_path / "full.csv"], "csv").courses.equals(c)
    # a row with one field too few is a malformed row, nothing else is lost
    lines = c.drop("description").write_csv().splitlines()
    lines[7] = lines[7].rsplit(",", 1)[0]
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = ingest_courses([tmp_path / "c.csv"], "csv")
    assert res.counts["by_reason"] == {"malformed_row": 1}
    assert res.rejects["record_index"].to_list() == [6]
    assert res.courses.height == 119
    kept = c.filter(pl.col("course_id").is_in(res.courses["course_id"].to_list()))
    assert res.courses.equals(kept.with_columns(description=pl.lit("")))


def test_korean_headers_and_column_map(tmp_path):
    (tmp_path / "k.csv").write_text(
        "훈련과정ID,회차,과정명,훈련기관명,주소,NCS코드,훈련시작일,훈련구분,수강비,정부지원금,정원,자격증\n"
        "AIG1,2,지게차운전 과정,인천직업학교,인천 남동구,09020101,2026-12-05,일반,600000,"
        "420000,20,지게차운전기능사\n",
        encoding="utf-8")
    res = ingest_courses([tmp_path / "k.csv"], "csv", ref_date=REF)
    row = res.courses.row(0, named=True)
    assert row["course_id"] == "AIG1_2" and row["sido"] == "인천광역시"
    assert row["self_pay"] == 180_000 and row["training_type"] == "classroom"
    (tmp_path / "m.csv").write_text("id,degree,name\nA,1,x\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no column maps to trpr_id or course_id"):
        ingest_courses([tmp_path / "m.csv"], "csv")
    with pytest.raises(InvalidInputError, match="unknown course field"):
        ingest_courses([tmp_path / "m.csv"], "csv", column_map={"id": "posting_id"})
    res = ingest_courses([tmp_path / "m.csv"], "csv",
                         column_map={"id": "trpr_id", "degree": "trpr_degr", "name": "title"})
    assert res.counts["by_reason"] == {"missing_institution": 1}


def test_split_certificates():
    assert split_certificates("용접기능사, 특수용접기능사 / 배관기능사") == [
        "용접기능사", "특수용접기능사", "배관기능사"]
    assert split_certificates("미용사(네일) 소지자 및 (정보처리기사)") == ["미용사(네일)", "정보처리기사"]
    assert split_certificates(None) == [] and split_certificates("") == []


def test_cli_kind_courses(hrd_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_REGISTRARS", ("core.ingest.cli",))
    out = tmp_path / "courses.parquet"
    code = cli.main(["ingest", "--kind", "courses", "--format", "hrd-xml", str(hrd_dir),
                     "--out", str(out), "--ref-date", "2026-11-20"])
    assert code == 0
    printed = capsys.readouterr()
    assert "accepted" in printed.out and "detail_without_list" in printed.out
    assert pl.read_parquet(out).height == 3
    assert pl.read_parquet(tmp_path / "courses.rejects.parquet").height == 12
    code = cli.main(["ingest", "--kind", "courses", "--format", "worknet-xml", str(hrd_dir),
                     "--out", str(out)])
    assert code == 2 and "--kind courses reads formats" in capsys.readouterr().err
