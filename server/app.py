"""The grpc.aio server: ``RecommendationService`` over the Ray shard actors, plus health,
reflection, API keys, metrics, an in-flight bound, deadlines and request size limits.

The servicer only translates: protobuf → canonical values (``server.convert``), calls the
async methods of ``workers.backend.RecommendationBackend``, and maps ``core.errors`` to status
codes (``server.errors``). Inline postings are encoded with the W-BERT ``Encoder`` in a thread
executor so CPU-bound encoding never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from core.course_rules import CourseRuleConfig
from core.errors import InvalidInputError
from core.rules import RuleConfig
from encoding.text import posting_text
from server import convert
from server.auth import ApiKeyInterceptor
from server.deadline import within_deadline
from server.errors import rpc_method
from server.generated.jobrec.v1 import recommendation_pb2 as pb
from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc
from server.interceptors import DecodeGuard, InFlightLimiter
from server.metrics import Metrics, MetricsInterceptor
from workers.engine.types import Backend, TextEncoder

if TYPE_CHECKING:  # the matching service is optional; its module loads only when used
    from workers.matching.service import MatchService

log = logging.getLogger("jobrec.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RecommendationService"].full_name
HEALTH_SERVICE_NAME = health.SERVICE_NAME


@dataclass(frozen=True)
class ServerConfig:
    """How the gRPC server listens and protects itself."""

    host: str = "127.0.0.1"
    port: int = 50051  # 0 = any free port
    max_in_flight: int = 256
    max_receive_message_bytes: int = 4 * 1024 * 1024
    max_send_message_bytes: int = 4 * 1024 * 1024
    max_upsert_postings: int = 10_000  # per UpsertPostings stream
    max_delete_ids: int = 10_000
    api_keys: frozenset[str] = field(default_factory=frozenset)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    metrics_port: int | None = None  # None = no metrics endpoint, 0 = any free port
    metrics_host: str = "127.0.0.1"
    encode_threads: int = 1
    health_interval_s: float = 5.0  # 0 = do not poll the backend's health
    grace_s: float = 2.0
    access_log: bool = False
    warm_up_encoder: bool = True  # encode once before SERVING (loads Kiwi, first-call set-up)
    # a shard actor that is restarting (Ray restarts it, it reloads its snapshot) answers
    # again within seconds: calls retry with jittered exponential backoff inside their
    # deadline before the caller sees UNAVAILABLE
    backend_retries: int = 6
    backend_backoff_s: float = 0.1
    backend_backoff_max_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be in 0..65535, got {self.metrics_port}")
        for name in (
            "max_in_flight",
            "max_receive_message_bytes",
            "max_send_message_bytes",
            "max_upsert_postings",
            "max_delete_ids",
            "encode_threads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        for name in ("tls_cert", "tls_key"):
            p = getattr(self, name)
            if p is not None and not Path(p).is_file():
                raise ValueError(f"{name} file {p} does not exist")
        if self.backend_retries < 0 or self.backend_backoff_s <= 0:
            raise ValueError("backend_retries must be >= 0 and backend_backoff_s > 0")
        if self.backend_backoff_max_s < self.backend_backoff_s:
            raise ValueError("backend_backoff_max_s must be >= backend_backoff_s")
        if self.health_interval_s < 0 or self.grace_s < 0:
            raise ValueError("health_interval_s and grace_s must be >= 0")
        if not isinstance(self.api_keys, frozenset):
            object.__setattr__(self, "api_keys", frozenset(self.api_keys))


class EncodeBatcher:
    """Coalesces concurrent encode requests into one ``encoder.encode`` call at a time.

    On a small CPU box, one batched forward pass over N texts is much cheaper than N
    concurrent single-text passes fighting over the same cores; requests that arrive while a
    batch is being encoded form the next batch. Runs on the event loop; the encoding itself
    runs in ``executor``.
    """

    def __init__(
        self, encoder: TextEncoder, executor: concurrent.futures.Executor, max_batch: int = 64
    ):
        self.encoder = encoder
        self.executor = executor
        self.max_batch = max_batch
        self._pending: list[tuple[list[str], asyncio.Future]] = []
        self._draining = False
        self.batches = 0  # encode calls made (for tests and metrics)

    async def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` (float32, one row per text)."""
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((texts, fut))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, size = [], 0
                while self._pending and (
                    not batch or size + len(self._pending[0][0]) <= self.max_batch
                ):
                    texts, fut = self._pending.pop(0)
                    if fut.done():  # the caller gave up (deadline): do not encode for nobody
                        continue
                    batch.append((texts, fut))
                    size += len(texts)
                if not batch:
                    continue
                flat = [t for texts, _ in batch for t in texts]
                try:
                    vecs = await loop.run_in_executor(self.executor, self.encoder.encode, flat)
                    vecs = np.asarray(vecs, dtype=np.float32)
                except Exception as exc:  # noqa: BLE001  (handed to every waiting caller)
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self.batches += 1
                at = 0
                for texts, fut in batch:
                    if not fut.done():
                        fut.set_result(vecs[at : at + len(texts)])
                    at += len(texts)
        finally:
            self._draining = False


def _unavailable(exc: BaseException) -> bool:
    from server.errors import status_for

    return status_for(exc) == grpc.StatusCode.UNAVAILABLE


async def _retrying(context, config: ServerConfig, make: Callable[[], Awaitable]):
    """``await make()`` within the deadline, retrying while the shards are unavailable.

    ``make`` builds a fresh awaitable per attempt. Writes are safe to retry: an upsert or a
    delete applied twice leaves the same state.
    """
    delay = config.backend_backoff_s
    for attempt in range(config.backend_retries + 1):
        try:
            return await within_deadline(context, make())
        except Exception as exc:  # noqa: BLE001  (only UNAVAILABLE is retried)
            if attempt == config.backend_retries or not _unavailable(exc):
                raise
            pause = delay * (0.5 + random.random())
            remaining = context.time_remaining()
            if remaining is not None and remaining <= pause:
                raise
            log.debug("shards unavailable (%s), retry %d in %.2fs", exc, attempt + 1, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, config.backend_backoff_max_s)
    raise AssertionError("unreachable")  # pragma: no cover


_rpc = rpc_method(SERVICE_NAME)


class RecommendationServicer(pb_grpc.RecommendationServiceServicer):
    """``jobrec.v1.RecommendationService`` over a ``RecommendationBackend``."""

    def __init__(
        self,
        backend: Backend,
        encoder: TextEncoder | None,
        rules: RuleConfig,
        *,
        executor: concurrent.futures.Executor,
        config: ServerConfig,
        matching: MatchService | None = None,
    ) -> None:
        self.backend = backend
        self.encoder = encoder
        self.rules = rules
        self.executor = executor
        self.config = config
        # postings written here also reach the seekers' matching index (when it is served)
        self.matching = matching
        self._batcher: EncodeBatcher | None = None

    def _today(self) -> dt.date:
        return self.rules.ref_date or dt.date.today()

    async def encode(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """W-BERT vectors of canonical rows, computed off the event loop."""
        if self.encoder is None:
            raise InvalidInputError(
                "this server has no encoder: inline postings are not supported", field="posting"
            )
        if self._batcher is None:
            self._batcher = EncodeBatcher(self.encoder, self.executor)
        return await self._batcher.encode([posting_text(r) for r in rows])

    def _inline_row(self, posting: pb.Posting) -> dict[str, Any]:
        row = convert.posting_to_dict(posting, prefix="posting", inline=True, today=self._today())
        return convert.validated_frame([row], prefix="posting", indexed=False).row(0, named=True)

    @_rpc
    async def SimilarPostings(self, request: pb.SimilarPostingsRequest, context):
        k = convert.validate_k(request.k)
        rules = convert.rules_from_overrides(
            self.rules, request.rules, has=request.HasField("rules")
        )
        try:
            return await self._similar(request, context, k, rules)
        except InvalidInputError as exc:
            # the backend names rule fields bare ("capital_radius_km"): say where they live
            if exc.field in convert.RULE_FIELDS:
                raise InvalidInputError(str(exc), field=f"rules.{exc.field}") from exc
            raise

    async def _similar(self, request, context, k: int, rules: RuleConfig):
        which = request.WhichOneof("query")
        if which == "posting_id":
            pid = request.posting_id.strip()
            if not pid:
                raise InvalidInputError("posting_id must not be empty", field="posting_id")
            recs = await _retrying(
                context, self.config, lambda: self.backend.asimilar(pid, k=k, rules=rules)
            )
        elif which == "posting":
            # validation runs polars (a few ms per posting): off the event loop, so by-id
            # requests do not queue behind it
            loop = asyncio.get_running_loop()
            row = await loop.run_in_executor(None, self._inline_row, request.posting)
            pid = row["posting_id"]

            vec = await within_deadline(context, self.encode([row]))
            recs = await _retrying(
                context, self.config,
                lambda: self.backend.asimilar_to(row, vec[0], k=k, rules=rules),
            )  # fmt: skip
        else:
            raise InvalidInputError("set either posting_id or posting", field="query")
        return convert.similar_response(
            recs, query_posting_id=pid, rules=rules, today=self._today()
        )

    @_rpc
    async def UpsertPostings(self, request_iterator, context):
        rows: list[dict[str, Any]] = []
        async for msg in request_iterator:
            if len(rows) >= self.config.max_upsert_postings:
                raise InvalidInputError(
                    f"at most {self.config.max_upsert_postings} postings per call", field="postings"
                )
            rows.append(convert.posting_to_dict(msg, prefix=f"postings[{len(rows)}]"))
        if not rows:
            return pb.UpsertSummary(inserted=0, updated=0, received=0)
        df = convert.validated_frame(rows, prefix="postings")

        vectors = await within_deadline(context, self.encode(rows))
        # once writing starts it finishes even if the deadline passes meanwhile: a write
        # cancelled half-way would leave the shards disagreeing about these postings
        result = await _retrying(
            context, self.config, lambda: asyncio.shield(self.backend.aupsert(df, vectors))
        )
        if self.matching is not None:  # recommendable to seekers at once, too
            await asyncio.shield(asyncio.to_thread(self.matching.upsert_postings, df, vectors))
        return pb.UpsertSummary(
            inserted=int(result.inserted), updated=int(result.updated), received=len(rows)
        )

    @_rpc
    async def DeletePostings(self, request: pb.DeletePostingsRequest, context):
        ids = list(request.posting_ids)
        if not ids:
            raise InvalidInputError("posting_ids must not be empty", field="posting_ids")
        if len(ids) > self.config.max_delete_ids:
            raise InvalidInputError(
                f"at most {self.config.max_delete_ids} ids per call", field="posting_ids"
            )
        for i, pid in enumerate(ids):
            if not pid.strip():
                raise InvalidInputError("posting id must not be empty", field=f"posting_ids[{i}]")

        result = await _retrying(  # shielded: see UpsertPostings
            context, self.config, lambda: asyncio.shield(self.backend.adelete(ids))
        )
        if self.matching is not None:
            await asyncio.shield(asyncio.to_thread(self.matching.delete_postings, ids))
        return pb.DeleteSummary(deleted=int(result.deleted), not_found=list(result.not_found))

    @_rpc
    async def GetPosting(self, request: pb.GetPostingRequest, context):
        pid = request.posting_id.strip()
        if not pid:
            raise InvalidInputError("posting_id must not be empty", field="posting_id")
        row = await _retrying(context, self.config, lambda: self.backend.aget(pid))
        return convert.posting_from_row(row)


class JobrecServer:
    """The whole gRPC server around one backend; ``await start()``, ``await stop()``."""

    def __init__(
        self,
        backend: Backend,
        encoder: TextEncoder | None,
        rules: RuleConfig,
        config: ServerConfig | None = None,
        *,
        course_rules: CourseRuleConfig | None = None,
        matching: MatchService | None = None,
        key_scopes: dict[str, frozenset[str]] | None = None,
    ) -> None:
        self.backend = backend
        self.encoder = encoder
        self.rules = rules
        # a core.course_rules.CourseRuleConfig: also serve jobrec.v1.CourseService
        self.course_rules = course_rules
        # a workers.matching.service.MatchService: also serve jobrec.v1.MatchingService (the
        # key scopes decide who may see candidates)
        self.matching = matching
        self.key_scopes = key_scopes or {}
        self.config = config or ServerConfig()
        self.metrics = Metrics()
        self.limiter = InFlightLimiter(self.config.max_in_flight)
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.encode_threads, thread_name_prefix="jobrec-encode"
        )
        self._health_task: asyncio.Task | None = None
        if "on_append" in vars(backend):  # a StoredBackend: time its durable writes
            backend.on_append = self.metrics.store_append.observe
        if "on_switch" in vars(backend) and hasattr(encoder, "follow"):
            # a refresh switch-over brings a new lexical half: inline postings follow it
            backend.on_switch = self._follow_lexical
        self._services: tuple[str, ...] = (SERVICE_NAME,)

    def _follow_lexical(self, generation: str) -> None:
        import tempfile

        from encoding.hybrid import saved_weight
        from encoding.lexical import LexicalModel
        from workers.store.generation import lexical_from_store

        with tempfile.TemporaryDirectory() as tmp:
            d = lexical_from_store(self.backend.store, generation, tmp)
            if d is None:
                log.warning("generation %s has no lexical model; inline postings keep the "
                            "previous one", generation)
                return
            self.encoder.follow(LexicalModel.load(d), saved_weight(d))  # calls see old or new
        log.info("inline encoding follows generation %s's lexical model", generation)

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        # outermost first: metrics see every call (also rejected ones); unauthenticated calls
        # are rejected before they take an in-flight slot
        chain: list[grpc.aio.ServerInterceptor] = [
            MetricsInterceptor(self.metrics, access_log=self.config.access_log)
        ]
        if self.config.api_keys:
            chain.append(ApiKeyInterceptor(self.config.api_keys))
        # bytes that do not decode: INVALID_ARGUMENT, not UNKNOWN with a traceback
        chain.append(DecodeGuard())
        chain.append(self.limiter)
        return chain

    async def start(self) -> int:
        """Bind, start serving and return the bound port."""
        cfg = self.config
        options = [
            ("grpc.max_receive_message_length", cfg.max_receive_message_bytes),
            ("grpc.max_send_message_length", cfg.max_send_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(interceptors=self._interceptors(), options=options)
        servicer = RecommendationServicer(
            self.backend, self.encoder, self.rules, executor=self._executor, config=cfg,
            matching=self.matching,
        )
        pb_grpc.add_RecommendationServiceServicer_to_server(servicer, server)
        services = [SERVICE_NAME]
        if self.course_rules is not None:
            from server.courses import CourseServicer, add_course_service

            services.append(add_course_service(server, CourseServicer(
                self.backend, self.encoder, self.course_rules, executor=self._executor,
                inline_row=servicer._inline_row,
                seekers=None if self.matching is None else self.matching.seeker_row,
            )))  # fmt: skip
        if self.matching is not None:
            from server.matching import SERVICE_NAME as MATCHING_SERVICE_NAME
            from server.matching import MatchingServicer, add_to_server

            add_to_server(MatchingServicer(self.matching, self.key_scopes), server)
            services.append(MATCHING_SERVICE_NAME)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*services, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{cfg.host}:{cfg.port}"
        if cfg.tls_cert is not None:
            creds = grpc.ssl_server_credentials(
                [(Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes())]
            )
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"could not bind {address}")
        if self.encoder is not None and cfg.warm_up_encoder:
            await self._warm_up_encoder()
        await server.start()
        self._server, self.port, self._services = server, port, tuple(services)
        for name in ("", *services):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if cfg.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(cfg.metrics_port, cfg.metrics_host)
        if cfg.health_interval_s > 0:
            self._health_task = asyncio.create_task(self._watch_backend())
        log.info(
            "serving",
            extra={
                "address": f"{cfg.host}:{port}",
                "tls": cfg.tls_cert is not None,
                "auth": bool(cfg.api_keys),
                "metrics_port": self.metrics_port,
                "max_in_flight": cfg.max_in_flight,
            },
        )
        return port

    async def _warm_up_encoder(self) -> None:
        """One encode before serving: the first call loads the Kiwi pre-tokeniser and sets
        up the model's kernels (over a second), which would otherwise land on the first
        inline request. A failure is logged; inline requests will report it."""
        loop = asyncio.get_running_loop()
        text = posting_text({"title": "웜업 공고", "description": "서버 시작 시 인코더 준비"})
        try:
            await loop.run_in_executor(self._executor, self.encoder.encode, [text])
        except Exception as exc:  # noqa: BLE001
            log.warning("encoder warm-up failed: %s", exc)

    async def check_backend(self) -> bool:
        """Ask the backend whether its shards answer; update the health service accordingly."""
        loop = asyncio.get_running_loop()
        try:
            if "maybe_switch" in dir(type(self.backend)):  # a StoredBackend: refresh flipped?
                try:
                    await loop.run_in_executor(None, self.backend.maybe_switch)
                except Exception as exc:  # noqa: BLE001  (the old generation keeps serving)
                    log.warning("switch-over failed, still serving the old generation: %s", exc)
                await loop.run_in_executor(None, self.backend.heal)  # empty restarted shards
            report = await loop.run_in_executor(None, self.backend.health)
            ok = bool(report.get("ok", True)) if isinstance(report, Mapping) else bool(report)
            size = report.get("postings") if isinstance(report, Mapping) else None
            if size is not None:
                self.metrics.indexed_postings.set(size)
            if isinstance(report, Mapping):
                report = dict(report)
                if "store_lag" in dir(type(self.backend)):  # a StoredBackend
                    report["store"] = await loop.run_in_executor(None, self.backend.store_lag)
                self.metrics.observe_backend(report)
        except Exception as exc:  # noqa: BLE001  (any failure means "not serving")
            log.warning("backend health check failed: %s", exc)
            ok = False
        match_ok = True
        switch = getattr(self.matching, "maybe_switch", None)  # a new matching generation?
        if switch is not None:
            try:
                await loop.run_in_executor(None, switch)
            except Exception as exc:  # noqa: BLE001  (the old generation keeps serving)
                log.warning("matching switch-over failed, still serving the old one: %s", exc)
        probe = getattr(self.matching, "health", None)  # the match shard actors' frontend
        if probe is not None:
            try:
                match_ok = bool((await loop.run_in_executor(None, probe))["ok"])
            except Exception as exc:  # noqa: BLE001  (any failure means "not serving")
                log.warning("matching shards health check failed: %s", exc)
                match_ok = False
        from server.matching import SERVICE_NAME as MATCHING_SERVICE_NAME

        for name in self._services:
            serving = ok and (match_ok or name != MATCHING_SERVICE_NAME)
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING if serving
                                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        return ok

    async def _watch_backend(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            await self.check_backend()

    async def wait(self) -> None:
        """Until the server stops."""
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, let in-flight ones finish for ``grace`` seconds, stop."""
        if self._health_task is not None:
            self._health_task.cancel()
            self._health_task = None
        if self._server is not None:
            await self.health.enter_graceful_shutdown()
            await self._server.stop(self.config.grace_s if grace is None else grace)
            self._server = None
        self.metrics.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


class BackgroundServer:
    """A :class:`JobrecServer` on its own event loop in a daemon thread.

    Lets synchronous code (tests, the demo, benchmarks) run a real server in-process and call
    it through a real channel.
    """

    def __init__(self, server: JobrecServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="jobrec-grpc"
        )
        self._thread.start()

    def _run(self, coro, timeout: float | None = 60):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> int:
        """Start the server; return its port."""
        return self._run(self.server.start())

    @property
    def port(self) -> int:
        assert self.server.port is not None  # noqa: S101
        return self.server.port

    def call(self, coro, timeout: float | None = 60):
        """Run a coroutine on the server's loop (e.g. ``server.check_backend()``)."""
        return self._run(coro, timeout)

    def stop(self, grace: float = 0.5) -> None:
        """Stop the server and its loop."""
        try:
            self._run(self.server.stop(grace))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
