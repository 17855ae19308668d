"""The Vault double, exercised through hvac and raw HTTP, and bin/issue-cert against it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import hvac
import hvac.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.servers.vault import VaultDouble

REPO = Path(__file__).resolve().parents[2]
ISSUE_CERT = REPO / "bin" / "issue-cert"
RFC3339_NANO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
PERMISSION_DENIED = {"errors": ["permission denied"]}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultDouble]:
    double = VaultDouble().start()
    yield double
    double.stop()


@pytest.fixture
def client(vault: VaultDouble) -> Iterator[hvac.Client]:
    api = hvac.Client(url=vault.url, token=vault.root_token)
    yield api
    api.adapter.close()


@pytest.fixture
async def http(vault: VaultDouble) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=vault.url) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    token: str | None = "root",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """One raw request; returns the status and the JSON body (None when there is none)."""
    sent = {"X-Vault-Token": token} if token else {}
    async with http.request(method, f"/v1/{path}", headers={**sent, **(headers or {})}, **kwargs) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


# --- sys/health and routing ----------------------------------------------------------------------


async def test_health_needs_no_token_and_honours_status_codes(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "sys/health", token=None)
    assert status == 200
    assert body["initialized"] is True and body["sealed"] is False and body["standby"] is False
    assert {
        "performance_standby",
        "replication_performance_mode",
        "replication_dr_mode",
        "server_time_utc",
        "version",
        "cluster_name",
        "cluster_id",
    } <= body.keys()
    assert (await call(http, "GET", "sys/health?standbyok=true", token=None))[0] == 200
    assert (await call(http, "GET", "sys/health?activecode=299", token=None))[0] == 299
    async with http.head("/v1/sys/health") as response:
        assert response.status == 200
        assert await response.read() == b""


async def test_unknown_routes_paths_and_methods(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "nowhere/at/all")
    assert status == 404
    assert body == {"errors": ['no handler for route "nowhere/at/all". route entry not found.']}
    status, body = await call(http, "GET", "transit/no-such-endpoint")
    assert (status, body) == (404, {"errors": ["1 error occurred:\n\t* unsupported path\n\n"]})
    status, body = await call(http, "DELETE", "transit/encrypt/some-key")
    assert (status, body) == (405, {"errors": ["1 error occurred:\n\t* unsupported operation\n\n"]})
    assert (await call(http, "PUT", "sys/health"))[0] == 405


# --- tokens ---------------------------------------------------------------------------------------


async def test_token_header_bearer_and_bad_tokens(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "auth/token/lookup-self")
    assert status == 200
    assert body["data"]["policies"] == ["root"] and body["data"]["expire_time"] is None
    status, body = await call(
        http, "GET", "auth/token/lookup-self", token=None, headers={"Authorization": "Bearer root"}
    )
    assert (status, body["data"]["id"]) == (200, "root")
    assert await call(http, "GET", "auth/token/lookup-self", token=None) == (403, PERMISSION_DENIED)
    assert await call(http, "GET", "secret/data/anything", token="hvs.bogus") == (403, PERMISSION_DENIED)


def test_hvac_sees_valid_and_invalid_tokens(vault: VaultDouble, client: hvac.Client) -> None:
    assert client.is_authenticated()
    stranger = hvac.Client(url=vault.url, token="hvs.not-a-token")
    try:
        assert not stranger.is_authenticated()
        with pytest.raises(hvac.exceptions.Forbidden):
            stranger.secrets.kv.v2.read_secret_version("x", raise_on_deleted_version=True)
    finally:
        stranger.adapter.close()


def test_token_ttl_renewal_respects_explicit_max_ttl(vault: VaultDouble) -> None:
    api = hvac.Client(url=vault.url, token=vault.create_token(ttl=60, explicit_max_ttl=120, policies=["app"]))
    try:
        data = api.auth.token.lookup_self()["data"]
        assert data["policies"] == ["app", "default"] and data["renewable"] is True
        assert 30 <= data["ttl"] <= 60 and data["creation_ttl"] == 60 and data["explicit_max_ttl"] == 120
        assert RFC3339_NANO.fullmatch(data["expire_time"])
        assert api.auth.token.renew_self()["auth"]["lease_duration"] == 60
        capped = api.auth.token.renew_self(increment="1h")
        assert 60 < capped["auth"]["lease_duration"] <= 120
        assert "capped" in capped["warnings"][0]
    finally:
        api.adapter.close()


async def test_non_renewable_expired_and_revoked_tokens(vault: VaultDouble, http: aiohttp.ClientSession) -> None:
    fixed = vault.create_token(renewable=False)
    status, body = await call(http, "POST", "auth/token/renew-self", token=fixed)
    assert (status, body) == (400, {"errors": ["lease is not renewable"]})
    expired = vault.create_token()
    vault.expire_token(expired)
    assert await call(http, "GET", "auth/token/lookup-self", token=expired) == (403, PERMISSION_DENIED)
    parent = vault.create_token(policies=["app"])
    status, body = await call(http, "POST", "auth/token/create", token=parent, json={"ttl": "10m"})
    child = body["auth"]["client_token"]
    assert (status, body["auth"]["orphan"]) == (200, False)
    vault.revoke_token(parent)
    assert (await call(http, "GET", "auth/token/lookup-self", token=parent))[0] == 403
    assert (await call(http, "GET", "auth/token/lookup-self", token=child))[0] == 403


async def test_tokens_expire_by_wall_clock(vault: VaultDouble, http: aiohttp.ClientSession) -> None:
    token = vault.create_token(ttl=1)
    assert (await call(http, "GET", "auth/token/lookup-self", token=token))[0] == 200
    deadline = time.monotonic() + 10
    while (await call(http, "GET", "auth/token/lookup-self", token=token))[0] != 403:
        assert time.monotonic() < deadline, "the token outlived its TTL"
        await asyncio.sleep(0.05)


async def test_token_create_answers_with_an_auth_block(vault: VaultDouble, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "POST", "auth/token/create", json={"policies": ["app"], "ttl": "30m"})
    assert status == 200 and body["data"] is None
    auth = body["auth"]
    assert auth["policies"] == auth["token_policies"] == ["app", "default"]
    assert (auth["lease_duration"], auth["renewable"], auth["token_type"]) == (1800, True, "service")
    assert auth["client_token"].startswith("hvs.") and auth["accessor"]
    limited = vault.create_token(policies=["app"])
    status, body = await call(http, "POST", "auth/token/create", token=limited, json={"policies": ["admin"]})
    assert (status, body) == (400, {"errors": ["child policies must be subset of parent"]})


async def test_deny_paths_forbid_only_their_prefixes(vault: VaultDouble, http: aiohttp.ClientSession) -> None:
    token = vault.create_token(deny_paths=["secret/data/private"])
    status, body = await call(http, "GET", "secret/data/private/db", token=token)
    assert status == 403 and "permission denied" in body["errors"][0]
    assert await call(http, "GET", "secret/data/public/db", token=token) == (404, {"errors": []})


# --- AppRole --------------------------------------------------------------------------------------


def test_approle_login_renewal_and_bad_credentials(vault: VaultDouble) -> None:
    role_id, secret_id = vault.create_approle("svc", token_ttl=300, token_max_ttl=600, policies=["app"])
    api = hvac.Client(url=vault.url)
    try:
        auth = api.auth.approle.login(role_id=role_id, secret_id=secret_id)["auth"]
        assert auth["policies"] == auth["token_policies"] == ["app", "default"]
        assert (auth["lease_duration"], auth["renewable"], auth["metadata"]) == (300, True, {"role_name": "svc"})
        assert api.token == auth["client_token"]
        looked_up = api.auth.token.lookup_self()["data"]
        assert (looked_up["path"], looked_up["display_name"], looked_up["orphan"]) == (
            "auth/approle/login",
            "approle",
            True,
        )
        assert api.auth.token.renew_self()["auth"]["lease_duration"] == 300
        assert 300 < api.auth.token.renew_self(increment="2h")["auth"]["lease_duration"] <= 600
        for wrong_role, wrong_secret in ((role_id, "not-the-secret"), ("not-the-role", secret_id)):
            with pytest.raises(hvac.exceptions.InvalidRequest) as excinfo:
                api.auth.approle.login(role_id=wrong_role, secret_id=wrong_secret)
            assert excinfo.value.errors == ["invalid role or secret ID"]
    finally:
        api.adapter.close()


async def test_approle_configured_over_http(http: aiohttp.ClientSession) -> None:
    assert (await call(http, "POST", "sys/auth/approle", json={"type": "approle"}))[0] == 204
    role = unique("web")
    assert (await call(http, "POST", f"auth/approle/role/{role}", json={"token_ttl": "10m", "token_policies": "b,a"}))[
        0
    ] == 204
    status, body = await call(http, "GET", f"auth/approle/role/{role}")
    assert (body["data"]["token_ttl"], body["data"]["token_policies"]) == (600, ["a", "b"])
    role_id = (await call(http, "GET", f"auth/approle/role/{role}/role-id"))[1]["data"]["role_id"]
    secret = (await call(http, "POST", f"auth/approle/role/{role}/secret-id"))[1]["data"]
    assert secret["secret_id"] and secret["secret_id_accessor"]
    status, body = await call(
        http, "POST", "auth/approle/login", token=None, json={"role_id": role_id, "secret_id": secret["secret_id"]}
    )
    assert (status, body["auth"]["lease_duration"], body["auth"]["policies"]) == (200, 600, ["a", "b", "default"])
    status, body = await call(http, "POST", "auth/approle/role/no-such-role/secret-id")
    assert (status, body) == (400, {"errors": ['role "no-such-role" does not exist']})


# --- KV version 2 ---------------------------------------------------------------------------------


def test_kv_versions_and_check_and_set(client: hvac.Client) -> None:
    kv, path = client.secrets.kv.v2, unique("app") + "/db"
    first = kv.create_or_update_secret(path, {"user": "a", "password": "1"}, cas=0)["data"]
    assert first["version"] == 1 and first["deletion_time"] == "" and first["destroyed"] is False
    assert RFC3339_NANO.fullmatch(first["created_time"])
    with pytest.raises(hvac.exceptions.InvalidRequest) as excinfo:
        kv.create_or_update_secret(path, {"user": "b"}, cas=0)
    assert excinfo.value.errors == ["check-and-set parameter did not match the current version"]
    assert kv.create_or_update_secret(path, {"user": "b"}, cas=1)["data"]["version"] == 2
    latest = kv.read_secret_version(path, raise_on_deleted_version=True)["data"]
    assert latest["data"] == {"user": "b"} and latest["metadata"]["version"] == 2
    assert kv.read_secret_version(path, version=1, raise_on_deleted_version=True)["data"]["data"] == {
        "user": "a",
        "password": "1",
    }
    metadata = kv.read_secret_metadata(path)["data"]
    assert (metadata["current_version"], metadata["oldest_version"], metadata["max_versions"]) == (2, 0, 0)
    assert sorted(metadata["versions"]) == ["1", "2"] and metadata["delete_version_after"] == "0s"
    assert kv.list_secrets(path.split("/")[0])["data"]["keys"] == ["db"]


async def test_kv_soft_delete_undelete_destroy(client: hvac.Client, http: aiohttp.ClientSession) -> None:
    kv, path = client.secrets.kv.v2, unique("svc")
    kv.create_or_update_secret(path, {"v": 1})
    kv.create_or_update_secret(path, {"v": 2})
    kv.delete_latest_version_of_secret(path)
    status, body = await call(http, "GET", f"secret/data/{path}")
    assert status == 404 and body["data"]["data"] is None
    metadata = body["data"]["metadata"]
    assert metadata["version"] == 2 and RFC3339_NANO.fullmatch(metadata["deletion_time"])
    assert kv.read_secret_version(path, raise_on_deleted_version=False)["data"]["data"] is None
    kv.undelete_secret_versions(path, versions=[2])
    assert kv.read_secret_version(path, raise_on_deleted_version=True)["data"]["data"] == {"v": 2}
    kv.delete_secret_versions(path, versions=[1])
    assert (await call(http, "GET", f"secret/data/{path}?version=1"))[0] == 404
    kv.destroy_secret_versions(path, versions=[2])
    status, body = await call(http, "GET", f"secret/data/{path}")
    assert status == 404 and body["data"]["metadata"]["destroyed"] is True
    assert kv.read_secret_metadata(path)["data"]["versions"]["2"]["destroyed"] is True
    kv.delete_metadata_and_all_versions(path)
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_metadata(path)
    status, body = await call(http, "POST", f"secret/delete/{path}", json={})
    assert (status, body) == (400, {"errors": ["No version number provided"]})


async def test_kv_raw_shapes_and_both_list_verbs(http: aiohttp.ClientSession) -> None:
    top = unique("tree")
    for leaf in ("a", "b/c", "b/d/e"):
        status, body = await call(http, "POST", f"secret/data/{top}/{leaf}", json={"data": {"k": leaf}})
        assert status == 200 and body["data"]["version"] == 1 and body["mount_type"] == "kv"
    for method, suffix in (("LIST", ""), ("GET", "?list=true")):
        status, body = await call(http, method, f"secret/metadata/{top}{suffix}")
        assert (status, body["data"]["keys"]) == (200, ["a", "b/"])
    assert (await call(http, "LIST", f"secret/metadata/{top}/b"))[1]["data"]["keys"] == ["c", "d/"]
    assert await call(http, "LIST", f"secret/metadata/{top}/missing") == (404, {"errors": []})
    assert await call(http, "GET", f"secret/data/{top}/missing") == (404, {"errors": []})
    status, body = await call(http, "POST", f"secret/data/{top}/a", json={"options": {"cas": 7}, "data": {}})
    assert (status, body) == (400, {"errors": ["check-and-set parameter did not match the current version"]})
    assert (await call(http, "POST", f"secret/data/{top}/a", json={}))[1] == {"errors": ["no data provided"]}


async def test_concurrent_writes_get_distinct_versions(http: aiohttp.ClientSession) -> None:
    path = f"secret/data/{unique('busy')}"
    replies = await asyncio.gather(*(call(http, "POST", path, json={"data": {"n": n}}) for n in range(30)))
    assert sorted(body["data"]["version"] for _, body in replies) == list(range(1, 31))


def test_put_secret_control_writes_versions(vault: VaultDouble, client: hvac.Client) -> None:
    path = unique("seeded")
    assert vault.put_secret(path, {"a": 1}) == 1
    assert vault.put_secret(path, {"a": 2}) == 2
    assert client.secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True)["data"]["data"] == {"a": 2}


# --- transit --------------------------------------------------------------------------------------


def test_transit_round_trip_rotation_and_rejections(client: hvac.Client) -> None:
    transit, name = client.secrets.transit, unique("key")
    transit.create_key(name)
    key = transit.read_key(name)["data"]
    assert (key["type"], key["latest_version"], list(key["keys"])) == ("aes256-gcm96", 1, ["1"])
    plaintext = base64.b64encode(bytes(range(256)) * 4).decode()
    # The nonce is random: encrypt until Vault's standard base64 puts a "/" in the ciphertext.
    ciphertext = ""
    for _ in range(50):
        ciphertext = transit.encrypt_data(name, plaintext)["data"]["ciphertext"]
        if "/" in ciphertext:
            break
    assert ciphertext.startswith("vault:v1:") and "/" in ciphertext
    assert transit.decrypt_data(name, ciphertext)["data"]["plaintext"] == plaintext

    raw = bytearray(base64.b64decode(ciphertext.removeprefix("vault:v1:")))
    raw[-1] ^= 0x01
    tampered = "vault:v1:" + base64.b64encode(bytes(raw)).decode()
    for bad, error in (
        (tampered, "cipher: message authentication failed"),
        ("not-a-ciphertext", "invalid ciphertext: no prefix"),
        ("vault:v1:%%%", "invalid ciphertext: could not decode base64"),
    ):
        with pytest.raises(hvac.exceptions.InvalidRequest) as excinfo:
            transit.decrypt_data(name, bad)
        assert excinfo.value.errors == [error]

    assert transit.rotate_key(name)["data"]["latest_version"] == 2
    rotated = transit.encrypt_data(name, plaintext)["data"]
    assert rotated["key_version"] == 2 and rotated["ciphertext"].startswith("vault:v2:")
    assert transit.decrypt_data(name, ciphertext)["data"]["plaintext"] == plaintext


async def test_transit_upserts_on_encrypt_and_404s_unknown_keys(http: aiohttp.ClientSession) -> None:
    name = unique("upsert")
    assert await call(http, "GET", f"transit/keys/{name}") == (404, {"errors": []})
    status, body = await call(http, "POST", f"transit/decrypt/{name}", json={"ciphertext": "vault:v1:AAAA"})
    assert (status, body) == (400, {"errors": ["encryption key not found"]})
    status, body = await call(http, "POST", f"transit/encrypt/{name}", json={"plaintext": "aGk="})
    assert (status, body["data"]["key_version"]) == (200, 1)
    assert (await call(http, "GET", f"transit/keys/{name}"))[1]["data"]["type"] == "aes256-gcm96"
    status, body = await call(http, "POST", f"transit/encrypt/{name}", json={"plaintext": "not base64!"})
    assert status == 400 and body["errors"][0].startswith("illegal base64 data at input byte")


# --- PKI ------------------------------------------------------------------------------------------


def test_pki_issue_builds_a_chain_openssl_verifies(client: hvac.Client, tmp_path: Path) -> None:
    before = int(time.time())
    data = client.secrets.pki.generate_certificate(
        "refapi",
        "localhost",
        extra_params={"alt_names": "api.localhost", "ip_sans": "127.0.0.1", "ttl": "1h"},
        mount_point="pki_int",
    )["data"]
    after = int(time.time())
    assert data["private_key_type"] == "rsa" and data["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    leaf = x509.load_pem_x509_certificate(data["certificate"].encode())
    intermediate, root = (x509.load_pem_x509_certificate(pem.encode()) for pem in data["ca_chain"])
    assert data["issuing_ca"] == data["ca_chain"][0]
    assert data["ca_chain"][1] == client.secrets.pki.read_ca_certificate(mount_point="pki")
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)

    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "api.localhost"}
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    expires = int(leaf.not_valid_after_utc.timestamp())
    assert expires == data["expiration"] and before + 3600 <= expires <= after + 3600
    assert data["serial_number"] == ":".join(f"{b:02x}" for b in leaf.serial_number.to_bytes(20, "big").lstrip(b"\0"))
    key = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == leaf.public_key().public_bytes(*spki)

    (tmp_path / "leaf.pem").write_text(data["certificate"] + "\n")
    (tmp_path / "chain.pem").write_text("\n".join(data["ca_chain"]) + "\n")
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", "chain.pem", "leaf.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (verify.returncode, verify.stdout.strip()) == (0, "leaf.pem: OK"), verify.stderr


def test_pki_refuses_what_the_role_or_ca_does_not_allow(client: hvac.Client) -> None:
    pki = client.secrets.pki
    cases = [
        ("nope", "localhost", {}, "unknown role: nope"),
        ("refapi", "example.com", {}, "common name example.com not allowed by this role"),
        ("refapi", "localhost", {"alt_names": "x.test"}, "subject alternate name x.test not allowed by this role"),
    ]
    for role, common_name, extra, error in cases:
        with pytest.raises(hvac.exceptions.InvalidRequest) as excinfo:
            pki.generate_certificate(role, common_name, extra_params=extra, mount_point="pki_int")
        assert excinfo.value.errors == [error]
    role = unique("long")
    pki.create_or_update_role(role, {"allow_localhost": True, "max_ttl": "100000h"}, mount_point="pki_int")
    with pytest.raises(hvac.exceptions.InvalidRequest) as excinfo:
        pki.generate_certificate(role, "localhost", extra_params={"ttl": "90000h"}, mount_point="pki_int")
    assert "beyond the expiration of the CA certificate" in excinfo.value.errors[0]


async def test_pki_ca_endpoints_need_no_token(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/pki/ca/pem") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/pem-certificate-chain"
        pem = await response.text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and pem.endswith("-----END CERTIFICATE-----")
    status, body = await call(http, "GET", "pki_int/cert/ca", token=None)
    assert status == 200 and body["data"]["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    async with http.get("/v1/pki_int/ca_chain") as response:
        assert (await response.text()).count("BEGIN CERTIFICATE") == 2
    assert (await call(http, "GET", "pki_int/roles/refapi", token=None))[0] == 403


# --- sys: seal and mounts -------------------------------------------------------------------------


async def test_a_sealed_vault_answers_503() -> None:
    double = VaultDouble().start()
    api = hvac.Client(url=double.url, token=double.root_token)
    try:
        async with aiohttp.ClientSession(base_url=double.url) as http:
            double.seal()
            status, body = await call(http, "GET", "sys/health", token=None)
            assert (status, body["sealed"]) == (503, True)
            assert await call(http, "GET", "secret/data/x") == (503, {"errors": ["Vault is sealed"]})
            assert await asyncio.to_thread(api.sys.is_sealed)
            with pytest.raises(hvac.exceptions.VaultDown):
                await asyncio.to_thread(api.auth.token.lookup_self)
            double.unseal()
            assert (await call(http, "GET", "sys/health", token=None))[0] == 200
            assert (await call(http, "GET", "auth/token/lookup-self"))[0] == 200
    finally:
        api.adapter.close()
        double.stop()


def test_mounts_are_listed_enabled_and_guarded(client: hvac.Client) -> None:
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    assert mounts["secret/"]["type"] == "kv" and mounts["secret/"]["options"] == {"version": "2"}
    assert {mounts[m]["type"] for m in ("transit/", "pki/", "pki_int/")} == {"transit", "pki"}
    path = unique("team")
    client.sys.enable_secrets_engine("kv", path=path, options={"version": "2"})
    client.secrets.kv.v2.create_or_update_secret("x", {"y": 1}, mount_point=path)
    assert client.secrets.kv.v2.read_secret_version("x", mount_point=path, raise_on_deleted_version=True)["data"][
        "data"
    ] == {"y": 1}
    with pytest.raises(hvac.exceptions.InvalidRequest) as excinfo:
        client.sys.enable_secrets_engine("transit", path=path)
    assert excinfo.value.errors == [f"path is already in use at {path}/"]
    client.sys.disable_secrets_engine(path)
    assert f"{path}/" not in client.sys.list_mounted_secrets_engines()["data"]


async def test_request_log_records_method_and_path(vault: VaultDouble, http: aiohttp.ClientSession) -> None:
    path = unique("logged")
    await call(http, "LIST", f"secret/metadata/{path}")
    assert ("LIST", f"/v1/secret/metadata/{path}") in vault.request_log


def test_runs_in_the_foreground_until_terminated() -> None:
    command = [sys.executable, "-m", "tests.servers.vault", "--port", "0", "--root-token", "cli-root"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert select.select([process.stdout], [], [], 30)[0], "the double printed no URL"
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        api = hvac.Client(url=url, token="cli-root")
        try:
            assert api.is_authenticated()
        finally:
            api.adapter.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


# --- bin/issue-cert -------------------------------------------------------------------------------


def issue_cert(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "TLS_"))}
    return subprocess.run(
        [sys.executable, str(ISSUE_CERT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_issue_cert_writes_verifiable_files_and_skips_while_fresh(vault: VaultDouble, tmp_path: Path) -> None:
    out = tmp_path / "tls"
    role_id, secret_id = vault.create_approle(unique("tls"))
    first = issue_cert(
        {"VAULT_ADDR": vault.url, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id},
        "--out",
        str(out),
        "--ttl",
        "2h",
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("issued localhost") and "PRIVATE KEY" not in first.stdout
    assert (out.stat().st_mode & 0o777, (out / "key.pem").stat().st_mode & 0o777) == (0o700, 0o600)
    assert (out / "cert.pem").read_text().count("BEGIN CERTIFICATE") == 3
    assert sorted(p.name for p in out.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.pem", "cert.pem"], cwd=out, capture_output=True, text=True, check=False
    )
    assert (verify.returncode, verify.stdout.strip()) == (0, "cert.pem: OK"), verify.stderr
    leaf = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    # 2 h plus the 30 s the role's not_before_duration backdates the start by.
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(hours=2, seconds=30)

    issued = {name: (out / name).read_bytes() for name in ("cert.pem", "key.pem", "ca.pem")}
    token = {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.root_token}
    second = issue_cert(token, "--out", str(out), "--renew-before", "0.5")
    assert (second.returncode, second.stdout.split()[0]) == (0, "kept"), second.stderr
    assert {name: (out / name).read_bytes() for name in issued} == issued
    forced = issue_cert(token, "--out", str(out), "--renew-before", "1")
    assert forced.returncode == 0 and forced.stdout.startswith("issued"), forced.stderr
    assert (out / "cert.pem").read_bytes() != issued["cert.pem"]


def test_issue_cert_fails_cleanly(vault: VaultDouble, tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{unused.getsockname()[1]}"
        unreachable = issue_cert({"VAULT_ADDR": nowhere, "VAULT_TOKEN": "root"}, "--out", str(tmp_path / "a"))
    denied = issue_cert(
        {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.create_token(deny_paths=["pki_int/issue"])},
        "--out",
        str(tmp_path / "b"),
    )
    unknown = issue_cert(
        {"VAULT_ADDR": vault.url, "VAULT_TOKEN": "root"}, "--out", str(tmp_path / "c"), "--role", "nope"
    )
    for result, message in (
        (unreachable, "cannot reach Vault"),
        (denied, "permission denied"),
        (unknown, "unknown role: nope"),
    ):
        assert result.returncode == 1 and result.stdout == ""
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())
