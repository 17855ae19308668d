"""50 concurrent requests on one worker never hold more connections than the pool's maximum, counted by the server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from tests.integration.databases.conftest import Account, Client, ClientFactory, mysql_admin
from tests.servers.mongo import MongoDouble
from tests.support.contract import checked
from tests.support.tcp_proxy import TcpProxy

POOL_MIN, POOL_MAX = 2, 4
CONCURRENT = 50
# pymongo keeps its server monitor's own connections (stream and round-trip-time) beside the pool.
MONGO_MONITOR_CONNECTIONS = 2


async def burst(client: Client, db: str) -> None:
    """CONCURRENT requests at once, reads and inserts mixed; every one must succeed."""

    async def one(i: int) -> int:
        if i % 2:
            resp = await client.get(f"/examples/database/{db}?limit=5")
        else:
            resp = await client.post(f"/examples/database/{db}", json={"name": f"burst {i}", "value": "v"})
        await checked(resp)
        return resp.status

    statuses = await asyncio.gather(*(one(i) for i in range(CONCURRENT)))
    assert sorted(set(statuses)) == [200, 201]


async def peak_during(count: Callable[[], Awaitable[int]], work: Awaitable[None]) -> int:
    """The most connections `count()` saw while `work` ran (sampled back to back), and once more after it."""
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, await count())
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    try:
        await work
    finally:
        done.set()
        await sampler
    return max(peak, await count())


async def test_postgres_pool_stays_within_its_maximum(
    make_db_client: ClientFactory,
    postgres_account: Account,
    postgres_admin: asyncpg.Connection,
    proxies: dict[str, TcpProxy],
) -> None:
    client = await make_db_client(db_pool_min=POOL_MIN, db_pool_max=POOL_MAX)

    async def connections() -> int:
        query = "SELECT count(*) FROM pg_stat_activity WHERE usename = $1"
        return int(await postgres_admin.fetchval(query, postgres_account.user))

    peak = await peak_during(connections, burst(client, "postgres"))
    assert 1 <= peak <= POOL_MAX
    # Every connection refapi ever opened went through the proxy: none was replaced, none beyond the maximum.
    assert proxies["postgres"].upstream_connections_total <= POOL_MAX


async def test_mysql_pool_stays_within_its_maximum(
    make_db_client: ClientFactory, mysql_account: Account, proxies: dict[str, TcpProxy]
) -> None:
    client = await make_db_client(db_pool_min=POOL_MIN, db_pool_max=POOL_MAX)

    async def connections() -> int:
        query = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s"
        rows = await mysql_admin(query, args=(mysql_account.user,))
        return int(rows[0][0])

    peak = await peak_during(connections, burst(client, "mysql"))
    assert 1 <= peak <= POOL_MAX
    assert proxies["mysql"].upstream_connections_total <= POOL_MAX


async def test_mongodb_pool_stays_within_its_maximum(
    make_db_client: ClientFactory, mongo: MongoDouble, proxies: dict[str, TcpProxy]
) -> None:
    client = await make_db_client(db_pool_max=POOL_MAX)

    async def connections() -> int:
        return mongo.open_connections

    peak = await peak_during(connections, burst(client, "mongodb"))
    assert 1 <= peak <= POOL_MAX + MONGO_MONITOR_CONNECTIONS
    assert proxies["mongodb"].upstream_connections_total <= POOL_MAX + MONGO_MONITOR_CONNECTIONS
