"""API-key authentication: a grpc.aio server interceptor.

Keys come from ``JOBREC_API_KEYS`` (comma separated) and/or a key file (one key per line,
``#`` comments). An entry ``KEY:scope1+scope2`` gives the key scopes (e.g. ``candidates``,
needed by ``RecommendCandidates``); the key itself is the part before the colon. With no keys configured authentication is off. Callers send
``authorization: Bearer <key>`` metadata; the standard health service is exempt so load
balancers and Kubernetes probes need no key.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import grpc

from core.errors import InvalidInputError

log = logging.getLogger("jobrec.server.auth")

ENV_VAR = "JOBREC_API_KEYS"
EXEMPT_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/",)


def load_api_keys(key_file: str | Path | None = None, *, env: dict | None = None) -> frozenset:
    """Keys from the ``JOBREC_API_KEYS`` environment variable and the optional key file."""
    return frozenset(load_key_scopes(key_file, env=env))


def load_key_scopes(key_file: str | Path | None = None, *,
                    env: dict | None = None) -> dict[str, frozenset[str]]:
    """Key -> its scopes, from the same sources as :func:`load_api_keys`."""
    out: dict[str, frozenset[str]] = {}
    for entry in _entries(key_file, env):
        key, _, scopes = entry.partition(":")
        key = key.strip()
        if key:
            out[key] = out.get(key, frozenset()) | {s.strip() for s in scopes.split("+") if s.strip()}
    return out


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The ``authorization: Bearer <token>`` value of ``metadata``, if any."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
    return None


def caller_scopes(metadata, key_scopes: dict[str, frozenset[str]]) -> frozenset[str]:
    """The scopes of the caller's key (constant-time comparison; empty when unknown)."""
    token = bearer_token(metadata)
    if token is None:
        return frozenset()
    given = token.encode()
    found: frozenset[str] = frozenset()
    for key, scopes in key_scopes.items():
        if hmac.compare_digest(given, key.encode()):
            found = scopes
    return found


def _entries(key_file: str | Path | None, env: dict | None) -> list[str]:
    env = os.environ if env is None else env
    keys = [k.strip() for k in env.get(ENV_VAR, "").split(",") if k.strip()]
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise InvalidInputError(f"API key file {path} does not exist", field="api_keys_file")
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(line)
    return keys


def _deny_handler(handler: grpc.RpcMethodHandler, details: str) -> grpc.RpcMethodHandler:
    """A handler of the same RPC kind as ``handler`` that fails with UNAUTHENTICATED."""

    async def unary(_request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    async def stream_in(_request_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    async def stream_out(_request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)
        yield  # pragma: no cover  (makes this an async generator)

    async def stream_both(_request_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)
        yield  # pragma: no cover

    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(stream_both, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(stream_in, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(stream_out, **kw)
    return grpc.unary_unary_rpc_method_handler(unary, **kw)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without a configured ``authorization: Bearer <key>`` (health exempt)."""

    def __init__(self, keys: Iterable[str], exempt: tuple[str, ...] = EXEMPT_PREFIXES) -> None:
        self._keys = tuple(k.encode() for k in keys)
        if not self._keys:
            raise ValueError("ApiKeyInterceptor needs at least one key")
        self._exempt = exempt

    def authorized(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        """True when ``metadata`` carries a known bearer key (constant-time comparison)."""
        for key, value in metadata or ():
            if key.lower() != "authorization":
                continue
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer":
                continue
            given = token.strip().encode()
            # compare against every key so timing does not reveal which prefix matched
            if any([hmac.compare_digest(given, k) for k in self._keys]):
                return True
        return False

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(self._exempt):
            return handler
        if self.authorized(handler_call_details.invocation_metadata):
            return handler
        log.warning("unauthenticated call to %s", method)
        return _deny_handler(handler, "missing or invalid API key (authorization: Bearer <key>)")
