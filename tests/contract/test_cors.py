"""Contract §3.2: CORS with the default origins (main instance) and under DEBUG (strict instance)."""

from __future__ import annotations

import pytest

from tests.contract.http import Api, unique

ORIGIN = "http://localhost:3000"
METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
ALLOWED_HEADERS = {
    "content-type", "authorization", "x-request-id", "x-api-key", "accept", "origin", "user-agent", "dnt",
    "cache-control", "x-requested-with", "if-none-match",
}  # fmt: skip
EXPOSED = {
    "x-request-id",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
    "etag",
    "x-cache",
}


def header_set(value: str | None) -> set[str]:
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


def preflight(origin: str | None, method: str = "POST", headers: str | None = None) -> dict[str, str]:
    sent = {"Access-Control-Request-Method": method}
    if origin is not None:
        sent["Origin"] = origin
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return sent


@pytest.mark.parametrize(
    "origin", [f"http://{host}:{port}" for host in ("localhost", "127.0.0.1") for port in (3000, 8000, 8001, 8080)]
)
async def test_a_valid_preflight(api: Api, origin: str) -> None:
    headers = "Content-Type, X-API-Key, X-Request-ID, If-None-Match, Cache-Control"
    reply = await api.request("OPTIONS", "/examples/vault/secret/x", headers=preflight(origin, "POST", headers))
    assert reply.status == 200 and reply.raw == b"", reply
    assert reply.headers["Access-Control-Allow-Origin"] == origin
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    assert reply.headers["Access-Control-Max-Age"] == "600"
    assert "POST" in header_set(reply.headers.get("Access-Control-Allow-Methods")) or header_set(
        reply.headers.get("Access-Control-Allow-Methods")
    ) >= {m.lower() for m in METHODS}
    assert header_set(reply.headers.get("Access-Control-Allow-Headers")) >= header_set(headers)


@pytest.mark.parametrize("header", sorted(ALLOWED_HEADERS))
async def test_every_listed_request_header_is_allowed(api: Api, header: str) -> None:
    reply = await api.request("OPTIONS", "/health/", headers=preflight(ORIGIN, "GET", header))
    assert reply.status == 200, reply


@pytest.mark.parametrize("method", sorted(METHODS - {"OPTIONS"}))
async def test_every_listed_method_is_allowed(api: Api, method: str) -> None:
    reply = await api.request("OPTIONS", "/examples/cache/k", headers=preflight(ORIGIN, method))
    assert reply.status == 200, reply


@pytest.mark.parametrize(
    "sent",
    [
        preflight("http://evil.example"),
        preflight("http://localhost:3001"),
        preflight(None),
        preflight(ORIGIN, "TRACE"),
        preflight(ORIGIN, "POST", "X-Evil"),
    ],
)
async def test_a_rejected_preflight_is_403_cors(api: Api, sent: dict[str, str]) -> None:
    reply = await api.request("OPTIONS", "/health/", headers=sent)
    assert reply.status == 403, reply
    assert reply.json["details"] == {"reason": "cors"}


async def test_simple_requests_from_allowed_origins(api: Api) -> None:
    reply = await api.get("/health/", headers={"Origin": ORIGIN})
    assert reply.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    assert header_set(reply.headers.get("Access-Control-Expose-Headers")) >= EXPOSED
    assert "origin" in header_set(reply.headers.get("Vary"))


async def test_errors_carry_cors_headers(api: Api) -> None:
    for reply in (
        await api.get(f"/{unique('nowhere')}", headers={"Origin": ORIGIN}),
        await api.get("/examples/cache/refapi:x", headers={"Origin": ORIGIN}),
        await api.get("/redis/cluster/info", headers={"Origin": ORIGIN}),
    ):
        assert reply.status >= 400, reply
        assert reply.headers.get("Access-Control-Allow-Origin") == ORIGIN, reply
        assert "origin" in header_set(reply.headers.get("Vary")), reply


async def test_disallowed_origins_are_served_without_cors_headers(api: Api) -> None:
    reply = await api.get("/health/", headers={"Origin": "http://evil.example"})
    assert reply.status == 200
    assert not [name for name in reply.headers if name.lower().startswith("access-control-")], reply


async def test_debug_allows_any_origin_without_credentials(strict: Api) -> None:
    origin = "http://anything.example:1234"
    reply = await strict.request("OPTIONS", "/health/", headers=preflight(origin, "GET"))
    assert reply.status == 200, reply
    assert reply.headers["Access-Control-Allow-Origin"] in ("*", origin)
    assert "Access-Control-Allow-Credentials" not in reply.headers
    simple = await strict.get("/health/", headers={"Origin": origin})
    assert simple.headers["Access-Control-Allow-Origin"] in ("*", origin)
    assert "Access-Control-Allow-Credentials" not in simple.headers
    assert "origin" not in header_set(simple.headers.get("Vary")), simple
