"""Fixtures for the resilience tests: backends behind fault-injecting proxies, private client addresses, clocks."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from refapi.config import RedisNode, Settings
from refapi.resilience.rate_limit import window_of
from tests.conftest import offline_settings

# The databases' fixtures create (and drop) their own PostgreSQL role and MariaDB user with a fresh database each.
from tests.integration.databases.conftest import Account, mysql_account, postgres_account
from tests.servers.mongo import MongoDouble
from tests.servers.vault import VaultDouble
from tests.support.tcp_proxy import TcpProxy

REDIS = ("127.0.0.1", 6379)
POSTGRES = ("127.0.0.1", 5432)
MYSQL = ("127.0.0.1", 3306)
RABBITMQ = ("127.0.0.1", 5672)
__all__ = ["Account", "mysql_account", "postgres_account"]  # fixtures and type re-exported for this directory

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)
# Generous: only a broken recovery ever waits this long; a working one is done within a few polls.
DEADLINE = 15.0


def client_address() -> str:
    """A client address no other test or earlier run uses, so rate-limit counters in the shared Redis never mix."""
    return str(ipaddress.IPv6Address(ipaddress.IPv6Address("2001:db8::").packed[:8] + secrets.token_bytes(8)))


def forwarded(address: str) -> dict[str, str]:
    """Headers of a request the trusted loopback proxy forwards for `address`."""
    return {"X-Forwarded-For": address}


async def eventually(condition: Callable[[], Awaitable[bool]], deadline: float = DEADLINE) -> None:
    """Poll `condition` until it holds; fail once `deadline` seconds have passed."""
    end = time.monotonic() + deadline
    while not await condition():
        assert time.monotonic() < end, f"condition not reached within {deadline} s"
        await asyncio.sleep(0.05)  # polling interval, bounded by the deadline


async def fresh_window(needed: float) -> None:
    """Return once at least `needed` seconds of the current rate-limit window (the UTC minute) are left.

    A test whose requests straddled two windows would see its count start over; it waits for the next minute
    instead when too little of this one remains (bounded by `needed`).
    """
    while window_of(time.time())[1] <= needed:
        await asyncio.sleep(0.1)  # polling the clock, bounded: the next window starts within `needed` seconds


def seconds_to_window_end(now: float) -> float:
    window, _ = window_of(now)
    return (window + 1) * 60 - now


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    with TcpProxy(*REDIS) as proxy:
        yield proxy


@pytest.fixture
def postgres_proxy() -> Iterator[TcpProxy]:
    with TcpProxy(*POSTGRES) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def vault_double() -> Iterator[VaultDouble]:
    double = VaultDouble(root_token=f"root-{uuid.uuid4().hex}").start()
    yield double
    double.stop()


@pytest.fixture(scope="session")
def mongo_double() -> Iterator[MongoDouble]:
    double = MongoDouble().start()
    yield double
    double.stop()


def redis_at(host: str, port: int) -> dict[str, Any]:
    return {"redis_host": host, "redis_port": port, "redis_nodes": (RedisNode("redis-1", host, port),)}


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(mongo_double: MongoDouble) -> SettingsFactory:
    """`make_settings(**overrides)`: every backend unreachable (tests/conftest.py) unless overridden, except MongoDB,
    and X-Forwarded-For trusted from loopback.

    MongoDB is the double because pymongo leaks a socket when a client is closed while its monitor is connecting
    to an address that refuses; the warning would surface in whichever test the garbage collector runs in.
    """

    def factory(**overrides: Any) -> Settings:
        base = {"trusted_proxies": LOOPBACK, "mongodb_host": mongo_double.host, "mongodb_port": mongo_double.port}
        return offline_settings(**{**base, **overrides})

    return factory
