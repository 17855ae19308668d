"""Messaging request rules: queue names, max_messages, message bodies (422, 415, 400) and message size (413)."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from tests.integration.messaging.conftest import Client
from tests.support.contract import checked

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_MESSAGE_SIZE = 1_000_000  # the default MAX_MESSAGE_SIZE
JSON = {"Content-Type": "application/json"}


async def problems(resp: Any) -> list[dict[str, Any]]:
    assert resp.status == 422, await resp.text()
    body = await checked(resp)
    assert body["error"] == "ValidationError"
    return [{"loc": p["loc"], "type": p["type"]} for p in body["details"]["validation_errors"]]


BAD_NAMES = [
    ("", "string_too_short"),
    ("q" * 101, "string_too_long"),
    ("has space", "string_pattern_mismatch"),
    ("caf\u00e9", "string_pattern_mismatch"),
    ("a/b", "string_pattern_mismatch"),
    ("amq.direct", "reserved_name"),
    ("amq.", "reserved_name"),
]


@pytest.mark.parametrize(("name", "kind"), BAD_NAMES)
async def test_publish_queue_name_rules(client: Client, name: str, kind: str) -> None:
    resp = await client.post("/examples/messaging/publish", params={"queue_name": name}, json={"n": 1})
    assert await problems(resp) == [{"loc": ["query", "queue_name"], "type": kind}]


@pytest.mark.parametrize(("name", "kind"), [case for case in BAD_NAMES if case[0] and "/" not in case[0]])
async def test_path_queue_name_rules(client: Client, name: str, kind: str) -> None:
    resp = await client.post(f"/examples/messaging/publish/{name}", json={"n": 1})
    assert await problems(resp) == [{"loc": ["path", "queue"], "type": kind}]
    resp = await client.get(f"/examples/messaging/consume/{name}")
    assert await problems(resp) == [{"loc": ["path", "queue"], "type": kind}]


async def test_queue_info_rejects_bad_names_but_not_reserved_ones(client: Client) -> None:
    resp = await client.get(f"/examples/messaging/queue/{'q' * 101}/info")
    assert await problems(resp) == [{"loc": ["path", "queue_name"], "type": "string_too_long"}]
    resp = await client.get("/examples/messaging/queue/amq.refapi-test-absent/info")
    assert resp.status == 200


async def test_a_queue_name_is_required(client: Client) -> None:
    resp = await client.post("/examples/messaging/publish", json={"n": 1})
    assert await problems(resp) == [{"loc": ["query", "queue_name"], "type": "missing"}]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("0", "greater_than_equal"),
        ("-1", "greater_than_equal"),
        ("101", "less_than_equal"),
        ("", "int_parsing"),
        ("1.0", "int_parsing"),
        ("two", "int_parsing"),
    ],
)
async def test_max_messages_rules(client: Client, value: str, kind: str) -> None:
    resp = await client.get("/examples/messaging/consume/refapi-test.unused", params={"max_messages": value})
    assert await problems(resp) == [{"loc": ["query", "max_messages"], "type": kind}]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"{not json", "json_invalid"),
        (b"[1, 2]", "dict_type"),
        (b'"text"', "dict_type"),
        (b"null", "dict_type"),
        (b"42", "dict_type"),
    ],
)
async def test_the_body_must_be_a_json_object(client: Client, data: bytes, kind: str) -> None:
    resp = await client.post("/examples/messaging/publish/refapi-test.unused", data=data, headers=JSON)
    assert await problems(resp) == [{"loc": ["body"], "type": kind}]


async def test_a_missing_body_is_reported_with_the_query_problems(client: Client) -> None:
    resp = await client.post("/examples/messaging/publish", params={"queue_name": "amq.x"})
    assert await problems(resp) == [
        {"loc": ["query", "queue_name"], "type": "reserved_name"},
        {"loc": ["body"], "type": "missing"},
    ]


async def test_body_and_path_problems_are_reported_together(client: Client) -> None:
    resp = await client.post("/examples/messaging/publish/amq.x", data=b"[]", headers=JSON)
    assert await problems(resp) == [
        {"loc": ["path", "queue"], "type": "reserved_name"},
        {"loc": ["body"], "type": "dict_type"},
    ]


async def test_messages_must_be_sent_as_json(client: Client) -> None:
    resp = await client.post(
        "/examples/messaging/publish/refapi-test.unused", data=b'{"n": 1}', headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 415
    body = await checked(resp)
    assert body["error"] == "UnsupportedMediaType"
    assert body["details"] == {"allowed_content_types": ["application/json"]}


async def test_an_empty_message_is_400(client: Client, queue: str) -> None:
    resp = await client.post(f"/examples/messaging/publish/{queue}", json={})
    assert resp.status == 400
    body = await checked(resp)
    assert body["error"] == "BadRequest" and body["message"] == "Message must not be empty"


def sized(size: int, *, char: str = "x") -> dict[str, str]:
    """A message whose compact UTF-8 JSON serialization is exactly `size` bytes."""
    overhead = len(orjson.dumps({"data": ""}))
    width = len(char.encode())
    assert (size - overhead) % width == 0
    message = {"data": char * ((size - overhead) // width)}
    assert len(orjson.dumps(message)) == size
    return message


async def test_a_message_of_max_size_is_published(client: Client, queue: str) -> None:
    resp = await client.post(f"/examples/messaging/publish/{queue}", json=sized(MAX_MESSAGE_SIZE))
    assert resp.status == 200
    await checked(resp)


async def test_a_message_one_byte_over_max_size_is_413(client: Client, queue: str) -> None:
    resp = await client.post(f"/examples/messaging/publish/{queue}", json=sized(MAX_MESSAGE_SIZE + 1))
    assert resp.status == 413
    body = await checked(resp)
    assert body["error"] == "PayloadTooLarge" and body["details"] == {"max_bytes": MAX_MESSAGE_SIZE}
    resp = await client.get(f"/examples/messaging/queue/{queue}/info")
    assert (await checked(resp))["exists"] is False  # rejected before the broker was touched


async def test_the_size_counts_utf8_bytes_of_the_compact_serialization(client: Client, queue: str) -> None:
    over = sized(MAX_MESSAGE_SIZE + 1, char="\u00e9")
    assert len(orjson.dumps(over).decode()) < MAX_MESSAGE_SIZE  # under the limit in characters, over it in bytes
    resp = await client.post(f"/examples/messaging/publish/{queue}", data=io.BytesIO(orjson.dumps(over)), headers=JSON)
    assert resp.status == 413
    # Whitespace in the request does not count: the compact form is what is measured and published.
    padded = orjson.dumps(sized(MAX_MESSAGE_SIZE), option=orjson.OPT_INDENT_2) + b" " * 64
    resp = await client.post(f"/examples/messaging/publish/{queue}", data=io.BytesIO(padded), headers=JSON)
    assert resp.status == 200
    await checked(resp)
