"""Fixed-window counters (contract §3.3): shared in Redis, batched per event-loop turn, local when Redis fails.

Why not the `limits` package: its storages pay one Redis round trip per hit, and one round trip per request
costs more here than the whole rest of the middleware stack. The counters below send the increments of every
request waiting in the same turn as one pipelined INCRBY per key, and each request reads its own exact count
from its key's total. The in-process fallback is a dict of the same windows, so limits stay enforced per
worker while Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refapi.resilience.fallback import FailOpen, Skipped

WINDOW_SECONDS = 60
KEY_PREFIX = "refapi:rl:"
REDIS_TIMEOUT = 0.25  # seconds before a Redis batch is given up for the local counters
REDIS_RETRY_AFTER = 5.0  # seconds Redis is left alone after a failure (read when a RateCounter is made)


@dataclass(frozen=True, slots=True)
class Hit:
    """The outcome of counting one request in its window."""

    count: int
    reset: int  # whole seconds to the end of the window, >= 1


def window_of(now: float) -> tuple[int, int]:
    """(window number, whole seconds left): windows are aligned to the UTC minute."""
    window = int(now // WINDOW_SECONDS)
    left = (window + 1) * WINDOW_SECONDS - now
    return window, max(1, math.ceil(left))


class LocalCounters:
    """Per-process windows: the fallback, and what a worker uses when Redis is not configured at all."""

    def __init__(self) -> None:
        self._window = -1
        self._counts: dict[str, int] = {}

    def incr(self, key: str, window: int, amount: int = 1) -> int:
        if window > self._window:  # a new minute: the old windows can never be asked for again
            self._window, self._counts = window, {}
        elif window < self._window:
            return amount  # a late straggler from the previous minute: that window is over
        count = self._counts.get(key, 0) + amount
        self._counts[key] = count
        return count


class RateCounter:
    """Counts hits per key and window; Redis when it answers within REDIS_TIMEOUT, else the local counters."""

    def __init__(
        self,
        redis: Callable[[], Any | None],
        *,
        clock: Callable[[], float] = time.time,
        gate: FailOpen | None = None,
    ) -> None:
        self._redis = redis  # returns the current client (standalone or cluster), or None
        self._clock = clock  # wall clock: the windows are UTC minutes, the same in every worker and instance
        # The same fail-open rule as the response cache's, but a gate of its own: each skips Redis only after
        # its own calls failed.
        self.gate = gate or FailOpen("rate limiter (redis)", timeout=REDIS_TIMEOUT, skip_for=REDIS_RETRY_AFTER)
        self.local = LocalCounters()
        self._pending: dict[tuple[int, str], list[asyncio.Future[int]]] = {}
        self._flush_scheduled = False
        self._in_flight = False

    async def hit(self, key: str) -> Hit:
        now = self._clock()
        window, reset = window_of(now)
        if self._redis() is None or self.gate.skipping:
            return Hit(self.local.incr(key, window), reset)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.setdefault((window, key), []).append(future)
        if not self._flush_scheduled and not self._in_flight:
            self._flush_scheduled = True
            # Runs after every callback already queued: the requests of this loop turn join one batch.
            asyncio.get_running_loop().call_soon(self._schedule_now)
        return Hit(await future, reset)

    def _schedule_now(self) -> None:
        self._flush_scheduled = False
        if self._in_flight or not self._pending:
            return  # the batch in flight sends whatever is waiting when it lands
        batch, self._pending = self._pending, {}
        self._in_flight = True
        task = asyncio.get_running_loop().create_task(self._send(batch))
        task.add_done_callback(self._after_send)

    def _after_send(self, task: asyncio.Task[None]) -> None:
        self._in_flight = False
        if self._pending:
            self._schedule_now()

    async def _send(self, batch: dict[tuple[int, str], list[asyncio.Future[int]]]) -> None:
        try:
            totals = await self._redis_totals(batch)
        except Skipped:  # failed, timed out, or skipped since a recent failure: never fail the request
            totals = [self.local.incr(key, window, len(waiters)) for (window, key), waiters in batch.items()]
        except asyncio.CancelledError:  # shutdown: no request may wait forever for this batch
            for waiters in batch.values():
                for waiter in waiters:
                    waiter.cancel()
            raise
        for waiters, total in zip(batch.values(), totals, strict=True):
            # The key's waiters took the last len(waiters) counts, in arrival order.
            first = total - len(waiters) + 1
            for offset, waiter in enumerate(waiters):
                if not waiter.done():  # its request may have been cancelled meanwhile
                    waiter.set_result(first + offset)

    async def _redis_totals(self, batch: dict[tuple[int, str], list[asyncio.Future[int]]]) -> list[int]:
        """Each key's new total after one pipelined INCRBY per key; raises Skipped when Redis cannot be used."""
        client = self._redis()
        if client is None:  # the backend went away between the hit and the flush
            raise Skipped(self.gate.name)

        async def send() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for (window, key), waiters in batch.items():
                redis_key = f"{KEY_PREFIX}{window}:{key}"
                pipe.incrby(redis_key, len(waiters))
                pipe.expire(redis_key, WINDOW_SECONDS + 5)  # a few seconds of grace for clock skew between hosts
            return list(await pipe.execute())

        results = await self.gate.call(send)
        return [int(total) for total in results[0::2]]
