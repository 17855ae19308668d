"""Fixtures for the Vault integration tests: the Vault double, and refapi built against it."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from refapi import keys
from refapi.app import build_app
from refapi.backends.vault import VaultClient
from refapi.config import RedisNode, Settings
from tests.servers.mongo import MongoDouble
from tests.servers.vault import VaultDouble
from tests.support.processes import free_port

VaultApp = Callable[..., Awaitable[TestClient[Any, web.Application]]]


class _Mongo:
    """The MongoDB double every app here talks to: pymongo keeps retrying an absent server in the background,
    and a retry cancelled at shutdown leaks its socket (a ResourceWarning), so the Vault tests give it a server."""

    port: int | None = None


@pytest.fixture(scope="session", autouse=True)
def mongo_double() -> Iterator[MongoDouble]:
    double = MongoDouble().start()
    _Mongo.port = double.port
    yield double
    double.stop()
    _Mongo.port = None


def isolated_settings(**overrides: Any) -> Settings:
    """Settings for the Vault tests: the other backends point at a closed port (MongoDB at its double) so they
    fail fast and stay out of the way, and the limiter and response cache (Redis, shared with other test runs)
    are off."""
    closed = free_port()
    assert _Mongo.port is not None, "the mongo_double fixture starts before any app"
    base = dataclasses.replace(
        Settings(),
        backend_timeout=2.0,
        health_check_timeout=1.0,
        rate_limit_enabled=False,
        response_cache_enabled=False,
        postgres_host="127.0.0.1", postgres_port=closed,
        mysql_host="127.0.0.1", mysql_port=closed,
        mongodb_host="127.0.0.1", mongodb_port=_Mongo.port,
        redis_host="127.0.0.1", redis_port=closed, redis_nodes=(RedisNode("redis-1", "127.0.0.1", closed),),
        rabbitmq_host="127.0.0.1", rabbitmq_port=closed, rabbitmq_management_url=f"http://127.0.0.1:{closed}",
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="session")
def shared_vault() -> Iterator[VaultDouble]:
    """One double for tests that only add uniquely named secrets (its CA keys take a moment to generate)."""
    double = VaultDouble(root_token=f"root-{uuid.uuid4().hex}").start()
    yield double
    double.stop()


@pytest.fixture
def vault() -> Iterator[VaultDouble]:
    """A fresh double, for tests that seal it, expire tokens or count requests."""
    double = VaultDouble(root_token=f"root-{uuid.uuid4().hex}").start()
    yield double
    double.stop()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Secret names no other test (or earlier run against the shared double) uses."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_vault_app(aiohttp_client: Any) -> VaultApp:
    """`await make_vault_app(double, **overrides)` → a test client of refapi using `double` (root token unless
    overridden); `app=` serves a prepared application instead."""

    async def factory(
        double: VaultDouble | None = None, *, app: web.Application | None = None, **overrides: Any
    ) -> TestClient[Any, web.Application]:
        if app is None:
            if double is not None:
                overrides = {"vault_addr": double.url, "vault_token": double.root_token, **overrides}
            app = build_app(isolated_settings(**overrides))
        return await aiohttp_client(app)

    return factory


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(shared_vault: VaultDouble) -> AsyncIterator[TestClient[Any, web.Application]]:
    """One app per module on the shared double (startup waits for the absent backends' timeouts); modules using
    it run on the module's event loop: `pytestmark = pytest.mark.asyncio(loop_scope="module")`."""
    app = build_app(isolated_settings(vault_addr=shared_vault.url, vault_token=shared_vault.root_token))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def vault_client(client: TestClient[Any, web.Application]) -> VaultClient:
    return client.app[keys.VAULT]  # type: ignore[index]


async def vault_request(double: VaultDouble, method: str, path: str, body: Any = None) -> Any:
    """Call the double's HTTP API directly with its root token (to set up state the API cannot create)."""
    async with aiohttp.ClientSession() as session, session.request(
        method, f"{double.url}/v1/{path}", json=body, headers={"X-Vault-Token": double.root_token}
    ) as response:
        assert response.status in (200, 204), f"{method} {path}: HTTP {response.status}"
        return await response.json() if response.status == 200 else None
