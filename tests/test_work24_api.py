"""The live Work24 client against a local HTTP server speaking the Open API's XML."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

import polars as pl
import pytest

from core.errors import InvalidInputError, UnavailableError, UpstreamApiError
from core.ingest import ingest
from core.ingest.work24_api import Work24Client
from jobrec import cli

KEY = "SECRET-KEY-123"
REF = dt.date(2025, 11, 23)
N = 5


def _item(i: int) -> dict[str, str]:
    return {
        "wantedAuthNo": f"K30000000000{i:04d}",
        "company": f"회사{i}",
        "title": f"공고 {i}",
        "salTpNm": "월급",
        "minSal": str(2_000_000 + i * 100_000),
        "maxSal": "",
        "region": ["서울 강남구", "경기 수원시 팔달구", "부산 해운대구", "세종특별자치시", "제주 서귀포시"][i % 5],
        "minEdubg": "고졸",
        "career": "신입",
        "regDt": "25-11-2" + str(i % 10),
        "closeDt": "채용시까지",
        "empTpCd": "10",
        "jobsCd": "",
        "infoSvc": "VALIDATION",
    }


ITEMS = [_item(i) for i in range(N)]
ERROR = ("<GoogleError><message>인증키 정보가 올바르지 않습니다.</message>"
         "<messageCd>006</messageCd></GoogleError>")


def _xml(tag: str, fields: dict[str, str]) -> str:
    return f"<{tag}>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items()) + f"</{tag}>"


class _Handler(BaseHTTPRequestHandler):
    log: list[tuple[str, dict[str, str]]]

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        self.server.log.append((url.path, q))  # type: ignore[attr-defined]
        if url.path == "/missing":
            self.send_error(404, "Not Found")
            return
        if q.get("authKey") != KEY:
            body = ERROR
        elif url.path == "/list" and q.get("callTp") == "L":
            page, size = int(q["startPage"]), int(q["display"])
            chunk = ITEMS[(page - 1) * size: page * size]
            body = (f"<wantedRoot><total>{N}</total><startPage>{page}</startPage>"
                    f"<display>{size}</display>" + "".join(_xml("wanted", it) for it in chunk)
                    + "</wantedRoot>")
        elif url.path == "/detail" and q.get("callTp") == "D":
            i = next(k for k, it in enumerate(ITEMS) if it["wantedAuthNo"] == q["wantedAuthNo"])
            body = (f"<wantedDtl><wantedAuthNo>{q['wantedAuthNo']}</wantedAuthNo>"
                    f"<corpInfo><corpNm>회사{i}</corpNm></corpInfo><wantedInfo>"
                    f"<jobsNm>바리스타</jobsNm><jobCont>커피 제조 {i}, 문의 02-123-4567</jobCont>"
                    f"<enterTpNm>신입</enterTpNm></wantedInfo></wantedDtl>")
        else:
            self.send_error(400, "bad call")
            return
        data = ('<?xml version="1.0" encoding="UTF-8"?>' + body).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.log = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_paging_and_details(server):
    srv, base = server
    srv.log.clear()
    res = ingest([], "work24-api", api_key=KEY, api_url=f"{base}/list", detail_url=f"{base}/detail",
                 display=2, ref_date=REF)
    assert res.counts == {"read": N, "accepted": N, "rejected": 0, "by_reason": {}}
    lists = [q for path, q in srv.log if path == "/list"]
    details = [q for path, q in srv.log if path == "/detail"]
    assert [q["startPage"] for q in lists] == ["1", "2", "3"]
    assert all(q["display"] == "2" and q["authKey"] == KEY for q in lists)
    assert sorted(q["wantedAuthNo"] for q in details) == [it["wantedAuthNo"] for it in ITEMS]
    df = res.postings.sort("posting_id")
    assert df["posting_id"].to_list() == [it["wantedAuthNo"] for it in ITEMS]
    assert df["occupation_code"].to_list() == ["531700"] * N  # 바리스타, from the detail call
    assert df["description"].to_list() == [f"커피 제조 {i}, 문의 [전화번호]" for i in range(N)]
    assert df["wage_min"].to_list() == [2_000_000 + i * 100_000 for i in range(N)]
    assert df["sido"].to_list() == ["서울특별시", "경기도", "부산광역시", "세종특별자치시", "제주특별자치도"]
    # each record's source (kept with rejects) names the call, never the key
    lists, details = Work24Client(KEY, list_url=f"{base}/list", detail_url=f"{base}/detail").fetch()
    assert len(lists) == len(details) == N
    assert all(KEY not in it.source and it.source.startswith(base) for it in lists + details)


def test_max_pages(server):
    _, base = server
    res = ingest([], "work24-api", api_key=KEY, api_url=f"{base}/list", detail_url=f"{base}/detail",
                 display=2, max_pages=2, ref_date=REF)
    assert res.counts["accepted"] == 4


def test_error_response_raises_upstream_error(server):
    _, base = server
    with pytest.raises(UpstreamApiError, match="인증키") as info:
        ingest([], "work24-api", api_key="WRONG", api_url=f"{base}/list", detail_url=f"{base}/detail")
    assert info.value.code == "006"
    assert "WRONG" not in str(info.value)


def test_http_errors(server):
    _, base = server
    with pytest.raises(UpstreamApiError, match="HTTP 404") as info:
        Work24Client(KEY, list_url=f"{base}/missing", retries=0).fetch()
    assert KEY not in str(info.value)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UnavailableError, match="unreachable"):
        Work24Client(KEY, list_url=f"http://127.0.0.1:{port}/list", retries=1, timeout_s=2).fetch()


def test_bad_client_settings():
    with pytest.raises(InvalidInputError, match="api_key is required"):
        ingest([], "work24-api")
    with pytest.raises(ValueError, match="display"):
        Work24Client(KEY, display=500)
    with pytest.raises(ValueError, match="http"):
        Work24Client(KEY, list_url="ftp://x")


def test_cli_live_fetch(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_REGISTRARS", ("core.ingest.cli",))
    monkeypatch.delenv("WORK24_API_KEY", raising=False)
    _, base = server
    out = tmp_path / "p.parquet"
    code = cli.main(["ingest", "--format", "work24-api", "--api-key", KEY, "--api-url", f"{base}/list",
                     "--detail-url", f"{base}/detail", "--out", str(out), "--ref-date", "2025-11-23"])
    assert code == 0
    printed = capsys.readouterr()
    assert "accepted" in printed.out and KEY not in printed.out + printed.err
    assert pl.read_parquet(out).height == N
    assert pl.read_parquet(tmp_path / "p.rejects.parquet").height == 0
    code = cli.main(["ingest", "--format", "work24-api", "--api-url", f"{base}/list", "--out", str(out)])
    assert code == 2
    assert "api_key is required" in capsys.readouterr().err
