"""Shared fixtures: the real app built from settings, served in-process by pytest-aiohttp."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from refapi.app import build_app
from refapi.config import RedisNode, Settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, web.Application]]]


# Port 1 on loopback refuses at once: apps built for in-process tests start without touching the machine's
# real services (or sharing their state, such as rate-limit counters in Redis), and see every backend as down.
NOWHERE = "127.0.0.1"
OFFLINE = {
    "vault_addr": f"http://{NOWHERE}:1",
    "postgres_host": NOWHERE, "postgres_port": 1,
    "mysql_host": NOWHERE, "mysql_port": 1,
    "mongodb_host": NOWHERE, "mongodb_port": 1,
    "redis_host": NOWHERE, "redis_port": 1, "redis_nodes": (RedisNode("redis-1", NOWHERE, 1),),
    "rabbitmq_host": NOWHERE, "rabbitmq_port": 1, "rabbitmq_management_url": f"http://{NOWHERE}:1",
}


def offline_settings(**overrides: Any) -> Settings:
    """Default settings with every backend unreachable, plus `overrides`."""
    return dataclasses.replace(Settings(), **{**OFFLINE, **overrides})


@pytest.fixture
def make_client(aiohttp_client: Any) -> ClientFactory:
    """`await make_client(**overrides)` → a test client for build_app(offline_settings(**overrides))."""

    async def factory(app: web.Application | None = None, **overrides: Any) -> TestClient[Any, web.Application]:
        if app is None:
            app = build_app(offline_settings(**overrides))
        return await aiohttp_client(app)

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, web.Application]:
    return await make_client()
