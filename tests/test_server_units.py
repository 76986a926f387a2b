"""Unit tests of the server's pure parts: codegen, conversion, error table, API keys."""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import polars as pl
import pytest

from core.errors import (
    InvalidInputError,
    JobrecError,
    MalformedSourceError,
    NotFoundError,
    OverloadedError,
    UnavailableError,
)
from core.rules import RuleConfig
from core.schema import POSTING_SCHEMA
from server import codegen, convert
from server.auth import ApiKeyInterceptor, load_api_keys
from server.errors import FIELD_METADATA_KEY, map_exception, status_for
from server.generated.jobrec.v1 import recommendation_pb2 as pb

REPO = Path(__file__).resolve().parent.parent


def _row(**over) -> dict:
    row = {name: None for name in POSTING_SCHEMA}
    row.update(
        posting_id="K151123456789",
        company="(주)한빛정밀",
        title="CNC 선반 가공원 모집",
        description="CNC 선반 가공 및 품질 검사. 초보 가능, 교육 후 배치.",
        occupation_code="852101",
        region="경기 안산시 단원구",
        sido="경기도",
        lat=37.3219,
        lng=126.8309,
        min_education_level=3,
        max_education_level=5,
        career="entry",
        min_career_years=0,
        wage_type="monthly",
        wage_min=2_500_000,
        wage_max=3_000_000,
        monthly_wage=2_750_000,
        employment_type="permanent",
        registered_on=dt.date(2024, 5, 2),
        closes_on=dt.date(2024, 6, 1),
        near_station="4호선 안산역",
    )
    row.update(over)
    return row


# --- codegen -------------------------------------------------------------------------------


def test_generated_code_is_up_to_date():
    out = subprocess.run(
        [sys.executable, "-m", "server.codegen", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_codegen_check_detects_stale_and_missing_files(tmp_path):
    copy = tmp_path / "generated"
    shutil.copytree(codegen.GENERATED_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert codegen.check(copy) == []
    pb2 = copy / "jobrec" / "v1" / "recommendation_pb2.py"
    pb2.write_text(pb2.read_text() + "\n# edited by hand\n")
    (copy / "jobrec" / "v1" / "recommendation_pb2_grpc.py").unlink()
    problems = codegen.check(copy)
    assert "stale: jobrec/v1/recommendation_pb2.py" in problems
    assert "missing: jobrec/v1/recommendation_pb2_grpc.py" in problems


def test_codegen_check_ignores_the_tools_version_stamp(tmp_path):
    # CI installs the current grpcio-tools: a newer stamp on unchanged protos is not stale
    copy = tmp_path / "generated"
    shutil.copytree(codegen.GENERATED_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    grpc_py = copy / "jobrec" / "v1" / "courses_pb2_grpc.py"
    text = grpc_py.read_text()
    stamped = re.sub(r"GRPC_GENERATED_VERSION = '[^']*'", "GRPC_GENERATED_VERSION = '9.99.0'", text)
    assert stamped != text
    grpc_py.write_text(stamped)
    pb2 = copy / "jobrec" / "v1" / "courses_pb2.py"
    text = pb2.read_text()
    stamped = re.sub(r"Protobuf Python Version: \S+", "Protobuf Python Version: 99.0.0", text)
    assert stamped != text
    pb2.write_text(stamped)
    assert codegen.check(copy) == []


def test_generated_imports_resolve_inside_server_generated():
    text = (codegen.GENERATED_DIR / "jobrec" / "v1" / "recommendation_pb2_grpc.py").read_text()
    assert "from server.generated.jobrec.v1 import recommendation_pb2" in text
    assert "\nfrom jobrec." not in text


# --- convert -------------------------------------------------------------------------------


def test_posting_round_trip_keeps_every_field():
    row = _row()
    msg = convert.posting_from_row(row)
    assert convert.posting_to_dict(msg) == row
    # unset optionals stay None, not "" or 0
    sparse = _row(wage_type=None, wage_min=None, wage_max=None, monthly_wage=None, closes_on=None)
    back = convert.posting_to_dict(convert.posting_from_row(sparse))
    assert back["closes_on"] is None and back["wage_min"] is None and back["wage_type"] is None


def test_posting_round_trip_through_a_canonical_frame():
    df = convert.validated_frame([_row(), _row(posting_id="K2", lat=35.1)], prefix="postings")
    assert dict(df.schema) == POSTING_SCHEMA
    for r in df.iter_rows(named=True):
        assert convert.posting_to_dict(convert.posting_from_row(r)) == r


def test_missing_required_field_is_named():
    msg = convert.posting_from_row(_row(title=None))
    with pytest.raises(InvalidInputError) as exc:
        convert.posting_to_dict(msg, prefix="postings[4]")
    assert exc.value.field == "postings[4].title"


def test_bad_date_is_named():
    msg = convert.posting_from_row(_row())
    msg.closes_on = "31/05/2024"
    with pytest.raises(InvalidInputError) as exc:
        convert.posting_to_dict(msg)
    assert exc.value.field == "posting.closes_on"


def test_inline_posting_defaults():
    msg = convert.posting_from_row(_row(posting_id=None, registered_on=None))
    row = convert.posting_to_dict(msg, inline=True, today=dt.date(2024, 5, 20))
    assert row["posting_id"] == "" and row["registered_on"] == dt.date(2024, 5, 20)


def test_validated_frame_names_the_offending_posting():
    rows = [_row(posting_id=f"P{i}") for i in range(5)]
    rows[3]["lat"] = 12.0  # outside Korea
    with pytest.raises(InvalidInputError) as exc:
        convert.validated_frame(rows, prefix="postings")
    assert exc.value.field == "postings[3].lat"
    rows[3]["lat"] = 37.0
    rows[4]["posting_id"] = "P1"
    with pytest.raises(InvalidInputError) as exc:
        convert.validated_frame(rows, prefix="postings")
    assert exc.value.field == "postings[4].posting_id"
    with pytest.raises(InvalidInputError) as exc:
        convert.validated_frame([_row(career="sometimes")], prefix="posting", indexed=False)
    assert exc.value.field == "posting.career"


@pytest.mark.parametrize("k,expected", [(0, 10), (1, 1), (10, 10), (100, 100)])
def test_k_defaults_and_bounds(k, expected):
    assert convert.validate_k(k) == expected


@pytest.mark.parametrize("k", [-1, 101, 10_000])
def test_k_out_of_range_names_k(k):
    with pytest.raises(InvalidInputError) as exc:
        convert.validate_k(k)
    assert exc.value.field == "k"


def test_rule_overrides_replace_only_the_fields_set():
    base = RuleConfig(ref_date=dt.date(2024, 5, 1))
    assert convert.rules_from_overrides(base, pb.RuleOverrides(), has=False) is base
    got = convert.rules_from_overrides(
        base,
        pb.RuleOverrides(other_radius_km=25.0, career_filter=False, max_per_company=0),
        has=True,
    )
    assert got == RuleConfig(
        other_radius_km=25.0, career_filter=False, max_per_company=0, ref_date=base.ref_date
    )
    got = convert.rules_from_overrides(base, pb.RuleOverrides(ref_date="2024-07-01"), has=True)
    assert got.ref_date == dt.date(2024, 7, 1)
    applied = convert.applied_rules(got)
    assert applied.ref_date == "2024-07-01" and applied.capital_radius_km == 20.0


@pytest.mark.parametrize(
    "overrides,field",
    [
        (pb.RuleOverrides(capital_radius_km=-5), "rules.capital_radius_km"),
        (pb.RuleOverrides(education_policy="loose"), "rules.education_policy"),
        (pb.RuleOverrides(max_per_company=-1), "rules.max_per_company"),
        (pb.RuleOverrides(ref_date="tomorrow"), "rules.ref_date"),
    ],
)
def test_bad_rule_overrides_name_the_field(overrides, field):
    with pytest.raises(InvalidInputError) as exc:
        convert.rules_from_overrides(RuleConfig(), overrides, has=True)
    assert exc.value.field == field


def test_rows_that_do_not_fit_the_schema_are_invalid_input():
    with pytest.raises(InvalidInputError):
        convert.rows_to_frame([_row(min_education_level=10_000)])


# --- error table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc,code",
    [
        (InvalidInputError("bad", field="k"), grpc.StatusCode.INVALID_ARGUMENT),
        (MalformedSourceError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFoundError("P1"), grpc.StatusCode.NOT_FOUND),
        (UnavailableError("shard 0"), grpc.StatusCode.UNAVAILABLE),
        (OverloadedError("busy"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED),
        (JobrecError("?"), grpc.StatusCode.INTERNAL),
        (ZeroDivisionError(), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_table(exc, code):
    assert status_for(exc) == code


def test_ray_actor_errors_are_unavailable_without_importing_ray_here():
    from ray.exceptions import RayActorError

    assert status_for(RayActorError()) == grpc.StatusCode.UNAVAILABLE


def test_invalid_argument_names_the_field():
    mapped = map_exception(InvalidInputError("must be between 1 and 100", field="k"))
    assert mapped.details.startswith("invalid k:")
    assert (FIELD_METADATA_KEY, "k") in mapped.metadata


def test_unmapped_error_is_logged_with_traceback_but_not_leaked(caplog):
    def deep():
        raise KeyError("/secret/path/to/model.bin")

    try:
        deep()
    except KeyError as exc:
        with caplog.at_level(logging.ERROR, logger="jobrec.server"):
            mapped = map_exception(exc, method="/x/Y")
    assert mapped.code == grpc.StatusCode.INTERNAL
    assert "secret" not in mapped.details and "Traceback" not in mapped.details
    ref = dict(mapped.metadata)["jobrec-error-id"]
    assert ref in mapped.details
    record = next(r for r in caplog.records if ref in r.getMessage())
    assert record.exc_info is not None and record.exc_info[0] is KeyError


# --- API keys ------------------------------------------------------------------------------


def test_api_keys_from_env_and_file(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# callers\nalpha\n\n beta  # batch jobs\n")
    assert load_api_keys(f, env={"JOBREC_API_KEYS": "gamma, delta,"}) == {
        "alpha", "beta", "gamma", "delta",
    }  # fmt: skip
    assert load_api_keys(None, env={}) == frozenset()
    with pytest.raises(InvalidInputError):
        load_api_keys(tmp_path / "nope", env={})


def test_bearer_key_check():
    auth = ApiKeyInterceptor({"alpha", "beta"})
    assert auth.authorized([("authorization", "Bearer beta")])
    assert auth.authorized([("x-other", "1"), ("authorization", "bearer alpha")])
    assert not auth.authorized([("authorization", "Bearer gamma")])
    assert not auth.authorized([("authorization", "Basic alpha")])
    assert not auth.authorized([("authorization", "Bearer alph")])
    assert not auth.authorized([])
    assert not auth.authorized(None)
    with pytest.raises(ValueError):
        ApiKeyInterceptor(set())


def test_frame_schema_matches_proto_fields():
    # every canonical column is a Posting field, so nothing is lost over the wire
    assert set(POSTING_SCHEMA) == set(pb.Posting.DESCRIPTOR.fields_by_name)
    assert isinstance(convert.rows_to_frame([_row()]), pl.DataFrame)
