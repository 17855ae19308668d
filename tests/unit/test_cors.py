"""CORS: preflights before everything else, headers on responses and errors, DEBUG wildcard."""

from __future__ import annotations

from tests.conftest import ClientFactory

ALLOWED = "http://localhost:3000"
PREFLIGHT = {
    "Origin": ALLOWED,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "Content-Type, X-API-Key",
}


async def test_preflight_from_an_allowed_origin(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.options("/examples/cache/anything", headers=PREFLIGHT)
    assert resp.status == 200 and await resp.read() == b""
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, DELETE, PATCH, OPTIONS"
    assert "X-API-Key" in resp.headers["Access-Control-Allow-Headers"]
    assert resp.headers["Access-Control-Max-Age"] == "600"
    assert resp.headers["Vary"] == "Origin"
    assert "X-RateLimit-Limit" not in resp.headers


async def test_preflight_from_a_disallowed_origin_is_403_cors(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.options("/", headers={**PREFLIGHT, "Origin": "http://evil.example"})
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "Forbidden" and body["details"] == {"reason": "cors"}
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_preflight_with_a_disallowed_header_or_method_is_403(client) -> None:  # type: ignore[no-untyped-def]
    bad_header = await client.options("/", headers={**PREFLIGHT, "Access-Control-Request-Headers": "X-Secret"})
    bad_method = await client.options("/", headers={**PREFLIGHT, "Access-Control-Request-Method": "TRACE"})
    no_origin = await client.options("/", headers={"Access-Control-Request-Method": "GET"})
    assert [bad_header.status, bad_method.status, no_origin.status] == [403, 403, 403]


async def test_simple_request_and_error_get_cors_headers(client) -> None:  # type: ignore[no-untyped-def]
    ok = await client.get("/health/", headers={"Origin": ALLOWED})
    missing = await client.get("/missing", headers={"Origin": ALLOWED})
    for resp in (ok, missing):
        assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert "X-Request-ID" in resp.headers["Access-Control-Expose-Headers"]
    assert missing.status == 404


async def test_disallowed_origin_is_served_without_cors_headers(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/health/", headers={"Origin": "http://evil.example"})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_debug_allows_any_origin_without_credentials(make_client: ClientFactory) -> None:
    client = await make_client(debug=True)
    resp = await client.options("/", headers={**PREFLIGHT, "Origin": "http://anything.example"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert "Vary" not in resp.headers
    root = await (await client.get("/")).json()
    assert root["security"]["cors"]["allowed_origins"] == "*" and root["security"]["cors"]["credentials"] is False
