"""Live fetch from the HRD-Net (Work24 국민내일배움카드 훈련과정) Open API.

The list call (``outType=1``) is paged with ``pageNum``/``pageSize`` over the start-date
window ``srchTraStDt``..``srchTraEndDt`` (sorted by start date, ``sortCol=2``) until a short
page, the reported ``scn_cnt`` or ``max_pages``; then one 과정/기관정보 call (``outType=2``,
``srchTrprId``/``srchTrprDegr``/``srchTorgId``) per course run. Responses go through the
file parser, so an error response (``<GO24><error>…``) raises
:class:`core.errors.UpstreamApiError`. The key never appears in messages or sources.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core.ingest.hrd_xml import item_course_id, parse_hrd_bytes, total_count
from core.ingest.http_get import get_with_retries
from core.ingest.worknet_xml import XmlItem

DEFAULT_LIST_URL = "https://www.work24.go.kr/cm/openApi/call/hr/callOpenApiSvcInfo310L01.do"
DEFAULT_DETAIL_URL = "https://www.work24.go.kr/cm/openApi/call/hr/callOpenApiSvcInfo310L02.do"
API_KEY_ENV = "HRD_API_KEY"
MAX_PAGE_SIZE = 100  # the API's limits: pageSize <= 100, pageNum <= 1000
MAX_PAGE_NUM = 1000


@dataclass(frozen=True)
class HrdConfig:
    """Where and how to call the API."""

    api_key: str
    list_url: str = DEFAULT_LIST_URL
    detail_url: str = DEFAULT_DETAIL_URL
    page_size: int = MAX_PAGE_SIZE
    timeout_s: float = 30.0
    retries: int = 2
    workers: int = 4  # concurrent detail calls
    details: bool = True  # False: list calls only (no street address, NCS name, subsidy)

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_key.strip():
            raise ValueError(f"api_key is required for the HRD-Net API (--api-key or ${API_KEY_ENV})")
        for name in ("list_url", "detail_url"):
            scheme = urllib.parse.urlsplit(getattr(self, name)).scheme
            if scheme not in ("http", "https"):
                raise ValueError(f"{name} must be an http(s) URL, got {getattr(self, name)!r}")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}, got {self.page_size}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    @classmethod
    def from_env(cls, api_key: str | None = None, **options: object) -> HrdConfig:
        """``api_key`` or ``$HRD_API_KEY``."""
        return cls(api_key=api_key or os.environ.get(API_KEY_ENV, ""), **options)  # type: ignore[arg-type]


class HrdClient:
    """Fetches list pages and details; see :meth:`fetch`."""

    def __init__(self, config: HrdConfig) -> None:
        self.config = config
        self._calls = [0]

    @property
    def calls(self) -> int:
        """HTTP attempts made so far (retries included)."""
        return self._calls[0]

    def fetch(
        self, start: dt.date, end: dt.date, *, max_pages: int | None = None
    ) -> tuple[list[XmlItem], list[XmlItem]]:
        """(list items, detail items) of the course runs starting within ``start..end``."""
        if end < start:
            raise ValueError(f"window end {end} is before its start {start}")
        if max_pages is not None and max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        cfg = self.config
        lists: list[XmlItem] = []
        page = 1
        while page <= MAX_PAGE_NUM and (max_pages is None or page <= max_pages):
            params = {
                "returnType": "XML", "outType": "1", "pageNum": page, "pageSize": cfg.page_size,
                "srchTraStDt": start.strftime("%Y%m%d"), "srchTraEndDt": end.strftime("%Y%m%d"),
                "sort": "ASC", "sortCol": "2",
            }
            data = self._get(cfg.list_url, params)
            items = [i for i in parse_hrd_bytes(data, f"{cfg.list_url}?pageNum={page}")
                     if i.kind == "list"]
            lists.extend(items)
            total = total_count(data)
            if len(items) < cfg.page_size or (total is not None and page * cfg.page_size >= total):
                break
            page += 1
        if not cfg.details:
            return lists, []
        wanted: dict[str, tuple[str, str, str]] = {}
        for it in lists:
            cid = item_course_id(it.fields)
            if cid and cid not in wanted:
                f = it.fields
                wanted[cid] = (f["trprId"].strip(), f["trprDegr"].strip(),
                               (f.get("trainstCstId") or "").strip())
        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            pages = list(pool.map(lambda a: self._detail(*a), wanted.values()))
        return lists, [item for items in pages for item in items]

    def _detail(self, trpr_id: str, degr: str, torg: str) -> list[XmlItem]:
        cfg = self.config
        params = {"returnType": "XML", "outType": "2", "srchTrprId": trpr_id,
                  "srchTrprDegr": degr, "srchTorgId": torg}
        data = self._get(cfg.detail_url, params)
        source = f"{cfg.detail_url}?srchTrprId={trpr_id}&srchTrprDegr={degr}"
        return [i for i in parse_hrd_bytes(data, source) if i.kind == "detail"]

    def _get(self, url: str, params: dict[str, object]) -> bytes:
        cfg = self.config
        return get_with_retries(
            url, params, secret={"authKey": cfg.api_key}, timeout_s=cfg.timeout_s,
            retries=cfg.retries, service="HRD-Net API", counter=self._calls,
        )
