"""The instances the contract suite talks to: REFAPI_URL if set, else a whole local stack started for the session.

Local stack: the Vault and MongoDB doubles, databases of its own on the machine's PostgreSQL and MariaDB, a vhost of
its own on the machine's RabbitMQ, the machine's Redis, and two gunicorn-run refapi instances:

- `main` (2 workers, very high rate limits, defaults otherwise), for everything but the tests below;
- `strict` (1 worker, `DEBUG=true`, low rate limits, API keys, small size limits), for rate limiting, API keys,
  size limits and the DEBUG CORS policy.

Both trust loopback as a proxy, so every test reaches them from a fake client address of its own
(`X-Forwarded-For`) and no test ever spends another's rate-limit budget.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import aiomysql
import asyncpg
import pytest

from tests.contract.http import Api, fake_client_ip
from tests.servers.mongo import MongoDouble
from tests.servers.vault import VaultDouble
from tests.support.processes import gunicorn

POSTGRES = ("127.0.0.1", 5432, "postgres")
MYSQL = ("127.0.0.1", 3306, "root")
RABBITMQ_MANAGEMENT = "http://127.0.0.1:15672"
RABBITMQ_AUTH = {"Authorization": aiohttp.encode_basic_auth("guest", "guest")}
REDIS = ("127.0.0.1", 6379)

STRICT_LIMITS = {"general": 6, "health": 5, "metrics": 4}
STRICT_MAX_REQUEST_SIZE = 4096
STRICT_MAX_MESSAGE_SIZE = 1024
STRICT_API_KEYS = ("contract-key-one", "contract-key-two")
VAULT_TRANSIT_KEY = "contract-transit"
# refapi's own secret: read-only through the API like the backends' secrets (contract §5).
VAULT_APP_SECRET = "contract-refapi"


@dataclass(frozen=True)
class VaultAccess:
    """Direct access to the Vault behind the instance, for arranging state the API cannot create."""

    addr: str
    token: str

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"{self.addr}/v1/{path}", json=body, headers={"X-Vault-Token": self.token}) as resp,
        ):
            assert resp.status in (200, 204), f"Vault {method} {path}: HTTP {resp.status} {await resp.text()}"
            return await resp.json() if resp.status == 200 else None

    async def put_secret(self, name: str, data: dict[str, Any]) -> int:
        reply = await self.call("POST", f"secret/data/{name}", {"data": data})
        return int(reply["data"]["version"])


@dataclass(frozen=True)
class Stack:
    """Where the suite's instances listen, and what it knows about them beyond their public answers."""

    main_url: str
    strict_url: str | None
    vault: VaultAccess | None
    #: The instance trusts X-Forwarded-For from this machine (local stack), so tests get client addresses of their own.
    trusts_us: bool
    #: The vhost the local stack's instances use, for arranging broker state behind refapi's back.
    rabbitmq_vhost: str | None = None
    #: VAULT_TRANSIT_KEY and VAULT_APP_SECRET of the instance (with REFAPI_URL: the same variables, else §4 defaults).
    transit_key: str = VAULT_TRANSIT_KEY
    app_secret: str = VAULT_APP_SECRET


def _databases_name() -> str:
    return f"refapi_contract_{uuid.uuid4().hex[:10]}"


@contextmanager
def _sql_databases(name: str) -> Iterator[None]:
    """A database of the suite's own on each SQL server, so the list order is never disturbed by other runs."""

    async def postgres(statement: str) -> None:
        connection = await asyncpg.connect(host=POSTGRES[0], port=POSTGRES[1], user=POSTGRES[2], timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def mysql(statement: str) -> None:
        connection = await aiomysql.connect(host=MYSQL[0], port=MYSQL[1], user=MYSQL[2], autocommit=True)
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(statement)
        finally:
            connection.close()

    # The name is generated hex, so formatting it into DDL is safe.
    asyncio.run(postgres(f"CREATE DATABASE {name}"))
    asyncio.run(mysql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    try:
        yield
    finally:
        asyncio.run(postgres(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        asyncio.run(mysql(f"DROP DATABASE IF EXISTS {name}"))


@contextmanager
def _rabbitmq_vhost(name: str) -> Iterator[None]:
    """A vhost of the suite's own: fuzzed queue names never land on the shared default vhost; deleting it cleans up."""

    async def management(method: str, path: str, body: Any = None) -> None:
        async with (
            aiohttp.ClientSession(headers=RABBITMQ_AUTH) as session,
            session.request(method, f"{RABBITMQ_MANAGEMENT}{path}", json=body) as resp,
        ):
            assert resp.status in (201, 204, 404), f"RabbitMQ management {method} {path}: HTTP {resp.status}"

    encoded = quote(name, safe="")
    asyncio.run(management("PUT", f"/api/vhosts/{encoded}"))
    asyncio.run(
        management("PUT", f"/api/permissions/{encoded}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    )
    try:
        yield
    finally:
        asyncio.run(management("DELETE", f"/api/vhosts/{encoded}"))


def _instance_env(vault: VaultDouble, mongo: MongoDouble, databases: str, vhost: str) -> dict[str, str]:
    """Everything refapi reads, spelled out, so nothing leaks in from the caller's environment."""
    return {
        "WORKERS": "2",
        "LOG_LEVEL": "INFO",
        "DEBUG": "false",
        "VAULT_ADDR": vault.url,
        "VAULT_TOKEN": vault.root_token,
        "VAULT_APPROLE_DIR": "",
        "VAULT_ROLE_ID": "",
        "VAULT_SECRET_ID": "",
        "VAULT_TRANSIT_KEY": VAULT_TRANSIT_KEY,
        "VAULT_APP_SECRET": VAULT_APP_SECRET,
        "POSTGRES_HOST": POSTGRES[0],
        "POSTGRES_PORT": str(POSTGRES[1]),
        "POSTGRES_USER": POSTGRES[2],
        "POSTGRES_PASSWORD": "",
        "POSTGRES_DB": databases,
        "MYSQL_HOST": MYSQL[0],
        "MYSQL_PORT": str(MYSQL[1]),
        "MYSQL_USER": MYSQL[2],
        "MYSQL_PASSWORD": "",
        "MYSQL_DATABASE": databases,
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "5",
        "MONGODB_HOST": mongo.host,
        "MONGODB_PORT": str(mongo.port),
        "MONGODB_USER": "",
        "MONGODB_DATABASE": "refapi_contract",
        "REDIS_HOST": REDIS[0],
        "REDIS_PORT": str(REDIS[1]),
        "REDIS_PASSWORD": "",
        "REDIS_CLUSTER": "false",
        "REDIS_NODES": f"redis-1={REDIS[0]}:{REDIS[1]}",
        "RABBITMQ_HOST": "127.0.0.1",
        "RABBITMQ_PORT": "5672",
        "RABBITMQ_USER": "guest",
        "RABBITMQ_PASSWORD": "guest",
        "RABBITMQ_VHOST": vhost,
        "RABBITMQ_MANAGEMENT_URL": RABBITMQ_MANAGEMENT,
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_GENERAL": "1000000",
        "RATE_LIMIT_HEALTH": "1000000",
        "RATE_LIMIT_METRICS": "1000000",
        "TRUSTED_PROXIES": "127.0.0.1,::1",
        "RESPONSE_CACHE_ENABLED": "true",
        "REFAPI_API_KEYS": "",
        "CRITICAL_SERVICES": "",
        "API_FIRST_ENABLE_TLS": "false",
    }


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contract-logs")


@pytest.fixture(scope="session")
def stack(logs_dir: Path) -> Iterator[Stack]:
    external = os.environ.get("REFAPI_URL")
    if external:
        vault_addr, vault_token = os.environ.get("REFAPI_VAULT_ADDR"), os.environ.get("REFAPI_VAULT_TOKEN")
        access = VaultAccess(vault_addr, vault_token) if vault_addr and vault_token else None
        yield Stack(
            external,
            None,
            access,
            trusts_us=False,
            transit_key=os.environ.get("VAULT_TRANSIT_KEY", "refapi"),
            app_secret=os.environ.get("VAULT_APP_SECRET", "refapi"),
        )
        return

    def metrics_dir(instance: str) -> Path:
        path = logs_dir / f"{instance}-metrics"
        path.mkdir()
        return path

    with ExitStack() as started:
        vault = VaultDouble(root_token="root").start()
        started.callback(vault.stop)
        mongo = MongoDouble().start()
        started.callback(mongo.stop)
        name = _databases_name()
        started.enter_context(_sql_databases(name))
        started.enter_context(_rabbitmq_vhost(name))
        env = {**_instance_env(vault, mongo, name, name), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir("main"))}
        strict_env = {
            **env,
            "WORKERS": "1",
            "DEBUG": "true",
            "RATE_LIMIT_GENERAL": str(STRICT_LIMITS["general"]),
            "RATE_LIMIT_HEALTH": str(STRICT_LIMITS["health"]),
            "RATE_LIMIT_METRICS": str(STRICT_LIMITS["metrics"]),
            "REFAPI_API_KEYS": ",".join(STRICT_API_KEYS),
            "MAX_REQUEST_SIZE": str(STRICT_MAX_REQUEST_SIZE),
            "MAX_MESSAGE_SIZE": str(STRICT_MAX_MESSAGE_SIZE),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir("strict")),
        }
        main_port = started.enter_context(gunicorn(env, log_path=logs_dir / "main.log"))
        strict_port = started.enter_context(gunicorn(strict_env, log_path=logs_dir / "strict.log"))
        yield Stack(
            f"http://127.0.0.1:{main_port}",
            f"http://127.0.0.1:{strict_port}",
            VaultAccess(vault.url, vault.root_token),
            trusts_us=True,
            rabbitmq_vhost=name,
        )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # auto_decompress off: the suite compares exact body bytes (ETags hash them).
    async with aiohttp.ClientSession(auto_decompress=False) as client_session:
        yield client_session


@pytest.fixture
def api(stack: Stack, session: aiohttp.ClientSession) -> Api:
    """The general-purpose instance, seen from a client address of this test's own."""
    return Api(session, stack.main_url, client_ip=fake_client_ip() if stack.trusts_us else None)


@pytest.fixture
def strict(stack: Stack, session: aiohttp.ClientSession) -> Api:
    """The instance with low limits, API keys and DEBUG on; skipped against an external REFAPI_URL without one."""
    if stack.strict_url is None:
        pytest.skip("needs the strict instance of the local stack (not started with REFAPI_URL)")
    return Api(session, stack.strict_url, client_ip=fake_client_ip())


@pytest.fixture
def local(stack: Stack) -> Stack:
    """The local stack, for tests that arrange backend state directly (Redis, RabbitMQ)."""
    if not stack.trusts_us:
        pytest.skip("arranges backend state directly: needs the local stack (not REFAPI_URL)")
    return stack


@pytest.fixture
def vault(stack: Stack) -> VaultAccess:
    if stack.vault is None:
        pytest.skip("needs direct Vault access (REFAPI_VAULT_ADDR and REFAPI_VAULT_TOKEN with REFAPI_URL)")
    return stack.vault
