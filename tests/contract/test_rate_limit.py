"""Contract §3.3: rate limits per scope and client address, on the strict instance (6 general, 5 health, 4 metrics).

Windows are aligned to the UTC minute, so a test may straddle two; each one therefore spends its budget until the
429 arrives (bounded by two windows' worth) and checks the counting within the window that ended in the 429.
"""

from __future__ import annotations

import pytest

from tests.contract.conftest import STRICT_LIMITS
from tests.contract.http import Api, Reply, fake_client_ip, unique


async def exhaust(api: Api, path: str, limit: int) -> tuple[list[Reply], Reply]:
    """Request `path` until a 429; the replies of the window that ended in it, and the 429."""
    window: list[Reply] = []
    for _ in range(2 * limit + 2):
        reply = await api.get(path)
        if reply.status == 429:
            return window, reply
        if window and int(reply.headers["X-RateLimit-Remaining"]) >= int(window[-1].headers["X-RateLimit-Remaining"]):
            window = []  # a new window began
        window.append(reply)
    raise AssertionError(f"no 429 after {2 * limit + 2} requests to {path}")


@pytest.mark.parametrize(
    ("scope", "path"),
    [
        ("general", "/"),
        ("general", "/examples/vault/health"),
        ("health", "/health/live"),
        ("health", "/health"),
        ("metrics", "/metrics"),
    ],
)
async def test_each_scope_has_its_limit(strict: Api, scope: str, path: str) -> None:
    limit = STRICT_LIMITS[scope]
    window, rejected = await exhaust(strict, path, limit)
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in window] == list(range(limit - 1, -1, -1)), window
    assert {r.headers["X-RateLimit-Limit"] for r in window} == {str(limit)}
    assert rejected.json["details"] == {"scope": scope, "limit": limit}
    assert rejected.headers["X-RateLimit-Remaining"] == "0"
    assert rejected.headers["Retry-After"] == rejected.headers["X-RateLimit-Reset"]


async def test_unknown_paths_count_as_general(strict: Api) -> None:
    _, rejected = await exhaust(strict, f"/{unique('nowhere')}", STRICT_LIMITS["general"])
    assert rejected.json["details"]["scope"] == "general"
    # Counted before routing: a real route is refused for the same client too.
    again = await strict.get("/")
    assert again.status == 429 or again.headers["X-RateLimit-Remaining"] == str(STRICT_LIMITS["general"] - 1)


async def test_scopes_are_counted_separately(strict: Api) -> None:
    await exhaust(strict, "/health/live", STRICT_LIMITS["health"])
    general = await strict.get("/")
    assert general.status == 200 and general.headers["X-RateLimit-Limit"] == str(STRICT_LIMITS["general"]), general


async def test_clients_are_counted_separately(strict: Api) -> None:
    await exhaust(strict, "/", STRICT_LIMITS["general"])
    other = await strict.with_ip(fake_client_ip()).get("/")
    assert other.status == 200, other


async def test_trusted_proxies_are_skipped_right_to_left(strict: Api) -> None:
    client = fake_client_ip()
    await exhaust(strict.with_ip(client), "/", STRICT_LIMITS["general"])
    # The instance trusts loopback: the rightmost untrusted entry is the client, whatever precedes it.
    through_proxies = await strict.with_ip(f"{fake_client_ip()}, {client}, 127.0.0.1").get("/")
    assert through_proxies.status == 429, through_proxies


async def test_preflights_are_not_counted(strict: Api) -> None:
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"}
    for _ in range(STRICT_LIMITS["general"] + 1):
        reply = await strict.request("OPTIONS", "/", headers=preflight)
        assert reply.status == 200, reply
    first = await strict.get("/")
    assert first.status == 200 and first.headers["X-RateLimit-Remaining"] == str(STRICT_LIMITS["general"] - 1), first


async def test_rejections_carry_cors_headers(strict: Api) -> None:
    origin = "http://localhost:8080"
    for _ in range(2 * STRICT_LIMITS["general"] + 2):
        reply = await strict.get("/", headers={"Origin": origin})
        if reply.status == 429:
            break
    assert reply.status == 429, reply
    assert reply.headers.get("Access-Control-Allow-Origin") in ("*", origin), reply
