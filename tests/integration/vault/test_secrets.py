"""KV v2 through refapi: masked reads, key lookup, writes with check-and-set, the versioned read, validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.integration.vault.conftest import vault_request
from tests.servers.vault import VaultDouble
from tests.support.contract import checked

pytestmark = pytest.mark.asyncio(loop_scope="module")
Client = TestClient[Any, web.Application]
STORED = {
    "username": "app",
    "password": "pw-value",
    "API_TOKEN": "tok-value",
    "client_secret": "",
    "private_key": None,
    "port": 5432,
    "ratio": 0.5,
    "enabled": True,
    "tags": ["a", "b"],
}
MASKED = {**STORED, "password": "***", "API_TOKEN": "***", "client_secret": "***", "private_key": "***"}


def problems(body: dict[str, Any]) -> list[tuple[list[str], str]]:
    return [(problem["loc"], problem["type"]) for problem in body["details"]["validation_errors"]]


async def test_full_read_masks_sensitive_keys_and_echoes_the_name(
    client: Client, shared_vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    name = unique("Orders_API")
    shared_vault.put_secret(name.lower(), STORED)
    resp = await client.get(f"/examples/vault/secret/{name}")
    body = await checked(resp)
    assert resp.status == 200
    assert body["service"] == name and body["data"] == MASKED
    assert "masked" in body["note"]


async def test_missing_secret_is_404_with_the_name_as_sent(client: Client, unique: Callable[[str], str]) -> None:
    name = unique("Absent")
    resp = await client.get(f"/examples/vault/secret/{name}")
    body = await checked(resp)
    assert resp.status == 404
    assert body["details"] == {"resource_type": "secret", "resource_id": name}


async def test_deleted_latest_version_is_404(
    client: Client, shared_vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    name = unique("gone")
    shared_vault.put_secret(name, {"a": "1"})
    await vault_request(shared_vault, "DELETE", f"secret/data/{name}")
    for path in (f"/examples/vault/secret/{name}", f"/examples/vault/secret/{name}/a"):
        resp = await client.get(path)
        body = await checked(resp)
        assert resp.status == 404 and body["details"]["resource_type"] == "secret"


async def test_key_read_exact_then_case_insensitive_first_sorted(
    client: Client, shared_vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    name = unique("keys")
    shared_vault.put_secret(name, {"host": "h1", "Host": "h2", "HOST": "h3", "Db_Password": "x", "empty": None})
    expected = {"host": "h1", "Host": "h2", "hOsT": "h3", "db_password": "***", "empty": None}
    for key, value in expected.items():
        resp = await client.get(f"/examples/vault/secret/{name}/{key}")
        body = await checked(resp)
        assert resp.status == 200
        assert body["service"] == name and body["key"] == key and body["value"] == value


async def test_missing_key_is_404_secret_key(
    client: Client, shared_vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    name = unique("Keys")
    shared_vault.put_secret(name.lower(), {"a": "1"})
    resp = await client.get(f"/examples/vault/secret/{name}/Missing")
    body = await checked(resp)
    assert resp.status == 404
    assert body["details"] == {"resource_type": "secret_key", "resource_id": f"{name}/Missing"}


async def test_path_validation(client: Client) -> None:
    cases = {
        "/examples/vault/secret/" + "a" * 51: [(["path", "service_name"], "string_too_long")],
        "/examples/vault/secret/bad.name": [(["path", "service_name"], "string_pattern_mismatch")],
        "/examples/vault/secret/versioned": [(["path", "service_name"], "reserved_name")],
        "/examples/vault/secret/VersionED/key": [(["path", "service_name"], "reserved_name")],
        "/examples/vault/secret/ok/" + "k" * 101: [(["path", "key"], "string_too_long")],
        "/examples/vault/secret/versioned/ok?version=0": [(["query", "version"], "greater_than_equal")],
        "/examples/vault/secret/versioned/ok?version=1.0": [(["query", "version"], "int_parsing")],
    }
    for path, expected in cases.items():
        resp = await client.get(path)
        body = await checked(resp)
        assert resp.status == 422, path
        assert problems(body) == expected, path
        assert "bad.name" not in str(body)


async def test_write_then_versioned_read_round_trip(
    client: Client, shared_vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    name = unique("Payments")
    first = await client.post(f"/examples/vault/secret/{name}", json={"api_key": "k1", "region": "eu"})
    written = await checked(first)
    assert first.status == 200 and first.headers["Cache-Control"] == "no-store"
    assert written["service"] == name and written["version"] == 1 and written["action"] == "written"
    assert written["created_time"]
    second = await client.post(f"/examples/vault/secret/{name}?cas=1", json={"password": "p2", "limit": 10})
    assert (await checked(second))["version"] == 2

    latest = await client.get(f"/examples/vault/secret/versioned/{name}")
    body = await checked(latest)
    assert latest.status == 200 and latest.headers["Cache-Control"] == "no-store"
    assert body["service"] == name and body["version"] == 2
    assert body["data"] == {"password": "***", "limit": 10}  # the new version replaced the whole secret
    assert body["metadata"]["version"] == 2 and body["metadata"]["deletion_time"] is None
    assert [item["version"] for item in body["versions"]] == [1, 2]
    assert body["versions"][0]["created_time"] == written["created_time"]

    old = await checked(await client.get(f"/examples/vault/secret/versioned/{name}?version=1"))
    assert old["version"] == 1 and old["data"] == {"api_key": "k1", "region": "eu"}

    full = await checked(await client.get(f"/examples/vault/secret/{name.upper()}"))
    assert full["service"] == name.upper() and full["data"] == {"password": "***", "limit": 10}


async def test_versioned_read_of_deleted_and_destroyed_versions(
    client: Client, shared_vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    name = unique("history")
    for value in ("v1", "v2", "v3"):
        shared_vault.put_secret(name, {"value": value})
    await vault_request(shared_vault, "POST", f"secret/delete/{name}", {"versions": [3]})
    await vault_request(shared_vault, "POST", f"secret/destroy/{name}", {"versions": [1]})

    latest = await checked(await client.get(f"/examples/vault/secret/versioned/{name}"))
    assert latest["version"] == 3 and latest["data"] is None
    assert latest["metadata"]["deletion_time"] is not None and latest["metadata"]["destroyed"] is False
    destroyed = await checked(await client.get(f"/examples/vault/secret/versioned/{name}?version=1"))
    assert destroyed["data"] is None and destroyed["metadata"]["destroyed"] is True
    assert [(v["version"], v["destroyed"], v["deletion_time"] is None) for v in latest["versions"]] == [
        (1, True, True), (2, False, True), (3, False, False)
    ]


async def test_versioned_read_not_found(
    client: Client, shared_vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    name = unique("Short")
    resp = await client.get(f"/examples/vault/secret/versioned/{name}")
    assert (await checked(resp))["details"] == {"resource_type": "secret", "resource_id": name}
    shared_vault.put_secret(name.lower(), {"a": "1"})
    resp = await client.get(f"/examples/vault/secret/versioned/{name}?version=7")
    body = await checked(resp)
    assert resp.status == 404
    assert body["details"] == {"resource_type": "secret_version", "resource_id": f"{name}@7"}


async def test_versioned_route_wins_over_the_key_read(
    client: Client, shared_vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    name = unique("svc")
    shared_vault.put_secret(name, {"a": "1"})
    body = await checked(await client.get(f"/examples/vault/secret/versioned/{name}"))
    assert body["version"] == 1 and body["data"] == {"a": "1"}


async def test_check_and_set(client: Client, unique: Callable[[str], str]) -> None:
    name = unique("cas")
    assert (await client.post(f"/examples/vault/secret/{name}?cas=0", json={"a": "1"})).status == 200
    resp = await client.post(f"/examples/vault/secret/{name}?cas=0", json={"a": "2"})
    body = await checked(resp)
    assert resp.status == 409 and body["details"] == {"reason": "cas_mismatch"}
    resp = await client.post(f"/examples/vault/secret/{name}?cas=5", json={"a": "2"})
    assert resp.status == 409
    resp = await client.post(f"/examples/vault/secret/{name}?cas=1", json={"a": "2"})
    assert (await checked(resp))["version"] == 2


async def test_credential_secrets_are_read_only(client: Client) -> None:
    for name in ("postgres", "MySQL", "mongodb", "Redis-1", "rabbitmq", "RefAPI"):
        resp = await client.post(f"/examples/vault/secret/{name}", json={"password": "x"})
        body = await checked(resp)
        assert resp.status == 403 and body["details"] == {"reason": "read_only"}, name
    # Validation comes first.
    resp = await client.post("/examples/vault/secret/postgres", json={})
    assert resp.status == 422


async def test_write_body_validation(client: Client) -> None:
    url = "/examples/vault/secret/valid-name"
    cases: list[tuple[Any, list[tuple[list[str], str]]]] = [
        ({}, [(["body"], "too_few_fields")]),
        ({f"k{i}": "v" for i in range(51)}, [(["body"], "too_many_fields")]),
        ({"bad name": "v", "ok": "v"}, [(["body"], "string_pattern_mismatch")]),
        ({"k" * 101: "v"}, [(["body"], "string_too_long")]),
        ({"": "v"}, [(["body"], "string_too_short")]),
        ({"a": None, "b": [1], "c": {"x": 1}, "d": "x" * 10001, "e": "x" * 10000, "f": 1.5, "g": False},
         [(["body", "a"], "value_type"), (["body", "b"], "value_type"), (["body", "c"], "value_type"),
          (["body", "d"], "value_type")]),
        ([1, 2], [(["body"], "dict_type")]),
    ]
    for document, expected in cases:
        resp = await client.post(url, json=document)
        body = await checked(resp)
        assert resp.status == 422, document
        assert problems(body) == expected, document
        assert "bad name" not in str(body)
    resp = await client.post(url, data=b"{not json", headers={"Content-Type": "application/json"})
    assert problems(await checked(resp)) == [(["body"], "json_invalid")]
    resp = await client.post(f"{url}?cas=-1", json={"a": "1"})
    assert problems(await checked(resp)) == [(["query", "cas"], "greater_than_equal")]
    resp = await client.post(f"{url}?cas=x", json={})
    assert problems(await checked(resp)) == [(["query", "cas"], "int_parsing"), (["body"], "too_few_fields")]
    resp = await client.post(url, data="a=1", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    assert (await checked(resp))["details"] == {"allowed_content_types": ["application/json"]}


async def test_health_endpoints(client: Client) -> None:
    expected = {
        "status": "healthy",
        "details": {"status": "healthy", "initialized": True, "sealed": False, "standby": False},
    }
    for path in ("/health/vault", "/examples/vault/health"):
        resp = await client.get(path)
        assert resp.status == 200 and await checked(resp) == expected
