"""Rate limiting end to end: one count shared by every worker, exact headers, proxies, and Redis outages."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.mmap_dict import MmapedDict
from redis.asyncio import Redis

from refapi import keys
from refapi.app import build_app
from refapi.resilience import rate_limit
from refapi.resilience.rate_limit import KEY_PREFIX, window_of
from tests.conftest import ClientFactory
from tests.integration.resilience.conftest import (
    REDIS,
    SettingsFactory,
    client_address,
    eventually,
    forwarded,
    fresh_window,
    redis_at,
    seconds_to_window_end,
)
from tests.support.contract import checked
from tests.support.processes import free_port, gunicorn
from tests.support.tcp_proxy import TcpProxy

Client = TestClient[Any, web.Application]


def assert_reset_matches_the_window(response: aiohttp.ClientResponse, sent: float, received: float) -> None:
    """X-RateLimit-Reset is the whole seconds left in the UTC minute at the moment the server counted."""
    reset = int(response.headers["X-RateLimit-Reset"])
    assert math.ceil(seconds_to_window_end(received)) <= reset <= math.ceil(seconds_to_window_end(sent))


async def assert_rejected(response: aiohttp.ClientResponse, scope: str, limit: int) -> None:
    body = await checked(response)
    assert response.status == 429 and body["error"] == "RateLimitExceeded"
    assert body["details"] == {"scope": scope, "limit": limit}
    assert response.headers["Retry-After"] == response.headers["X-RateLimit-Reset"]
    assert response.headers["X-RateLimit-Remaining"] == "0"


# ---- several gunicorn workers ----------------------------------------------------------------------------------

LIMIT, EXTRA, GROUP = 6, 9, 3


def worker_env(metrics_dir: Path) -> dict[str, str]:
    """Only Redis is real (the limiter's counters); every other backend is a closed port, touched by nothing."""
    closed = str(free_port())
    return {
        "WORKERS": "3",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "RATE_LIMIT_HEALTH": str(LIMIT),
        "TRUSTED_PROXIES": "127.0.0.1",
        "REDIS_HOST": REDIS[0],
        "REDIS_PORT": str(REDIS[1]),
        "REDIS_NODES": f"redis-1={REDIS[0]}:{REDIS[1]}",
        "VAULT_ADDR": f"http://127.0.0.1:{closed}",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": closed,
        "MYSQL_HOST": "127.0.0.1",
        "MYSQL_PORT": closed,
        "MONGODB_HOST": "127.0.0.1",
        "MONGODB_PORT": closed,
        "RABBITMQ_HOST": "127.0.0.1",
        "RABBITMQ_PORT": closed,
        "RABBITMQ_MANAGEMENT_URL": f"http://127.0.0.1:{closed}",
    }


def served_per_worker(metrics_dir: Path, route: str) -> dict[str, float]:
    """Requests each worker answered on `route`, whatever the status, read from its own multiprocess counter file."""
    served = {}
    for path in metrics_dir.glob("counter_*.db"):
        total = 0.0
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            _, sample, labels, *_ = json.loads(key)  # [metric, sample name, labels, help]
            if sample == "http_requests_total" and labels.get("route") == route:
                total += value
        served[path.stem] = total
    return served


async def test_workers_share_one_count_per_client(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    with gunicorn(worker_env(metrics_dir), log_path=tmp_path / "gunicorn.log") as port:
        url = f"http://127.0.0.1:{port}/health/"
        # A fresh connection per request lets any worker accept it. The kernel decides which; an attempt that
        # happened to land on a single worker proves nothing, so it is repeated (as another client) until the
        # requests were answered by at least two workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:

            async def send(address: str) -> list[aiohttp.ClientResponse]:
                # Small concurrent groups: concurrent enough to share batches, spread enough to reach every worker
                # (one burst tends to be drained from the listening socket by whichever worker wakes first).
                responses: list[aiohttp.ClientResponse] = []
                for _ in range(0, LIMIT + EXTRA, GROUP):
                    group = (session.get(url, headers=forwarded(address)) for _ in range(GROUP))
                    responses += await asyncio.gather(*group)
                return responses

            # The port answers as soon as the first worker listens; wait until all three have built their app.
            deadline = time.monotonic() + 30
            while len(list(metrics_dir.glob("gauge_max_*.db"))) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # bounded poll for the other workers' start, not synchronisation
            for _ in range(30):
                address = client_address()
                before = served_per_worker(metrics_dir, "/health/")
                await fresh_window(needed=10)
                sent = time.time()
                responses = await send(address)
                received = time.time()
                after = served_per_worker(metrics_dir, "/health/")
                if sum(1 for name, count in after.items() if count > before.get(name, 0.0)) >= 2:
                    break
                for response in responses:
                    response.release()
            else:
                pytest.fail("thirty attempts in a row were all served by a single worker")
            try:
                ok = [response for response in responses if response.status == 200]
                rejected = [response for response in responses if response.status != 200]
                # Per-worker limits would let more through: with two workers answering at least one request
                # each, they would admit more than LIMIT of the LIMIT + EXTRA requests.
                assert len(ok) == LIMIT and len(rejected) == EXTRA
                assert sorted(int(response.headers["X-RateLimit-Remaining"]) for response in ok) == list(range(LIMIT))
                for response in responses:
                    assert response.headers["X-RateLimit-Limit"] == str(LIMIT)
                    assert_reset_matches_the_window(response, sent, received)
                    await checked(response)
                for response in rejected:
                    await assert_rejected(response, "health", LIMIT)
            finally:
                for response in responses:
                    response.release()


# ---- one worker, in process ------------------------------------------------------------------------------------


async def test_headers_count_down_and_reset_with_the_minute(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    client = await make_client(build_app(make_settings(rate_limit_general=3, **redis_at(*REDIS))))
    address = client_address()
    await fresh_window(needed=3)
    sent = time.time()
    responses = [await client.get("/", headers=forwarded(address)) for _ in range(4)]
    received = time.time()
    assert [response.status for response in responses] == [200, 200, 200, 429]
    assert [response.headers["X-RateLimit-Remaining"] for response in responses] == ["2", "1", "0", "0"]
    for response in responses:
        assert_reset_matches_the_window(response, sent, received)
        await checked(response)
    await assert_rejected(responses[-1], "general", 3)


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    # Redis is unreachable here: each app counts on its own, so the two never see each other's requests.
    direct = await make_client(build_app(make_settings(rate_limit_general=2, trusted_proxies=())))
    behind_proxy = await make_client(build_app(make_settings(rate_limit_general=2)))
    await fresh_window(needed=3)

    # An untrusted peer cannot pick a new identity per request: every request counts against the peer.
    statuses = [(await direct.get("/", headers=forwarded(client_address()))).status for _ in range(3)]
    assert statuses == [200, 200, 429]

    first, second = client_address(), client_address()
    statuses = [(await behind_proxy.get("/", headers=forwarded(first))).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert (await behind_proxy.get("/", headers=forwarded(second))).status == 200
    # Read right to left, trusted hops skipped: the same client behind a second (trusted) proxy is still limited.
    assert (await behind_proxy.get("/", headers=forwarded(f"{first}, 127.0.0.1"))).status == 429
    # A malformed chain falls back to the peer, which has its own, untouched count.
    response = await behind_proxy.get("/", headers=forwarded(f"{first}, not-an-address"))
    assert response.status == 200 and response.headers["X-RateLimit-Remaining"] == "1"


async def test_concurrent_requests_share_few_redis_round_trips(
    make_client: ClientFactory, make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests, limit = 60, 1000
    client = await make_client(build_app(make_settings(rate_limit_general=limit, **redis_at(*REDIS))))
    redis_client = client.app[keys.REDIS].client
    original = redis_client.pipeline
    round_trips = 0

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        nonlocal round_trips
        round_trips += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(redis_client, "pipeline", counting_pipeline)
    address = client_address()
    await fresh_window(needed=5)
    responses = await asyncio.gather(*(client.get("/", headers=forwarded(address)) for _ in range(requests)))
    assert all(response.status == 200 for response in responses)
    remaining = sorted(int(response.headers["X-RateLimit-Remaining"]) for response in responses)
    assert remaining == list(range(limit - requests, limit))  # every request got its own exact count
    # Requests waiting in the same loop turn (or behind the batch in flight) share one pipelined round trip.
    assert 1 <= round_trips <= requests // 6


# ---- Redis outages ---------------------------------------------------------------------------------------------


@pytest.fixture
async def redis() -> Any:
    client = Redis(host=REDIS[0], port=REDIS[1])
    yield client
    await client.aclose()


async def counted_in_redis(redis: Redis, scope: str, address: str) -> int | None:
    value = await redis.get(f"{KEY_PREFIX}{window_of(time.time())[0]}:{scope}:{address}")
    return None if value is None else int(value)


@pytest.mark.parametrize("outage", ["refuse", "blackhole"])
async def test_limits_hold_per_worker_while_redis_is_down_and_are_shared_again_after(
    outage: str,
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    redis_proxy: TcpProxy,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read when a worker's counter is made: a short pause keeps the test quick; the behaviour is the same.
    monkeypatch.setattr(rate_limit, "REDIS_RETRY_AFTER", 0.5)
    limit = 3
    settings = make_settings(rate_limit_general=limit, **redis_at(redis_proxy.host, redis_proxy.port))
    # Two workers of one deployment: two apps with their own counters, reaching Redis through the proxy.
    workers = [await make_client(build_app(settings)) for _ in range(2)]

    async def statuses(worker: Client, address: str, count: int) -> list[int]:
        return [(await worker.get("/", headers=forwarded(address))).status for _ in range(count)]

    # Redis up: one count for both workers.
    address = client_address()
    await fresh_window(needed=3)
    assert await statuses(workers[0], address, 2) + await statuses(workers[1], address, 2) == [200, 200, 200, 429]
    assert await counted_in_redis(redis, "general", address) == 4

    # Redis down: every request is still served, and each worker enforces the limit on its own.
    getattr(redis_proxy, outage)()
    redis_proxy.cut()
    address = client_address()
    await fresh_window(needed=3)
    for worker in workers:
        assert await statuses(worker, address, limit + 1) == [200] * limit + [429]
    assert await counted_in_redis(redis, "general", address) is None

    # Redis back: once each worker's pause is over, the count is shared again.
    redis_proxy.passthrough()
    redis_proxy.cut()  # black-holed connections stay silent for good

    async def shared() -> bool:
        address = client_address()
        await fresh_window(needed=3)
        await workers[0].get("/", headers=forwarded(address))
        response = await workers[1].get("/", headers=forwarded(address))
        return response.headers["X-RateLimit-Remaining"] == str(limit - 2)

    await eventually(shared)
