"""Every backend call goes through a Guard: breaker admission, BACKEND_TIMEOUT, duration metric, error mapping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from refapi import errors, keys
from refapi.metrics import Metrics
from refapi.resilience.breaker import CircuitBreaker, State

T = TypeVar("T")

# Maps a backend exception to a 503 reason ("unreachable", "auth_failed", ...), or None when the exception
# is not a backend failure at all (it will propagate unchanged and count as a success for the breaker).
Classifier = Callable[[BaseException], str | None]
NEUTRAL_REASONS = frozenset({"denied", "not_configured", "cluster_disabled"})


class Guard:
    def __init__(
        self, service: str, *, breaker: CircuitBreaker, timeout: float, metrics: Metrics, classify: Classifier
    ) -> None:
        self.service = service
        self.breaker = breaker
        self.timeout = timeout
        self._metrics = metrics
        self._classify = classify

    async def call(self, operation: str, fn: Callable[[], Awaitable[T]], *, timeout: float | None = None) -> T:
        """Run `fn()` against the backend.

        Request-caused ApiErrors (not found, conflict, ...) pass through and count as successes; backend
        failures become ServiceUnavailable and count towards opening the breaker; while it is open the
        backend is not touched at all.
        """
        breaker = self.breaker
        permit = breaker.try_acquire()
        if permit is None:
            raise errors.CircuitOpen(self.service, breaker.seconds_to_half_open())
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                result = await fn()
        except TimeoutError:
            breaker.record_failure(permit)
            raise errors.ServiceUnavailable(self.service, "timeout") from None
        except errors.ServiceUnavailable as exc:
            # Refusals that say nothing about the backend's health must not open the breaker.
            if exc.reason in NEUTRAL_REASONS:
                breaker.record_success(permit)
            else:
                breaker.record_failure(permit)
            raise
        except errors.ApiError:
            breaker.record_success(permit)
            raise
        except asyncio.CancelledError:
            breaker.release(permit)
            raise
        except Exception as exc:
            reason = self._classify(exc)
            if reason is None:
                breaker.record_success(permit)
                raise
            breaker.record_failure(permit)
            raise errors.ServiceUnavailable(self.service, reason) from exc
        else:
            breaker.record_success(permit)
            return result
        finally:
            self._metrics.observe(
                self._metrics.backend_duration, self.service, operation, value=time.perf_counter() - started
            )


def make_guard(app: web.Application, service: str, classify: Classifier) -> Guard:
    """The service's guard, configured from settings, registered on the app, breaker wired to the metrics."""
    settings, metrics = app[keys.SETTINGS], app[keys.METRICS]

    def on_transition(name: str, to: State) -> None:
        metrics.child(metrics.breaker_state, name).set(int(to))
        metrics.child(metrics.breaker_transitions, name, to.label).inc()

    breaker = CircuitBreaker(
        service,
        failure_threshold=settings.circuit_breaker_failure_threshold,
        reset_timeout=settings.circuit_breaker_reset_timeout,
        on_transition=on_transition,
    )
    metrics.child(metrics.breaker_state, service).set(0)
    guard = Guard(service, breaker=breaker, timeout=settings.backend_timeout, metrics=metrics, classify=classify)
    app[keys.GUARDS][service] = guard
    return guard
