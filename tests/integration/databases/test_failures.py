"""Databases failing behind a TCP proxy (refused, black-holed, down at startup, bad credentials) and recovering."""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import asyncpg
import pytest
from pymongo import AsyncMongoClient

from refapi import keys
from refapi.app import build_app
from refapi.backends.credentials import CredentialStore
from refapi.config import Settings
from tests.integration.databases.conftest import (
    MONGO_PASSWORD,
    MONGO_USER,
    Account,
    Client,
    ClientFactory,
    mysql_admin,
)
from tests.integration.databases.support import DATABASES, eventually
from tests.servers.mongo import MongoDouble
from tests.support.contract import checked
from tests.support.tcp_proxy import TcpProxy

# pymongo 4.20 leaks the socket of a monitor check that close() cancels mid-connect (PYTHON-5867); refapi closes
# the client of a failed opening while MongoDB refuses, so such a socket can be left for the garbage collector.
pytestmark = pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Collect after each test (autouse: torn down last), so a leaked socket is reported under the filter above."""
    yield
    gc.collect()


UNHEALTHY = {
    "postgres": {"status": "unhealthy", "error": "PostgreSQL connection failed"},
    "mysql": {"status": "unhealthy", "error": "MySQL connection failed"},
    "mongodb": {"status": "unhealthy", "error": "MongoDB connection failed"},
}
# Failures must reach the backend every time here: with the default threshold the breaker would open instead.
NO_BREAKER = {"circuit_breaker_failure_threshold": 1000}


async def assert_unavailable(client: Client, db: str, reasons: set[str]) -> None:
    """The records read answers the 503 envelope naming the database, and its health check says unhealthy."""
    resp = await client.get(f"/examples/database/{db}")
    body = await checked(resp)
    assert resp.status == 503 and body["error"] == "ServiceUnavailable"
    assert body["details"]["service"] == db and body["details"]["reason"] in reasons, body
    assert resp.headers["Retry-After"] == "5"

    resp = await client.get(f"/health/{db}")
    assert resp.status == 200 and await checked(resp) == UNHEALTHY[db]
    resp = await client.get("/health/database")
    body = await checked(resp)
    assert body["status"] == "degraded" and body["services"][db] == UNHEALTHY[db]


async def serves(client: Client, db: str) -> bool:
    resp = await client.get(f"/examples/database/{db}?limit=1")
    await checked(resp)
    return resp.status == 200


async def assert_recovered(client: Client, db: str) -> None:
    await eventually(lambda: serves(client, db))
    resp = await client.get(f"/health/{db}")
    assert (await checked(resp))["status"] == "healthy"


@pytest.mark.parametrize("db", DATABASES)
async def test_refused_connections_give_503_then_recover(
    make_db_client: ClientFactory, proxies: dict[str, TcpProxy], db: str
) -> None:
    client = await make_db_client(**NO_BREAKER)
    assert await serves(client, db)
    proxy = proxies[db]

    proxy.refuse()
    proxy.cut()  # the pool's connections die too, as when the server goes away
    await assert_unavailable(client, db, {"unreachable"})

    proxy.passthrough()
    await assert_recovered(client, db)


@pytest.mark.parametrize("db", DATABASES)
async def test_a_black_holed_server_gives_503_within_the_timeouts_then_recovers(
    make_db_client: ClientFactory, proxies: dict[str, TcpProxy], db: str
) -> None:
    client = await make_db_client(**NO_BREAKER)
    assert await serves(client, db)
    proxy = proxies[db]

    proxy.blackhole()
    proxy.cut()
    # SQL drivers hang until the guard's timeout; pymongo gives up server selection first (unreachable).
    await assert_unavailable(client, db, {"timeout", "unreachable"})

    proxy.passthrough()
    proxy.cut()  # connections accepted while black-holed stay silent for good
    await assert_recovered(client, db)


async def drop_demo_table(db: str, postgres_account: Account, mysql_account: Account, mongo: MongoDouble) -> None:
    if db == "postgres":
        connection = await asyncpg.connect(
            host="127.0.0.1", user=postgres_account.user, database=postgres_account.database, timeout=10
        )
        try:
            await connection.execute("DROP TABLE IF EXISTS refapi_examples")
        finally:
            await connection.close()
    elif db == "mysql":
        await mysql_admin(f"DROP TABLE IF EXISTS {mysql_account.database}.refapi_examples")
    else:
        direct: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            mongo.host, mongo.port, username=MONGO_USER, password=MONGO_PASSWORD
        )
        try:
            await direct["refapi_test"].drop_collection("refapi_examples")
        finally:
            await direct.close()


@pytest.mark.parametrize("db", DATABASES)
async def test_a_database_down_at_startup_is_connected_and_set_up_when_it_returns(
    make_db_client: ClientFactory,
    proxies: dict[str, TcpProxy],
    postgres_account: Account,
    mysql_account: Account,
    mongo: MongoDouble,
    caplog: pytest.LogCaptureFixture,
    db: str,
) -> None:
    await drop_demo_table(db, postgres_account, mysql_account, mongo)
    proxies[db].refuse()
    caplog.set_level(logging.WARNING, logger="refapi")

    client = await make_db_client(**NO_BREAKER)  # starts regardless
    await eventually(lambda: _logged(caplog, f"{db} is unavailable at startup"))
    await assert_unavailable(client, db, {"unreachable"})

    proxies[db].passthrough()
    await assert_recovered(client, db)  # pool and table created now: the read found an empty table
    resp = await client.post(f"/examples/database/{db}", json={"name": "after", "value": "recovery"})
    assert resp.status == 201 and (await checked(resp))["record"]["name"] == "after"


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


SECRETS = {"postgres": "postgres", "mysql": "mysql", "mongodb": "mongodb"}


def wrong_credentials(db: str, postgres_account: Account, mysql_account: Account) -> dict[str, Any]:
    # This machine's pg_hba trusts 127.0.0.1, so PostgreSQL ignores passwords: a role that does not exist is what
    # it rejects (SQLSTATE 28000). MariaDB and the Mongo double check the password itself.
    if db == "postgres":
        return {"postgres_user": postgres_account.user + "_nobody"}
    if db == "mysql":
        return {"mysql_password": mysql_account.password + "-wrong"}
    return {"mongodb_password": MONGO_PASSWORD + "-wrong"}


def right_credentials(db: str, postgres_account: Account, mysql_account: Account) -> dict[str, str]:
    if db == "postgres":
        account = postgres_account
    elif db == "mysql":
        account = mysql_account
    else:
        return {"user": MONGO_USER, "password": MONGO_PASSWORD, "database": "refapi_test"}
    return {"user": account.user, "password": account.password, "database": account.database}


@pytest.mark.parametrize("db", DATABASES)
async def test_rejected_credentials_are_re_read_from_vault_and_the_pool_rebuilt(
    settings: Settings,  # first: the proxies and the Mongo double must outlive the client
    make_client: ClientFactory,
    postgres_account: Account,
    mysql_account: Account,
    db: str,
) -> None:
    vault: dict[str, Mapping[str, Any]] = {}

    async def read_secret(name: str) -> Mapping[str, Any] | None:
        return vault.get(name)

    app = build_app(dataclasses.replace(settings, **wrong_credentials(db, postgres_account, mysql_account)))
    # Stands in for the Vault-fed store; no rate limit on re-reads, so each rejection triggers one.
    app[keys.CREDENTIALS] = CredentialStore(app[keys.SETTINGS], read_secret, min_refresh_interval=0)
    client = await make_client(app)

    # Vault holds nothing new: the re-read changes nothing and the rejection is a 503.
    resp = await client.get(f"/examples/database/{db}")
    body = await checked(resp)
    assert resp.status == 503 and body["details"] == {"service": db, "reason": "auth_failed"}

    # Rotated in Vault: the next call re-reads, rebuilds the pool with the new credentials and succeeds.
    vault[SECRETS[db]] = right_credentials(db, postgres_account, mysql_account)
    resp = await client.post(f"/examples/database/{db}", json={"name": "rotated", "value": "ok"})
    assert resp.status == 201, await resp.text()
    await checked(resp)
    assert await serves(client, db)
