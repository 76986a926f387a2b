"""The caller's gRPC deadline applied to an awaitable (shared by every servicer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import grpc


async def within_deadline(context: grpc.aio.ServicerContext, aw: Awaitable):
    """Await ``aw`` but give up (TimeoutError → DEADLINE_EXCEEDED) at the caller's deadline."""
    remaining = context.time_remaining()
    if remaining is None:
        return await aw
    if remaining <= 0:
        if asyncio.iscoroutine(aw):
            aw.close()
        raise TimeoutError("deadline exceeded")
    # asyncio.timeout cancels this task at the deadline; unlike wait_for it does not wrap
    # ``aw`` in a task of its own (measurably cheaper per request)
    async with asyncio.timeout(remaining):
        return await aw
