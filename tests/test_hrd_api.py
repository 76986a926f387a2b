"""The live HRD-Net client against a local HTTP server speaking the Open API's XML
(list pages over pageNum/pageSize and a start-date window, one detail call per course run,
retries on server errors, the Work24 error body, the key never shown)."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest

from core.errors import InvalidInputError, UnavailableError, UpstreamApiError
from core.ingest.courses import ingest_courses
from core.ingest.hrd_api import HrdClient, HrdConfig
from core.synth import generate_course_corpus
from core.synth.courses import detail_xml, list_page_xml
from jobrec import cli

KEY = "HRD-SECRET-42"
REF = dt.date(2026, 11, 20)
COURSES = generate_course_corpus(7, 9, ref_date=REF).courses
ROWS = COURSES.to_dicts()
ERROR = "<?xml version='1.0' encoding='UTF-8'?>\n<GO24>\n  <error>인증키가 존재하지 않습니다</error>\n</GO24>\n"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        srv = self.server
        srv.log.append((url.path, q))  # type: ignore[attr-defined]
        if url.path == "/flaky" and srv.failures > 0:  # type: ignore[attr-defined]
            srv.failures -= 1  # type: ignore[attr-defined]
            self.send_error(503, "Service Unavailable")
            return
        if url.path == "/missing":
            self.send_error(404, "Not Found")
            return
        if q.get("authKey") != KEY:
            body = ERROR
        elif url.path in ("/list", "/flaky") and q.get("outType") == "1":
            lo = dt.datetime.strptime(q["srchTraStDt"], "%Y%m%d").date()
            hi = dt.datetime.strptime(q["srchTraEndDt"], "%Y%m%d").date()
            rows = [r for r in ROWS if lo <= r["start_date"] <= hi]
            page, size = int(q["pageNum"]), int(q["pageSize"])
            body = list_page_xml(rows[(page - 1) * size: page * size], len(rows), page, size)
        elif url.path == "/detail" and q.get("outType") == "2":
            row = next(r for r in ROWS if r["trpr_id"] == q["srchTrprId"]
                       and str(r["trpr_degr"]) == q["srchTrprDegr"])
            assert q["srchTorgId"] == row["institution_id"]
            body = detail_xml(row)
        else:
            self.send_error(400, "bad call")
            return
        data = body.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.log = []
    srv.failures = 0
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _client(base, **kw) -> HrdClient:
    return HrdClient(HrdConfig(KEY, list_url=f"{base}/list", detail_url=f"{base}/detail", **kw))


WINDOW = (REF - dt.timedelta(days=60), REF + dt.timedelta(days=130))


def test_paging_window_and_details(server):
    srv, base = server
    res = ingest_courses([], "hrd-api", client=_client(base, page_size=3), window=WINDOW, ref_date=REF)
    assert res.counts == {"read": 7, "accepted": 7, "rejected": 0, "by_reason": {}}
    lists = [q for p, q in srv.log if p == "/list"]
    assert [q["pageNum"] for q in lists] == ["1", "2", "3"]
    assert all(q["pageSize"] == "3" and q["srchTraStDt"] == "20260921" and q["sort"] == "ASC"
               and q["sortCol"] == "2" and q["returnType"] == "XML" for q in lists)
    assert len([p for p, _ in srv.log if p == "/detail"]) == 7
    got = res.courses.sort("course_id")
    want = COURSES.sort("course_id")
    for col in ("course_id", "title", "institution", "start_date", "end_date", "subsidy",
                "self_pay", "training_hours", "ncs_name", "capacity", "enrolled"):
        assert got[col].equals(want[col]), col
    # a narrow window asks the API for fewer courses
    srv.log.clear()
    one = sorted(r["start_date"] for r in ROWS)[3]
    res = ingest_courses([], "hrd-api", client=_client(base), window=(one, one), ref_date=REF)
    assert res.courses.height >= 1
    assert res.courses["start_date"].to_list() == [one] * res.courses.height
    lists, _ = _client(base, details=False).fetch(*WINDOW, max_pages=1)
    assert len(lists) == 7 and all(KEY not in it.source for it in lists)


def test_max_pages_and_retries(server):
    srv, base = server
    lists, details = _client(base, page_size=2).fetch(*WINDOW, max_pages=2)
    assert len(lists) == 4 and len(details) == 4
    srv.failures = 2
    client = HrdClient(HrdConfig(KEY, list_url=f"{base}/flaky", detail_url=f"{base}/detail",
                                 retries=2, details=False))
    lists, _ = client.fetch(*WINDOW)
    assert len(lists) == 7 and client.calls == 3
    srv.failures = 5
    client = HrdClient(HrdConfig(KEY, list_url=f"{base}/flaky", retries=1, details=False))
    with pytest.raises(UpstreamApiError, match="HTTP 503 .* after 2 tries") as info:
        client.fetch(*WINDOW)
    assert KEY not in str(info.value)


def test_errors(server):
    _, base = server
    bad = HrdClient(HrdConfig("WRONG-KEY", list_url=f"{base}/list", detail_url=f"{base}/detail"))
    with pytest.raises(UpstreamApiError, match="인증키가 존재하지 않습니다") as info:
        bad.fetch(*WINDOW)
    assert "WRONG-KEY" not in str(info.value)
    with pytest.raises(UpstreamApiError, match="HTTP 404"):
        HrdClient(HrdConfig(KEY, list_url=f"{base}/missing", retries=0)).fetch(*WINDOW)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = HrdClient(HrdConfig(KEY, list_url=f"http://127.0.0.1:{port}/l", retries=1, timeout_s=2))
    with pytest.raises(UnavailableError, match="HRD-Net API unreachable after 2 tries"):
        dead.fetch(*WINDOW)
    with pytest.raises(ValueError, match="before its start"):
        _client(base).fetch(REF, REF - dt.timedelta(days=1))


def test_config_validation(monkeypatch):
    monkeypatch.delenv("HRD_API_KEY", raising=False)
    with pytest.raises(ValueError, match="api_key is required"):
        HrdConfig.from_env(None)
    monkeypatch.setenv("HRD_API_KEY", "from-env")
    assert HrdConfig.from_env(None).api_key == "from-env"
    with pytest.raises(ValueError, match="page_size"):
        HrdConfig(KEY, page_size=500)
    with pytest.raises(ValueError, match="http"):
        HrdConfig(KEY, list_url="ftp://x")
    with pytest.raises(InvalidInputError, match="client and a date window"):
        ingest_courses([], "hrd-api")


def test_cli_live_fetch(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_REGISTRARS", ("core.ingest.cli",))
    monkeypatch.delenv("HRD_API_KEY", raising=False)
    srv, base = server
    out = tmp_path / "c.parquet"
    code = cli.main(["ingest", "--kind", "courses", "--format", "hrd-api", "--api-key", KEY,
                     "--api-url", f"{base}/list", "--detail-url", f"{base}/detail",
                     "--start", "2026-09-21", "--end", "2027-03-30", "--out", str(out),
                     "--ref-date", "2026-11-20"])
    assert code == 0
    printed = capsys.readouterr()
    assert KEY not in printed.out + printed.err and pl.read_parquet(out).height == 7
    code = cli.main(["ingest", "--kind", "courses", "--format", "hrd-api", "--api-url",
                     f"{base}/list", "--out", str(out)])
    assert code == 2 and "api_key is required" in capsys.readouterr().err
    monkeypatch.setenv("HRD_API_KEY", KEY)
    srv.log.clear()
    code = cli.main(["ingest", "--kind", "courses", "--format", "hrd-api", "--api-url",
                     f"{base}/list", "--detail-url", f"{base}/detail", "--ref-date", "2026-11-20",
                     "--out", str(out)])
    assert code == 0
    first = next(q for p, q in srv.log if p == "/list")
    assert (first["srchTraStDt"], first["srchTraEndDt"]) == ("20261120", "20270218")
