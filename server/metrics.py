"""Prometheus metrics: request counts and latency histograms per method and status code.

Each server owns a dedicated ``CollectorRegistry`` (not the process-global one), so several
servers can run in one process (tests) without clashing metric names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from server.interceptors import wrap_handler

log = logging.getLogger("jobrec.server")

# Latency buckets around the 20 ms by-id and 100 ms inline targets.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """The server's metric families, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "jobrec_grpc_requests",
            "gRPC requests handled, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jobrec_grpc_request_duration_seconds",
            "gRPC request latency, by method and status code",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "jobrec_grpc_in_flight", "gRPC requests in flight", registry=self.registry
        )
        self.indexed_postings = Gauge(
            "jobrec_indexed_postings", "postings in the index", registry=self.registry
        )
        self.shard_postings = Gauge(
            "jobrec_shard_postings", "postings held by each shard (halo copies included)",
            ["shard"], registry=self.registry,
        )  # fmt: skip
        self.shard_up = Gauge(
            "jobrec_shard_up", "1 while the shard actor answers, else 0", ["shard"],
            registry=self.registry,
        )  # fmt: skip
        self.shard_latency = Histogram(
            "jobrec_shard_request_duration_seconds",
            "round trip of a call to one shard actor, by shard",
            ["shard"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.store_log_objects = Gauge(
            "jobrec_store_log_objects",
            "write batches in the store's append log not yet folded into a base snapshot",
            registry=self.registry,
        )
        self.store_lag = Gauge(
            "jobrec_store_lag_seconds",
            "age of the oldest write in the store's append log (how far the base lags)",
            registry=self.registry,
        )
        self.store_append = Histogram(
            "jobrec_store_append_duration_seconds",
            "time to make a write durable in the store before acknowledging it",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._http = None

    def observe_backend(self, report: Mapping) -> None:
        """Record a backend health report: per-shard size, liveness and round trip."""
        for sh in report.get("shards", ()):
            label = str(sh.get("shard_id"))
            self.shard_up.labels(label).set(1.0 if sh.get("ok") else 0.0)
            if sh.get("postings") is not None:
                self.shard_postings.labels(label).set(sh["postings"])
            if sh.get("latency_s") is not None:
                self.shard_latency.labels(label).observe(sh["latency_s"])
        lag = report.get("store")
        if lag:
            self.store_log_objects.set(lag.get("log_objects", 0))
            self.store_lag.set(lag.get("oldest_log_age_s", 0))

    def metric_names(self) -> set[str]:
        """Every sample name this registry exports (``_total``, ``_bucket`` … included)."""
        return {s.name for m in self.registry.collect() for s in m.samples} | {
            m.name for m in self.registry.collect()
        }

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Record one finished request."""
        self.requests.labels(method, code.name).inc()
        self.latency.labels(method, code.name).observe(seconds)

    def count(self, method: str, code: str) -> float:
        """How many requests of ``method`` ended with ``code`` (for tests and the demo)."""
        value = self.registry.get_sample_value(
            "jobrec_grpc_requests_total", {"method": method, "code": code}
        )
        return value or 0.0

    def serve_http(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``addr:port`` (0 = any free port); return the bound port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._http = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint, if any."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def _final_code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    if isinstance(exc, asyncio.CancelledError):
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # some grpc versions report the raw integer
        for sc in grpc.StatusCode:
            if sc.value[0] == code:
                return sc
    return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN


def _details(context: grpc.aio.ServicerContext) -> str | None:
    try:
        details = context.details()
    except Exception:  # noqa: BLE001  (older grpc versions have no details())
        return None
    if isinstance(details, bytes):
        details = details.decode("utf-8", "replace")
    return details or None


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times every call and counts it under its final status code; logs one line per call."""

    def __init__(self, metrics: Metrics, *, access_log: bool = False) -> None:
        self.metrics = metrics
        self.access_log = access_log

    @contextlib.asynccontextmanager
    async def _observe(self, method: str, context: grpc.aio.ServicerContext):
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        exc: BaseException | None = None
        try:
            yield
        except BaseException as e:
            exc = e
            raise
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - start
            code = _final_code(context, exc)
            self.metrics.observe(method, code, elapsed)
            if self.access_log or code not in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND):
                extra = {
                    "rpc_method": method,
                    "rpc_code": code.name,
                    "duration_ms": round(elapsed * 1000, 3),
                    "peer": context.peer(),
                }
                details = _details(context)
                if details and code != grpc.StatusCode.OK:
                    extra["rpc_details"] = details[:300]
                log.info("rpc", extra=extra)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return wrap_handler(handler, handler_call_details.method, self._observe)
