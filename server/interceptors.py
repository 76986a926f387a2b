"""Generic grpc.aio handler wrapping, and the in-flight bound (RESOURCE_EXHAUSTED).

grpc.aio interceptors only see the handler, not the call; :func:`wrap_handler` rebuilds a
handler of the same RPC kind whose behaviour runs inside an async context manager, which is
how metrics and the in-flight bound observe every call, streaming ones included.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import grpc

log = logging.getLogger("jobrec.server")

Around = Callable[[str, grpc.aio.ServicerContext], AbstractAsyncContextManager]


async def _maybe_await(value):
    if inspect.isawaitable(value):
        return await value
    return value


def wrap_handler(handler: grpc.RpcMethodHandler, method: str, around: Around):
    """A handler of the same kind as ``handler`` whose behaviour runs inside ``around``."""
    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        inner = handler.stream_stream
        factory = grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        inner = handler.stream_unary
        factory = grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        inner = handler.unary_stream
        factory = grpc.unary_stream_rpc_method_handler
    else:
        inner = handler.unary_unary
        factory = grpc.unary_unary_rpc_method_handler

    if handler.response_streaming and inspect.isasyncgenfunction(inner):

        async def gen_behavior(request, context) -> AsyncIterator:
            async with around(method, context):
                async for item in inner(request, context):
                    yield item

        return factory(gen_behavior, **kw)

    async def behavior(request, context):
        async with around(method, context):
            return await _maybe_await(inner(request, context))

    return factory(behavior, **kw)


class InFlightLimiter(grpc.aio.ServerInterceptor):
    """At most ``max_in_flight`` calls at once; the next one gets RESOURCE_EXHAUSTED.

    Rejecting instead of queueing keeps latency bounded under overload: the caller (or its
    load balancer) retries elsewhere. The health service is exempt so probes keep working.
    """

    def __init__(self, max_in_flight: int, exempt: tuple[str, ...] = ("/grpc.health.v1.",)):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.rejected = 0
        self._exempt = exempt

    @contextlib.asynccontextmanager
    async def _slot(self, method: str, context: grpc.aio.ServicerContext):
        if self.in_flight >= self.max_in_flight:
            self.rejected += 1
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {self.in_flight} requests in flight (limit {self.max_in_flight})",
            )
        # single event loop: no lock needed between the check and the increment
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self._exempt):
            return handler
        return wrap_handler(handler, method, self._slot)


class Undecodable:
    """What a guarded deserializer returns for bytes that are not a valid message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _guarded(deserializer: Callable[[bytes], object] | None) -> Callable[[bytes], object] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001  (DecodeError, or anything a parser raises)
            # protobuf says "Error parsing message with type 'X': Wire format was corrupt";
            # keep the part after the type, which is what the caller can act on
            reason = str(exc).rsplit(": ", 1)[-1] or type(exc).__name__
            return Undecodable(reason[:200])

    return deserialize


class DecodeGuard(grpc.aio.ServerInterceptor):
    """Requests that do not decode get INVALID_ARGUMENT with a short reason.

    grpc.aio runs the request deserializer inside the call and reports anything it raises as
    UNKNOWN ("Unexpected DecodeError") with a traceback in the log. Here the deserializer
    returns an :class:`Undecodable` marker instead and the handler aborts cleanly; the one
    log line is the access line of :class:`server.metrics.MetricsInterceptor`.
    """

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        guarded = _guarded(handler.request_deserializer)

        async def check(request, context):
            if isinstance(request, Undecodable):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"request does not decode: {request.reason}"
                )
            return request

        if handler.request_streaming:

            async def checked_stream(request_iterator, context):
                async for request in request_iterator:
                    yield await check(request, context)

            def adapt(inner):
                if inspect.isasyncgenfunction(inner):

                    async def gen(request_iterator, context):
                        async for item in inner(checked_stream(request_iterator, context), context):
                            yield item

                    return gen

                async def call(request_iterator, context):
                    return await _maybe_await(
                        inner(checked_stream(request_iterator, context), context)
                    )

                return call

        else:

            def adapt(inner):
                async def call(request, context):
                    return await _maybe_await(inner(await check(request, context), context))

                if inspect.isasyncgenfunction(inner):

                    async def gen(request, context):
                        async for item in inner(await check(request, context), context):
                            yield item

                    return gen
                return call

        return _rebuild(handler, adapt, request_deserializer=guarded)


def _rebuild(handler: grpc.RpcMethodHandler, adapt, **overrides) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour replaced by ``adapt(behaviour)``."""
    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
        **overrides,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(adapt(handler.stream_stream), **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(adapt(handler.stream_unary), **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(adapt(handler.unary_stream), **kw)
    return grpc.unary_unary_rpc_method_handler(adapt(handler.unary_unary), **kw)
