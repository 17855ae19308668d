"""Transit through refapi: GET and POST forms, round trips, '/' in ciphertexts, invalid ciphertexts, key creation."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from refapi import keys
from tests.integration.vault.conftest import VaultApp, vault_request
from tests.servers.vault import VaultDouble
from tests.support.contract import checked

pytestmark = pytest.mark.asyncio(loop_scope="module")
Client = TestClient[Any, web.Application]


def problems(body: dict[str, Any]) -> list[tuple[list[str], str]]:
    return [(problem["loc"], problem["type"]) for problem in body["details"]["validation_errors"]]


async def encrypt_post(client: Client, plaintext: str) -> str:
    resp = await client.post("/examples/vault/transit/encrypt", json={"plaintext": plaintext})
    body = await checked(resp)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    assert body["key_name"] == "refapi" and body["ciphertext"].startswith("vault:v1:")
    return str(body["ciphertext"])


async def decrypt_get(client: Client, ciphertext: str) -> str:
    resp = await client.get(f"/examples/vault/transit/decrypt/{ciphertext}")
    body = await checked(resp)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store", body
    return str(body["plaintext"])


async def test_post_round_trip(client: Client) -> None:
    for plaintext in ("hello", "naïve café ✓ 🚀", "a/b?c#d", " "):
        ciphertext = await encrypt_post(client, plaintext)
        resp = await client.post("/examples/vault/transit/decrypt", json={"ciphertext": ciphertext})
        body = await checked(resp)
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        assert body == {"key_name": "refapi", "plaintext": plaintext}


async def test_get_round_trip_percent_decoded(client: Client) -> None:
    plaintext = "card 4111 é+%"
    resp = await client.get(f"/examples/vault/transit/encrypt/{quote(plaintext, safe='')}")
    body = await checked(resp)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    assert await decrypt_get(client, body["ciphertext"]) == plaintext


async def test_ciphertexts_containing_slashes_decrypt_through_both_forms(client: Client) -> None:
    # The nonce is random, so about half of all ciphertexts contain a '/': a few tries find one.
    ciphertexts = [await encrypt_post(client, f"secret {i}") for i in range(40)]
    slashed = [(i, c) for i, c in enumerate(ciphertexts) if "/" in c.partition("vault:v1:")[2]]
    assert slashed, "no ciphertext with '/' in 40 encryptions"
    for index, ciphertext in slashed[:3]:
        assert await decrypt_get(client, ciphertext) == f"secret {index}"
        resp = await client.post("/examples/vault/transit/decrypt", json={"ciphertext": ciphertext})
        assert (await checked(resp))["plaintext"] == f"secret {index}"


async def test_rejected_ciphertext_is_422_invalid_ciphertext_and_no_breaker_failure(client: Client) -> None:
    forged = "vault:v1:" + base64.b64encode(b"x" * 40).decode()
    too_new = "vault:v9:" + base64.b64encode(b"x" * 40).decode()
    for _ in range(client.app[keys.SETTINGS].circuit_breaker_failure_threshold + 1):
        for ciphertext in (forged, too_new):
            resp = await client.get(f"/examples/vault/transit/decrypt/{ciphertext}")
            assert problems(await checked(resp)) == [(["path", "ciphertext"], "invalid_ciphertext")]
            resp = await client.post("/examples/vault/transit/decrypt", json={"ciphertext": ciphertext})
            body = await checked(resp)
            assert problems(body) == [(["body", "ciphertext"], "invalid_ciphertext")]
            assert ciphertext not in str(body)
    # Vault answered every time: the breaker saw successes and stays closed.
    assert await decrypt_get(client, await encrypt_post(client, "still fine")) == "still fine"


async def test_non_utf8_plaintext_is_invalid_ciphertext(client: Client, shared_vault: VaultDouble) -> None:
    await encrypt_post(client, "make sure the key exists")
    raw = base64.b64encode(b"\xff\xfe\x00binary").decode()
    answer = await vault_request(shared_vault, "POST", "transit/encrypt/refapi", {"plaintext": raw})
    resp = await client.post("/examples/vault/transit/decrypt", json={"ciphertext": answer["data"]["ciphertext"]})
    assert problems(await checked(resp)) == [(["body", "ciphertext"], "invalid_ciphertext")]


async def test_validation(client: Client) -> None:
    cases = [
        ("GET", "/examples/vault/transit/encrypt/" + "é" * 513, None, [(["path", "plaintext"], "string_too_long")]),
        ("GET", "/examples/vault/transit/decrypt/vault:v1:abc!", None,
         [(["path", "ciphertext"], "string_pattern_mismatch")]),
        ("GET", "/examples/vault/transit/decrypt/vault:v1:" + "A" * 2040, None,
         [(["path", "ciphertext"], "string_too_long")]),
        ("POST", "/examples/vault/transit/encrypt", {"plaintext": ""}, [(["body", "plaintext"], "string_too_short")]),
        ("POST", "/examples/vault/transit/encrypt", {"plaintext": "é" * 32769},
         [(["body", "plaintext"], "string_too_long")]),
        ("POST", "/examples/vault/transit/encrypt", {"plaintext": 5}, [(["body", "plaintext"], "string_type")]),
        ("POST", "/examples/vault/transit/encrypt", {}, [(["body", "plaintext"], "missing")]),
        ("POST", "/examples/vault/transit/encrypt", {"plaintext": "x", "extra": 1},
         [(["body", "extra"], "unknown_field")]),
        ("POST", "/examples/vault/transit/decrypt", {"ciphertext": "plain"},
         [(["body", "ciphertext"], "string_pattern_mismatch")]),
    ]
    for method, path, document, expected in cases:
        resp = await client.request(method, path, json=document)
        body = await checked(resp)
        assert resp.status == 422 and problems(body) == expected, (method, path[:60])
    # 1024 bytes is the limit, not 1024 characters.
    resp = await client.get("/examples/vault/transit/encrypt/" + quote("é" * 512))
    assert resp.status == 200


@pytest.mark.asyncio(loop_scope="function")
async def test_transit_key_is_created_on_first_use_and_echoed(make_vault_app: VaultApp, vault: VaultDouble) -> None:
    client = await make_vault_app(vault, vault_transit_key="orders")
    resp = await client.post("/examples/vault/transit/encrypt", json={"plaintext": "x"})
    body = await checked(resp)
    assert body["key_name"] == "orders"
    assert vault.request_log.count(("GET", "/v1/transit/keys/orders")) == 1
    assert ("POST", "/v1/transit/keys/orders") in vault.request_log
    # Once known to exist, the key is not looked up again.
    await checked(await client.post("/examples/vault/transit/encrypt", json={"plaintext": "y"}))
    assert vault.request_log.count(("GET", "/v1/transit/keys/orders")) == 1
    key = await vault_request(vault, "GET", "transit/keys/orders")
    assert key["data"]["type"] == "aes256-gcm96"
