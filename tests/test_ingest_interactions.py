"""Interaction ingestion: every reject reason, nothing lost, times, the CLI, parquet input."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from core.errors import InvalidInputError
from core.ingest.interactions import (
    INTERACTION_REJECT_REASONS,
    ingest_interactions,
    parse_time,
)
from core.seekers import INTERACTION_SCHEMA

SEEKERS = pl.DataFrame({"seeker_id": ["S1", "S2", "S3"]})
POSTINGS = pl.DataFrame({"posting_id": ["P1", "P2", "P3"]})


def _csv(tmp_path, text: str, name: str = "log.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_every_reject_reason_and_nothing_lost(tmp_path):
    src = _csv(tmp_path, (
        "구직자번호,구인인증번호,이벤트,일시\n"
        "S1,P1,지원,2026-11-01 09:00:00\n"      # ok (Korean event name)
        "S1,P2,clicked,2026-11-01T10:00:00\n"   # ok
        "S2,P1,applied,20261102\n"              # ok (compact date)
        "S1,P1,지원,2026-11-01 09:00:00\n"      # duplicate
        "S1,P1,applied,2026-11-03 09:00:00\n"   # ok: same pair, another time
        ",P1,applied,2026-11-01\n"              # missing_field (seeker)
        "S1,,applied,2026-11-01\n"              # missing_field (posting)
        "S2,P2,bookmarked,2026-11-01\n"         # unknown_event
        "S2,P3,applied,yesterday\n"             # bad_time
        "S2,P3,applied,\n"                      # bad_time (blank in a timed log)
        "S9,P1,applied,2026-11-01\n"            # unknown_seeker
        "S3,P9,applied,2026-11-01\n"            # unknown_posting
        "S3,P3,applied,2026-11-01,extra\n"      # malformed_row
    ))
    res = ingest_interactions([src], "csv", seekers=SEEKERS, postings=POSTINGS)
    assert res.counts["read"] == 13
    assert res.counts["read"] == res.counts["accepted"] + res.counts["rejected"]
    assert res.counts["accepted"] == 4 and res.counts["timed"] is True
    assert res.counts["by_reason"] == {
        "bad_time": 2, "duplicate": 1, "malformed_row": 1, "missing_field": 2,
        "unknown_event": 1, "unknown_posting": 1, "unknown_seeker": 1}
    assert set(res.counts["by_reason"]) <= set(INTERACTION_REJECT_REASONS)
    assert dict(res.interactions.schema) == INTERACTION_SCHEMA
    got = res.interactions.sort("at").rows()
    assert got[0] == ("S1", "P1", "applied", dt.datetime(2026, 11, 1, 9))
    assert ("S2", "P1", "applied", dt.datetime(2026, 11, 2)) in got
    # every reject keeps its raw row, so nothing is lost
    raws = [json.loads(r) for r in res.rejects["raw"]]
    assert {r.get("이벤트") for r in raws} >= {"bookmarked"}
    assert sorted(res.rejects["record_index"].to_list()) == [3, 5, 6, 7, 8, 9, 10, 11, 12]


def test_a_log_without_times_is_accepted_and_says_so(tmp_path):
    src = _csv(tmp_path, "seeker,job\nS1,P1\nS1,P1\nS2,P3\n")
    cmap = {"columns": {"seeker": "seeker_id", "job": "posting_id"}, "defaults": {"event": "applied"}}
    res = ingest_interactions([src], "csv", column_map=cmap)
    assert res.counts["timed"] is False
    assert res.interactions["at"].null_count() == 2
    assert res.counts["by_reason"] == {"duplicate": 1}


def test_parquet_source_and_datetime_cells(tmp_path):
    p = tmp_path / "log.parquet"
    pl.DataFrame({"seeker_id": ["S1", "S2"], "posting_id": ["P1", "P2"],
                  "event": ["shown", "hidden"],
                  "at": [dt.datetime(2026, 11, 1, 8), dt.datetime(2026, 11, 2, 8)]}).write_parquet(p)
    res = ingest_interactions([p], "parquet", postings=POSTINGS)
    assert res.interactions.sort("at")["event"].to_list() == ["shown", "hidden"]


def test_parse_time_forms():
    assert parse_time("2026-11-01") == dt.datetime(2026, 11, 1)
    assert parse_time("2026.11.01 12:30:00") == dt.datetime(2026, 11, 1, 12, 30)
    assert parse_time("2026-11-01T00:00:00Z") == dt.datetime(2026, 11, 1, 9)  # read in KST
    assert parse_time("1790000000") == dt.datetime(2026, 9, 21, 23, 13, 20)
    assert parse_time("soon") is None


def test_bad_maps_are_clear_errors(tmp_path):
    src = _csv(tmp_path, "seeker_id,posting_id\nS1,P1\n")
    with pytest.raises(InvalidInputError, match="unknown interaction field"):
        ingest_interactions([src], "csv", column_map={"seeker_id": "person"})
    with pytest.raises(InvalidInputError, match="not a known event"):
        ingest_interactions([src], "csv", column_map={"columns": {}, "defaults": {"event": "liked"}})
    with pytest.raises(InvalidInputError, match="may default only"):
        ingest_interactions([src], "csv", column_map={"columns": {}, "defaults": {"at": "2026"}})


def test_cli_writes_both_tables_with_conserved_counts(tmp_path, capsys):
    from jobrec.cli import main

    src = _csv(tmp_path, "seeker_id,posting_id,event\nS1,P1,applied\nS2,P9,applied\nS3,P2,poke\n")
    s, p = tmp_path / "s.parquet", tmp_path / "p.parquet"
    SEEKERS.write_parquet(s)
    POSTINGS.write_parquet(p)
    out = tmp_path / "i.parquet"
    rc = main(["ingest", "--kind", "interactions", str(src), "--format", "csv", "--seekers", str(s),
               "--postings", str(p), "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr()
    assert "no times" in printed.err
    acc, rej = pl.read_parquet(out), pl.read_parquet(tmp_path / "i.rejects.parquet")
    assert acc.height == 1 and rej.height == 2
    assert sorted(rej["reason"].to_list()) == ["unknown_event", "unknown_posting"]
