"""Circuit breaker and guard: thresholds, fail-fast while open, single half-open probe, metrics."""

from __future__ import annotations

import asyncio

import pytest

from refapi import errors, keys
from refapi.app import build_app
from refapi.config import Settings
from refapi.resilience.breaker import CircuitBreaker, Permit, State
from refapi.resilience.guard import make_guard


def admit(breaker: CircuitBreaker) -> Permit:
    permit = breaker.try_acquire()
    assert permit is not None, f"the breaker is {breaker.state.label} and rejected the call"
    return permit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_consecutive_failures_and_success_resets_the_count() -> None:
    breaker = CircuitBreaker("postgres", failure_threshold=3, reset_timeout=60, clock=Clock())
    for _ in range(2):
        breaker.record_failure(admit(breaker))
    breaker.record_success(admit(breaker))
    for _ in range(2):
        breaker.record_failure(admit(breaker))
    assert breaker.state is State.CLOSED
    breaker.record_failure(admit(breaker))
    assert breaker.state is State.OPEN and breaker.try_acquire() is None


def test_half_open_lets_one_probe_through_and_its_outcome_decides() -> None:
    clock = Clock()
    transitions: list[tuple[str, State]] = []
    breaker = CircuitBreaker(
        "redis",
        failure_threshold=1,
        reset_timeout=60,
        clock=clock,
        on_transition=lambda name, to: transitions.append((name, to)),
    )
    breaker.record_failure(admit(breaker))
    clock.now += 59.5
    assert breaker.try_acquire() is None and breaker.seconds_to_half_open() == pytest.approx(0.5)
    clock.now += 0.5
    probe = admit(breaker)
    assert probe.probe
    assert breaker.try_acquire() is None and breaker.seconds_to_half_open() == 1.0  # everyone else fails fast
    breaker.record_failure(probe)  # the probe failed: open again for a full timeout
    assert breaker.state is State.OPEN and breaker.seconds_to_half_open() == pytest.approx(60)
    clock.now += 60
    breaker.record_success(admit(breaker))
    assert breaker.state is State.CLOSED and breaker.try_acquire() is not None
    assert [to for _, to in transitions] == [State.OPEN, State.HALF_OPEN, State.OPEN, State.HALF_OPEN, State.CLOSED]


def test_outcomes_of_calls_admitted_before_a_transition_are_ignored() -> None:
    clock = Clock()
    breaker = CircuitBreaker("postgres", failure_threshold=2, reset_timeout=1, clock=clock)
    slow_success, slow_failure = admit(breaker), admit(breaker)  # still running when the breaker opens
    breaker.record_failure(admit(breaker))
    breaker.record_failure(admit(breaker))
    breaker.record_success(slow_success)
    assert breaker.state is State.OPEN  # a success from before the outage does not close it
    clock.now += 1
    probe = admit(breaker)
    breaker.record_failure(slow_failure)
    assert breaker.state is State.HALF_OPEN  # nor does an old failure decide the probe's fate...
    assert breaker.try_acquire() is None  # ...or free its slot
    breaker.record_success(probe)
    assert breaker.state is State.CLOSED


def test_a_cancelled_probe_frees_the_slot_for_the_next_caller() -> None:
    clock = Clock()
    breaker = CircuitBreaker("redis", failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure(admit(breaker))
    clock.now += 5
    breaker.release(admit(breaker))
    assert breaker.state is State.HALF_OPEN
    assert admit(breaker).probe


def app_guard(**overrides):  # type: ignore[no-untyped-def]
    app = build_app(
        Settings(
            circuit_breaker_failure_threshold=2, circuit_breaker_reset_timeout=30, backend_timeout=0.05, **overrides
        )
    )
    return app, make_guard(app, "mysql", lambda exc: "unreachable" if isinstance(exc, ConnectionError) else None)


async def test_guard_maps_failures_to_503_and_then_fails_fast_without_calling() -> None:
    _, guard = app_guard()
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("connection refused")

    for _ in range(2):
        with pytest.raises(errors.ServiceUnavailable) as failed:
            await guard.call("query", refused)
        assert failed.value.details == {"service": "mysql", "reason": "unreachable"}
    with pytest.raises(errors.CircuitOpen) as rejected:
        await guard.call("query", refused)
    assert calls == 2  # the backend was not touched while open
    assert rejected.value.headers["Retry-After"] == "30"
    assert rejected.value.details == {"service": "mysql"}


async def test_guard_times_out_and_request_errors_count_as_success() -> None:
    _, guard = app_guard()

    async def hangs() -> None:
        await asyncio.sleep(10)

    async def not_found() -> None:
        raise errors.NotFound(resource_type="queue", resource_id="q")

    with pytest.raises(errors.ServiceUnavailable) as timed_out:
        await guard.call("query", hangs)
    assert timed_out.value.details["reason"] == "timeout"
    with pytest.raises(errors.NotFound):
        await guard.call("query", not_found)
    with pytest.raises(errors.ServiceUnavailable):
        await guard.call("query", hangs)
    assert guard.breaker.state is State.CLOSED  # the 404 in between reset the consecutive count


async def test_breaker_metrics_record_state_and_transitions() -> None:
    app, guard = app_guard()

    async def refused() -> None:
        raise ConnectionError

    for _ in range(2):
        with pytest.raises(errors.ServiceUnavailable):
            await guard.call("query", refused)
    text = (await app[keys.METRICS].scrape()).decode()
    assert 'circuit_breaker_state{service="mysql"} 2.0' in text
    assert 'circuit_breaker_transitions_total{service="mysql",to="open"} 1.0' in text
    assert 'backend_request_duration_seconds_count{operation="query",service="mysql"} 2.0' in text
