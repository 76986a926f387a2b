"""One HTTP GET with retries, shared by the Open API clients (Work24 postings, HRD-Net courses).

Server errors (5xx), timeouts and connection errors are retried with exponential back-off;
client errors (4xx) are not. The secret key travels in the query string but never in a
message: errors show the URL without it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

from core.errors import UnavailableError, UpstreamApiError


def get_with_retries(
    url: str,
    params: Mapping[str, object],
    *,
    secret: Mapping[str, str],
    timeout_s: float,
    retries: int,
    service: str,
    counter: list[int] | None = None,
) -> bytes:
    """The body of ``GET url?secret&params``; raises UpstreamApiError or UnavailableError.

    ``counter`` (a one-element list), when given, is incremented once per attempt.
    """
    query = urllib.parse.urlencode({**secret, **params})
    request = urllib.request.Request(f"{url}?{query}", headers={"User-Agent": "jobrec-ingest"})
    shown = f"{url}?{urllib.parse.urlencode(params)}"  # never show the key
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(4.0, 0.25 * 2**attempt))
        if counter is not None:
            counter[0] += 1
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise UpstreamApiError(f"{shown}: HTTP {exc.code} {exc.reason}") from None
            last = exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = exc
    if isinstance(last, urllib.error.HTTPError):
        raise UpstreamApiError(f"{shown}: HTTP {last.code} {last.reason} after {retries + 1} tries")
    reason = getattr(last, "reason", last)
    raise UnavailableError(f"{shown}: {service} unreachable after {retries + 1} tries: {reason}")
