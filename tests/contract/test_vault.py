"""Contract §2.3 and §5: secrets (read, write, versions, masking, read-only and reserved names, API keys), transit."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.contract.conftest import STRICT_API_KEYS, Stack, VaultAccess
from tests.contract.http import Api, assert_not_echoed, unique, validation_errors

SECRET = "/examples/vault/secret"
TRANSIT = "/examples/vault/transit"
CIPHERTEXT = re.compile(r"vault:v[0-9]+:[A-Za-z0-9+/=]+")
RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})")


async def write(api: Api, service: str, data: Any, **kwargs: Any) -> dict[str, Any]:
    reply = await api.post(f"{SECRET}/{service}", json_body=data, **kwargs)
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.json
    return body


# --- reads ---------------------------------------------------------------------------------------------------------


async def test_write_then_read_masked(api: Api) -> None:
    service = unique("app")
    data = {"username": "alice", "password": "p@ss", "port": 5432, "ratio": 0.5, "enabled": True, "empty": ""}
    written = await api.post(f"{SECRET}/{service}", json_body=data)
    assert written.status == 200, written
    assert set(written.json) == {"service", "version", "created_time", "action"}
    assert written.json["service"] == service and written.json["action"] == "written"
    assert written.json["version"] == 1 and RFC3339.fullmatch(written.json["created_time"]), written
    assert written.headers.get("Cache-Control") == "no-store"
    assert_not_echoed(written, "alice", "p@ss")
    read = await api.get(f"{SECRET}/{service}")
    assert set(read.json) == {"service", "data", "note"}
    assert read.json["service"] == service
    assert read.json["data"] == {**data, "password": "***"}
    assert isinstance(read.json["note"], str) and read.json["note"]


async def test_masking_covers_every_sensitive_name_and_value(api: Api, vault: VaultAccess) -> None:
    service = unique("masked")
    stored = {
        "password": None,
        "DB_PASSWORD": "",
        "api_token": 12345,
        "Client_Secret": {"nested": "x"},
        "private_key": ["a", "b"],
        "tls_private_key_pem": "-----BEGIN-----",
        "tokenizer": "word",
        "privatekey": "not matched: no underscore",
        "nested": {"password": "only top-level names are masked"},
        "nothing": None,
        "host": "db.internal",
    }
    await vault.put_secret(service, stored)
    masked = {
        name: "***"
        for name in (
            "password",
            "DB_PASSWORD",
            "api_token",
            "Client_Secret",
            "private_key",
            "tls_private_key_pem",
            "tokenizer",
        )
    }
    expected = {**stored, **masked}
    assert (await api.get(f"{SECRET}/{service}")).json["data"] == expected
    for name, value in expected.items():
        reply = await api.get(f"{SECRET}/{service}/{name}")
        assert reply.json["value"] == value, reply
    versioned = await api.get(f"{SECRET}/versioned/{service}")
    assert versioned.json["data"] == expected


async def test_key_read_exact_then_case_insensitive(api: Api, vault: VaultAccess) -> None:
    service = unique("keys")
    await vault.put_secret(service, {"Host": "first", "HOST": "second", "host": "exact", "Port": 1})
    exact = await api.get(f"{SECRET}/{service}/host")
    assert exact.json == {"service": service, "key": "host", "value": "exact", "note": exact.json["note"]}
    folded = await api.get(f"{SECRET}/{service}/hOsT")
    # No exact match: the first case-insensitive match in sorted order ("HOST" < "Host" < "host").
    assert folded.json["key"] == "hOsT" and folded.json["value"] == "second", folded
    assert (await api.get(f"{SECRET}/{service}/PORT")).json["value"] == 1


async def test_service_names_are_lower_cased_for_vault_and_echoed_as_sent(api: Api) -> None:
    service = unique("Mixed").upper()
    await write(api, service, {"colour": "blue"})
    for variant in (service, service.lower(), service.title()):
        reply = await api.get(f"{SECRET}/{variant}")
        assert reply.json["service"] == variant and reply.json["data"] == {"colour": "blue"}, reply
        key = await api.get(f"{SECRET}/{variant}/colour")
        assert key.json["service"] == variant and key.json["value"] == "blue", key


async def test_missing_secret_and_key_are_404(api: Api) -> None:
    service = unique("absent")
    reply = await api.get(f"{SECRET}/{service}")
    assert reply.status == 404 and reply.json["details"] == {"resource_type": "secret", "resource_id": service}
    key = await api.get(f"{SECRET}/{service}/k")
    assert key.status == 404, key
    await write(api, service, {"a": "1"})
    missing_key = await api.get(f"{SECRET}/{service}/Missing_Key")
    assert missing_key.status == 404, missing_key
    assert missing_key.json["details"] == {"resource_type": "secret_key", "resource_id": f"{service}/Missing_Key"}


# --- versions --------------------------------------------------------------------------------------------------------


async def test_versioned_read(api: Api) -> None:
    service = unique("ver")
    await write(api, service, {"v": "one", "secret_value": "s1"})
    second = await write(api, service, {"v": "two"})
    assert second["version"] == 2
    latest = await api.get(f"{SECRET}/versioned/{service}")
    assert latest.headers.get("Cache-Control") == "no-store"
    body = latest.json
    assert set(body) == {"service", "version", "data", "metadata", "versions"}
    assert (body["service"], body["version"], body["data"]) == (service, 2, {"v": "two"})
    assert set(body["metadata"]) == {"created_time", "deletion_time", "destroyed", "version"}
    assert body["metadata"]["version"] == 2 and body["metadata"]["deletion_time"] is None
    assert [v["version"] for v in body["versions"]] == [1, 2]
    for entry in body["versions"]:
        assert set(entry) == {"version", "created_time", "deletion_time", "destroyed"}
        assert entry["deletion_time"] is None and entry["destroyed"] is False
    first = await api.get(f"{SECRET}/versioned/{service}", params={"version": "1"})
    assert first.json["version"] == 1 and first.json["data"] == {"v": "one", "secret_value": "***"}


async def test_versioned_read_errors(api: Api) -> None:
    service = unique("ver")
    await write(api, service, {"v": "one"})
    absent = await api.get(f"{SECRET}/versioned/{service}", params={"version": "9"})
    assert absent.status == 404, absent
    assert absent.json["details"] == {"resource_type": "secret_version", "resource_id": f"{service}@9"}
    missing = await api.get(f"{SECRET}/versioned/{unique('nothing')}")
    assert missing.status == 404 and missing.json["details"]["resource_type"] == "secret"
    zero = await api.get(f"{SECRET}/versioned/{service}", params={"version": "0"})
    assert validation_errors(zero) == [(("query", "version"), "greater_than_equal")]


async def test_deleted_and_destroyed_versions(api: Api, vault: VaultAccess) -> None:
    service = unique("gone")
    await write(api, service, {"v": "one"})
    await write(api, service, {"v": "two"})
    await vault.call("POST", f"secret/delete/{service}", {"versions": [2]})
    await vault.call("POST", f"secret/destroy/{service}", {"versions": [1]})
    latest = await api.get(f"{SECRET}/{service}")
    assert latest.status == 404, latest  # a deleted latest version counts as absent
    body = (await api.get(f"{SECRET}/versioned/{service}")).json
    assert body["version"] == 2 and body["data"] is None
    assert isinstance(body["metadata"]["deletion_time"], str) and body["metadata"]["deletion_time"]
    destroyed = (await api.get(f"{SECRET}/versioned/{service}", params={"version": "1"})).json
    assert destroyed["data"] is None and destroyed["metadata"]["destroyed"] is True
    assert [v["destroyed"] for v in destroyed["versions"]] == [True, False]


@pytest.mark.parametrize("name", ["versioned", "Versioned", "VERSIONED"])
async def test_versioned_is_a_reserved_service_name(api: Api, name: str) -> None:
    read = await api.get(f"{SECRET}/{name}")
    assert validation_errors(read) == [(("path", "service_name"), "reserved_name")]
    written = await api.post(f"{SECRET}/{name}", json_body={"a": "b"})
    assert validation_errors(written) == [(("path", "service_name"), "reserved_name")]


async def test_versioned_path_always_reaches_the_versioned_read(api: Api) -> None:
    reply = await api.get(f"{SECRET}/versioned/versioned")
    assert reply.status == 404 or validation_errors(reply) == [(("path", "service_name"), "reserved_name")], reply


# --- writes ----------------------------------------------------------------------------------------------------------


async def test_check_and_set(api: Api) -> None:
    service = unique("cas")
    created = await write(api, service, {"a": "1"}, params={"cas": "0"})
    assert created["version"] == 1
    again = await api.post(f"{SECRET}/{service}", params={"cas": "0"}, json_body={"a": "2"})
    assert again.status == 409 and again.json["details"] == {"reason": "cas_mismatch"}, again
    stale = await api.post(f"{SECRET}/{service}", params={"cas": "5"}, json_body={"a": "2"})
    assert stale.status == 409, stale
    assert (await write(api, service, {"a": "2"}, params={"cas": "1"}))["version"] == 2


async def test_a_write_replaces_the_whole_secret(api: Api) -> None:
    service = unique("replace")
    await write(api, service, {"a": "1", "b": "2"})
    await write(api, service, {"c": "3"})
    assert (await api.get(f"{SECRET}/{service}", headers={"Cache-Control": "no-store"})).json["data"] == {"c": "3"}


async def test_values_count_code_points(api: Api) -> None:
    service = unique("long")
    assert (await api.post(f"{SECRET}/{service}", json_body={"v": "é" * 10000})).status == 200
    too_long = await api.post(f"{SECRET}/{service}", json_body={"v": "é" * 10001})
    # "values str ≤ 10000 chars, finite number or bool (else value_type)": either type names the broken rule.
    assert validation_errors(too_long) in ([(("body", "v"), "value_type")], [(("body", "v"), "string_too_long")])
    name_100 = await api.post(f"{SECRET}/{service}", json_body={"k" * 100: "v"})
    assert name_100.status == 200, name_100


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, [(("body",), "too_few_fields")]),
        ({f"k{i}": "v" for i in range(51)}, [(("body",), "too_many_fields")]),
        ({"v": None}, [(("body", "v"), "value_type")]),
        ({"v": [1]}, [(("body", "v"), "value_type")]),
        ({"v": {"a": 1}}, [(("body", "v"), "value_type")]),
        ([["v", "1"]], [(("body",), "dict_type")]),
        ("text", [(("body",), "dict_type")]),
    ],
)
async def test_write_validation(api: Api, body: Any, expected: list[Any]) -> None:
    reply = await api.post(f"{SECRET}/{unique()}", json_body=body)
    assert validation_errors(reply) == expected


@pytest.mark.parametrize("name", ["bad name", "k" * 101, "dot.ted", "ünï"])
async def test_write_rejects_bad_key_names(api: Api, name: str) -> None:
    reply = await api.post(f"{SECRET}/{unique()}", json_body={name: "v"})
    types = {error_type for _, error_type in validation_errors(reply)}
    assert types <= {"string_pattern_mismatch", "string_too_long"} and types, reply


async def test_write_rejects_non_finite_numbers(api: Api) -> None:
    reply = await api.post(f"{SECRET}/{unique()}", data=b'{"v": NaN}', headers={"Content-Type": "application/json"})
    assert validation_errors(reply) in ([(("body", "v"), "value_type")], [(("body",), "json_invalid")])


@pytest.mark.parametrize(("raw", "error"), [("-1", "greater_than_equal"), ("x", "int_parsing"), ("", "int_parsing")])
async def test_write_cas_validation(api: Api, raw: str, error: str) -> None:
    reply = await api.post(f"{SECRET}/{unique()}", params={"cas": raw}, json_body={"a": "b"})
    assert validation_errors(reply) == [(("query", "cas"), error)]


@pytest.mark.parametrize("name", ["bad!", "a" * 51, "dot.ted"])
async def test_service_name_rules(api: Api, name: str) -> None:
    reply = await api.get(f"{SECRET}/{name}")
    assert validation_errors(reply)[0][0] == ("path", "service_name"), reply


@pytest.mark.parametrize("name", ["postgres", "MySQL", "mongodb", "Redis-1", "rabbitmq", "<app secret>"])
async def test_read_only_secrets(api: Api, stack: Stack, name: str) -> None:
    name = name.replace("<app secret>", stack.app_secret.upper())
    reply = await api.post(f"{SECRET}/{name}", json_body={"user": "mallory"})
    assert reply.status == 403 and reply.json["details"] == {"reason": "read_only"}, reply


async def test_write_rejects_other_media_types(api: Api) -> None:
    reply = await api.post(f"{SECRET}/{unique()}", data="a=b", headers={"Content-Type": "text/plain"})
    assert reply.status == 415 and reply.json["details"] == {"allowed_content_types": ["application/json"]}, reply


# --- API keys (the strict instance has REFAPI_API_KEYS set) ---------------------------------------------------------


async def test_the_write_needs_one_of_the_keys(strict: Api) -> None:
    service = unique("keyed")
    missing = await strict.post(f"{SECRET}/{service}", json_body={"a": "b"})
    assert missing.status == 401 and missing.json["error"] == "Unauthorized", missing
    wrong = await strict.post(f"{SECRET}/{service}", json_body={"a": "b"}, headers={"X-API-Key": "nope"})
    assert wrong.status == 401, wrong
    for key in STRICT_API_KEYS:
        ok = await strict.post(f"{SECRET}/{service}", json_body={"a": "b"}, headers={"X-API-Key": key})
        assert ok.status == 200, ok
    assert_not_echoed(wrong, "nope")


async def test_nothing_else_needs_a_key(strict: Api) -> None:
    assert (await strict.get(f"{SECRET}/{unique()}")).status == 404
    assert (await strict.post(f"{TRANSIT}/encrypt", json_body={"plaintext": "x"})).status == 200


# --- transit ---------------------------------------------------------------------------------------------------------


async def test_transit_round_trip_over_post(api: Api, stack: Stack) -> None:
    plaintext = "héllo / wörld 🚀"
    encrypted = await api.post(f"{TRANSIT}/encrypt", json_body={"plaintext": plaintext})
    assert set(encrypted.json) == {"key_name", "ciphertext"}
    assert encrypted.json["key_name"] == stack.transit_key
    assert CIPHERTEXT.fullmatch(encrypted.json["ciphertext"]), encrypted
    assert encrypted.headers.get("Cache-Control") == "no-store"
    decrypted = await api.post(f"{TRANSIT}/decrypt", json_body={"ciphertext": encrypted.json["ciphertext"]})
    assert decrypted.json == {"key_name": stack.transit_key, "plaintext": plaintext}
    assert decrypted.headers.get("Cache-Control") == "no-store"


async def test_transit_round_trip_over_get_with_slashes_in_the_ciphertext(api: Api, stack: Stack) -> None:
    # 1000 bytes make a ~1400-character ciphertext: a '/' among them is all but certain; asserted below.
    plaintext = "xyz" * 333 + "é"
    encrypted = await api.get(f"{TRANSIT}/encrypt/{'xyz' * 333}%C3%A9")
    assert encrypted.status == 200 and encrypted.headers.get("Cache-Control") == "no-store", encrypted
    ciphertext = encrypted.json["ciphertext"]
    assert "/" in ciphertext and len(ciphertext) <= 2048
    decrypted = await api.get(f"{TRANSIT}/decrypt/{ciphertext}")
    assert decrypted.json == {"key_name": stack.transit_key, "plaintext": plaintext}, decrypted
    assert decrypted.headers.get("Cache-Control") == "no-store"


async def test_transit_get_plaintext_is_percent_decoded(api: Api) -> None:
    encrypted = await api.get(f"{TRANSIT}/encrypt/a%20b%3Fc")
    decrypted = await api.post(f"{TRANSIT}/decrypt", json_body={"ciphertext": encrypted.json["ciphertext"]})
    assert decrypted.json["plaintext"] == "a b?c"


async def test_transit_size_limits_count_utf8_bytes(api: Api) -> None:
    at_limit = await api.get(f"{TRANSIT}/encrypt/{'%C3%A9' * 512}")
    assert at_limit.status == 200, at_limit
    over = await api.get(f"{TRANSIT}/encrypt/{'%C3%A9' * 512}x")
    assert validation_errors(over) == [(("path", "plaintext"), "string_too_long")]
    body_over = await api.post(f"{TRANSIT}/encrypt", json_body={"plaintext": "é" * 32768 + "x"})
    assert validation_errors(body_over) == [(("body", "plaintext"), "string_too_long")]
    empty = await api.post(f"{TRANSIT}/encrypt", json_body={"plaintext": ""})
    assert validation_errors(empty) == [(("body", "plaintext"), "string_too_short")]


async def test_transit_rejects_bad_ciphertexts(api: Api) -> None:
    forged = "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    by_path = await api.get(f"{TRANSIT}/decrypt/{forged}")
    assert validation_errors(by_path) == [(("path", "ciphertext"), "invalid_ciphertext")]
    by_body = await api.post(f"{TRANSIT}/decrypt", json_body={"ciphertext": forged})
    assert validation_errors(by_body) == [(("body", "ciphertext"), "invalid_ciphertext")]
    assert_not_echoed(by_body, forged)
    malformed = await api.post(f"{TRANSIT}/decrypt", json_body={"ciphertext": "not-a-ciphertext"})
    assert validation_errors(malformed) == [(("body", "ciphertext"), "string_pattern_mismatch")]
    too_long = await api.get(f"{TRANSIT}/decrypt/vault:v1:{'A' * 2040}")
    assert validation_errors(too_long) == [(("path", "ciphertext"), "string_too_long")]


async def test_transit_body_rules(api: Api) -> None:
    missing = await api.post(f"{TRANSIT}/encrypt", json_body={"text": "x"})
    assert set(validation_errors(missing)) == {(("body", "plaintext"), "missing"), (("body", "text"), "unknown_field")}
    wrong_type = await api.post(f"{TRANSIT}/decrypt", json_body={"ciphertext": 5})
    assert validation_errors(wrong_type) == [(("body", "ciphertext"), "string_type")]
