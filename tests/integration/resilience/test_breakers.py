"""Circuit breakers against a real PostgreSQL behind a fault-injecting proxy: open, fail fast, probe, close."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from refapi import keys
from refapi.app import build_app
from refapi.resilience.breaker import State
from tests.conftest import ClientFactory
from tests.integration.resilience.conftest import Account, SettingsFactory, eventually
from tests.support.contract import checked
from tests.support.tcp_proxy import TcpProxy
from tests.unit.test_metrics import sample

Client = TestClient[Any, web.Application]
QUERY = "/examples/database/postgres/query"
THRESHOLD = 5
BACKEND_TIMEOUT = 1.0
TO = ("open", "half_open", "closed")


@pytest.fixture
async def client(
    make_client: ClientFactory, make_settings: SettingsFactory, postgres_account: Account, postgres_proxy: TcpProxy
) -> Client:
    """PostgreSQL through the proxy, a one-second reset time and backend timeout; nothing else is reachable."""
    settings = make_settings(
        postgres_host=postgres_proxy.host,
        postgres_port=postgres_proxy.port,
        postgres_user=postgres_account.user,
        postgres_password=postgres_account.password,
        postgres_db=postgres_account.database,
        # No idle minimum: asyncpg reconnects a pool below its minimum in the background, and these tests count
        # the connections that requests make.
        db_pool_min=0,
        db_pool_max=2,
        circuit_breaker_failure_threshold=THRESHOLD,
        circuit_breaker_reset_timeout=1,
        backend_timeout=BACKEND_TIMEOUT,
        rate_limit_enabled=False,
    )
    return await make_client(build_app(settings))


async def query(client: Client) -> tuple[aiohttp.ClientResponse, Any]:
    response = await client.get(QUERY)
    return response, await checked(response)


def breaker_state(client: Client) -> State:
    # Reading the state is what moves an open breaker whose reset time is over to half-open.
    return client.app[keys.GUARDS]["postgres"].breaker.state


async def transitions(client: Client) -> dict[str, float | None]:
    text = await checked(await client.get("/metrics"))
    counts = {to: sample(text, "circuit_breaker_transitions_total", service="postgres", to=to) for to in TO}
    counts["state"] = sample(text, "circuit_breaker_state", service="postgres")
    return counts


async def open_the_breaker(client: Client, proxy: TcpProxy, reason: str) -> None:
    """THRESHOLD failing calls, each reaching the backend; then the next one fails fast without touching it."""
    for _ in range(THRESHOLD):
        before = proxy.connections_total
        response, body = await query(client)
        assert response.status == 503 and body["error"] == "ServiceUnavailable"
        assert body["details"] == {"service": "postgres", "reason": reason}
        assert proxy.connections_total > before  # the call did try the backend
    before = proxy.connections_total
    started = time.monotonic()
    response, body = await query(client)
    elapsed = time.monotonic() - started
    assert response.status == 503 and body["error"] == "CircuitOpen"
    assert body["details"] == {"service": "postgres"}
    assert int(response.headers["Retry-After"]) >= 1
    assert proxy.connections_total == before  # the backend saw nothing
    assert elapsed < BACKEND_TIMEOUT  # failed fast instead of waiting for the backend


async def close_after_the_reset_time(client: Client, proxy: TcpProxy) -> None:
    """With the backend back, callers fail fast until the reset time is over; then one probe passes and closes."""
    proxy.passthrough()
    proxy.cut()  # connections accepted while black-holed stay silent for good
    last: list[aiohttp.ClientResponse] = []

    async def served() -> bool:
        before = proxy.connections_total
        response, body = await query(client)
        last[:] = [response]
        if response.status == 503:
            assert body["error"] == "CircuitOpen" and proxy.connections_total == before
            return False
        return True

    await eventually(served)
    assert last[0].status == 200
    assert breaker_state(client) is State.CLOSED
    response, _ = await query(client)
    assert response.status == 200


async def test_refused_connections_open_the_breaker_and_a_probe_closes_it(
    client: Client, postgres_proxy: TcpProxy
) -> None:
    response, _ = await query(client)
    assert response.status == 200
    postgres_proxy.refuse()
    postgres_proxy.cut()  # the pool's open connections die with the "server"
    await open_the_breaker(client, postgres_proxy, "unreachable")
    assert await transitions(client) == {"open": 1.0, "half_open": None, "closed": None, "state": 2.0}
    await close_after_the_reset_time(client, postgres_proxy)
    assert await transitions(client) == {"open": 1.0, "half_open": 1.0, "closed": 1.0, "state": 0.0}


async def test_timeouts_open_the_breaker_and_a_failed_probe_reopens_it(
    client: Client, postgres_proxy: TcpProxy
) -> None:
    response, _ = await query(client)
    assert response.status == 200
    postgres_proxy.blackhole()
    postgres_proxy.cut()
    await open_the_breaker(client, postgres_proxy, "timeout")

    async def half_open() -> bool:
        return breaker_state(client) is State.HALF_OPEN

    await eventually(half_open)
    # Half-open, backend still silent: one caller is the probe and waits for the timeout, the other fails fast.
    outcomes = sorted(await asyncio.gather(query(client), query(client)), key=lambda outcome: outcome[1]["error"])
    (rejected, rejected_body), (_, probe_body) = outcomes
    assert rejected_body["error"] == "CircuitOpen" and rejected.headers["Retry-After"] == "1"
    assert probe_body["error"] == "ServiceUnavailable" and probe_body["details"]["reason"] == "timeout"
    assert breaker_state(client) is State.OPEN  # the failed probe reopened it for a full reset time
    assert await transitions(client) == {"open": 2.0, "half_open": 1.0, "closed": None, "state": 2.0}
    await close_after_the_reset_time(client, postgres_proxy)
    assert await transitions(client) == {"open": 2.0, "half_open": 2.0, "closed": 1.0, "state": 0.0}
