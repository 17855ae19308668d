"""Rate limiting: window alignment, exact batched counting in Redis, local fallback, headers and 429s."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from refapi.resilience import rate_limit
from refapi.resilience.fallback import FailOpen
from refapi.resilience.rate_limit import LocalCounters, RateCounter, window_of
from tests.conftest import ClientFactory
from tests.support.processes import free_port


def test_windows_are_aligned_to_the_utc_minute() -> None:
    assert window_of(120.0) == (2, 60)
    assert window_of(179.2) == (2, 1)
    assert window_of(179.99) == (2, 1)
    assert window_of(150.5) == (2, 30)


def test_local_counters_start_over_each_minute() -> None:
    counters = LocalCounters()
    assert [counters.incr("k", 1) for _ in range(3)] == [1, 2, 3]
    assert counters.incr("k", 2) == 1
    assert counters.incr("k", 1) == 1  # a straggler from a finished window is not counted into the new one


class CountingPipelines:
    """Wraps a client's pipeline() to count the batches (Redis round trips) the counter sends."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sent = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.sent += 1
        return self.client.pipeline(*args, **kwargs)


class SilentRedis:
    """A Redis that accepts pipelines and never answers, like a black-holed server."""

    def __init__(self) -> None:
        self.sent = 0

    def pipeline(self, *, transaction: bool) -> SilentRedis:
        return self

    def incrby(self, key: str, amount: int) -> None:
        pass

    def expire(self, key: str, seconds: int) -> None:
        pass

    async def execute(self) -> list[Any]:
        self.sent += 1
        await asyncio.get_running_loop().create_future()  # never resolved
        raise AssertionError("unreachable")


@pytest.fixture
async def redis_client():  # type: ignore[no-untyped-def]
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    yield client
    await client.aclose()


async def test_concurrent_hits_are_counted_exactly_in_one_batch(redis_client) -> None:  # type: ignore[no-untyped-def]
    clock = [1_000_000_000.0 + 7]  # a fixed instant: every hit falls into one window
    counting = CountingPipelines(redis_client)
    counter = RateCounter(lambda: counting, clock=lambda: clock[0])
    key = f"test-batch-{id(counter)}"
    hits = await asyncio.gather(*(counter.hit(key) for _ in range(50)))
    assert sorted(hit.count for hit in hits) == list(range(1, 51))
    assert counting.sent == 1  # fifty requests, one round trip
    window, _ = window_of(clock[0])
    assert int(await redis_client.get(f"{rate_limit.KEY_PREFIX}{window}:{key}")) == 50
    assert 0 < await redis_client.ttl(f"{rate_limit.KEY_PREFIX}{window}:{key}") <= 65


async def test_two_workers_share_one_count(redis_client) -> None:  # type: ignore[no-untyped-def]
    clock = lambda: 1_000_000_000.0 + 61  # noqa: E731 - a fixed instant
    first, second = RateCounter(lambda: redis_client, clock=clock), RateCounter(lambda: redis_client, clock=clock)
    key = f"test-shared-{id(first)}"
    counts = [(await first.hit(key)).count, (await second.hit(key)).count, (await first.hit(key)).count]
    assert counts == [1, 2, 3]


async def test_redis_failure_falls_back_to_local_counting_then_retries() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.1)
    counting = CountingPipelines(dead)
    elapsed = [0.0]
    gate = FailOpen("test redis", skip_for=rate_limit.REDIS_RETRY_AFTER, clock=lambda: elapsed[0])
    counter = RateCounter(lambda: counting, clock=lambda: 1_000_000_000.0 + 3, gate=gate)
    try:
        counts = [(await counter.hit("k")).count for _ in range(3)]
        assert counts == [1, 2, 3]  # still enforced, in-process
        assert counting.sent == 1  # after the failure, Redis is left alone for a while...
        elapsed[0] += rate_limit.REDIS_RETRY_AFTER + 0.1
        assert (await counter.hit("k")).count == 4  # ...then tried again (still failing: counted locally)
        assert counting.sent == 2
    finally:
        await dead.aclose()


async def test_requests_queued_behind_a_hanging_batch_do_not_wait_for_redis_again() -> None:
    silent = SilentRedis()
    counter = RateCounter(lambda: silent, clock=lambda: 1_000_000_000.0 + 3, gate=FailOpen("test redis", timeout=0.05))
    first = [asyncio.create_task(counter.hit("k")) for _ in range(10)]
    for _ in range(100):  # bounded: the batch starts within a couple of loop turns
        if silent.sent:
            break
        await asyncio.sleep(0)
    assert silent.sent == 1
    second = [asyncio.create_task(counter.hit("k")) for _ in range(10)]  # queued while the batch hangs
    hits = await asyncio.gather(*first, *second)
    assert sorted(hit.count for hit in hits) == list(range(1, 21))  # exact, from the local counters
    assert silent.sent == 1  # one timeout for everyone, not one per batch
    assert counter.gate.skipping


LIMITED = {"rate_limit_general": 3, "rate_limit_health": 2, "rate_limit_metrics": 5}


async def test_headers_count_down_and_the_limit_answers_429(make_client: ClientFactory) -> None:
    client = await make_client(**LIMITED)
    remaining = []
    for _ in range(3):
        resp = await client.get("/")
        assert resp.status == 200 and resp.headers["X-RateLimit-Limit"] == "3"
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
        assert 1 <= int(resp.headers["X-RateLimit-Reset"]) <= 60
    assert remaining == [2, 1, 0]
    resp = await client.get("/anything-unknown")  # unknown paths count, and are limited before routing
    body = await resp.json()
    assert resp.status == 429 and body["error"] == "RateLimitExceeded"
    assert body["details"] == {"scope": "general", "limit": 3}
    assert resp.headers["Retry-After"] == resp.headers["X-RateLimit-Reset"]
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert body["request_id"] == resp.headers["X-Request-ID"]
    metrics = await client.get("/metrics")
    assert 'rate_limit_rejections_total{scope="general"} 1.0' in await metrics.text()


async def test_scopes_are_counted_separately(make_client: ClientFactory) -> None:
    client = await make_client(**LIMITED)
    statuses = [(await client.get("/health/")).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    resp = await client.get("/health", allow_redirects=False)
    assert resp.status == 429 and (await resp.json())["details"]["scope"] == "health"
    assert (await client.get("/")).status == 200
    assert (await client.get("/metrics")).headers["X-RateLimit-Limit"] == "5"


async def test_preflights_are_neither_counted_nor_decorated(make_client: ClientFactory) -> None:
    client = await make_client(**LIMITED)
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"}
    for _ in range(5):
        resp = await client.options("/", headers=preflight)
        assert resp.status == 200 and "X-RateLimit-Limit" not in resp.headers
    assert (await client.get("/")).headers["X-RateLimit-Remaining"] == "2"


async def test_errors_carry_rate_limit_headers(make_client: ClientFactory) -> None:
    client = await make_client(**LIMITED)
    resp = await client.get("/missing")
    assert resp.status == 404 and resp.headers["X-RateLimit-Remaining"] == "2"


async def test_disabled_limiting_sends_no_headers(make_client: ClientFactory) -> None:
    client = await make_client(rate_limit_enabled=False, rate_limit_general=1)
    for _ in range(3):
        resp = await client.get("/")
        assert resp.status == 200 and "X-RateLimit-Limit" not in resp.headers
