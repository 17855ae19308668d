"""Fixtures for the Redis tests: a private 3-master cluster per session, apps on it or on the shared Redis."""

from __future__ import annotations

import dataclasses
import gc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from refapi.app import build_app
from refapi.config import RedisNode, Settings
from tests.support.redis_cluster import start_cluster, stop_cluster

STANDALONE = ("127.0.0.1", 6379)
Client = TestClient[Any, web.Application]
AppFactory = Callable[..., Awaitable[Client]]


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Finalize what a test left to the garbage collector while that test's warning filters still apply."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def cluster_nodes() -> Iterator[list[tuple[str, int]]]:
    nodes = start_cluster()
    yield nodes
    stop_cluster(nodes)


def redis_settings(mode: str, cluster_nodes: list[tuple[str, int]] | None = None, **overrides: Any) -> Settings:
    """Settings for `mode` ("standalone" on the machine's Redis, "cluster" on the session's cluster)."""
    if mode == "cluster":
        assert cluster_nodes is not None
        nodes = tuple(RedisNode(f"redis-{i}", host, port) for i, (host, port) in enumerate(cluster_nodes, start=1))
        host, port = cluster_nodes[0]
    else:
        host, port = STANDALONE
        nodes = (RedisNode("redis-1", host, port),)
    # The limiter keeps its counters in the same Redis: off, so these tests never see each other's 429s.
    base = {
        "redis_cluster": mode == "cluster",
        "redis_host": host,
        "redis_port": port,
        "redis_nodes": nodes,
        "rate_limit_enabled": False,
    }
    return dataclasses.replace(Settings(), **{**base, **overrides})


@pytest.fixture(params=["standalone", "cluster"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_api(aiohttp_client: Any, cluster_nodes: list[tuple[str, int]]) -> AppFactory:
    """`await make_api(mode, **overrides)` → a test client of the real app on that Redis."""

    async def factory(mode: str, **overrides: Any) -> Client:
        client: Client = await aiohttp_client(build_app(redis_settings(mode, cluster_nodes, **overrides)))
        return client

    return factory


@pytest.fixture
async def api(make_api: AppFactory, mode: str) -> Client:
    return await make_api(mode)


@pytest.fixture
async def raw_redis(mode: str, cluster_nodes: list[tuple[str, int]]) -> AsyncIterator[Redis | RedisCluster]:
    """A direct client on the same Redis as `api`, for setting up and inspecting state."""
    client: Redis | RedisCluster
    if mode == "cluster":
        client = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes])
    else:
        client = Redis(host=STANDALONE[0], port=STANDALONE[1])
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix(raw_redis: Redis | RedisCluster) -> AsyncIterator[str]:
    """A key prefix private to this test; its keys (reserved twins included) are deleted afterwards."""
    value = f"t-{uuid.uuid4().hex[:12]}:"
    yield value
    for pattern in (f"{value}*", f"refapi:{value}*"):
        found = [key async for key in raw_redis.scan_iter(match=pattern, count=1000)]
        if found:
            await raw_redis.delete(*found)
