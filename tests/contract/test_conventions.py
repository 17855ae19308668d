"""Contract §1: transport and formats, request ids, the error envelope, validation and the check order."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.conftest import VaultAccess
from tests.contract.http import UUID4, Api, assert_not_echoed, unique, validation_errors

COMMITTED_SPEC = Path(__file__).resolve().parents[2] / "schemas" / "openapi.yaml"
# Header values that legitimately differ between two requests to the same route.
VOLATILE_HEADERS = {"date", "x-request-id", "x-ratelimit-remaining", "x-ratelimit-reset", "x-cache", "cache-control"}


@functools.cache
def committed_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(COMMITTED_SPEC.read_text())
    return spec


def committed_get_templates() -> list[str]:
    return sorted(path for path, item in committed_spec()["paths"].items() if "get" in item)


def concrete(template: str) -> str:
    """A request path for a GET template, chosen so that it needs no arranged state."""
    values = {
        "{service_name}": unique("svc"),
        "{key}": unique("key"),
        "{pattern}": unique("pat") + "*",
        "{db}": "postgres",
        "{queue}": unique("q"),
        "{queue_name}": unique("q"),
        "{node_name}": "redis-1",
        "{plaintext}": "hello",
        "{ciphertext}": "vault:v1:AAAA",
    }
    path = template
    for placeholder, value in values.items():
        path = path.replace(placeholder, value)
    assert "{" not in path, f"no example value for {template}: add one to concrete()"
    return path


# --- §1.1 transport and formats --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/metrics", "text/plain"),
        ("/openapi.yaml", "application/yaml"),
        ("/docs", "text/html"),
        ("/redoc", "text/html"),
    ],
)
async def test_non_json_routes_declare_their_media_type(api: Api, path: str, media_type: str) -> None:
    reply = await api.get(path)
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"].split(";")[0].strip() == media_type, reply


async def test_openapi_yaml_is_the_json_document(api: Api) -> None:
    as_json = await api.get("/openapi.json")
    as_yaml = await api.get("/openapi.yaml")
    assert yaml.safe_load(as_yaml.raw) == as_json.json


@pytest.mark.parametrize("template", committed_get_templates())
async def test_head_answers_like_get_without_a_body(api: Api, template: str) -> None:
    path = concrete(template)
    head = await api.head(path)
    get = await api.get(path)
    assert head.status == get.status, (head, get)
    assert head.raw == b""
    assert head.headers.get("Content-Type") == get.headers.get("Content-Type"), (head, get)
    # Content-Length may differ for dynamic bodies (timestamps, ciphertexts); every other header must be there.
    names = {name.lower() for name in head.headers}, {name.lower() for name in get.headers}
    assert names[0] - VOLATILE_HEADERS - {"content-length"} == names[1] - VOLATILE_HEADERS - {"content-length"}, (
        head,
        get,
    )


@pytest.mark.parametrize("path", ["/", "/openapi.json", "/openapi.yaml", "/docs", "/redoc", "/metrics"])
async def test_head_on_meta_routes(api: Api, path: str) -> None:
    head = await api.head(path)
    assert head.status == 200 and head.raw == b"", head


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_health_redirects_keeping_the_query(api: Api, method: str) -> None:
    reply = await api.request(method, "/health?probe=1&b=two")
    assert reply.status == 307, reply
    assert reply.headers["Location"] == "/health/?probe=1&b=two", reply
    plain = await api.request(method, "/health")
    assert plain.status == 307 and plain.headers["Location"] == "/health/", plain


@pytest.mark.parametrize(
    "path",
    [
        "/metrics/",
        "/openapi.json/",
        "/health/live/",
        "/health/all/",
        "/examples/vault/health/",
        "/examples/database/postgres/query/",
        "/examples/messaging/queues/",
        "/redis/cluster/info/",
        "/HEALTH/",
        "/Metrics",
        "/examples/Vault/health",
    ],
)
async def test_trailing_slash_and_case_variants_are_not_found(api: Api, path: str) -> None:
    reply = await api.get(path)
    assert reply.status == 404, reply
    assert reply.json["message"] == "Resource not found", reply


async def test_unknown_query_parameters_are_ignored(api: Api) -> None:
    reply = await api.get("/examples/database/postgres", params={"unknown": "x", "limit": "2"})
    assert reply.status == 200, reply
    assert reply.json["count"] <= 2


async def test_the_first_of_a_repeated_query_parameter_wins(api: Api) -> None:
    first_valid = await api.get("/examples/database/postgres", params=[("limit", "1"), ("limit", "nope")])
    assert first_valid.status == 200, first_valid
    assert first_valid.json["count"] <= 1
    first_invalid = await api.get("/examples/database/postgres", params=[("limit", "nope"), ("limit", "1")])
    assert validation_errors(first_invalid) == [(("query", "limit"), "int_parsing")]


@pytest.mark.parametrize("raw", ["", "1.0", "+5", " 5", "5 ", "0x10", "1e2", "\u0663", "--1", "five"])
async def test_integers_are_an_optional_minus_and_digits(api: Api, raw: str) -> None:
    reply = await api.get("/examples/database/postgres", params={"limit": raw})
    assert validation_errors(reply) == [(("query", "limit"), "int_parsing")]
    assert_not_echoed(reply, "five", "0x10")


async def test_negative_integers_parse_then_fail_their_bound(api: Api) -> None:
    reply = await api.get("/examples/database/postgres", params={"limit": "-3"})
    assert validation_errors(reply) == [(("query", "limit"), "greater_than_equal")]


# --- §1.2 request id ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["abc", "A.b_c-9", "x" * 128])
async def test_a_valid_request_id_is_adopted(api: Api, sent: str) -> None:
    reply = await api.get("/health/", headers={"X-Request-ID": sent})
    assert reply.request_id == sent


@pytest.mark.parametrize("sent", ["x" * 129, "has space", "semi;colon", "slash/", "ünï"])
async def test_an_invalid_request_id_is_replaced_by_a_uuid4(api: Api, sent: str) -> None:
    reply = await api.get("/health/", headers={"X-Request-ID": sent})
    assert UUID4.fullmatch(reply.request_id), reply


async def test_an_empty_request_id_is_replaced(api: Api) -> None:
    reply = await api.get("/health/", headers={"X-Request-ID": ""})
    assert UUID4.fullmatch(reply.request_id), reply


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/health/", {}, 200),
        ("HEAD", "/health/", {}, 200),
        ("GET", "/health", {}, 307),
        ("GET", f"/no-such-{unique()}", {}, 404),
        ("DELETE", "/health/", {}, 405),
        ("GET", "/redis/cluster/info", {}, 503),
        (
            "OPTIONS",
            "/health/",
            {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
            200,
        ),
        ("OPTIONS", "/health/", {"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}, 403),
    ],
)
async def test_every_response_carries_the_adopted_request_id(
    api: Api, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    sent = f"rid-{unique()}"
    reply = await api.request(method, path, headers={"X-Request-ID": sent, **headers})
    assert reply.status == status, reply
    assert reply.request_id == sent
    if reply.raw and status >= 400:
        assert reply.json["request_id"] == sent


async def test_a_429_carries_the_request_id(strict: Api) -> None:
    sent = f"rid-{unique()}"
    for _ in range(100):
        reply = await strict.get("/", headers={"X-Request-ID": sent})
        if reply.status == 429:
            break
    assert reply.status == 429, reply
    assert reply.request_id == sent and reply.json["request_id"] == sent


# --- §1.3 error envelope ------------------------------------------------------------------------------------------


async def test_unknown_path_is_a_plain_not_found(api: Api) -> None:
    reply = await api.get(f"/{unique('nowhere')}")
    assert reply.status == 404, reply
    assert reply.json["error"] == "NotFound" and reply.json["message"] == "Resource not found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/", {"GET", "HEAD"}),
        ("POST", "/health/all", {"GET", "HEAD"}),
        ("PATCH", "/examples/cache/some-key", {"GET", "HEAD", "POST", "DELETE"}),
        ("DELETE", "/examples/vault/transit/encrypt", {"POST"}),
        ("PUT", "/examples/database/postgres", {"GET", "HEAD", "POST"}),
    ],
)
async def test_wrong_method_is_405_with_allow(api: Api, method: str, path: str, allowed: set[str]) -> None:
    reply = await api.request(method, path)
    assert reply.status == 405, reply
    assert reply.json["message"] == "Method not allowed"
    assert {item.strip() for item in reply.headers["Allow"].split(",")} == allowed, reply


async def test_service_unavailable_names_the_service_and_a_reason(api: Api) -> None:
    reply = await api.get("/redis/cluster/nodes")
    assert reply.status == 503, reply
    assert reply.json["error"] == "ServiceUnavailable"
    assert reply.json["details"] == {"service": "redis", "reason": "cluster_disabled"}
    assert reply.headers["Retry-After"] == "5"


# --- §1.4 validation ----------------------------------------------------------------------------------------------


async def test_all_locations_are_reported_together_in_order(api: Api) -> None:
    secret = "SECRET-INPUT-123"
    reply = await api.post(
        f"/examples/vault/secret/bad!name{secret}",
        params={"cas": f"x{secret}"},
        data=b"[1, 2]",
        headers={"Content-Type": "application/json"},
    )
    assert validation_errors(reply) == [
        (("path", "service_name"), "string_pattern_mismatch"),
        (("query", "cas"), "int_parsing"),
        (("body",), "dict_type"),
    ]
    assert_not_echoed(reply, secret)


async def test_messages_state_the_rule_never_the_value(api: Api) -> None:
    secret = "zz-very-secret-value-zz"
    reply = await api.post("/examples/database/postgres", json_body={"name": secret * 10, "value": 7})
    assert set(validation_errors(reply)) == {(("body", "name"), "string_too_long"), (("body", "value"), "string_type")}
    assert_not_echoed(reply, secret)


async def test_undeclared_body_fields_are_rejected(api: Api) -> None:
    reply = await api.post("/examples/database/mysql", json_body={"name": "n", "value": "v", "extra": 1})
    assert (("body", "extra"), "unknown_field") in validation_errors(reply)


async def test_invalid_json_is_json_invalid_at_body(api: Api) -> None:
    reply = await api.post(
        "/examples/database/postgres", data=b'{"name": "x",', headers={"Content-Type": "application/json"}
    )
    assert validation_errors(reply) == [(("body",), "json_invalid")]


async def test_booleans_are_not_integers(api: Api) -> None:
    reply = await api.post(f"/examples/cache/{unique()}", json_body={"value": "v", "ttl": True})
    assert validation_errors(reply) == [(("body", "ttl"), "int_type")]


# --- §1.5 check order ---------------------------------------------------------------------------------------------


async def test_routing_comes_before_the_api_key(strict: Api) -> None:
    reply = await strict.request("PUT", f"/examples/vault/secret/{unique()}", json_body={"a": "b"})
    assert reply.status == 405, reply


async def test_the_api_key_comes_before_content_type_and_validation(strict: Api) -> None:
    wrong_type = await strict.post(
        f"/examples/vault/secret/{unique()}", data=b"<x/>", headers={"Content-Type": "text/xml"}
    )
    assert wrong_type.status == 401, wrong_type
    invalid = await strict.post("/examples/vault/secret/bad!name", json_body={})
    assert invalid.status == 401, invalid


async def test_content_type_comes_before_validation(api: Api) -> None:
    reply = await api.post("/examples/vault/secret/bad!name", data=b"<x/>", headers={"Content-Type": "text/xml"})
    assert reply.status == 415, reply


async def test_validation_comes_before_operation_rules(api: Api) -> None:
    read_only_but_invalid = await api.post("/examples/vault/secret/postgres", json_body={})
    assert validation_errors(read_only_but_invalid) == [(("body",), "too_few_fields")]
    reserved_but_invalid = await api.post("/examples/cache/refapi:x", params={"value": "v", "ttl": "0"})
    assert validation_errors(reserved_but_invalid) == [(("query", "ttl"), "greater_than_equal")]


async def test_operation_rules_come_before_the_backend(api: Api, vault: VaultAccess) -> None:
    # The read-only rule answers even for a secret that exists and a CAS that would mismatch.
    await vault.put_secret("rabbitmq", {"user": "guest"})
    reply = await api.post("/examples/vault/secret/rabbitmq", params={"cas": "0"}, json_body={"user": "x"})
    assert reply.status == 403 and reply.json["details"] == {"reason": "read_only"}, reply
