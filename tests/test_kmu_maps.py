"""The shipped KMU column maps (core/ingest/maps/kmu_*.json) on a real sample of the log, and
on records of the same layout that the sample does not hold."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import polars as pl
import pytest

from jobrec.cli import main

ROOT = Path(__file__).resolve().parent.parent
MAPS = ROOT / "core" / "ingest" / "maps"
KMU = ROOT / "tests" / "fixtures" / "kmu"


def _rows(name: str) -> list[dict[str, str]]:
    with open(KMU / name, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _ingest(kind: str, src: Path, mapname: str, out: Path, *extra: str) -> dict:
    rc = main(["ingest", "--kind", kind, str(src), "--format", "csv",
               "--column-map", str(MAPS / mapname), "--out", str(out), *extra])
    assert rc == 0
    acc = pl.read_parquet(out)
    rej = pl.read_parquet(out.with_name(out.stem + ".rejects.parquet"))
    return {"accepted": acc, "rejects": rej}


@pytest.fixture(scope="module")
def kmu(tmp_path_factory):
    d = tmp_path_factory.mktemp("kmu")
    s = _ingest("seekers", KMU / "resume.csv", "kmu_resumes.json", d / "ks.parquet")
    p = _ingest("postings", KMU / "recruitment.csv", "kmu_postings.json", d / "kp.parquet")
    i = _ingest("interactions", KMU / "apply_train.csv", "kmu_applications.json",
                d / "ki.parquet", "--seekers", str(d / "ks.parquet"),
                "--postings", str(d / "kp.parquet"))
    return d, s, p, i


def test_the_whole_sample_goes_through_with_nothing_lost(kmu):
    _, s, p, i = kmu
    assert s["accepted"].height + s["rejects"].height == len(_rows("resume.csv"))
    assert p["accepted"].height + p["rejects"].height == len(_rows("recruitment.csv"))
    assert i["accepted"].height + i["rejects"].height == len(_rows("apply_train.csv"))
    # every résumé, posting and application of the sample is readable by the maps
    assert s["rejects"].height == 0 and p["rejects"].height == 0 and i["rejects"].height == 0
    assert i["accepted"]["at"].null_count() == i["accepted"].height  # the log has no times
    assert set(i["accepted"]["event"]) == {"applied"}


def test_resume_fields_follow_the_map(kmu):
    _, s, _, _ = kmu
    raw = {r["resume_seq"]: r for r in _rows("resume.csv")}
    certs: dict[str, list[str]] = {}
    for r in _rows("resume_certificate.csv"):
        if r["certificate_contents"].strip():
            certs.setdefault(r["resume_seq"], []).append(r["certificate_contents"])
    table = {"재료·화학·섬유·의복": "156100", "디자인": "415200", "경영·기획·회계·사무": "026101",
             "영업·판매·TM": "612407"}
    for row in s["accepted"].iter_rows(named=True):
        src = raw[row["seeker_id"]]
        assert row["desired_regions"] == [{"sido": "서울특별시", "sigungu": None}]
        assert row["career_years"] == int(src["career_month"] or 0) // 12
        wage = float(src["hope_salary"] or 0)
        assert row["desired_monthly_wage"] == (round(wage * 10_000 / 12) if wage else None) or \
            abs(row["desired_monthly_wage"] - wage * 10_000 / 12) <= 1
        first = src["job_code_seq1"]
        if first in table:
            assert row["desired_occupations"][0] == table[first]
        for kw in filter(None, src["text_keyword"].split(";")):
            assert kw in row["resume_text"]
        # the certificate join: every certificate row of the résumé, none of another's
        assert len(row["certificates"]) >= len(certs.get(row["seeker_id"], []))
        assert f"최종학력{src['degree']}" in row["resume_text"]


def test_posting_codes_become_tokens(kmu):
    _, _, p, _ = kmu
    comp = {r["recruitment_seq"]: r for r in _rows("company.csv")}
    for row in p["accepted"].head(200).iter_rows(named=True):
        assert row["sido"] == "서울특별시" and row["occupation_code"] is None
        assert row["company"] == f"기업 {row['posting_id']}"
        assert (row["min_education_level"], row["max_education_level"]) == (0, 7)
        c = comp.get(row["posting_id"])
        if c and c["supply_kind"]:
            assert f"업종{c['supply_kind']}" in row["description"]
    r = next(x for x in _rows("recruitment.csv") if x["check_box_keyword"])
    got = p["accepted"].filter(pl.col("posting_id") == r["recruitment_seq"]).row(0, named=True)
    for code in r["check_box_keyword"].split(";"):
        assert f"직무{code}" in got["title"]


def test_the_maps_read_records_they_have_not_seen(tmp_path):
    """Another export of the same layout: new ids, a category and values not in the sample,
    a join file with rows for other résumés, and bad rows that are rejected with reasons."""
    for name in ("resume_education.csv", "resume_language.csv"):
        shutil.copy(KMU / name, tmp_path / name)
    (tmp_path / "resume_certificate.csv").write_text(
        "resume_seq,certificate_contents\nX00001,정보처리기사\nX00001,컴퓨터활용능력 1급\n"
        "Z99999,남의 자격증\n", encoding="utf-8")
    (tmp_path / "resume.csv").write_text(
        "resume_seq,reg_date,updated_date,degree,graduate_date,hope_salary,last_salary,"
        "text_keyword,job_code_seq1,job_code_seq2,job_code_seq3,career_month,career_job_code\n"
        "X00001,2021-05-01,2021-05-02,5,2015,4200.0,4000.0,데이터분석;파이썬,IT·게임,디자인,,30,"
        "IT;인터넷\n"
        "X00002,2021-06-01,2021-06-01,4,2019,0.0,0.0,,기타 직종,,,0,\n"
        "X00003,2021-06-01,2021-06-01,4,2019,3000.0,0.0,영업,우주·항공,,,12,\n"
        "X00004,not-a-date,2021-06-01,4,2019,3000.0,0.0,영업,디자인,,,12,\n",
        encoding="utf-8")
    s = _ingest("seekers", tmp_path / "resume.csv", "kmu_resumes.json", tmp_path / "s.parquet")
    acc = {r["seeker_id"]: r for r in s["accepted"].iter_rows(named=True)}
    assert acc["X00001"]["desired_occupations"] == ["133200", "415200"]
    assert acc["X00001"]["certificates"] == ["정보처리기사", "컴퓨터활용능력 1급"]
    assert acc["X00001"]["career_years"] == 2
    assert acc["X00001"]["desired_monthly_wage"] == 3_500_000
    assert acc["X00002"]["desired_occupations"] == ["156100"]  # the declared default
    assert acc["X00002"]["desired_monthly_wage"] is None        # 0: not given
    rej = dict(zip(s["rejects"]["seeker_id"], s["rejects"]["reason"], strict=True))
    assert rej == {"X00003": "unknown_occupation", "X00004": "unparseable_date"}
    (tmp_path / "company.csv").write_text(
        "recruitment_seq,company_type_seq,supply_kind,employee\nQ1,3,999,12\n", encoding="utf-8")
    (tmp_path / "recruitment.csv").write_text(
        "recruitment_seq,address_seq1,address_seq2,address_seq3,career_end,career_start,"
        "check_box_keyword,education,major_task,qualifications,text_keyword\n"
        "Q1,7.0,,,3,1,9901;9902,5,11,2,로봇;자동화\nQ2,,,,0,0,,,,,\n", encoding="utf-8")
    p = _ingest("postings", tmp_path / "recruitment.csv", "kmu_postings.json",
                tmp_path / "p.parquet")
    q1 = p["accepted"].filter(pl.col("posting_id") == "Q1").row(0, named=True)
    assert "직무9901" in q1["title"] and "로봇" in q1["title"]
    assert "업종999" in q1["description"] and "근무지7" in q1["preferences"]
    assert q1["min_career_years"] == 1
    assert p["rejects"].filter(pl.col("reason") == "missing_title").height == 1  # Q2: no codes
    (tmp_path / "apply_train.csv").write_text(
        "resume_seq,recruitment_seq\nX00001,Q1\nX00001,Q1\nX00002,Q7\n,Q1\n", encoding="utf-8")
    i = _ingest("interactions", tmp_path / "apply_train.csv", "kmu_applications.json",
                tmp_path / "i.parquet", "--seekers", str(tmp_path / "s.parquet"),
                "--postings", str(tmp_path / "p.parquet"))
    assert i["accepted"].rows() == [("X00001", "Q1", "applied", None)]
    assert sorted(i["rejects"]["reason"]) == ["duplicate", "missing_field", "unknown_posting"]


def test_a_join_file_missing_is_a_clear_error(tmp_path, capsys):
    shutil.copy(KMU / "recruitment.csv", tmp_path / "recruitment.csv")
    rc = main(["ingest", str(tmp_path / "recruitment.csv"), "--format", "csv",
               "--column-map", str(MAPS / "kmu_postings.json"), "--out", str(tmp_path / "p.parquet")])
    assert rc != 0
    assert "joins company.csv, which is not beside it" in capsys.readouterr().err
    assert not (tmp_path / "p.parquet").exists()
