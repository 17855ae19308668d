"""Vault failing under refapi: down, black-holed, sealed; the health check's body for every kind of answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from refapi import keys
from tests.integration.vault.conftest import VaultApp
from tests.servers.vault import VaultDouble
from tests.support.contract import checked
from tests.support.tcp_proxy import TcpProxy

STANDARD_UNHEALTHY = {"status": "unhealthy", "details": {"status": "unhealthy", "error": "Health check failed"}}
OPERATIONS: list[tuple[str, str, Any]] = [
    ("GET", "/examples/vault/secret/orders", None),
    ("GET", "/examples/vault/secret/orders/region", None),
    ("GET", "/examples/vault/secret/versioned/orders", None),
    ("POST", "/examples/vault/secret/orders", {"region": "us"}),
    ("GET", "/examples/vault/transit/encrypt/hello", None),
    ("POST", "/examples/vault/transit/decrypt", {"ciphertext": "vault:v1:AAAA"}),
]


@pytest.fixture
def proxy(vault: VaultDouble) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", vault.port).start() as running:
        yield running


async def test_vault_down_gives_503_unreachable_and_unhealthy(
    make_vault_app: VaultApp, vault: VaultDouble, proxy: TcpProxy
) -> None:
    vault.put_secret("orders", {"region": "eu"})
    client = await make_vault_app(
        vault, vault_addr=f"http://127.0.0.1:{proxy.port}", circuit_breaker_failure_threshold=50
    )
    assert (await client.get("/examples/vault/secret/orders")).status == 200
    proxy.stop()
    for method, path, document in OPERATIONS:
        resp = await client.request(method, path, json=document)
        body = await checked(resp)
        assert resp.status == 503, path
        assert body["error"] == "ServiceUnavailable"
        assert body["details"] == {"service": "vault", "reason": "unreachable"}
        assert resp.headers["Retry-After"] == "5"
    for path in ("/health/vault", "/examples/vault/health"):
        assert await checked(await client.get(path)) == STANDARD_UNHEALTHY
    proxy.start()  # back on the same port: the next request simply works
    assert (await checked(await client.get("/examples/vault/secret/orders")))["data"] == {"region": "eu"}


async def test_breaker_opens_after_consecutive_failures(
    make_vault_app: VaultApp, vault: VaultDouble, proxy: TcpProxy
) -> None:
    client = await make_vault_app(vault, vault_addr=f"http://127.0.0.1:{proxy.port}")
    proxy.stop()
    for _ in range(client.app[keys.SETTINGS].circuit_breaker_failure_threshold):
        assert (await client.get("/examples/vault/secret/orders")).status == 503
    connections = proxy.connections_total
    resp = await client.get("/examples/vault/secret/orders")
    body = await checked(resp)
    assert body["error"] == "CircuitOpen" and body["details"] == {"service": "vault"}
    assert int(resp.headers["Retry-After"]) >= 1 and proxy.connections_total == connections


async def test_black_holed_vault_times_out_and_never_holds_up_startup(
    make_vault_app: VaultApp, vault: VaultDouble, proxy: TcpProxy
) -> None:
    vault.put_secret("postgres", {"password": "from-vault"})
    proxy.blackhole()
    started = time.monotonic()
    client = await make_vault_app(vault, vault_addr=f"http://127.0.0.1:{proxy.port}", backend_timeout=0.5,
                                  health_check_timeout=0.5, postgres_password="from-env")
    # Startup waited for at most one BACKEND_TIMEOUT for Vault (the absent backends add their own).
    assert time.monotonic() - started < 10
    assert client.app[keys.CREDENTIALS].get("postgres")["password"] == "from-env"
    resp = await client.post("/examples/vault/transit/encrypt", json={"plaintext": "x"})
    assert (await checked(resp))["details"] == {"service": "vault", "reason": "timeout"}
    assert await checked(await client.get("/health/vault")) == STANDARD_UNHEALTHY


async def test_sealed_vault_gives_503_error_and_an_unhealthy_check(
    make_vault_app: VaultApp, vault: VaultDouble
) -> None:
    client = await make_vault_app(vault)
    vault.seal()
    resp = await client.get("/examples/vault/secret/orders")
    assert (await checked(resp))["details"] == {"service": "vault", "reason": "error"}
    body = await checked(await client.get("/health/vault"))
    assert body == {
        "status": "unhealthy",
        "details": {"status": "unhealthy", "initialized": True, "sealed": True, "standby": True},
    }
    vault.unseal()
    assert (await checked(await client.get("/health/vault")))["status"] == "healthy"


@pytest.mark.parametrize(
    ("status", "answer", "details"),
    [
        (501, None, {"initialized": False, "sealed": False, "standby": False}),
        (503, None, {"initialized": True, "sealed": True, "standby": False}),
        (429, None, {"initialized": True, "sealed": False, "standby": True}),
        (503, {"initialized": True, "sealed": False, "standby": False}, {"initialized": True, "sealed": False,
                                                                         "standby": False}),
        (200, {"initialized": True, "sealed": False, "standby": True}, {"initialized": True, "sealed": False,
                                                                        "standby": True}),
    ],
)
async def test_health_body_for_each_answer(
    make_vault_app: VaultApp, aiohttp_server: Any, status: int, answer: Any, details: dict[str, bool]
) -> None:
    requests: list[tuple[str, str | None]] = []

    async def health(request: web.Request) -> web.Response:
        requests.append((request.query_string, request.headers.get("X-Vault-Token")))
        if answer is None:
            return web.Response(status=status)
        return web.json_response(answer, status=status)

    fake = web.Application()
    fake.router.add_get("/v1/sys/health", health)
    server = await aiohttp_server(fake)
    client = await make_vault_app(vault_addr=str(server.make_url("")), vault_token="")
    body = await checked(await client.get("/health/vault"))
    state = "healthy" if status == 200 else "unhealthy"
    assert body == {"status": state, "details": {"status": state, **details}}
    assert requests == [("standbyok=true", None)]
