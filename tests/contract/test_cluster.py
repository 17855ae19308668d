"""Contract §2.6: the Redis cluster operations against a standalone server (cluster support off)."""

from __future__ import annotations

import pytest

from tests.contract.http import Api, unique


@pytest.mark.parametrize("path", ["/redis/cluster/nodes", "/redis/cluster/slots", "/redis/cluster/info"])
async def test_a_standalone_server_is_cluster_disabled(api: Api, path: str) -> None:
    reply = await api.get(path)
    assert reply.status == 503, reply
    assert reply.json["details"] == {"service": "redis", "reason": "cluster_disabled"}


async def test_cluster_disabled_does_not_open_the_breaker(api: Api) -> None:
    for _ in range(8):
        reply = await api.get("/redis/cluster/info")
        assert reply.json["error"] == "ServiceUnavailable", reply
    assert (await api.get("/redis/nodes/redis-1/info")).status == 200


async def test_node_info(api: Api) -> None:
    reply = await api.get("/redis/nodes/redis-1/info")
    body = reply.json
    assert set(body) == {"status", "node", "info"}
    assert (body["status"], body["node"]) == ("success", "redis-1")
    info = body["info"]
    assert isinstance(info["redis_version"], str)
    assert type(info["connected_clients"]) is int and type(info["tcp_port"]) is int
    for name, value in info.items():
        if name.startswith("db") and name[2:].isdigit():
            assert isinstance(value, dict) and type(value["keys"]) is int, (name, value)


async def test_unknown_node(api: Api) -> None:
    name = unique("node")
    reply = await api.get(f"/redis/nodes/{name}/info")
    assert reply.status == 404, reply
    details = reply.json["details"]
    assert details["resource_type"] == "redis_node" and details["resource_id"] == name
    assert details["available_nodes"] == ["redis-1"]
