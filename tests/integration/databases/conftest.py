"""Fixtures for the database tests: own accounts on the machine's PostgreSQL and MariaDB, the Mongo double, proxies."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiomysql
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from refapi.app import build_app
from refapi.config import Settings
from tests.servers.mongo import MongoDouble
from tests.support.tcp_proxy import TcpProxy

# How the tests administer the shared servers (creating and dropping their own role, user and databases only).
POSTGRES_ADMIN_DSN = os.environ.get("REFAPI_TEST_POSTGRES_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
POSTGRES_ADDRESS = ("127.0.0.1", 5432)
MYSQL_ADMIN_SOCKET = os.environ.get("REFAPI_TEST_MYSQL_ADMIN_SOCKET", "/run/mysqld/mysqld.sock")
MYSQL_ADDRESS = ("127.0.0.1", 3306)
MONGO_USER, MONGO_PASSWORD = "app", "mongo pw with 'quotes' & spaces"

Client = TestClient[Any, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


@dataclass(frozen=True)
class Account:
    """A login on one server and the database it owns."""

    user: str
    password: str
    database: str


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def _password() -> str:
    # Characters that break naive quoting on both servers; the drivers must pass them through untouched.
    return f"pw'\"; {secrets.token_urlsafe(12)}"


@pytest.fixture(scope="session")
def postgres_account() -> Iterator[Account]:
    """A LOGIN role with a password, owning a fresh database (dropped with the role at the end)."""
    account = Account(_name("refapi_test"), _password(), _name("refapi_test"))

    async def admin(*statements: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=10)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    # Identifiers are generated hex names; the password is a literal, quoted the SQL way (no parameters in DDL).
    quoted_password = "'" + account.password.replace("'", "''") + "'"
    asyncio.run(
        admin(
            f"CREATE ROLE {account.user} WITH LOGIN PASSWORD {quoted_password}",
            f"CREATE DATABASE {account.database} OWNER {account.user}",
        )
    )
    yield account
    asyncio.run(
        admin(
            f"DROP DATABASE IF EXISTS {account.database} WITH (FORCE)",
            f"DROP ROLE IF EXISTS {account.user}",
        )
    )


async def mysql_admin(*statements: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    """Run statements as root over the unix socket; the rows of the last one."""
    connection = await aiomysql.connect(unix_socket=MYSQL_ADMIN_SOCKET, user="root", autocommit=True)
    try:
        rows: list[tuple[Any, ...]] = []
        async with connection.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement, args)
                rows = list(await cursor.fetchall())
        return rows
    finally:
        connection.close()


@pytest.fixture(scope="session")
def mysql_account() -> Iterator[Account]:
    """A user with a password (TCP from loopback), granted everything on a fresh database, dropped at the end."""
    account = Account(_name("refapi_t"), _password(), _name("refapi_test"))
    hosts = ("127.0.0.1", "localhost")
    asyncio.run(mysql_admin(f"CREATE DATABASE {account.database}"))
    for host in hosts:
        asyncio.run(mysql_admin(f"CREATE USER %s@'{host}' IDENTIFIED BY %s", args=(account.user, account.password)))
        asyncio.run(mysql_admin(f"GRANT ALL ON {account.database}.* TO %s@'{host}'", args=(account.user,)))
    yield account
    for host in hosts:
        asyncio.run(mysql_admin(f"DROP USER IF EXISTS %s@'{host}'", args=(account.user,)))
    asyncio.run(mysql_admin(f"DROP DATABASE IF EXISTS {account.database}"))


@pytest.fixture
def mongo() -> Iterator[MongoDouble]:
    double = MongoDouble(users={MONGO_USER: MONGO_PASSWORD}).start()
    yield double
    double.stop()


@pytest.fixture
def proxies(mongo: MongoDouble) -> Iterator[dict[str, TcpProxy]]:
    """refapi reaches every database through a proxy, so a test can refuse, black-hole or cut its traffic."""
    started = {
        "postgres": TcpProxy(*POSTGRES_ADDRESS).start(),
        "mysql": TcpProxy(*MYSQL_ADDRESS).start(),
        "mongodb": TcpProxy(mongo.host, mongo.port).start(),
    }
    yield started
    for proxy in started.values():
        proxy.stop()


@pytest.fixture
def settings(postgres_account: Account, mysql_account: Account, proxies: dict[str, TcpProxy]) -> Settings:
    """Small pools and short timeouts keep failure tests quick; rate limiting and the cache stay out of the way."""
    return Settings(
        postgres_host=proxies["postgres"].host,
        postgres_port=proxies["postgres"].port,
        postgres_user=postgres_account.user,
        postgres_password=postgres_account.password,
        postgres_db=postgres_account.database,
        mysql_host=proxies["mysql"].host,
        mysql_port=proxies["mysql"].port,
        mysql_user=mysql_account.user,
        mysql_password=mysql_account.password,
        mysql_database=mysql_account.database,
        mongodb_host=proxies["mongodb"].host,
        mongodb_port=proxies["mongodb"].port,
        mongodb_user=MONGO_USER,
        mongodb_password=MONGO_PASSWORD,
        mongodb_database="refapi_test",
        db_pool_min=2,
        db_pool_max=4,
        backend_timeout=2.0,
        health_check_timeout=1.5,
        rate_limit_enabled=False,
        response_cache_enabled=False,
    )


@pytest.fixture
def make_db_client(settings: Settings, make_client: ClientFactory) -> ClientFactory:
    """`await make_db_client(**overrides)`: a test client on the fixture settings with `overrides` applied.

    `settings` comes first so that the proxies and the Mongo double outlive the clients (teardown is in reverse).
    """

    async def factory(**overrides: Any) -> Client:
        return await make_client(build_app(dataclasses.replace(settings, **overrides)))

    return factory


@pytest.fixture
async def client(make_db_client: ClientFactory) -> Client:
    return await make_db_client()


@pytest.fixture
async def postgres_admin() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()
