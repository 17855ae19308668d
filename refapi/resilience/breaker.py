"""A circuit breaker per backend per worker (contract §3.4): closed → open → half-open with a single probe.

Written here rather than taken from purgatory or circuitbreaker: the contract fixes the states, the single
half-open probe, Retry-After from the time left, and the gauge/transition metrics; adapting either library's
listener and exception model to that took more code than the state machine itself.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("refapi.breaker")


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


Listener = Callable[[str, State], None]


@dataclass(frozen=True, slots=True)
class Permit:
    """One admitted call. Its outcome only counts in the state it was admitted in (its generation): a slow call
    let in before the breaker opened must neither close an open breaker nor decide a half-open probe's fate."""

    generation: int
    probe: bool


class CircuitBreaker:
    def __init__(
        self,
        service: str,
        *,
        failure_threshold: int,
        reset_timeout: float,
        on_transition: Listener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._on_transition = on_transition
        self._clock = clock
        self._state = State.CLOSED
        self._generation = 0  # bumped by every transition
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() - self._opened_at >= self.reset_timeout:
            self._transition(State.HALF_OPEN)
        return self._state

    def seconds_to_half_open(self) -> float:
        """How long a rejected caller should wait; in half-open, the probe is out, so try again shortly."""
        if self.state is State.OPEN:
            return self.reset_timeout - (self._clock() - self._opened_at)
        return 1.0

    def try_acquire(self) -> Permit | None:
        """A permit to call the backend now, or None to fail fast. In half-open only one probe is let through."""
        state = self.state
        if state is State.CLOSED:
            return Permit(self._generation, probe=False)
        if state is State.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return Permit(self._generation, probe=True)
        return None

    def record_success(self, permit: Permit) -> None:
        if permit.generation != self._generation:
            return
        self._failures = 0
        if self._state is not State.CLOSED:
            self._transition(State.CLOSED)

    def record_failure(self, permit: Permit) -> None:
        if permit.generation != self._generation:
            return
        if self._state is State.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open()

    def release(self, permit: Permit) -> None:
        """A call that ended without telling us anything (cancelled): free the probe slot for the next caller."""
        if permit.probe and permit.generation == self._generation:
            self._probe_in_flight = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._transition(State.OPEN)

    def _transition(self, to: State) -> None:
        log.warning(
            "circuit breaker %s: %s -> %s",
            self.service,
            self._state.label,
            to.label,
            extra={"service": self.service, "from_state": self._state.label, "to_state": to.label},
        )
        self._state = to
        self._generation += 1
        self._failures = 0
        self._probe_in_flight = False
        if self._on_transition is not None:
            self._on_transition(self.service, to)
