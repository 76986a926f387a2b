"""Coalescing concurrent calls to one actor method into batched calls.

A Ray call costs about as much CPU as a search itself, so under load most of the per-query
cost is saved by sending the queries that arrive together as one ``*_many`` call. Used by
:class:`workers.backend.RecommendationBackend` (similar postings, courses) and
:class:`workers.matching.frontend.ShardedMatchService` (matching).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

CALLS_IN_FLIGHT = 2  # coalesced calls in flight per target: the actor never waits for a batch
MAX_BATCH = 32  # queries per coalesced call


class Coalescer:
    """Queries for one target from one event loop, sent together through ``send`` (a list
    of queries -> an awaitable list of answers, one per query; an answer that is an exception
    is raised to its caller).

    A query goes out at once when fewer than ``CALLS_IN_FLIGHT`` calls are in flight;
    otherwise it waits for the next call, together with every query that arrives meanwhile.
    Nothing waits for a timer, so an idle system answers each query with one call.
    """

    def __init__(self, send: Callable[[list], Awaitable[list]]) -> None:
        self.send = send
        self.pending: list[tuple[Any, asyncio.Future]] = []
        self.in_flight = 0
        self.calls = 0  # calls made (tests, stats)

    async def submit(self, query: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((query, fut))
        if self.in_flight < CALLS_IN_FLIGHT:
            self._launch()
        value = await fut
        if isinstance(value, BaseException):
            raise value
        return value

    def _launch(self) -> None:
        # callers that gave up (deadline, cancellation) are not sent
        batch = [(r, f) for r, f in self.pending[:MAX_BATCH] if not f.done()]
        del self.pending[:MAX_BATCH]
        if not batch:
            return
        self.in_flight += 1
        self.calls += 1
        asyncio.get_running_loop().create_task(self._call(batch))

    async def _call(self, batch) -> None:
        try:
            answers = await self.send([q for q, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
            answers = [exc] * len(batch)
        finally:
            self.in_flight -= 1
            if self.pending:
                self._launch()
        for (_, fut), answer in zip(batch, answers, strict=True):
            if not fut.done():
                fut.set_result(answer)
