"""Fail-open access to an optional dependency: short timeout, then skip it for a while after any failure."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("refapi.fallback")

# Contract §3.3/§3.5: the response cache and the rate limiter give Redis 250 ms, then do without it for 5 s.
DEFAULT_TIMEOUT = 0.25
DEFAULT_SKIP_FOR = 5.0


class Skipped(Exception):
    """The dependency failed, timed out or is being skipped: the caller takes its fallback path."""


class FailOpen:
    """Runs calls to a dependency the request can do without.

    Unlike the circuit breaker this never fails the request: a failure or timeout raises `Skipped`, and
    for `skip_for` seconds afterwards every call raises `Skipped` at once without touching the dependency,
    so a dead or black-holed Redis costs one timeout per period instead of one per request.
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        skip_for: float = DEFAULT_SKIP_FOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.skip_for = skip_for
        self._clock = clock
        self._skip_until = 0.0

    @property
    def skipping(self) -> bool:
        return self._clock() < self._skip_until

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`await fn()` within the timeout; raises `Skipped` (never anything else) when it cannot be used."""
        if self.skipping:
            raise Skipped(self.name)
        try:
            async with asyncio.timeout(self.timeout):
                return await fn()
        except Exception as exc:  # whatever went wrong, the caller's answer is the same: do without it
            self._skip_until = self._clock() + self.skip_for
            log.warning("%s unavailable (%s); skipping it for %gs", self.name, type(exc).__name__, self.skip_for)
            raise Skipped(self.name) from exc
