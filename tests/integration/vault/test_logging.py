"""What the Vault operations leave in the logs: no token, AppRole id, secret value, plaintext or ciphertext."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest

from refapi.logs import JsonFormatter
from tests.integration.vault.conftest import VaultApp, vault_client
from tests.servers.vault import VaultDouble
from tests.support.contract import checked


async def test_logs_hold_no_credentials_secret_values_or_transit_payloads(
    make_vault_app: VaultApp, vault: VaultDouble, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    role_id, secret_id = vault.create_approle("refapi", token_ttl=600)
    vault.put_secret("postgres", {"user": "pg-user-value", "password": "pg-password-value"})
    client = await make_vault_app(vault, vault_token="", vault_role_id=role_id, vault_secret_id=secret_id)
    tokens = [vault_client(client)._lease.token]  # type: ignore[union-attr]
    sensitive = [role_id, secret_id, "pg-password-value", "written-secret-value", "written-token-value",
                 "transit plaintext value", "path plaintext value"]

    write = await client.post("/examples/vault/secret/payments",
                              json={"api_token": "written-token-value", "note": "written-secret-value"})
    assert write.status == 200
    read = await checked(await client.get("/examples/vault/secret/payments"))
    assert read["data"] == {"api_token": "***", "note": "written-secret-value"}
    assert (await client.get("/examples/vault/secret/payments/note")).status == 200
    assert (await client.get("/examples/vault/secret/versioned/payments")).status == 200

    encrypted = await checked(await client.post("/examples/vault/transit/encrypt",
                                                json={"plaintext": "transit plaintext value"}))
    in_path = await checked(await client.get("/examples/vault/transit/encrypt/" + quote("path plaintext value")))
    ciphertexts = [encrypted["ciphertext"], in_path["ciphertext"]]
    assert (await client.get(f"/examples/vault/transit/decrypt/{in_path['ciphertext']}")).status == 200
    assert (await client.post("/examples/vault/transit/decrypt", json={"ciphertext": ciphertexts[0]})).status == 200
    assert (await client.get("/examples/vault/transit/decrypt/vault:v1:Zm9yZ2VkLWNpcGhlcnRleHQ=")).status == 422

    # A token that dies makes the app log in again (and log about it).
    vault.expire_token(tokens[0])
    assert (await client.get("/examples/vault/secret/payments")).status == 200
    tokens.append(vault_client(client)._lease.token)  # type: ignore[union-attr]
    assert await vault_client(client).renew_token()

    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records] + capfd.readouterr().out.splitlines()
    logged = "\n".join(lines)
    for value in [*sensitive, *tokens, *ciphertexts, "Zm9yZ2VkLWNpcGhlcnRleHQ="]:
        assert value not in logged, "a sensitive value reached the logs"
    assert quote("path plaintext value") not in logged

    access = [json.loads(line) for line in lines if line.startswith("{") and '"refapi.access"' in line]
    transit_paths = {line["path"] for line in access if line["route"].startswith("/examples/vault/transit/")}
    assert transit_paths == {
        "/examples/vault/transit/encrypt", "/examples/vault/transit/decrypt",
        "/examples/vault/transit/encrypt/[REDACTED]", "/examples/vault/transit/decrypt/[REDACTED]",
    }
