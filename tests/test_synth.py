"""The synthetic corpus generator: determinism, schema, realism properties, XML round trip."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import polars as pl
import pytest

from core.reference import keco_primary, occupations, regions
from core.schema import CAPITAL_AREA_SIDO, POSTING_SCHEMA, conform, validate_postings
from core.synth import (
    COURSE_SCHEMA,
    DEFAULT_REF_DATE,
    SEEKER_SCHEMA,
    generate_courses,
    generate_postings,
    generate_seekers,
    write_worknet_xml,
)
from core.text import clean_text, scrub_pii
from core.wages import monthly_wage

REF = dt.date(2026, 3, 2)
PHONE = re.compile(r"\b0\d{1,2}[-.)\s]\d{3,4}[-.\s]\d{4}\b|\b01[016789]\d{7,8}\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
URL = re.compile(r"https?://|www\.|\.co\.kr|\.com\b")


def _haversine_km(lat1, lng1, lat2, lng2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lng2) - np.asarray(lng1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(a))


@pytest.fixture(scope="module")
def corpus() -> pl.DataFrame:
    return generate_postings(5000, 11, ref_date=REF)


def test_deterministic_for_a_seed():
    a = generate_postings(1500, 3, ref_date=REF)
    b = generate_postings(1500, 3, ref_date=REF)
    c = generate_postings(1500, 4, ref_date=REF)
    assert a.equals(b)
    assert not a.equals(c)
    assert (a["title"] != c["title"]).sum() > 1000
    assert generate_postings(0, 1).height == 0


def test_default_ref_date_is_fixed():
    a = generate_postings(200, 9)
    assert a["registered_on"].max() <= DEFAULT_REF_DATE
    assert a.equals(generate_postings(200, 9, ref_date=DEFAULT_REF_DATE))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="non-negative"):
        generate_postings(-1, 0)
    with pytest.raises(ValueError, match="per_file"):
        write_worknet_xml(generate_postings(3, 0), "/tmp/unused-synth", per_file=0)


def test_schema_valid(corpus):
    assert dict(corpus.schema) == POSTING_SCHEMA
    validate_postings(corpus)
    assert conform(corpus).equals(corpus)
    assert corpus["posting_id"].str.contains(r"^K\d{15,}$").all()


def test_every_major_group_and_every_code_given_enough_rows(corpus):
    occ = occupations()
    majors = {occ[c].major_code for c in corpus["occupation_code"].unique().to_list()}
    assert majors == {f"{i:02d}" for i in range(1, 14)}
    big = generate_postings(11_000, 2, ref_date=REF)
    assert set(big["occupation_code"].to_list()) == set(keco_primary()["code"].to_list())


def test_occupations_are_skewed(corpus):
    counts = corpus["occupation_code"].value_counts().sort("count", descending=True)
    median = float(np.median(counts["count"].to_numpy()))
    assert counts["count"][4] >= 10 * median
    top = {occupations()[c].name for c in counts["occupation_code"][:15].to_list()}
    assert "시설 요양보호사(노인요양사)" in top
    assert {"사무 보조원(일반사업체)", "총무 및 일반 사무원"} & top
    research = [c for c, o in occupations().items() if "연구원" in o.name]
    share = corpus.filter(pl.col("occupation_code").is_in(research)).height / corpus.height
    assert share < 0.03


def test_regions_weighted_like_worknet(corpus):
    capital = corpus["sido"].is_in(list(CAPITAL_AREA_SIDO)).mean()
    assert 0.4 <= capital <= 0.6
    assert corpus["sido"].n_unique() == 17
    gun = corpus["region"].str.contains(r"군$").mean()
    assert 0.005 < gun < 0.15
    assert corpus["region"].str.contains(r"^(서울|경기|인천|부산|대구|광주|대전|울산|강원|충북|충남|"
                                         r"전북|전남|경북|경남|제주) |^세종특별자치시$").all()


def test_coordinates_near_a_real_region_of_that_name(corpus):
    # ground truth: the region table's 읍/면/동 centroids under the posting's written region
    r = regions().filter(pl.col("lat").is_not_null())
    sample = corpus.sample(300, seed=1)
    from core.reference import SIDO_SHORT

    for row in sample.iter_rows(named=True):
        parts = row["region"].split()
        if row["sido"] == "세종특별자치시":
            cand = r.filter(pl.col("sido") == row["sido"])
        else:
            assert SIDO_SHORT[row["sido"]] == parts[0]
            cand = r.filter((pl.col("sido") == row["sido"]) & (pl.col("sigungu") == parts[1]))
            if len(parts) > 2:
                cand = cand.filter(pl.col("gu_or_eupmyeondong") == parts[2])
        assert cand.height, row["region"]
        d = _haversine_km(row["lat"], row["lng"], cand["lat"].to_numpy(), cand["lng"].to_numpy())
        assert d.min() < 1.0, (row["region"], d.min())


def test_companies_post_several_near_home(corpus):
    per = corpus.group_by("company").agg(pl.len().alias("n"),
                                         pl.col("lat").mode().first().alias("home_lat"),
                                         (pl.col("lat") == pl.col("lat").mode().first()).mean()
                                         .alias("at_home"))
    assert per["n"].max() >= 8
    assert per.filter(pl.col("n") >= 2).height > 300
    many = per.filter(pl.col("n") >= 5)
    assert many["at_home"].mean() > 0.75


def test_career_and_education_are_consistent(corpus):
    entry_any = corpus.filter(pl.col("career") != "experienced")
    assert (entry_any["min_career_years"] == 0).all()
    exp = corpus.filter(pl.col("career") == "experienced")
    assert (exp["min_career_years"] >= 1).all()
    assert corpus["career"].value_counts().height == 3
    edu = (corpus["max_education_level"] >= corpus["min_education_level"]).all()
    assert edu
    no_req = corpus.filter(pl.col("min_education_level") == 0)
    assert (no_req["max_education_level"] == 7).all()  # 학력무관 reads 0..7 as in ingestion
    occ = occupations()
    by_major = corpus.with_columns(
        major=pl.col("occupation_code").map_elements(lambda c: occ[c].major_code,
                                                      return_dtype=pl.Utf8)
    ).group_by("major").agg(pl.col("min_education_level").cast(pl.Float64).mean().alias("edu"))
    edu_of = dict(by_major.iter_rows())
    assert edu_of["02"] > edu_of["12"] + 1.0  # research/engineering vs simple manufacturing
    assert edu_of["04"] > edu_of["06"]


def test_dates(corpus):
    reg = corpus["registered_on"]
    assert reg.max() <= REF and reg.min() >= REF - dt.timedelta(days=60)
    closes = corpus.filter(pl.col("closes_on").is_not_null())
    assert (closes["closes_on"] >= closes["registered_on"]).all()
    days = (closes["closes_on"] - closes["registered_on"]).dt.total_days()
    assert days.min() >= 14 and days.max() <= 60
    open_share = corpus["closes_on"].null_count() / corpus.height
    assert 0.12 < open_share < 0.28
    expired = (closes["closes_on"] < REF).mean()
    assert 0.05 < expired < 0.6


def test_wages_plausible(corpus):
    w = corpus.filter(pl.col("wage_type").is_not_null())
    assert set(w["wage_type"].unique().to_list()) == {"hourly", "daily", "monthly", "yearly"}
    assert (w["wage_min"].is_not_null()).all()
    both = w.filter(pl.col("wage_max").is_not_null())
    assert (both["wage_max"] >= both["wage_min"]).all()
    assert (w.filter(pl.col("wage_type") == "hourly")["wage_min"] >= 10_320).all()
    full = w.filter((pl.col("wage_type") == "monthly")
                    & ~pl.col("employment_type").str.contains("part_time"))
    assert (full["wage_min"] >= 2_156_880).all()
    for row in corpus.sample(500, seed=2).iter_rows(named=True):
        amount = row["wage_min"] if row["wage_min"] is not None else row["wage_max"]
        assert row["monthly_wage"] == monthly_wage(row["wage_type"], amount, row["holiday_type"])
    occ = occupations()
    prof = w.filter(pl.col("occupation_code").map_elements(
        lambda c: occ[c].major_code in ("02",), return_dtype=pl.Boolean))
    simple = w.filter(pl.col("occupation_code").map_elements(
        lambda c: occ[c].mid_code in ("126", "065", "069"), return_dtype=pl.Boolean))
    assert (prof["wage_type"] == "yearly").mean() > 0.15 > (simple["wage_type"] == "yearly").mean()
    assert (simple["wage_type"] == "hourly").mean() > (prof["wage_type"] == "hourly").mean()
    assert prof["monthly_wage"].median() > simple["monthly_wage"].median()


def test_text_is_clean_realistic_and_varied(corpus):
    for col in ("title", "description", "preferences", "company"):
        for text in corpus[col].drop_nulls().to_list():
            assert scrub_pii(text) == text, text
            assert clean_text(text) == text, text
            assert not PHONE.search(text) and not EMAIL.search(text) and not URL.search(text)
    desc = corpus["description"]
    assert desc.str.contains("부정수급").mean() > 0.05
    assert desc.str.contains("4대보험").mean() > 0.05
    lengths = desc.str.len_chars()
    assert lengths.min() < 30 and lengths.max() > 300
    titles = corpus["title"].str.len_chars()
    assert titles.min() <= 4 and titles.max() >= 25
    # most titles or descriptions name the occupation; some do not (classification is not trivial)
    occ = occupations()
    named = [
        occ[c].name.split("(")[0].split()[0][:2] in (t + d)
        for c, t, d in corpus.select("occupation_code", "title", "description").iter_rows()
    ]
    assert 0.5 < float(np.mean(named)) < 0.995


def test_related_occupations_share_vocabulary(corpus):
    occ = occupations()
    care = corpus.filter(pl.col("occupation_code").map_elements(
        lambda c: occ[c].mid_code in ("044", "068"), return_dtype=pl.Boolean))
    welfare = corpus.filter(pl.col("occupation_code").map_elements(
        lambda c: occ[c].mid_code in ("037", "038"), return_dtype=pl.Boolean))
    assert care["description"].str.contains("어르신").mean() > 0.3
    assert welfare["description"].str.contains("어르신|돌봄").mean() > 0.05


def test_seekers_schema_and_matching_postings(corpus):
    s = generate_seekers(400, 5, postings=corpus, ref_date=REF)
    assert dict(s.schema) == SEEKER_SCHEMA
    assert s.equals(generate_seekers(400, 5, postings=corpus, ref_date=REF))
    assert s["seeker_id"].n_unique() == 400
    assert s["education_level"].is_between(0, 7).all()
    codes = set(corpus["occupation_code"].to_list())
    assert all(c[0] in codes for c in s["desired_occupations"].to_list())
    plat, plng = corpus["lat"].to_numpy(), corpus["lng"].to_numpy()
    for row in s.head(50).iter_rows(named=True):
        assert _haversine_km(row["home_lat"], row["home_lng"], plat, plng).min() < 8.5
    alone = generate_seekers(300, 5, ref_date=REF)
    assert dict(alone.schema) == SEEKER_SCHEMA
    sido = alone["desired_regions"].list.first().struct.field("sido")
    assert 0.35 < sido.is_in(list(CAPITAL_AREA_SIDO)).mean() < 0.65
    assert alone["resume_text"].str.contains("희망직종").all()


def test_courses_schema():
    from core.courses import validate_courses
    from core.synth import generate_course_corpus

    c = generate_courses(300, 8, ref_date=REF)
    assert dict(c.schema) == COURSE_SCHEMA
    validate_courses(c)
    assert c.equals(generate_courses(300, 8, ref_date=REF))
    assert c["course_id"].n_unique() == 300
    assert (c["end_date"] > c["start_date"]).all()
    assert (c["cost"] > 0).all() and (c["training_hours"] > 0).all()
    truth = generate_course_corpus(300, 8, ref_date=REF).truth
    assert truth["course_id"].to_list() == c["course_id"].to_list()
    assert truth["occupation_code"].is_in(list(occupations())).all()
    assert c["title"].str.contains("과정").mean() > 0.9


def _parse_xml(paths):
    lists, details = {}, {}
    for p in paths:
        root = ET.parse(p).getroot()
        if root.tag == "wantedRoot":
            assert root.find("total") is not None
            for w in root.findall("wanted"):
                lists[w.findtext("wantedAuthNo")] = w
        else:
            assert root.tag == "wantedDtlRoot"
            for d in root.findall("wantedDtl"):
                details[d.findtext("wantedAuthNo")] = d
    return lists, details


def test_worknet_xml_structure(tmp_path):
    df = generate_postings(1200, 21, ref_date=REF)
    paths = write_worknet_xml(df, tmp_path, per_file=500, seed=1)
    assert len(paths) == 6 and all(p.exists() for p in paths)
    lists, details = _parse_xml(paths)
    assert set(lists) == set(details) == set(df["posting_id"].to_list())
    occ = occupations()
    pii = 0
    for row in df.iter_rows(named=True):
        w, d = lists[row["posting_id"]], details[row["posting_id"]]
        info = d.find("wantedInfo")
        assert w.findtext("title") == info.findtext("wantedTitle") == row["title"]
        assert w.findtext("company") == d.find("corpInfo").findtext("corpNm") == row["company"]
        assert w.findtext("region") == row["region"]
        code = w.findtext("jobsCd") or re.search(r"\((\d{6})\)$", info.findtext("jobsNm")).group(1)
        assert code == row["occupation_code"]
        assert info.findtext("jobsNm").startswith(occ[code].name)
        if row["wage_min"] is not None:
            assert int(w.findtext("minSal")) == row["wage_min"]
        raw = (info.findtext("jobCont") or "") + (info.findtext("compAbl") or "")
        pii += bool(PHONE.search(raw) or EMAIL.search(raw) or "http://" in raw)
        # once cleaned, the XML text is the canonical description plus contact lines
        cleaned = clean_text(info.findtext("jobCont")) + "\n" + clean_text(info.findtext("compAbl"))
        lines = [ln for ln in cleaned.split("\n")
                 if ln and not (PHONE.search(ln) or EMAIL.search(ln) or "http://" in ln)]
        assert "\n".join(lines) == row["description"]
    assert 0.08 < pii / df.height < 0.35
    raw = paths[1].read_text(encoding="utf-8")
    assert "&lt;br" in raw  # markup arrives escaped, as Worknet serves it


def test_worknet_xml_round_trip_through_ingestion(tmp_path):
    df = generate_postings(1000, 23, ref_date=REF)
    paths = write_worknet_xml(df, tmp_path, per_file=400, seed=2)
    from core.ingest import ingest

    result = ingest(paths, "worknet-xml", ref_date=REF)
    assert result.counts["accepted"] == df.height, result.counts
    got = result.postings.sort("posting_id")
    want = df.sort("posting_id")
    assert got["posting_id"].to_list() == want["posting_id"].to_list()
    for col in ("company", "title", "occupation_code", "region", "sido", "min_education_level",
                "max_education_level", "career", "wage_type", "wage_min", "wage_max",
                "monthly_wage", "employment_type", "registered_on", "closes_on"):
        assert got[col].to_list() == want[col].to_list(), col
    exp = want["career"] == "experienced"
    assert got["min_career_years"].filter(exp).to_list() == want["min_career_years"].filter(exp).to_list()
    d = _haversine_km(got["lat"].to_numpy(), got["lng"].to_numpy(),
                      want["lat"].to_numpy(), want["lng"].to_numpy())
    assert np.quantile(d, 0.95) < 2.0, np.quantile(d, 0.95)
    placeholders = re.compile(r"\[(전화번호|이메일|URL)\]")
    same = 0
    for g, w in zip(got["description"].to_list(), want["description"].to_list(), strict=True):
        assert not PHONE.search(g) and not EMAIL.search(g)
        kept = "\n".join(ln for ln in g.split("\n") if not placeholders.search(ln))
        same += kept.strip() == w
    assert same == df.height


def test_cli_writes_the_corpus(tmp_path):
    from core.synth import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["generate", "--postings", "300", "--seekers", "20", "--courses",
                              "10", "--seed", "3", "--out", str(tmp_path), "--xml",
                              "--ref-date", "2026-03-02", "--per-file", "100"])
    assert args.func(args) == 0
    got = pl.read_parquet(tmp_path / "postings.parquet")
    assert got.equals(generate_postings(300, 3, ref_date=REF))
    assert pl.read_parquet(tmp_path / "seekers.parquet").height == 20
    assert pl.read_parquet(tmp_path / "interactions.parquet").columns == ["seeker_id", "posting_id", "event", "at"]
    assert pl.read_parquet(tmp_path / "courses.parquet").height == 10
    assert pl.read_parquet(tmp_path / "courses_truth.parquet").height == 10
    assert len(list((tmp_path / "hrd").glob("detail_*.xml"))) == 10
    assert len(list((tmp_path / "worknet").glob("wanted_*.xml"))) == 6
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--postings", "-5", "--out", str(tmp_path)])


def test_major_groups_roughly_match_popularity(corpus):
    # the company/industry mixing must not distort the occupation marginal much
    from core.synth.occupations import popularity, profiles

    pop = popularity()
    exp: dict[str, float] = {}
    for p, w in zip(profiles(), pop, strict=True):
        exp[p.major_code] = exp.get(p.major_code, 0.0) + float(w)
    occ = occupations()
    got = corpus["occupation_code"].map_elements(lambda c: occ[c].major_code,
                                                 return_dtype=pl.Utf8).value_counts()
    for major, n in got.iter_rows():
        assert math.isclose(n / corpus.height, exp[major], abs_tol=0.035), major
