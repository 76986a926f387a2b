"""Live fetch from the Work24 (Worknet) Open API: a thin HTTP client over the XML parser.

The list call (``callTp=L``) is paged with ``startPage``/``display`` until a short page,
the reported ``total`` or ``max_pages``; then one detail call (``callTp=D``) per posting.
Responses go through the same parser as files, so an error response raises
:class:`core.errors.UpstreamApiError`. The API key never appears in messages or sources.
"""

from __future__ import annotations

import re
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core.ingest.http_get import get_with_retries
from core.ingest.worknet_xml import XmlItem, parse_xml_bytes

DEFAULT_LIST_URL = "https://www.work24.go.kr/cm/openApi/call/wk/callOpenApiSvcInfo210L01.do"
DEFAULT_DETAIL_URL = "https://www.work24.go.kr/cm/openApi/call/wk/callOpenApiSvcInfo210D01.do"
MAX_DISPLAY = 100  # the API's page-size limit
_TOTAL = re.compile(rb"<total>\s*(\d+)\s*</total>")


@dataclass(frozen=True)
class Work24Config:
    """Where and how to call the API."""

    api_key: str
    list_url: str = DEFAULT_LIST_URL
    detail_url: str = DEFAULT_DETAIL_URL
    display: int = MAX_DISPLAY
    timeout_s: float = 30.0
    retries: int = 2
    workers: int = 4  # concurrent detail calls

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_key.strip():
            raise ValueError("api_key is required for the Work24 API (--api-key)")
        for name in ("list_url", "detail_url"):
            scheme = urllib.parse.urlsplit(getattr(self, name)).scheme
            if scheme not in ("http", "https"):
                raise ValueError(f"{name} must be an http(s) URL, got {getattr(self, name)!r}")
        if not 1 <= self.display <= MAX_DISPLAY:
            raise ValueError(f"display must be within 1..{MAX_DISPLAY}, got {self.display}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


class Work24Client:
    """Fetches list pages and details; see :meth:`fetch`."""

    def __init__(self, api_key: str, **options: object) -> None:
        self.config = Work24Config(api_key=api_key, **options)  # type: ignore[arg-type]
        self.calls = 0

    def fetch(self, *, max_pages: int | None = None) -> tuple[list[XmlItem], list[XmlItem]]:
        """(list items, detail items) for every posting the list call pages through."""
        if max_pages is not None and max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        cfg = self.config
        lists: list[XmlItem] = []
        page = 1
        while max_pages is None or page <= max_pages:
            params = {"callTp": "L", "returnType": "XML", "startPage": page, "display": cfg.display}
            data = self._get(cfg.list_url, params)
            items = [
                i for i in parse_xml_bytes(data, f"{cfg.list_url}?startPage={page}") if i.kind == "list"
            ]
            lists.extend(items)
            m = _TOTAL.search(data[:4096])
            total = int(m.group(1)) if m else None
            if len(items) < cfg.display or (total is not None and page * cfg.display >= total):
                break
            page += 1
        ids = [
            (i.fields.get("wantedAuthNo", "").strip(), i.fields.get("infoSvc") or "VALIDATION")
            for i in lists
        ]
        wanted = [(pid, svc) for pid, svc in dict(ids).items() if pid]
        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            pages = list(pool.map(lambda a: self._detail(*a), wanted))
        details = [item for items in pages for item in items]
        return lists, details

    def _detail(self, pid: str, info_svc: str) -> list[XmlItem]:
        cfg = self.config
        params = {"callTp": "D", "returnType": "XML", "wantedAuthNo": pid, "infoSvc": info_svc}
        data = self._get(cfg.detail_url, params)
        source = f"{cfg.detail_url}?wantedAuthNo={pid}"
        return [i for i in parse_xml_bytes(data, source) if i.kind == "detail"]

    def _get(self, url: str, params: dict[str, object]) -> bytes:
        cfg = self.config
        counter = [0]
        try:
            return get_with_retries(
                url, params, secret={"authKey": cfg.api_key}, timeout_s=cfg.timeout_s,
                retries=cfg.retries, service="Work24 API", counter=counter,
            )
        finally:
            self.calls += counter[0]
