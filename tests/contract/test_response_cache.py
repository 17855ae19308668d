"""Contract §3.5: the response cache on /health/all and the two vault reads."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.contract.http import Api, Reply, unique
from tests.support.contract import contract

SECRET = "/examples/vault/secret"
ETAG = re.compile(r'"[0-9a-f]{32}"')


def assert_cached_headers(reply: Reply, x_cache: str, ttl: int) -> None:
    assert reply.headers.get("X-Cache") == x_cache, reply
    etag = reply.headers.get("ETag", "")
    assert ETAG.fullmatch(etag), reply
    control = re.fullmatch(r"private, max-age=([0-9]+)", reply.headers.get("Cache-Control", ""))
    assert control and 0 <= int(control.group(1)) <= ttl, reply
    if reply.raw:
        assert etag == '"' + hashlib.sha256(reply.raw).hexdigest()[:32] + '"', reply


async def secret(api: Api, data: dict[str, str] | None = None) -> str:
    service = unique("cached")
    reply = await api.post(f"{SECRET}/{service}", json_body=data or {"colour": "red", "password": "hunter2"})
    assert reply.status == 200, reply
    return service


async def test_vault_reads_miss_then_hit_with_the_same_bytes(api: Api) -> None:
    service = await secret(api)
    for path in (f"{SECRET}/{service}", f"{SECRET}/{service}/colour"):
        miss = await api.get(path)
        assert_cached_headers(miss, "MISS", 300)
        hit = await api.get(path)
        assert_cached_headers(hit, "HIT", 300)
        assert hit.raw == miss.raw and hit.headers["ETag"] == miss.headers["ETag"]


async def test_the_query_string_is_ignored(api: Api) -> None:
    service = await secret(api)
    miss = await api.get(f"{SECRET}/{service}", params={"a": "1"})
    hit = await api.get(f"{SECRET}/{service}", params={"b": "2"})
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")


async def test_the_service_as_sent_is_part_of_the_key(api: Api) -> None:
    service = await secret(api)
    await api.get(f"{SECRET}/{service}")
    other_case = await api.get(f"{SECRET}/{service.upper()}")
    assert other_case.headers["X-Cache"] == "MISS" and other_case.json["service"] == service.upper()


async def test_health_all_is_cached_for_30_seconds(api: Api) -> None:
    fresh = await api.get("/health/all", headers={"Cache-Control": "no-cache"})
    assert_cached_headers(fresh, "MISS", 30)
    hit = await api.get("/health/all")
    assert_cached_headers(hit, "HIT", 30)


@pytest.mark.parametrize("matching", ["{etag}", "*", "W/{etag}", '"0000", W/{etag}', '"a", {etag} , "b"'])
async def test_if_none_match_gives_304(api: Api, matching: str) -> None:
    service = await secret(api)
    path = f"{SECRET}/{service}"
    etag = (await api.get(path)).headers["ETag"]
    reply = await api.get(path, headers={"If-None-Match": matching.format(etag=etag)}, spec=False)
    assert reply.status == 304 and reply.raw == b"", reply
    assert_cached_headers(reply, "HIT", 300)
    assert reply.headers["ETag"] == etag


async def test_if_none_match_on_a_miss(api: Api) -> None:
    service = await secret(api)
    reply = await api.get(f"{SECRET}/{service}", headers={"If-None-Match": "*"}, spec=False)
    assert reply.status == 304, reply
    assert_cached_headers(reply, "MISS", 300)


async def test_a_stale_etag_gets_the_body(api: Api) -> None:
    service = await secret(api)
    reply = await api.get(f"{SECRET}/{service}", headers={"If-None-Match": '"' + "0" * 32 + '"'})
    assert reply.status == 200 and reply.json["service"] == service, reply


def test_304_is_documented_for_the_cached_routes() -> None:
    for method, path in (("GET", "/health/all"), ("GET", f"{SECRET}/x"), ("GET", f"{SECRET}/x/y")):
        _, operation = contract().operation(method, path)
        assert "304" in operation["responses"], f"{path}: 304 (contract §1.5, §3.5) is not in the spec"


async def test_no_cache_recomputes_and_stores(api: Api) -> None:
    service = await secret(api)
    await api.get(f"{SECRET}/{service}")
    recomputed = await api.get(f"{SECRET}/{service}", headers={"Cache-Control": "no-cache"})
    assert recomputed.headers["X-Cache"] == "MISS"
    assert (await api.get(f"{SECRET}/{service}")).headers["X-Cache"] == "HIT"


async def test_no_store_neither_reads_nor_writes(api: Api) -> None:
    service = await secret(api)
    bypass = await api.get(f"{SECRET}/{service}", headers={"Cache-Control": "no-store"})
    assert bypass.status == 200 and "X-Cache" not in bypass.headers and "ETag" not in bypass.headers, bypass
    assert (await api.get(f"{SECRET}/{service}")).headers["X-Cache"] == "MISS"
    cached = await api.get(f"{SECRET}/{service}", headers={"Cache-Control": "no-store"})
    assert "X-Cache" not in cached.headers, cached


async def test_errors_are_not_cached(api: Api) -> None:
    service = unique("absent")
    await api.get(f"{SECRET}/{service}")
    again = await api.get(f"{SECRET}/{service}")
    assert again.status == 404 and again.headers.get("X-Cache") != "HIT", again


async def test_a_write_invalidates_every_case_variant(api: Api) -> None:
    service = await secret(api, {"colour": "red"})
    variants = [service, service.upper(), service.capitalize()]
    for variant in variants:
        await api.get(f"{SECRET}/{variant}")
        await api.get(f"{SECRET}/{variant}/colour")
        assert (await api.get(f"{SECRET}/{variant}")).headers["X-Cache"] == "HIT"
    written = await api.post(f"{SECRET}/{service.swapcase()}", json_body={"colour": "blue"})
    assert written.status == 200, written
    for variant in variants:
        full = await api.get(f"{SECRET}/{variant}")
        assert full.headers["X-Cache"] == "MISS" and full.json["data"] == {"colour": "blue"}, full
        assert full.json["service"] == variant
        key = await api.get(f"{SECRET}/{variant}/colour")
        assert key.headers["X-Cache"] == "MISS" and key.json["value"] == "blue", key


async def test_cached_reads_are_stored_masked(api: Api) -> None:
    service = await secret(api, {"password": "hunter2", "user": "u"})
    await api.get(f"{SECRET}/{service}")
    hit = await api.get(f"{SECRET}/{service}")
    assert hit.headers["X-Cache"] == "HIT" and hit.json["data"]["password"] == "***"
    assert b"hunter2" not in hit.raw
