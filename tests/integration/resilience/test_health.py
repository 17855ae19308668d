"""/health/all and /health/ready with every backend up, then one of them black-holed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from refapi.app import build_app
from refapi.config import SERVICES
from tests.conftest import ClientFactory
from tests.integration.resilience.conftest import (
    MYSQL,
    POSTGRES,
    RABBITMQ,
    REDIS,
    Account,
    SettingsFactory,
    eventually,
    redis_at,
)
from tests.servers.mongo import MongoDouble
from tests.servers.vault import VaultDouble
from tests.support.contract import checked
from tests.support.tcp_proxy import TcpProxy

Client = TestClient[Any, web.Application]
HEALTH_CHECK_TIMEOUT = 1.0
# The response cache would answer from Redis (shared by every test run): each request asks for a fresh answer.
FRESH = {"Cache-Control": "no-store"}


@pytest.fixture
def proxies(postgres_account: Account) -> Any:
    """PostgreSQL and Redis behind proxies, so a test can black-hole either."""
    with TcpProxy(*POSTGRES) as postgres, TcpProxy(*REDIS) as redis:
        yield {"postgres": postgres, "redis": redis}


@pytest.fixture
def make_healthy_client(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    proxies: dict[str, TcpProxy],
    postgres_account: Account,
    mysql_account: Account,
    vault_double: VaultDouble,
    mongo_double: MongoDouble,
) -> ClientFactory:
    """`await make_healthy_client(**overrides)`: every backend reachable (the doubles, the machine's servers)."""

    async def factory(**overrides: Any) -> Client:
        settings = make_settings(
            vault_addr=vault_double.url,
            vault_token=vault_double.root_token,
            postgres_host=proxies["postgres"].host,
            postgres_port=proxies["postgres"].port,
            postgres_user=postgres_account.user,
            postgres_password=postgres_account.password,
            postgres_db=postgres_account.database,
            mysql_host=MYSQL[0],
            mysql_port=MYSQL[1],
            mysql_user=mysql_account.user,
            mysql_password=mysql_account.password,
            mysql_database=mysql_account.database,
            mongodb_host=mongo_double.host,
            mongodb_port=mongo_double.port,
            rabbitmq_host=RABBITMQ[0],
            rabbitmq_port=RABBITMQ[1],
            db_pool_min=1,
            db_pool_max=2,
            health_check_timeout=HEALTH_CHECK_TIMEOUT,
            rate_limit_enabled=False,
            **redis_at(proxies["redis"].host, proxies["redis"].port),
            **overrides,
        )
        return await make_client(build_app(settings))

    return factory


async def health_all(client: Client) -> Any:
    response = await client.get("/health/all", headers=FRESH)
    assert response.status == 200
    return await checked(response)


async def wait_until_healthy(client: Client) -> None:
    """Pools open in the background at startup: poll until every check has passed once."""

    async def healthy() -> bool:
        body = await health_all(client)
        return bool(body["status"] == "healthy")

    await eventually(healthy)


@pytest.mark.parametrize("silent", ["redis", "postgres"])
async def test_health_all_reports_a_black_holed_backend_within_the_timeout(
    silent: str, make_healthy_client: ClientFactory, proxies: dict[str, TcpProxy]
) -> None:
    client = await make_healthy_client()
    await wait_until_healthy(client)
    proxies[silent].blackhole()
    proxies[silent].cut()  # open pooled connections go silent too, as with a server that stopped answering

    started = time.monotonic()
    body = await health_all(client)
    elapsed = time.monotonic() - started

    assert elapsed < HEALTH_CHECK_TIMEOUT + 1  # contract §2.2: concurrent, bounded checks
    assert body["status"] == "degraded"
    assert set(body["services"]) == set(SERVICES)
    assert {name for name, service in body["services"].items() if service["status"] != "healthy"} == {silent}
    if silent == "redis":
        # Each node is probed within the check's time: the body reports the silent node rather than failing whole.
        (node,) = body["services"]["redis"]["nodes"]
        assert node == {
            "host": proxies["redis"].host,
            "port": proxies["redis"].port,
            "status": "unhealthy",
            "error": "Node connection failed",
        }
    else:
        assert body["services"]["postgres"] == {"status": "unhealthy", "error": "PostgreSQL connection failed"}


async def test_ready_only_while_every_critical_service_is_healthy(
    make_healthy_client: ClientFactory, proxies: dict[str, TcpProxy]
) -> None:
    client = await make_healthy_client(critical_services=("postgres", "redis"))
    await wait_until_healthy(client)

    response = await client.get("/health/ready")
    body = await checked(response)
    assert response.status == 200 and body["status"] == "ready"
    assert set(body["services"]) == {"postgres", "redis"}
    assert all(service["status"] == "healthy" for service in body["services"].values())

    proxies["redis"].blackhole()
    proxies["redis"].cut()
    response = await client.get("/health/ready")
    body = await checked(response)
    assert response.status == 503
    assert set(body) == {"status", "services"}  # no error envelope (contract §1.3)
    assert body["status"] == "not_ready"
    assert body["services"]["postgres"]["status"] == "healthy"
    assert body["services"]["redis"]["status"] == "unhealthy"
