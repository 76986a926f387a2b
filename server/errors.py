"""The one table mapping ``core.errors`` classes to gRPC status codes.

Anything not in the table becomes ``INTERNAL``: the traceback is logged with a reference id
and the caller only sees the id, never the traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from core.errors import (
    AlreadyExistsError,
    InvalidInputError,
    JobrecError,
    MalformedSourceError,
    ModelError,
    NotConfiguredError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    UnavailableError,
    UpstreamApiError,
)

log = logging.getLogger("jobrec.server")

# Most specific class first: the first isinstance match wins.
STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (MalformedSourceError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UpstreamApiError, grpc.StatusCode.UNAVAILABLE),
    (ModelError, grpc.StatusCode.FAILED_PRECONDITION),
    (NotConfiguredError, grpc.StatusCode.FAILED_PRECONDITION),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
)

# Ray errors that mean "the shard actors cannot be reached"; matched by class name so this
# module does not import ray. The backend should already raise UnavailableError for these.
_RAY_UNAVAILABLE = frozenset(
    {
        "RayActorError",
        "ActorDiedError",
        "ActorUnavailableError",
        "ActorUnschedulableError",
        "NodeDiedError",
        "RaySystemError",
        "ObjectLostError",
        "OwnerDiedError",
    }
)

# Trailing metadata of an UNAVAILABLE: when to try again. gRPC clients with a retry policy in
# their service config honour it (gRFC A6 "server pushback"); see server/README.md.
RETRY_PUSHBACK_METADATA_KEY = "grpc-retry-pushback-ms"
RETRY_PUSHBACK_MS = 1000

# Trailing-metadata key carrying the offending field of an INVALID_ARGUMENT.
FIELD_METADATA_KEY = "jobrec-field"
# Trailing-metadata key carrying the log reference of an INTERNAL error.
ERROR_ID_METADATA_KEY = "jobrec-error-id"


@dataclass(frozen=True)
class MappedError:
    """A gRPC status for an exception: code, caller-visible details, trailing metadata."""

    code: grpc.StatusCode
    details: str
    metadata: tuple[tuple[str, str], ...] = ()


def _is_ray_unavailable(exc: BaseException) -> bool:
    return any(
        cls.__name__ in _RAY_UNAVAILABLE and cls.__module__.startswith("ray")
        for cls in type(exc).__mro__
    )


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code of an exception (``INTERNAL`` when unmapped)."""
    for cls, code in STATUS_TABLE:
        if isinstance(exc, cls):
            return code
    if _is_ray_unavailable(exc):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def map_exception(exc: BaseException, *, method: str = "") -> MappedError:
    """Translate ``exc`` for the caller; log unmapped errors with their traceback."""
    code = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        ref = uuid.uuid4().hex[:12]
        log.error(
            "unhandled error in %s (error_id=%s)",
            method or "rpc",
            ref,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return MappedError(
            code, f"internal error (error_id={ref})", ((ERROR_ID_METADATA_KEY, ref),)
        )
    if isinstance(exc, InvalidInputError) and exc.field:
        return MappedError(
            code, f"invalid {exc.field}: {exc}", ((FIELD_METADATA_KEY, str(exc.field)),)
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return MappedError(code, "deadline exceeded before the request completed")
    if code == grpc.StatusCode.UNAVAILABLE:
        # only after the server's own retries: a shard is gone, not merely restarting
        what = str(exc) if isinstance(exc, JobrecError) and str(exc) else type(exc).__name__
        what = what if len(what) <= 200 else what[:200] + "..."
        return MappedError(
            code,
            f"recommendation shards unavailable: {what}; retry in {RETRY_PUSHBACK_MS} ms",
            ((RETRY_PUSHBACK_METADATA_KEY, str(RETRY_PUSHBACK_MS)),),
        )
    return MappedError(code, str(exc) or type(exc).__name__)


# Status details travel as an HTTP/2 header: clients drop a call whose headers exceed 16 KiB
# (RESOURCE_EXHAUSTED "metadata size exceeds hard limit"), so a 200 kB id echoed in a
# NOT_FOUND would turn a clear answer into a transport error.
MAX_DETAILS_CHARS = 1000


def _short(text: str, limit: int = MAX_DETAILS_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} chars)"


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException, method: str = ""):
    """Abort the RPC with the status mapped from ``exc`` (raises ``grpc.aio.AbortError``)."""
    if isinstance(exc, asyncio.CancelledError):  # the caller went away: nothing to report
        raise exc
    mapped = map_exception(exc, method=method)
    metadata = tuple((k, _short(v, 200)) for k, v in mapped.metadata)
    await context.abort(mapped.code, _short(mapped.details), trailing_metadata=metadata)


def rpc_method(service: str, adapt: Callable[[BaseException], BaseException] | None = None):
    """Decorator for the servicer methods of ``service``: every exception a method raises is
    answered with its status through :func:`abort_with` (``adapt`` may first rewrite it,
    e.g. to prefix a field name); aborts and cancellations pass through."""

    def decorate(method: Callable) -> Callable:
        name = f"/{service}/{method.__name__}"

        @functools.wraps(method)
        async def wrapper(self, request, context):
            try:
                return await method(self, request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001  (mapped, and logged when unmapped)
                await abort_with(context, adapt(exc) if adapt is not None else exc, name)

        return wrapper

    return decorate
