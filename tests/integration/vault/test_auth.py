"""Vault auth through refapi: AppRole login, renewal, replacement of an expired token, denial, no configuration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from refapi import keys
from tests.integration.vault.conftest import VaultApp, vault_client
from tests.servers.vault import VaultDouble
from tests.support.contract import checked

LOGIN = ("POST", "/v1/auth/approle/login")
RENEW = ("POST", "/v1/auth/token/renew-self")


async def test_approle_ids_from_environment(
    make_vault_app: VaultApp, vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    role_id, secret_id = vault.create_approle("refapi")
    vault.put_secret("orders", {"region": "eu"})
    client = await make_vault_app(vault, vault_token="", vault_role_id=role_id, vault_secret_id=secret_id)
    assert (await checked(await client.get("/examples/vault/secret/orders")))["data"] == {"region": "eu"}
    assert vault_client(client).uses_approle and LOGIN in vault.request_log


async def test_approle_ids_from_files(make_vault_app: VaultApp, vault: VaultDouble, tmp_path: Path) -> None:
    for role_file, secret_file in (("role-id", "secret-id"), ("role_id", "secret_id")):
        directory = tmp_path / role_file
        directory.mkdir()
        role_id, secret_id = vault.create_approle(f"refapi-{role_file}")
        (directory / role_file).write_text(role_id + "\n")
        (directory / secret_file).write_text(secret_id + "\n")
        client = await make_vault_app(vault, vault_token="", vault_approle_dir=str(directory))
        resp = await client.post("/examples/vault/transit/encrypt", json={"plaintext": "x"})
        assert resp.status == 200 and vault_client(client).uses_approle
        await client.close()


async def test_expired_token_is_replaced_by_a_login_and_the_request_retried(
    make_vault_app: VaultApp, vault: VaultDouble
) -> None:
    role_id, secret_id = vault.create_approle("refapi", token_ttl=3600)
    vault.put_secret("orders", {"region": "eu"})
    client = await make_vault_app(vault, vault_token="", vault_role_id=role_id, vault_secret_id=secret_id)
    assert (await client.get("/examples/vault/secret/orders")).status == 200
    logins = vault.request_log.count(LOGIN)
    # The test needs the token the app holds to expire it in the double, as its TTL running out would.
    vault.expire_token(vault_client(client)._lease.token)  # type: ignore[union-attr]
    resp = await client.get("/examples/vault/secret/orders")
    assert resp.status == 200 and (await checked(resp))["data"] == {"region": "eu"}
    assert vault.request_log.count(LOGIN) == logins + 1
    # Concurrent requests that all see the expired token share one login.
    vault.expire_token(vault_client(client)._lease.token)  # type: ignore[union-attr]
    responses = await asyncio.gather(*(client.get("/examples/vault/secret/orders") for _ in range(5)))
    assert [resp.status for resp in responses] == [200] * 5
    assert vault.request_log.count(LOGIN) == logins + 2


async def test_short_lived_tokens_are_renewed_then_replaced_without_a_failed_request(
    make_vault_app: VaultApp, vault: VaultDouble
) -> None:
    # 2 s tokens that no renewal can extend past 4 s: the app must renew, then log in again, on its own.
    role_id, secret_id = vault.create_approle("refapi", token_ttl=2, token_max_ttl=4)
    vault.put_secret("orders", {"region": "eu"})
    client = await make_vault_app(vault, vault_token="", vault_role_id=role_id, vault_secret_id=secret_id)
    deadline = time.monotonic() + 20
    statuses = []
    while not (vault.request_log.count(RENEW) >= 1 and vault.request_log.count(LOGIN) >= 3):
        assert time.monotonic() < deadline, f"no renewal and re-logins: {vault.request_log[-10:]}"
        statuses.append((await client.get("/examples/vault/secret/orders")).status)
        await asyncio.sleep(0.05)  # pacing the requests, not synchronisation: the loop waits for a condition
    assert set(statuses) == {200}


async def test_renewal_of_a_configured_token(make_vault_app: VaultApp, vault: VaultDouble) -> None:
    token = vault.create_token(ttl=600, renewable=True)
    client = await make_vault_app(vault, vault_token=token)
    vault_api = vault_client(client)
    assert 0 < (await vault_api.maintain_token() or 0) <= 300  # looked up: next step at half the TTL
    lease = await vault_api.renew_token()
    assert lease.ttl == 600 and not lease.capped and RENEW in vault.request_log
    assert (await client.post("/examples/vault/transit/encrypt", json={"plaintext": "x"})).status == 200


async def test_plain_tokens_that_cannot_be_renewed_are_kept(make_vault_app: VaultApp, vault: VaultDouble) -> None:
    client = await make_vault_app(vault, vault_token=vault.create_token(ttl=600, renewable=False))
    assert await vault_client(client).maintain_token() is None
    client = await make_vault_app(vault)  # the root token never expires
    assert await vault_client(client).maintain_token() is None


async def test_denied_path_is_503_denied_and_leaves_the_breaker_closed(
    make_vault_app: VaultApp, vault: VaultDouble
) -> None:
    client = await make_vault_app(vault, vault_token=vault.create_token(deny_paths=["secret/"]))
    for _ in range(client.app[keys.SETTINGS].circuit_breaker_failure_threshold + 2):
        resp = await client.get("/examples/vault/secret/orders")
        body = await checked(resp)
        assert resp.status == 503 and body["error"] == "ServiceUnavailable"
        assert body["details"] == {"service": "vault", "reason": "denied"}
        assert resp.headers["Retry-After"] == "5"
    assert (await client.post("/examples/vault/transit/encrypt", json={"plaintext": "x"})).status == 200


async def test_without_auth_operations_are_503_not_configured(make_vault_app: VaultApp, vault: VaultDouble) -> None:
    client = await make_vault_app(vault, vault_token="")
    for _ in range(client.app[keys.SETTINGS].circuit_breaker_failure_threshold + 2):
        resp = await client.post("/examples/vault/transit/encrypt", json={"plaintext": "x"})
        assert (await checked(resp))["details"] == {"service": "vault", "reason": "not_configured"}
    # Health needs no token.
    assert (await checked(await client.get("/health/vault")))["status"] == "healthy"


async def test_rejected_approle_login_is_503_auth_failed(make_vault_app: VaultApp, vault: VaultDouble) -> None:
    role_id, _ = vault.create_approle("refapi")
    client = await make_vault_app(vault, vault_token="", vault_role_id=role_id, vault_secret_id="wrong")
    resp = await client.get("/examples/vault/secret/orders")
    assert (await checked(resp))["details"] == {"service": "vault", "reason": "auth_failed"}


async def test_write_needs_the_api_key_when_configured(
    make_vault_app: VaultApp, shared_vault: VaultDouble, unique: Callable[[str], str]
) -> None:
    client = await make_vault_app(shared_vault, api_keys=("key-one", "key-two"))
    url = f"/examples/vault/secret/{unique('guarded')}"
    resp = await client.post(url, json={"a": "1"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == 'ApiKey header="X-API-Key"'
    await checked(resp)
    resp = await client.post(url, json={}, headers={"X-API-Key": "wrong"})
    assert resp.status == 401  # before validation
    resp = await client.post(url, json={"a": "1"}, headers={"X-API-Key": "key-two"})
    assert (await checked(resp))["version"] == 1
    assert (await client.get(url)).status == 200  # reads need no key
