"""Response cache (contract §3.5) on the real Redis: ETags, 304s, bypass headers, vault invalidation, fail-open."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from refapi import errors, keys
from refapi.api.health import UNHEALTHY
from refapi.backends import redis as redis_backend
from refapi.config import SERVICES, RedisNode, Settings
from refapi.metrics import Metrics
from refapi.middlewares.cache import cache_middleware, etag_of
from refapi.middlewares.errors import errors_middleware
from refapi.middlewares.request_id import request_id_middleware
from refapi.openapi.operation import json_response
from tests.integration.redis.conftest import AppFactory, Client, redis_settings
from tests.support.contract import checked
from tests.support.tcp_proxy import TcpProxy

# Cancelling redis-py mid-read on a black-holed connection (health probes, 250 ms cache calls, guard timeouts)
# can leave a socket for the garbage collector to close; that is the library's cleanup, not a leak of ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]

HEALTH = "/health/all"


async def assert_not_modified(resp: Any, etag: str, outcome: str) -> None:
    """A 304 carries the cache headers and no body, as the spec documents for cached routes."""
    assert resp.status == 304 and await checked(resp) is None
    assert resp.headers["ETag"] == etag and resp.headers["X-Cache"] == outcome
    assert resp.headers["Cache-Control"].startswith("private, max-age=")


def stub_health_checks(app: web.Application, keep: tuple[str, ...] = ()) -> Counter[str]:
    """Replace the checks (but `keep`) by instant ones that count their calls (a MISS runs them, a HIT does not)."""
    calls: Counter[str] = Counter()
    for service in SERVICES:
        if service in keep:
            continue

        async def check(service: str = service) -> dict[str, Any]:
            calls[service] += 1
            return UNHEALTHY[service]

        app[keys.HEALTH_CHECKS][service] = check
    return calls


@pytest.fixture
async def health_api(make_api: AppFactory, cluster_nodes: list[tuple[str, int]]) -> tuple[Client, Counter[str]]:
    """The real app on the private cluster (so /health/all's one shared entry is ours alone), entry cleared."""
    api = await make_api("cluster")
    calls = stub_health_checks(api.app)
    await api.app[keys.REDIS].client.delete("refapi:cache:health_all")
    return api, calls


def hits_and_misses(app: web.Application, route: str) -> tuple[float, float]:
    metrics = app[keys.METRICS]
    metrics.flush()  # this turn's observations
    registry = metrics.registry
    return (
        registry.get_sample_value("cache_hits_total", {"route": route}) or 0.0,
        registry.get_sample_value("cache_misses_total", {"route": route}) or 0.0,
    )


async def test_miss_then_hit_with_a_content_etag(health_api: tuple[Client, Counter[str]]) -> None:
    api, calls = health_api
    first = await api.get(HEALTH)
    body = await first.read()
    await checked(first)
    assert first.headers["X-Cache"] == "MISS" and first.headers["Cache-Control"] == "private, max-age=30"
    assert first.headers["ETag"] == etag_of(body)
    second = await api.get(HEALTH, params={"ignored": "query"})
    assert await second.read() == body
    await checked(second)
    assert second.headers["X-Cache"] == "HIT" and second.headers["ETag"] == first.headers["ETag"]
    max_age = int(second.headers["Cache-Control"].removeprefix("private, max-age="))
    assert 1 <= max_age <= 30
    assert calls["redis"] == 1
    assert hits_and_misses(api.app, HEALTH) == (1, 1)


async def test_the_entry_is_shared_by_every_worker(
    health_api: tuple[Client, Counter[str]], make_api: AppFactory
) -> None:
    api, _ = health_api
    first = await api.get(HEALTH)
    other_worker = await make_api("cluster")
    second = await other_worker.get(HEALTH)
    assert second.headers["X-Cache"] == "HIT" and second.headers["ETag"] == first.headers["ETag"]
    assert await second.read() == await first.read()


@pytest.mark.parametrize("form", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
async def test_if_none_match_gives_304_on_miss_and_hit(health_api: tuple[Client, Counter[str]], form: str) -> None:
    api, _ = health_api
    etag = etag_of(await (await api.get(HEALTH, headers={"Cache-Control": "no-store"})).read())
    condition = form.format(etag=etag)
    miss = await api.get(HEALTH, headers={"If-None-Match": condition})
    await assert_not_modified(miss, etag, "MISS")
    hit = await api.get(HEALTH, headers={"If-None-Match": condition})
    await assert_not_modified(hit, etag, "HIT")
    fresh = await api.get(HEALTH, headers={"If-None-Match": '"0123456789abcdef0123456789abcdef"'})
    assert fresh.status == 200 and fresh.headers["X-Cache"] == "HIT"
    await checked(fresh)


async def test_no_cache_recomputes_and_stores(health_api: tuple[Client, Counter[str]]) -> None:
    api, calls = health_api
    await api.get(HEALTH)
    resp = await api.get(HEALTH, headers={"Cache-Control": "no-cache"})
    await checked(resp)
    assert resp.headers["X-Cache"] == "MISS" and calls["redis"] == 2
    assert (await api.get(HEALTH)).headers["X-Cache"] == "HIT" and calls["redis"] == 2
    assert hits_and_misses(api.app, HEALTH) == (1, 1)  # no-cache looked nothing up


async def test_no_store_neither_reads_nor_writes(health_api: tuple[Client, Counter[str]]) -> None:
    api, calls = health_api
    resp = await api.get(HEALTH, headers={"Cache-Control": "max-age=0, No-Store"})
    await checked(resp)
    assert "X-Cache" not in resp.headers and "ETag" not in resp.headers
    assert (await api.get(HEALTH)).headers["X-Cache"] == "MISS"  # nothing was stored
    resp = await api.get(HEALTH, headers={"Cache-Control": "no-store"})
    assert "X-Cache" not in resp.headers and calls["redis"] == 3  # nor read
    assert hits_and_misses(api.app, HEALTH) == (0, 1)


async def test_disabled_cache_serves_every_request_as_a_miss(
    make_api: AppFactory, cluster_nodes: list[tuple[str, int]]
) -> None:
    api = await make_api("cluster", response_cache_enabled=False)
    calls = stub_health_checks(api.app)
    for _ in range(2):
        resp = await api.get(HEALTH)
        await checked(resp)
        assert resp.headers["X-Cache"] == "MISS"
    assert calls["redis"] == 2 and hits_and_misses(api.app, HEALTH) == (0, 0)


# ---- The vault reads, served by stand-in handlers on the real paths (the cache must not care who answers) ----

vault_routes = web.RouteTableDef()
NOTE = "Sensitive values are masked."


@dataclass
class FakeVault:
    reads: Counter[str] = field(default_factory=Counter)
    version: int = 1


FAKE_VAULT = web.AppKey("fake_vault", FakeVault)


@vault_routes.get("/examples/vault/secret/{service_name}")
async def fake_read(request: web.Request) -> web.Response:
    request.app[FAKE_VAULT].reads["secret"] += 1
    service = request.match_info["service_name"]
    if service.lower() == "absent":
        raise errors.NotFound(resource_type="secret", resource_id=service)
    return json_response({"service": service, "data": {"version": request.app[FAKE_VAULT].version}, "note": NOTE})


@vault_routes.get("/examples/vault/secret/{service_name}/{key}")
async def fake_read_key(request: web.Request) -> web.Response:
    request.app[FAKE_VAULT].reads["key"] += 1
    service, key = request.match_info["service_name"], request.match_info["key"]
    return json_response({"service": service, "key": key, "value": request.app[FAKE_VAULT].version, "note": NOTE})


@vault_routes.post("/examples/vault/secret/{service_name}")
async def fake_write(request: web.Request) -> web.Response:
    if request.query.get("cas") == "0":
        raise errors.Conflict(reason="cas_mismatch")
    request.app[FAKE_VAULT].version += 1
    service = request.match_info["service_name"]
    return json_response(
        {"service": service, "version": request.app[FAKE_VAULT].version, "created_time": "now", "action": "written"}
    )


def vault_app(settings: Settings) -> web.Application:
    """The chain's relevant part, the real Redis backend and the stand-in vault handlers."""
    app = web.Application(middlewares=[request_id_middleware(), errors_middleware(), cache_middleware()])
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = Metrics()
    app[keys.HEALTH_CHECKS] = {}
    app[keys.GUARDS] = {}
    app[FAKE_VAULT] = FakeVault()
    redis_backend.setup(app)
    app.router.add_routes(vault_routes)
    return app


@pytest.fixture
async def vault_api(
    aiohttp_client: Any, mode: str, cluster_nodes: list[tuple[str, int]]
) -> TestClient[Any, web.Application]:
    client: TestClient[Any, web.Application] = await aiohttp_client(vault_app(redis_settings(mode, cluster_nodes)))
    return client


async def test_vault_reads_are_cached_per_name_as_sent(vault_api: Client) -> None:
    service = f"Svc-{uuid.uuid4().hex[:8]}"
    first = await vault_api.get(f"/examples/vault/secret/{service}")
    assert (await checked(first))["service"] == service and first.headers["X-Cache"] == "MISS"
    assert first.headers["Cache-Control"] == "private, max-age=300"
    again = await vault_api.get(f"/examples/vault/secret/{service}")
    assert (await checked(again))["service"] == service and again.headers["X-Cache"] == "HIT"
    lower = await vault_api.get(f"/examples/vault/secret/{service.lower()}")
    assert (await checked(lower))["service"] == service.lower() and lower.headers["X-Cache"] == "MISS"
    key = await vault_api.get(f"/examples/vault/secret/{service}/db_password")
    assert (await checked(key))["key"] == "db_password" and key.headers["X-Cache"] == "MISS"
    other_key = await vault_api.get(f"/examples/vault/secret/{service}/DB_password")
    assert (await checked(other_key))["key"] == "DB_password" and other_key.headers["X-Cache"] == "MISS"
    assert vault_api.app[FAKE_VAULT].reads == Counter(secret=2, key=2)


async def test_a_vault_write_invalidates_every_case_variant(vault_api: Client) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    paths = [
        f"/examples/vault/secret/{service}",
        f"/examples/vault/secret/{service.upper()}",
        f"/examples/vault/secret/{service.title()}/api_token",
    ]
    for path in paths:
        await vault_api.get(path)
        assert (await vault_api.get(path)).headers["X-Cache"] == "HIT"
    refused = await vault_api.post(f"/examples/vault/secret/{service.upper()}", params={"cas": "0"}, json={"a": 1})
    assert refused.status == 409
    assert all([(await vault_api.get(path)).headers["X-Cache"] == "HIT" for path in paths])  # not a 200: kept
    written = await vault_api.post(f"/examples/vault/secret/{service.title()}", json={"a": 1})
    assert written.status == 200
    for path in paths:
        resp = await vault_api.get(path)
        assert resp.headers["X-Cache"] == "MISS" and (await resp.json())["note"] == NOTE
        assert str(vault_api.app[FAKE_VAULT].version) in (await resp.text())
        assert (await vault_api.get(path)).headers["X-Cache"] == "HIT"


async def test_a_vault_write_leaves_other_services_cached(vault_api: Client) -> None:
    service, other = f"svc-{uuid.uuid4().hex[:8]}", f"svc-{uuid.uuid4().hex[:8]}"
    await vault_api.get(f"/examples/vault/secret/{other}")
    await vault_api.post(f"/examples/vault/secret/{service}", json={"a": 1})
    assert (await vault_api.get(f"/examples/vault/secret/{other}")).headers["X-Cache"] == "HIT"


async def test_errors_are_not_cached(vault_api: Client) -> None:
    for _ in range(2):
        resp = await vault_api.get("/examples/vault/secret/absent")
        assert resp.status == 404 and "X-Cache" not in resp.headers
    assert vault_api.app[FAKE_VAULT].reads["secret"] == 2


# ---- Redis down: the cache endpoints fail, the cached routes are still served -------------------------------


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 6379) as proxy:
        yield proxy


async def proxied_api(make_api: AppFactory, proxy: TcpProxy, **overrides: Any) -> Client:
    node = RedisNode("redis-1", "127.0.0.1", proxy.port)
    return await make_api("standalone", redis_port=proxy.port, redis_nodes=(node,), **overrides)


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_redis_down(make_api: AppFactory, redis_proxy: TcpProxy, fault: str) -> None:
    getattr(redis_proxy, fault)()
    api = await proxied_api(make_api, redis_proxy, backend_timeout=0.5, health_check_timeout=0.5)
    calls = stub_health_checks(api.app, keep=("redis",))  # the real Redis check must report the outage
    reason = "unreachable" if fault == "refuse" else "timeout"

    for method, path in [
        ("GET", "/examples/cache/k"),
        ("POST", "/examples/cache/k?value=v"),
        ("DELETE", "/examples/cache/k"),
        ("GET", "/examples/cache/pattern/k*"),
    ]:
        resp = await api.request(method, path)
        body = await checked(resp)
        assert resp.status == 503 and body["details"] == {"service": "redis", "reason": reason}, (method, path)

    body = await checked(await api.get("/health/redis"))
    assert body["status"] == "unhealthy"
    assert body["nodes"] == [
        {"host": "127.0.0.1", "port": redis_proxy.port, "status": "unhealthy", "error": "Node connection failed"}
    ]

    started = time.monotonic()
    for _ in range(3):
        resp = await api.get(HEALTH, headers={"If-None-Match": "*"})
        await assert_not_modified(resp, resp.headers["ETag"], "MISS")  # served, and still conditional
        resp = await api.get(HEALTH)
        body = await checked(resp)
        assert resp.headers["X-Cache"] == "MISS" and body["services"]["redis"]["status"] == "unhealthy"
    # Fail-open: one 250 ms attempt, then Redis is skipped (generous bound: health checks take 0.5 s each).
    assert time.monotonic() - started < 6 * 0.5 + 1
    assert calls["vault"] == 6 and hits_and_misses(api.app, HEALTH) == (0, 0)
