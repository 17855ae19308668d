"""Fixed-window counters (contract §3.3): shared in Redis, increments batched, local when Redis fails.

Why not the `limits` package: its storages pay one Redis round trip per hit, and one round trip per request
costs more here than the whole rest of the middleware stack. The counters below send the increments of every
request of one batch (refapi.batching) as one pipelined INCRBY per key, and each request reads its own exact
count from its key's total. The in-process fallback is a dict of the same windows, so limits stay enforced per
worker while Redis is unreachable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refapi.batching import Coalescer
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
        self._batches: Coalescer[tuple[int, str], int] = Coalescer(self._count)

    async def hit(self, key: str) -> Hit:
        window, reset = window_of(self._clock())
        if self._redis() is None or self.gate.skipping:
            return Hit(self.local.incr(key, window), reset)
        return Hit(await self._batches.submit((window, key)), reset)

    async def _count(self, hits: list[tuple[int, str]]) -> list[int]:
        """Each hit's count, from one INCRBY per key for the whole batch (local counts when Redis fails)."""
        per_key: dict[tuple[int, str], int] = {}
        for hit in hits:
            per_key[hit] = per_key.get(hit, 0) + 1
        try:
            totals = await self._redis_totals(per_key)
        except Skipped:  # failed, timed out, or skipped since a recent failure: never fail the request
            totals = [self.local.incr(key, window, amount) for (window, key), amount in per_key.items()]
        # A key's hits took the last `amount` counts of its new total, in arrival order.
        next_count = {hit: total - amount + 1 for (hit, amount), total in zip(per_key.items(), totals, strict=True)}
        counts = []
        for hit in hits:
            counts.append(next_count[hit])
            next_count[hit] += 1
        return counts

    async def _redis_totals(self, per_key: dict[tuple[int, str], int]) -> list[int]:
        """Each key's new total after one pipelined INCRBY per key; raises Skipped when Redis cannot be used."""
        client = self._redis()
        if client is None:  # the backend went away between the hit and the flush
            raise Skipped(self.gate.name)

        async def send() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for (window, key), amount in per_key.items():
                redis_key = f"{KEY_PREFIX}{window}:{key}"
                pipe.incrby(redis_key, amount)
                pipe.expire(redis_key, WINDOW_SECONDS + 5)  # a few seconds of grace for clock skew between hosts
            return list(await pipe.execute())

        results = await self.gate.call(send)
        return [int(total) for total in results[0::2]]
