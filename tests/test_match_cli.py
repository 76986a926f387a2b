"""``jobrec match`` end to end, as a user runs it: a trained model, canonical seekers,
postings and interactions on disk, the batch on a real local Ray, the table checked against
the independent rule oracle of tests/test_seekers.py; ``--candidates``; bad input."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from jobrec.cli import main
from tests.helpers import matching_files
from tests.test_seekers import _oracle_ok
from workers.jobs.match import MATCH_SCHEMA, excluded_by_seeker

REF = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("match")
    return (d, *matching_files(d, 600, 80, 12, 2, REF))


def test_match_writes_rule_abiding_lists_for_every_active_seeker(files, ray_local, capsys):
    d, postings, seekers, inter = files
    out = d / "recs.parquet"
    rc = main(["match", "--seekers", str(d / "seekers.parquet"), "--postings",
               str(d / "postings.parquet"), "--model", str(d / "model"), "--interactions",
               str(d / "interactions.parquet"), "--k", "15", "--ref-date", REF.isoformat(),
               "--out", str(out)])
    assert rc == 0
    frame = pl.read_parquet(out)
    assert frame.schema == pl.Schema(MATCH_SCHEMA)
    assert frame.height > 0
    prow = {r["posting_id"]: r for r in postings.iter_rows(named=True)}
    srow = {r["seeker_id"]: r for r in seekers.iter_rows(named=True)}
    ex = excluded_by_seeker(inter)
    for sid, pid in frame.select("seeker_id", "posting_id").iter_rows():
        assert srow[sid]["active"]
        assert _oracle_ok(srow[sid], prow[pid], REF, ex.get(sid, frozenset()))
    per = frame.group_by("seeker_id").agg(pl.len(), pl.col("rank").sort())
    assert per["len"].max() <= 15
    assert all(r == list(range(1, len(r) + 1)) for r in per["rank"].to_list())
    first = frame.row(0, named=True)
    assert json.loads(first["reasons"])["matched_region"] in first["reason_text"]
    assert f"{frame.height} rows" in capsys.readouterr().out


def test_match_candidates_and_bad_input(files, ray_local, capsys):
    d, postings, seekers, _ = files
    out = d / "cands.parquet"
    rc = main(["match", "--candidates", "--seekers", str(d / "seekers.parquet"), "--postings",
               str(d / "postings.parquet"), "--model", str(d / "model"), "--k", "5",
               "--ref-date", REF.isoformat(), "--out", str(out)])
    assert rc == 0
    cands = pl.read_parquet(out)
    assert {"posting_id", "rank", "seeker_id", "reasons"} <= set(cands.columns)
    active = set(seekers.filter(pl.col("active"))["seeker_id"])
    assert set(cands["seeker_id"]) <= active
    assert "resume" not in " ".join(cands["reasons"].head(50).to_list())
    capsys.readouterr()
    rc = main(["match", "--seekers", str(d / "missing.parquet"), "--postings",
               str(d / "postings.parquet"), "--model", str(d / "model"), "--out",
               str(d / "x.parquet")])
    assert rc == 2
    assert "missing.parquet: cannot read" in capsys.readouterr().err
    assert not (d / "x.parquet").exists()


def test_match_stream_writes_the_same_lists_as_a_resumable_dataset(files, ray_local, capsys):
    from workers.jobs.match_stream import MatchDataset

    d, postings, seekers, inter = files
    base = ["match", "--seekers", str(d / "seekers.parquet"), "--postings",
            str(d / "postings.parquet"), "--model", str(d / "model"), "--interactions",
            str(d / "interactions.parquet"), "--k", "12", "--ref-date", REF.isoformat()]
    assert main([*base, "--out", str(d / "one.parquet")]) == 0
    out = d / "streamed"
    assert main([*base, "--stream", "--chunk-seekers", "25", "--out", str(out)]) == 0
    parts = -(-int(seekers["active"].sum()) // 25)
    assert f"(0 of {parts} parts were already written)" in capsys.readouterr().out
    ds = MatchDataset(str(out))
    key = ["seeker_id", "rank"]
    assert ds.read().sort(key).equals(pl.read_parquet(d / "one.parquet").sort(key))
    assert ds.verify(seekers.filter(pl.col("active"))["seeker_id"].to_list())["exactly_once"]
    assert main([*base, "--stream", "--chunk-seekers", "25", "--out", str(out)]) == 0
    assert f"({parts} of {parts} parts were already written)" in capsys.readouterr().out
    # another chunking into the same directory, and flags that do not stream: refused
    for extra, says in ((["--chunk-seekers", "30", "--out", str(out)], "other inputs"),
                        (["--chunk-seekers", "0", "--out", str(d / "x")], "chunk_seekers"),
                        (["--candidates", "--out", str(d / "x")], "--candidates"),
                        (["--ranker", str(d / "nope"), "--out", str(d / "x")], "--stream")):
        assert main([*base, "--stream", *extra]) == 2
        assert says in capsys.readouterr().err
