"""Contract §2.5: the cache operations on the machine's standalone Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.contract.conftest import REDIS, Stack
from tests.contract.http import Api, assert_not_echoed, unique, validation_errors

CACHE = "/examples/cache"


async def test_missing_key(api: Api) -> None:
    key = unique("k")
    reply = await api.get(f"{CACHE}/{key}")
    assert reply.json == {"key": key, "value": None, "exists": False, "ttl": None}


async def test_set_without_ttl_then_get(api: Api) -> None:
    key = unique("k")
    set_reply = await api.post(f"{CACHE}/{key}", params={"value": "hello"})
    assert set_reply.json == {"key": key, "value": "hello", "ttl": None, "action": "set"}
    assert (await api.get(f"{CACHE}/{key}")).json == {
        "key": key,
        "value": "hello",
        "exists": True,
        "ttl": "no expiration",
    }


async def test_set_with_ttl_then_plain_set_clears_it(api: Api) -> None:
    key = unique("k")
    assert (await api.post(f"{CACHE}/{key}", params={"value": "v", "ttl": "100"})).json["ttl"] == 100
    ttl = (await api.get(f"{CACHE}/{key}")).json["ttl"]
    assert type(ttl) is int and 1 <= ttl <= 100
    body = await api.post(f"{CACHE}/{key}", json_body={"value": "w"})
    assert body.json == {"key": key, "value": "w", "ttl": None, "action": "set"}
    assert (await api.get(f"{CACHE}/{key}")).json["ttl"] == "no expiration"


async def test_set_through_the_body_with_ttl(api: Api) -> None:
    key = unique("k")
    reply = await api.post(f"{CACHE}/{key}", json_body={"value": "über", "ttl": 86400})
    assert reply.json == {"key": key, "value": "über", "ttl": 86400, "action": "set"}
    assert (await api.get(f"{CACHE}/{key}")).json["value"] == "über"


async def test_empty_value_is_allowed(api: Api) -> None:
    key = unique("k")
    assert (await api.post(f"{CACHE}/{key}", params={"value": ""})).json["value"] == ""
    got = (await api.get(f"{CACHE}/{key}")).json
    assert (got["value"], got["exists"]) == ("", True)


async def test_delete(api: Api) -> None:
    key = unique("k")
    await api.post(f"{CACHE}/{key}", params={"value": "v"})
    assert (await api.delete(f"{CACHE}/{key}")).json == {"key": key, "deleted": True, "action": "delete"}
    assert (await api.delete(f"{CACHE}/{key}")).json == {"key": key, "deleted": False, "action": "delete"}
    assert (await api.get(f"{CACHE}/{key}")).json["exists"] is False


async def test_query_and_body_are_mutually_exclusive(api: Api) -> None:
    reply = await api.post(f"{CACHE}/{unique()}", params={"ttl": "5"}, json_body={"value": "v"})
    assert validation_errors(reply) == [(("body",), "mutually_exclusive")]


async def test_a_value_is_required(api: Api) -> None:
    reply = await api.post(f"{CACHE}/{unique()}")
    assert validation_errors(reply) == [(("query", "value"), "missing")]
    ttl_only = await api.post(f"{CACHE}/{unique()}", params={"ttl": "5"})
    assert validation_errors(ttl_only) == [(("query", "value"), "missing")]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"value": "v", "ttl": "0"}, [(("query", "ttl"), "greater_than_equal")]),
        ({"value": "v", "ttl": "86401"}, [(("query", "ttl"), "less_than_equal")]),
        ({"value": "v", "ttl": "1.5"}, [(("query", "ttl"), "int_parsing")]),
        ({"value": "x" * 10001}, [(("query", "value"), "string_too_long")]),
    ],
)
async def test_query_validation(api: Api, params: dict[str, str], expected: list[Any]) -> None:
    reply = await api.post(f"{CACHE}/{unique()}", params=params)
    assert validation_errors(reply) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"ttl": 5}, [(("body", "value"), "missing")]),
        ({"value": 1}, [(("body", "value"), "string_type")]),
        ({"value": "v", "ttl": "5"}, [(("body", "ttl"), "int_type")]),
        ({"value": "v", "ttl": 0}, [(("body", "ttl"), "greater_than_equal")]),
        ({"value": "v", "other": 1}, [(("body", "other"), "unknown_field")]),
        ("v", [(("body",), "dict_type")]),
    ],
)
async def test_body_validation(api: Api, body: Any, expected: list[Any]) -> None:
    reply = await api.post(f"{CACHE}/{unique()}", json_body=body)
    assert validation_errors(reply) == expected


async def test_the_longest_query_value_is_accepted(api: Api) -> None:
    # 10000 characters in the query: the server must accept a request line that long (contract §2.5).
    key = unique("k")
    reply = await api.post(f"{CACHE}/{key}", params={"value": "x" * 10000})
    assert reply.status == 200 and reply.json["value"] == "x" * 10000, reply


async def test_value_length_counts_code_points(api: Api) -> None:
    key = unique("k")
    assert (await api.post(f"{CACHE}/{key}", json_body={"value": "€" * 10000})).status == 200
    over = await api.post(f"{CACHE}/{key}", json_body={"value": "€" * 10001})
    assert validation_errors(over) == [(("body", "value"), "string_too_long")]


@pytest.mark.parametrize(("key", "error"), [("bad%20key", "string_pattern_mismatch"), ("k" * 201, "string_too_long")])
async def test_key_rules(api: Api, key: str, error: str) -> None:
    for method in ("GET", "DELETE"):
        reply = await api.request(method, f"{CACHE}/{key}")
        assert validation_errors(reply) == [(("path", "key"), error)]
    assert_not_echoed(reply, "bad key")


async def test_keys_may_use_the_whole_alphabet(api: Api) -> None:
    key = f"a:b.c-d_E{unique()}" + "k" * 170
    assert len(key) <= 200
    assert (await api.post(f"{CACHE}/{key}", params={"value": "v"})).status == 200
    assert (await api.get(f"{CACHE}/{key}")).json["exists"] is True


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_reserved_keys(api: Api, method: str) -> None:
    reply = await api.request(method, f"{CACHE}/refapi:{unique()}", params={"value": "v"} if method == "POST" else None)
    assert reply.status == 403 and reply.json["details"] == {"reason": "reserved_key"}, reply


async def test_wrong_type(api: Api, local: Stack) -> None:
    key = unique("list")
    client = aioredis.Redis(host=REDIS[0], port=REDIS[1])
    try:
        await client.rpush(key, "a")
        reply = await api.get(f"{CACHE}/{key}")
        assert reply.status == 409 and reply.json["details"] == {"reason": "wrong_type"}, reply
    finally:
        await client.delete(key)
        await client.aclose()


# --- pattern search ----------------------------------------------------------------------------------------------


async def test_pattern_search(api: Api) -> None:
    prefix = unique("pat")
    for suffix in ("c", "a", "b", "ab"):
        await api.post(f"{CACHE}/{prefix}:{suffix}", params={"value": "v"})
    reply = await api.get(f"{CACHE}/pattern/{prefix}:*")
    assert reply.json == {
        "pattern": f"{prefix}:*",
        "keys": [f"{prefix}:{s}" for s in ("a", "ab", "b", "c")],
        "count": 4,
        "truncated": False,
    }
    single = (await api.get(f"{CACHE}/pattern/{prefix}:%3F")).json  # '?' percent-encoded, or it starts the query
    assert single["keys"] == [f"{prefix}:{s}" for s in ("a", "b", "c")] and single["count"] == 3


async def test_pattern_search_truncates_at_the_limit(api: Api) -> None:
    prefix = unique("trunc")
    names = [f"{prefix}:{i}" for i in range(5)]
    for name in names:
        await api.post(f"{CACHE}/{name}", params={"value": "v"})
    reply = (await api.get(f"{CACHE}/pattern/{prefix}:*", params={"limit": "3"})).json
    assert reply["truncated"] is True and reply["count"] == 3
    assert reply["keys"] == sorted(reply["keys"]) and set(reply["keys"]) <= set(names)
    exact = (await api.get(f"{CACHE}/pattern/{prefix}:*", params={"limit": "5"})).json
    assert exact["truncated"] is False and exact["keys"] == sorted(names)


async def test_pattern_search_hides_reserved_keys(api: Api) -> None:
    await api.get("/examples/cache/pattern/x*")  # the limiter has written refapi: keys by now
    for pattern in ("refapi:*", "*"):
        reply = (await api.get(f"{CACHE}/pattern/{pattern}", params={"limit": "1000"})).json
        assert not [key for key in reply["keys"] if key.startswith("refapi:")], reply


@pytest.mark.parametrize(
    ("pattern", "params", "expected"),
    [
        ("bad[x]", {}, [(("path", "pattern"), "string_pattern_mismatch")]),
        ("p" * 201, {}, [(("path", "pattern"), "string_too_long")]),
        ("ok*", {"limit": "0"}, [(("query", "limit"), "greater_than_equal")]),
        ("ok*", {"limit": "1001"}, [(("query", "limit"), "less_than_equal")]),
    ],
)
async def test_pattern_validation(api: Api, pattern: str, params: dict[str, str], expected: list[Any]) -> None:
    reply = await api.get(f"{CACHE}/pattern/{pattern}", params=params)
    assert validation_errors(reply) == expected
