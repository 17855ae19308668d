"""Response cache pieces (contract §3.5): ETags, conditional requests, directives, keys, entries, fail-open."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from redis.cluster import key_slot

from refapi.middlewares.cache import (
    CACHED_ROUTES,
    cache_directives,
    decode_entry,
    encode_entry,
    etag_of,
    if_none_match,
)
from refapi.resilience.fallback import FailOpen, Skipped

ETAG = etag_of(b'{"status":"ok"}')


def test_etag_is_the_quoted_sha256_prefix() -> None:
    assert '"' + hashlib.sha256(b'{"status":"ok"}').hexdigest()[:32] + '"' == ETAG and len(ETAG) == 34


@pytest.mark.parametrize(
    ("headers", "matches"),
    [
        ([ETAG], True),
        ([f"W/{ETAG}"], True),
        ([f'"abc", W/{ETAG} , "def"'], True),
        (['"abc"', ETAG], True),  # repeated headers form one list
        ([" * "], True),
        ([ETAG[:-2] + '"'], False),
        (['"abc"'], False),
        ([""], False),
        ([], False),
    ],
)
def test_if_none_match(headers: list[str], matches: bool) -> None:
    assert if_none_match(headers, ETAG) is matches


def test_cache_directives() -> None:
    assert cache_directives(["No-Cache, max-age=0", "no-store"]) == {"no-cache", "max-age", "no-store"}
    assert cache_directives([]) == set()


def test_entries_round_trip_and_expire_with_their_generation() -> None:
    raw = encode_entry(b"3", ETAG, b'{"a":"\n"}')
    entry = decode_entry(raw, b"3", 29_001)
    assert entry is not None and entry.etag == ETAG and entry.body == b'{"a":"\n"}' and entry.max_age == 30
    assert decode_entry(raw, b"4", 29_001) is None  # the group was invalidated since
    assert decode_entry(raw, b"3", -2) is None and decode_entry(None, b"3", 1000) is None


def test_case_variants_of_a_service_share_its_group_and_slot() -> None:
    secret = CACHED_ROUTES["/examples/vault/secret/{service_name}"]
    key = CACHED_ROUTES["/examples/vault/secret/{service_name}/{key}"]
    variants = [{"service_name": name, "key": "Token"} for name in ("MyApp", "myapp", "MYAPP")]
    groups = {route.group_key(v) for route in (secret, key) for v in variants}
    assert groups == {"refapi:cache:{vault:myapp}"}
    entries = {route.entry_key(v) for route in (secret, key) for v in variants}
    assert len(entries) == 6  # route, service as sent and key all distinguish entries
    assert {key_slot(k.encode()) for k in entries} == {key_slot(b"refapi:cache:{vault:myapp}:gen")}
    assert all(k.startswith("refapi:cache:{vault:myapp}:") for k in entries)


def test_health_has_one_entry_and_no_group() -> None:
    route = CACHED_ROUTES["/health/all"]
    assert route.group_key({}) is None and route.entry_key({}) == "refapi:cache:health_all"
    assert not route.invalidated_by_post


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_fail_open_skips_after_a_failure_then_retries() -> None:
    clock = Clock()
    gate = FailOpen("test", timeout=1.0, skip_for=5.0, clock=clock)
    calls = []

    async def failing() -> int:
        calls.append("failing")
        raise ConnectionError("down")

    async def working() -> int:
        calls.append("working")
        return 7

    with pytest.raises(Skipped):
        await gate.call(failing)
    assert gate.skipping
    clock.now += 4.9
    with pytest.raises(Skipped):
        await gate.call(working)
    assert calls == ["failing"]  # skipped without being called
    clock.now += 0.2
    assert await gate.call(working) == 7 and not gate.skipping


async def test_fail_open_bounds_a_call_by_its_timeout() -> None:
    gate = FailOpen("test", timeout=0.01)
    never = asyncio.Event()
    with pytest.raises(Skipped):
        await gate.call(never.wait)
    assert gate.skipping
