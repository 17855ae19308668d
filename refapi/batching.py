"""Coalescing: what concurrent requests ask of Redis in nearby moments leaves as one pipelined round trip.

A redis-py round trip costs tens of microseconds of CPU in this process however few commands it carries, more
than the rest of a request's middleware. So items submitted while a batch is in flight, or within INTERVAL of
the last one, wait and leave together. An idle service sends at the end of the loop turn an item arrived in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# At most one batch per this many seconds, so under load each batch carries every request of that interval;
# it is also the most a request waits for its batch to leave.
INTERVAL = 0.001


class Coalescer(Generic[Item, Result]):
    """`await submit(item)` → that item's result from `send(items)`, which answers a whole batch in order."""

    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Result]]], *, interval: float = INTERVAL) -> None:
        self._send = send
        self._interval = interval
        self._items: list[Item] = []
        self._waiters: list[asyncio.Future[Result]] = []
        self._scheduled = False
        self._in_flight: asyncio.Task[None] | None = None
        self._last_sent = float("-inf")

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Result] = loop.create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        if not self._scheduled and self._in_flight is None:
            self._schedule(loop)
        return await waiter

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = True
        delay = self._last_sent + self._interval - loop.time()
        if delay > 0:
            loop.call_later(delay, self._flush)
        else:  # after every callback already queued, so the requests of this loop turn join
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._in_flight is not None or not self._items:
            return
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        self._in_flight = loop.create_task(self._answer(items, waiters))
        self._in_flight.add_done_callback(self._landed)

    def _landed(self, _: asyncio.Task[None]) -> None:
        self._in_flight = None
        if self._items and not self._scheduled:
            self._schedule(asyncio.get_running_loop())

    async def _answer(self, items: list[Item], waiters: list[asyncio.Future[Result]]) -> None:
        try:
            results = await self._send(items)
        except asyncio.CancelledError:  # shutdown: no request may wait forever for this batch
            for waiter in waiters:
                waiter.cancel()
            raise
        except Exception as exc:
            for waiter in waiters:
                if not waiter.done():  # its request may have been cancelled meanwhile
                    waiter.set_exception(exc)
            return
        for waiter, result in zip(waiters, results, strict=True):
            if not waiter.done():
                waiter.set_result(result)
