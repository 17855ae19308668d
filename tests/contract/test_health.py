"""Contract §2.2: health checks (every backend is up in the suite's stack)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract.conftest import REDIS, Stack
from tests.contract.http import Api

NODE_KEYS = {"host", "port", "status", "version", "role", "connected_clients", "used_memory_human"}


def assert_vault_healthy(body: dict[str, Any]) -> None:
    assert body == {
        "status": "healthy",
        "details": {"status": "healthy", "initialized": True, "sealed": False, "standby": False},
    }


def assert_redis_healthy(body: dict[str, Any]) -> None:
    assert set(body) == {"status", "cluster_enabled", "cluster_state", "nodes", "total_nodes"}
    assert body["status"] == "healthy"
    assert isinstance(body["cluster_state"], str)
    assert body["total_nodes"] == len(body["nodes"]) == 1
    node = body["nodes"][0]
    assert set(node) == NODE_KEYS, node
    assert isinstance(node["host"], str) and type(node["port"]) is int and node["status"] == "healthy", node
    assert type(node["connected_clients"]) is int and isinstance(node["version"], str)


def assert_version_healthy(body: dict[str, Any]) -> None:
    assert set(body) == {"status", "version"} and body["status"] == "healthy", body
    assert isinstance(body["version"], str) and body["version"] and "," not in body["version"], body


async def test_liveness_endpoints(api: Api) -> None:
    assert (await api.get("/health/")).json == {"status": "ok"}
    assert (await api.get("/health/live")).json == {"status": "ok"}


async def test_readiness_with_no_critical_services(api: Api) -> None:
    reply = await api.get("/health/ready")
    assert reply.status == 200 and reply.json == {"status": "ready", "services": {}}, reply


async def test_vault(api: Api) -> None:
    assert_vault_healthy((await api.get("/health/vault")).json)
    assert_vault_healthy((await api.get("/examples/vault/health")).json)


@pytest.mark.parametrize("service", ["postgres", "mysql", "mongodb"])
async def test_databases(api: Api, service: str) -> None:
    assert_version_healthy((await api.get(f"/health/{service}")).json)


async def test_postgres_version_is_the_text_before_the_first_comma(api: Api) -> None:
    assert (await api.get("/health/postgres")).json["version"].startswith("PostgreSQL ")


@pytest.mark.parametrize("path", ["/health/redis", "/health/cache"])
async def test_redis(api: Api, path: str) -> None:
    assert_redis_healthy((await api.get(path)).json)


async def test_redis_reports_the_configured_standalone_node(api: Api, local: Stack) -> None:
    body = (await api.get("/health/redis")).json
    assert (body["cluster_enabled"], body["cluster_state"]) == (False, "unknown")
    node = body["nodes"][0]
    assert (node["host"], node["port"], node["role"]) == (REDIS[0], REDIS[1], "master")


@pytest.mark.parametrize("path", ["/health/rabbitmq", "/health/messaging"])
async def test_rabbitmq(api: Api, path: str) -> None:
    assert (await api.get(path)).json == {"status": "healthy"}


async def test_database_group(api: Api) -> None:
    body = (await api.get("/health/database")).json
    assert set(body) == {"status", "services"} and body["status"] == "healthy", body
    assert set(body["services"]) == {"postgres", "mysql", "mongodb"}
    for service in body["services"].values():
        assert_version_healthy(service)


async def test_all(api: Api) -> None:
    # no-cache: the entry is shared by every instance on this Redis, and another one may have stored its own view.
    body = (await api.get("/health/all", headers={"Cache-Control": "no-cache"})).json
    assert set(body) == {"status", "services"}
    assert set(body["services"]) == {"vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq"}
    assert body["status"] == "healthy", body
    assert_vault_healthy(body["services"]["vault"])
    assert_redis_healthy(body["services"]["redis"])
    assert body["services"]["rabbitmq"] == {"status": "healthy"}
    for name in ("postgres", "mysql", "mongodb"):
        assert_version_healthy(body["services"][name])
