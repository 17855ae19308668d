"""Cache endpoints (contract §2.5) against the standalone Redis and the 3-master cluster."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.cluster import key_slot

from refapi import keys as refapi_keys
from tests.integration.redis.conftest import Client
from tests.support.contract import checked

# Cancelling redis-py mid-read on a black-holed connection (health probes, 250 ms cache calls, guard timeouts)
# can leave a socket for the garbage collector to close; that is the library's cleanup, not a leak of ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]

MASTER_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))  # how bin/dev-services splits the slots


def keys_on_each_master(prefix: str) -> list[str]:
    """One key per master of the test cluster (on the standalone server they are just three keys)."""
    found: dict[int, str] = {}
    for n in itertools.count():
        key = f"{prefix}k{n}"
        slot = key_slot(key.encode())
        master = next(i for i, (start, end) in enumerate(MASTER_RANGES) if start <= slot <= end)
        found.setdefault(master, key)
        if len(found) == len(MASTER_RANGES):
            return [found[i] for i in range(len(MASTER_RANGES))]
    raise AssertionError("unreachable")


async def test_keys_on_every_master_round_trip(api: Client, prefix: str) -> None:
    for key in keys_on_each_master(prefix):
        body = await checked(await api.post(f"/examples/cache/{key}", params={"value": f"v-{key}", "ttl": "600"}))
        assert body == {"key": key, "value": f"v-{key}", "ttl": 600, "action": "set"}
        body = await checked(await api.get(f"/examples/cache/{key}"))
        assert body["key"] == key and body["value"] == f"v-{key}" and body["exists"] is True
        assert 0 < body["ttl"] <= 600
        body = await checked(await api.delete(f"/examples/cache/{key}"))
        assert body == {"key": key, "deleted": True, "action": "delete"}
        body = await checked(await api.get(f"/examples/cache/{key}"))
        assert body == {"key": key, "value": None, "exists": False, "ttl": None}
        body = await checked(await api.delete(f"/examples/cache/{key}"))
        assert body == {"key": key, "deleted": False, "action": "delete"}


async def test_set_without_ttl_clears_the_expiry(api: Client, prefix: str) -> None:
    key = f"{prefix}ttl"
    await checked(await api.post(f"/examples/cache/{key}", json={"value": "first", "ttl": 30}))
    assert (await checked(await api.get(f"/examples/cache/{key}")))["ttl"] <= 30
    body = await checked(await api.post(f"/examples/cache/{key}", json={"value": ""}))
    assert body == {"key": key, "value": "", "ttl": None, "action": "set"}
    body = await checked(await api.get(f"/examples/cache/{key}"))
    assert body == {"key": key, "value": "", "exists": True, "ttl": "no expiration"}


async def test_a_key_of_another_type_is_a_conflict(api: Client, raw_redis: Redis | RedisCluster, prefix: str) -> None:
    key = f"{prefix}hash"
    await raw_redis.hset(key, "field", "value")
    resp = await api.get(f"/examples/cache/{key}")
    body = await checked(resp)
    assert resp.status == 409 and body["details"] == {"reason": "wrong_type"}


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_reserved_keys_are_forbidden(api: Client, method: str) -> None:
    resp = await api.request(method, "/examples/cache/refapi:anything", params={"value": "x"})
    body = await checked(resp)
    assert resp.status == 403 and body["details"] == {"reason": "reserved_key"}


@pytest.mark.parametrize(
    ("params", "json", "expected"),
    [
        ({}, None, [{"loc": ["query", "value"], "type": "missing"}]),
        ({"ttl": "5"}, None, [{"loc": ["query", "value"], "type": "missing"}]),
        ({"value": "x"}, {"value": "y"}, [{"loc": ["body"], "type": "mutually_exclusive"}]),
        ({"value": "x", "ttl": "0"}, None, [{"loc": ["query", "ttl"], "type": "greater_than_equal"}]),
        ({"value": "x", "ttl": "86401"}, None, [{"loc": ["query", "ttl"], "type": "less_than_equal"}]),
        ({"value": "x", "ttl": "1.0"}, None, [{"loc": ["query", "ttl"], "type": "int_parsing"}]),
        ({}, {"value": "x" * 10001}, [{"loc": ["body", "value"], "type": "string_too_long"}]),
        ({}, {"value": "y", "ttl": True}, [{"loc": ["body", "ttl"], "type": "int_type"}]),
        ({}, {"value": 1}, [{"loc": ["body", "value"], "type": "string_type"}]),
        ({}, {"ttl": 5}, [{"loc": ["body", "value"], "type": "missing"}]),
        ({}, {"value": "y", "extra": 1}, [{"loc": ["body", "extra"], "type": "unknown_field"}]),
        ({}, ["y"], [{"loc": ["body"], "type": "dict_type"}]),
    ],
)
async def test_set_validation(
    api: Client, params: dict[str, str], json: object, expected: list[dict[str, object]]
) -> None:
    resp = await api.post("/examples/cache/some-key", params=params, json=json)
    body = await checked(resp)
    assert resp.status == 422
    assert [{"loc": p["loc"], "type": p["type"]} for p in body["details"]["validation_errors"]] == expected


async def test_key_rules_are_validated(api: Client) -> None:
    for path in ("/examples/cache/" + "k" * 201, "/examples/cache/bad%20key"):
        resp = await api.get(path)
        body = await checked(resp)
        assert resp.status == 422 and body["details"]["validation_errors"][0]["loc"] == ["path", "key"]


async def test_a_non_json_body_is_unsupported(api: Client) -> None:
    resp = await api.post("/examples/cache/some-key", data="value", headers={"Content-Type": "text/plain"})
    body = await checked(resp)
    assert resp.status == 415 and body["details"] == {"allowed_content_types": ["application/json"]}


async def test_pattern_search_finds_keys_on_every_master(
    api: Client, raw_redis: Redis | RedisCluster, prefix: str
) -> None:
    keys = keys_on_each_master(prefix) + [f"{prefix}other{n}" for n in range(5)]
    for key in keys:
        await raw_redis.set(key, "v")
    await raw_redis.set(f"refapi:{prefix}hidden", "v")  # reserved: never listed

    body = await checked(await api.get(f"/examples/cache/pattern/*{prefix}*"))
    assert body == {"pattern": f"*{prefix}*", "keys": sorted(keys), "count": len(keys), "truncated": False}

    body = await checked(await api.get(f"/examples/cache/pattern/{prefix}k%3F"))  # the glob ?, percent-encoded
    assert body["keys"] == sorted(k for k in keys if k.startswith(f"{prefix}k") and len(k) == len(prefix) + 2)

    body = await checked(await api.get(f"/examples/cache/pattern/{prefix}*", params={"limit": "3"}))
    assert body["count"] == 3 and body["truncated"] is True
    assert body["keys"] == sorted(body["keys"]) and set(body["keys"]) <= set(keys)

    body = await checked(await api.get(f"/examples/cache/pattern/{prefix}*", params={"limit": str(len(keys))}))
    assert body["count"] == len(keys) and body["truncated"] is False


async def test_pattern_rules_are_validated(api: Client) -> None:
    for path, params, loc in [
        ("/examples/cache/pattern/a[b]", {}, ["path", "pattern"]),
        ("/examples/cache/pattern/a*", {"limit": "0"}, ["query", "limit"]),
        ("/examples/cache/pattern/a*", {"limit": "1001"}, ["query", "limit"]),
    ]:
        resp = await api.get(path, params=params)
        body = await checked(resp)
        assert resp.status == 422 and body["details"]["validation_errors"][0]["loc"] == loc


async def test_concurrent_reads_share_round_trips_and_replies_and_each_gets_its_own_answer(
    api: Client, raw_redis: Redis | RedisCluster, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = keys_on_each_master(prefix)
    for key in keys:
        await raw_redis.set(key, f"v-{key}")
    wrong = f"{prefix}hash"
    await raw_redis.hset(wrong, "field", "value")
    client = api.app[refapi_keys.REDIS].client
    original, pipelines, reads = client.pipeline, 0, 0

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        nonlocal pipelines
        pipelines += 1
        pipe = original(*args, **kwargs)
        queue = pipe.execute_command

        def counting_command(*command: Any, **options: Any) -> Any:
            nonlocal reads
            reads += command[0] == "EVAL"
            return queue(*command, **options)

        pipe.execute_command = counting_command
        return pipe

    monkeypatch.setattr(client, "pipeline", counting_pipeline)
    paths = [f"/examples/cache/{key}" for key in keys * 10] + [
        f"/examples/cache/{wrong}",
        f"/examples/cache/{prefix}none",
    ]
    responses = await asyncio.gather(*(api.get(path) for path in paths))
    bodies = [await response.json() for response in responses]
    for key, body in zip(keys * 10, bodies, strict=False):
        assert body["key"] == key and body["value"] == f"v-{key}"
    assert responses[-2].status == 409 and bodies[-2]["details"] == {"reason": "wrong_type"}  # only that one
    assert bodies[-1] == {"key": f"{prefix}none", "value": None, "exists": False, "ttl": None}
    assert 1 <= pipelines <= len(paths) // 4  # requests of the same moment shared their round trips
    assert reads <= len(set(paths)) * pipelines < len(paths)  # and identical reads of one batch went out once
