"""Messaging when the broker fails: refapi reaches RabbitMQ through a fault-injecting TCP proxy."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from refapi import keys
from refapi.app import build_app
from refapi.backends.credentials import CredentialStore
from refapi.config import Settings
from tests.integration.messaging.conftest import AMQP, Client, serve
from tests.support.contract import checked
from tests.support.processes import free_port
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Bound for the robust connection to notice a returning broker (it retries every 2 s) on a loaded machine.
RECOVERY_DEADLINE = 30.0
POLL_INTERVAL = 0.05
UNHEALTHY = {"status": "unhealthy", "error": "RabbitMQ connection failed"}


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy(*AMQP) as proxy:
        yield proxy


@pytest.fixture
def proxied(settings: Settings, proxy: TcpProxy) -> Settings:
    # A breaker that never opens: these tests watch the connection itself recover. A short BACKEND_TIMEOUT
    # also bounds the other backends' startup, which the machine may not run.
    return dataclasses.replace(
        settings, rabbitmq_port=proxy.port, circuit_breaker_failure_threshold=1_000_000, backend_timeout=2.0
    )


@pytest_asyncio.fixture(loop_scope="module")
async def through_proxy(proxied: Settings) -> AsyncIterator[Client]:
    async with serve(proxied) as client:
        yield client


async def eventually(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Poll `condition` (plain or async) until true, failing after RECOVERY_DEADLINE."""
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while not await _resolve(condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {RECOVERY_DEADLINE} s: {what}")
        await asyncio.sleep(POLL_INTERVAL)  # polling interval, bounded by the deadline


async def _resolve(value: bool | Awaitable[bool]) -> bool:
    return await value if inspect.isawaitable(value) else value


async def publish(client: Client, queue: str, message: dict[str, Any]) -> tuple[int, Any]:
    resp = await client.post(f"/examples/messaging/publish/{queue}", json=message)
    return resp.status, await checked(resp)


async def health(client: Client) -> Any:
    resp = await client.get("/health/rabbitmq")
    assert resp.status == 200
    return await checked(resp)


async def drain(client: Client, queue: str) -> list[Any]:
    bodies: list[Any] = []
    while True:
        resp = await client.get(f"/examples/messaging/consume/{queue}", params={"max_messages": "100"})
        assert resp.status == 200
        batch = (await checked(resp))["messages"]
        if not batch:
            return bodies
        bodies.extend(message["body"] for message in batch)


def assert_unavailable(status: int, body: Any, *reasons: str) -> None:
    assert status == 503, body
    assert body["error"] == "ServiceUnavailable"
    assert body["details"]["service"] == "rabbitmq" and body["details"]["reason"] in reasons


async def test_a_cut_connection_is_503_then_recovers_without_losing_a_confirmed_message(
    through_proxy: Client, proxy: TcpProxy, queue: str
) -> None:
    client = through_proxy
    confirmed: list[int] = []
    refused: list[dict[str, Any]] = []
    stop = asyncio.Event()
    counter = iter(range(1_000_000))

    async def publisher() -> None:
        # Publish without pause so that some publishes are in flight when the connection is cut.
        while not stop.is_set():
            n = next(counter)
            status, body = await publish(client, queue, {"n": n})
            if status == 200:
                confirmed.append(n)
            else:
                assert_unavailable(status, body, "unreachable", "timeout")
                refused.append(body)
                await asyncio.sleep(POLL_INTERVAL)  # pacing while the broker is away, not synchronisation

    publishers = [asyncio.create_task(publisher()) for _ in range(4)]
    try:
        await eventually(lambda: len(confirmed) >= 20, "20 messages confirmed before the cut")
        proxy.refuse()
        proxy.cut()
        confirmed_before_outage = len(confirmed)
        await eventually(lambda: len(refused) >= 10, "publishes answered 503 while the broker is away")
        assert await health(client) == UNHEALTHY
        # While the broker is unreachable the answer is immediate and says so.
        assert refused[-1]["details"]["reason"] == "unreachable"

        proxy.passthrough()
        resumed_from = len(confirmed)
        await eventually(lambda: len(confirmed) >= resumed_from + 20, "publishing to work again")
    finally:
        stop.set()
        await asyncio.gather(*publishers)

    assert confirmed_before_outage >= 20 and proxy.upstream_connections_total >= 2
    assert await health(client) == {"status": "healthy"}
    consumed = [body["n"] for body in await drain(client, queue)]
    missing = set(confirmed) - set(consumed)
    assert not missing, f"{len(missing)} message(s) confirmed with 200 were lost: {sorted(missing)[:10]}"


async def test_a_broker_down_at_startup_is_503_until_it_comes_back(
    proxied: Settings, proxy: TcpProxy, queue: str
) -> None:
    proxy.refuse()
    async with serve(proxied) as client:  # starts although the broker is away
        assert await health(client) == UNHEALTHY
        assert_unavailable(*await publish(client, queue, {"n": 1}), "unreachable")

        proxy.passthrough()

        async def published() -> bool:
            return (await publish(client, queue, {"n": 2}))[0] == 200

        await eventually(published, "the first use to connect once the broker is back")
        assert await health(client) == {"status": "healthy"}


async def test_a_silent_broker_neither_hangs_startup_nor_requests(
    proxied: Settings, proxy: TcpProxy, queue: str
) -> None:
    proxy.blackhole()
    async with serve(dataclasses.replace(proxied, backend_timeout=1.0, health_check_timeout=1.0)) as client:
        assert_unavailable(*await publish(client, queue, {"n": 1}), "timeout")
        assert await health(client) == UNHEALTHY


async def test_rejected_credentials_are_503_auth_failed(settings: Settings, queue: str) -> None:
    wrong = dataclasses.replace(settings, rabbitmq_password=f"wrong-{uuid.uuid4().hex}", backend_timeout=2.0)
    async with serve(wrong) as client:
        assert_unavailable(*await publish(client, queue, {"n": 1}), "auth_failed")
        resp = await client.get("/examples/messaging/queues")
        assert_unavailable(resp.status, await checked(resp), "auth_failed")
        assert await health(client) == UNHEALTHY


async def test_rejected_credentials_are_re_read_and_the_new_ones_used(settings: Settings, queue: str) -> None:
    stale = f"wrong-{uuid.uuid4().hex}"
    secret = {"password": stale}  # what "Vault" holds for the rabbitmq secret
    reads: list[str] = []

    async def read_secret(name: str) -> dict[str, str] | None:
        reads.append(name)
        return dict(secret) if name == "rabbitmq" else None

    wrong = dataclasses.replace(settings, rabbitmq_password=stale, backend_timeout=2.0)
    app = build_app(wrong)
    app[keys.CREDENTIALS] = CredentialStore(wrong, read_secret, min_refresh_interval=0)
    async with TestClient(TestServer(app)) as client:
        assert await health(client) == UNHEALTHY
        secret["password"] = "guest"  # rotated in Vault after startup
        reads.clear()
        status, body = await publish(client, queue, {"n": 1})
        assert status == 200, body
        assert "rabbitmq" in reads


async def test_an_unreachable_management_api_is_503(settings: Settings) -> None:
    closed = dataclasses.replace(
        settings, rabbitmq_management_url=f"http://127.0.0.1:{free_port()}", backend_timeout=2.0
    )
    async with serve(closed) as client:
        resp = await client.get("/examples/messaging/queues")
        assert_unavailable(resp.status, await checked(resp), "unreachable")
