"""Prometheus metrics (contract §3.7): one instance per app, multiprocess-aware, with cached label children."""

from __future__ import annotations

import asyncio
import bisect
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from refapi import __version__

UNMATCHED_ROUTE = "<unmatched>"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class Metrics:
    """All of refapi's metrics; the label children used on every request are cached, since .labels() is costly."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        # Under gunicorn the values live in mmap files shared through PROMETHEUS_MULTIPROC_DIR and /metrics
        # aggregates them; a single process (refapi serve, tests) keeps them in this app's own registry.
        self.registry = CollectorRegistry()
        self._multiprocess = multiprocess_dir() is not None
        own = None if self._multiprocess else self.registry
        self.http_requests = Counter(
            "http_requests_total", "HTTP responses sent", ["method", "route", "status"], registry=own
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Time to produce a response",
            ["method", "route"],
            registry=own,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.http_in_progress = Gauge(
            "http_requests_in_progress",
            "Requests being handled",
            ["method", "route"],
            registry=own,
            multiprocess_mode="livesum",
        )
        self.http_errors = Counter("http_errors_total", "Error envelopes sent", ["error", "status"], registry=own)
        self.app_info = Gauge(
            "app_info", "Application information", ["version", "name"], registry=own, multiprocess_mode="max"
        )
        self.cache_hits = Counter("cache_hits_total", "Response cache hits", ["route"], registry=own)
        self.cache_misses = Counter("cache_misses_total", "Response cache misses", ["route"], registry=own)
        self.rate_limit_rejections = Counter(
            "rate_limit_rejections_total", "Requests rejected by the rate limiter", ["scope"], registry=own
        )
        self.breaker_state = Gauge(
            "circuit_breaker_state",
            "0 closed, 1 half-open, 2 open",
            ["service"],
            registry=own,
            multiprocess_mode="livemax",
        )
        self.breaker_transitions = Counter(
            "circuit_breaker_transitions_total", "Circuit breaker state changes", ["service", "to"], registry=own
        )
        self.backend_duration = Histogram(
            "backend_request_duration_seconds",
            "Time spent in backend calls",
            ["service", "operation"],
            registry=own,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.app_info.labels(__version__, "refapi").set(1)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._rendering: asyncio.Future[bytes] | None = None
        # Observations of this loop turn, written to prometheus_client in one go by flush(): under gunicorn every
        # write to a value is a locked write into a shared mmap, and a request makes several. Keyed by (metric,
        # label values); the label children are looked up only when writing.
        self._added: dict[tuple[Any, tuple[str, ...]], float] = {}
        self._observed: dict[tuple[Any, tuple[str, ...]], list[float]] = {}  # [sum, count per bucket...]
        self._flush_scheduled = False
        self._active = 0  # requests between request_started and request_finished

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def add(self, metric: Any, *labels: str, amount: float = 1.0) -> None:
        """Add `amount` to a counter or gauge (negative for a gauge going down) at the end of this turn."""
        key = (metric, labels)
        self._added[key] = self._added.get(key, 0.0) + amount
        self._schedule_flush()

    def observe(self, histogram: Any, *labels: str, value: float) -> None:
        """Observe `value` in a histogram at the end of this turn."""
        key = (histogram, labels)
        sums = self._observed.get(key)
        if sums is None:
            sums = self._observed[key] = [0.0] * (len(histogram._upper_bounds) + 1)
        sums[0] += value
        # The bucket of the first upper bound >= value, as Histogram.observe picks it (the last bound is +Inf).
        sums[1 + bisect.bisect_left(histogram._upper_bounds, value)] += 1
        self._schedule_flush()

    def request_started(self, method: str, route: str) -> None:
        self._active += 1
        self.add(self.http_in_progress, method, route)

    def request_finished(self, method: str, route: str, status: int, duration: float) -> None:
        self._active -= 1
        self.add(self.http_in_progress, method, route, amount=-1.0)
        self.add(self.http_requests, method, route, str(status))
        self.observe(self.http_duration, method, route, value=duration)
        if not self._active:
            # Nothing else to batch with: write now, so a request served alone is counted before its response
            # leaves (batched ones are counted at the end of the turn, microseconds after theirs).
            self.flush()

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the event loop nothing batches the writes
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write this turn's observations: one write per value touched, however many requests touched it."""
        self._flush_scheduled = False
        added, self._added = self._added, {}
        observed, self._observed = self._observed, {}
        for (metric, labels), amount in added.items():
            if amount:
                self.child(metric, *labels).inc(amount)
        for (histogram, labels), (total, *counts) in observed.items():
            child = self.child(histogram, *labels)
            # Histogram children have no public "observe many"; these are the values Histogram.observe writes.
            child._sum.inc(total)
            for bucket, count in zip(child._buckets, counts, strict=True):
                if count:
                    bucket.inc(count)

    async def scrape(self) -> bytes:
        """The exposition text, rendered off the event loop; concurrent scrapes share one rendering.

        Aggregating every worker's files costs milliseconds of CPU, so when scrapes pile up each one joins
        the rendering already under way instead of queueing its own behind it.
        """
        self.flush()
        if self._rendering is None:
            self._rendering = asyncio.get_running_loop().run_in_executor(None, self.render)
            self._rendering.add_done_callback(self._rendered)
        return await asyncio.shield(self._rendering)

    def _rendered(self, _: asyncio.Future[bytes]) -> None:
        self._rendering = None

    def render(self) -> bytes:
        if not self._multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
