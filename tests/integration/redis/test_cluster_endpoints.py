"""Cluster endpoints and the Redis health check (contract §2.2, §2.6) against the real 3-master cluster."""

from __future__ import annotations

import itertools

import pytest

from refapi.config import RedisNode
from tests.integration.redis.conftest import AppFactory
from tests.support.contract import checked
from tests.support.tcp_proxy import TcpProxy

# Cancelling redis-py mid-read on a black-holed connection (health probes, 250 ms cache calls, guard timeouts)
# can leave a socket for the garbage collector to close; that is the library's cleanup, not a leak of ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]


async def test_cluster_nodes_reports_three_masters(make_api: AppFactory, cluster_nodes: list[tuple[str, int]]) -> None:
    api = await make_api("cluster")
    body = await checked(await api.get("/redis/cluster/nodes"))
    assert body["status"] == "success" and body["total_nodes"] == 3 == len(body["nodes"])
    assert {(n["host"], n["port"]) for n in body["nodes"]} == set(cluster_nodes)
    assert all(
        n["role"] == "master" and n["master_id"] is None and n["link_state"] == "connected" for n in body["nodes"]
    )
    assert sum(n["slots_count"] for n in body["nodes"]) == 16384
    ranges = sorted((r["start"], r["end"]) for n in body["nodes"] for r in n["slot_ranges"])
    assert ranges[0][0] == 0 and ranges[-1][1] == 16383
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in itertools.pairwise(ranges))


async def test_cluster_slots_cover_every_slot(make_api: AppFactory, cluster_nodes: list[tuple[str, int]]) -> None:
    api = await make_api("cluster")
    body = await checked(await api.get("/redis/cluster/slots"))
    assert body["total_slots"] == 16384 and body["max_slots"] == 16384 and body["coverage_percentage"] == 100.0
    distribution = body["slot_distribution"]
    assert [r["start_slot"] for r in distribution] == sorted(r["start_slot"] for r in distribution)
    assert {(r["master"]["host"], r["master"]["port"]) for r in distribution} == set(cluster_nodes)
    assert all(r["replicas"] == [] and r["slots_count"] == r["end_slot"] - r["start_slot"] + 1 for r in distribution)


async def test_cluster_info_is_typed(make_api: AppFactory) -> None:
    api = await make_api("cluster")
    body = await checked(await api.get("/redis/cluster/info"))
    info = body["cluster_info"]
    assert info["cluster_state"] == "ok" and info["cluster_slots_assigned"] == 16384 and info["cluster_size"] == 3


async def test_node_info_for_each_configured_node(make_api: AppFactory, cluster_nodes: list[tuple[str, int]]) -> None:
    api = await make_api("cluster")
    for index, (_, port) in enumerate(cluster_nodes, start=1):
        body = await checked(await api.get(f"/redis/nodes/redis-{index}/info"))
        assert body["status"] == "success" and body["node"] == f"redis-{index}"
        info = body["info"]
        assert info["tcp_port"] == port and info["redis_mode"] == "cluster" and info["cluster_enabled"] == 1
        assert isinstance(info["redis_version"], str) and isinstance(info["used_memory"], int)


async def test_unknown_node_is_not_found(make_api: AppFactory) -> None:
    api = await make_api("cluster")
    resp = await api.get("/redis/nodes/redis-9/info")
    body = await checked(resp)
    assert resp.status == 404
    assert body["details"] == {
        "resource_type": "redis_node",
        "resource_id": "redis-9",
        "available_nodes": ["redis-1", "redis-2", "redis-3"],
    }


async def test_cluster_commands_on_a_standalone_server_are_cluster_disabled(make_api: AppFactory) -> None:
    api = await make_api("standalone")
    for path in ("/redis/cluster/nodes", "/redis/cluster/slots", "/redis/cluster/info"):
        resp = await api.get(path)
        body = await checked(resp)
        assert resp.status == 503 and body["details"] == {"service": "redis", "reason": "cluster_disabled"}
        assert resp.headers["Retry-After"] == "5"
    body = await checked(await api.get("/redis/nodes/redis-1/info"))
    assert body["info"]["redis_mode"] == "standalone" and isinstance(body["info"]["connected_clients"], int)


async def test_cluster_commands_go_to_the_first_node_that_answers(
    make_api: AppFactory, cluster_nodes: list[tuple[str, int]]
) -> None:
    with TcpProxy(*cluster_nodes[0]) as proxy:
        proxy.refuse()
        nodes = [("127.0.0.1", proxy.port), *cluster_nodes[1:]]
        api = await make_api("cluster", redis_nodes=_named(nodes))
        body = await checked(await api.get("/redis/cluster/info"))
        assert body["cluster_info"]["cluster_state"] == "ok"
        resp = await api.get("/redis/nodes/redis-1/info")
        body = await checked(resp)
        assert resp.status == 503 and body["details"] == {"service": "redis", "reason": "unreachable"}


async def test_health_of_the_cluster(make_api: AppFactory, cluster_nodes: list[tuple[str, int]]) -> None:
    api = await make_api("cluster")
    for path in ("/health/redis", "/health/cache"):
        body = await checked(await api.get(path))
        assert body["status"] == "healthy" and body["cluster_enabled"] is True and body["cluster_state"] == "ok"
        assert body["total_nodes"] == 3
        assert [(n["host"], n["port"]) for n in body["nodes"]] == cluster_nodes  # configuration order
        assert all(n["status"] == "healthy" and n["role"] == "master" for n in body["nodes"])


async def test_health_of_a_standalone_server(make_api: AppFactory) -> None:
    api = await make_api("standalone")
    body = await checked(await api.get("/health/redis"))
    assert body["status"] == "healthy" and body["cluster_enabled"] is False and body["cluster_state"] == "unknown"
    (node,) = body["nodes"]
    assert node["port"] == 6379 and node["role"] == "master" and isinstance(node["connected_clients"], int)


async def test_one_failed_node_makes_the_cluster_unhealthy(
    make_api: AppFactory, cluster_nodes: list[tuple[str, int]]
) -> None:
    with TcpProxy(*cluster_nodes[2]) as proxy:
        proxy.blackhole()
        nodes = [*cluster_nodes[:2], ("127.0.0.1", proxy.port)]
        api = await make_api("cluster", redis_nodes=_named(nodes), health_check_timeout=0.75)
        body = await checked(await api.get("/health/redis"))
    assert body["status"] == "unhealthy" and body["cluster_enabled"] is True and body["cluster_state"] == "ok"
    assert [n["status"] for n in body["nodes"]] == ["healthy", "healthy", "unhealthy"]
    assert body["nodes"][2] == {
        "host": "127.0.0.1",
        "port": nodes[2][1],
        "status": "unhealthy",
        "error": "Node connection failed",
    }


def _named(nodes: list[tuple[str, int]]) -> tuple[RedisNode, ...]:
    return tuple(RedisNode(f"redis-{i}", host, port) for i, (host, port) in enumerate(nodes, start=1))
