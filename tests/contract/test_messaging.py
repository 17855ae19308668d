"""Contract §2.7: publishing, queue info, consuming and listing queues on the suite's own RabbitMQ vhost."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aio_pika
import pytest

from tests.contract.conftest import STRICT_MAX_MESSAGE_SIZE, Stack
from tests.contract.http import UUID4, Api, Reply, unique, validation_errors

MESSAGING = "/examples/messaging"
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
# The management API refreshes its queue statistics every few seconds.
MANAGEMENT_DEADLINE = 30.0
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], deadline: float) -> T:
    """Poll `probe` until `accept` holds (bounded by `deadline` seconds); the last value either way."""
    end = time.monotonic() + deadline
    while True:
        value = await probe()
        if accept(value) or time.monotonic() > end:
            return value
        await asyncio.sleep(0.2)  # polling interval, bounded by the deadline


async def broker(local: Stack) -> aio_pika.abc.AbstractConnection:
    """A direct connection to the instance's vhost, for arranging state behind refapi's back."""
    assert local.rabbitmq_vhost is not None
    return await aio_pika.connect(host="127.0.0.1", port=5672, virtualhost=local.rabbitmq_vhost, timeout=10)


def queue_name() -> str:
    return unique("contract.q")


async def publish(api: Api, queue: str, message: Any, *, by_path: bool = True) -> Reply:
    if by_path:
        return await api.post(f"{MESSAGING}/publish/{queue}", json_body=message)
    return await api.post(f"{MESSAGING}/publish", params={"queue_name": queue}, json_body=message)


@pytest.mark.parametrize("by_path", [True, False])
async def test_publish_info_consume(api: Api, by_path: bool) -> None:
    queue = queue_name()
    message = {"text": "héllo", "n": 1, "nested": {"list": [1, None, True]}}
    published = await publish(api, queue, message, by_path=by_path)
    assert published.json == {"queue": queue, "message": message, "action": "published"}, published
    info = await eventually(
        lambda: api.get(f"{MESSAGING}/queue/{queue}/info"), lambda r: r.json.get("message_count") == 1, 10.0
    )
    assert info.json == {"queue": queue, "exists": True, "message_count": 1, "consumer_count": 0}
    consumed = await api.get(f"{MESSAGING}/consume/{queue}", params={"max_messages": "10"})
    body = consumed.json
    assert set(body) == {"queue", "count", "messages"}
    assert (body["queue"], body["count"]) == (queue, 1)
    (msg,) = body["messages"]
    assert set(msg) == {"body", "content_type", "message_id", "timestamp", "redelivered"}
    assert msg["body"] == message and msg["content_type"] == "application/json"
    assert UUID4.fullmatch(msg["message_id"]) and TIMESTAMP.fullmatch(msg["timestamp"]), msg
    assert msg["redelivered"] is False
    empty = await api.get(f"{MESSAGING}/consume/{queue}")
    assert empty.json == {"queue": queue, "count": 0, "messages": []}


async def test_consume_takes_at_most_max_messages_in_order(api: Api) -> None:
    queue = queue_name()
    for index in range(3):
        await publish(api, queue, {"index": index})
    first = (await api.get(f"{MESSAGING}/consume/{queue}")).json
    assert [m["body"] for m in first["messages"]] == [{"index": 0}] and first["count"] == 1
    rest = (await api.get(f"{MESSAGING}/consume/{queue}", params={"max_messages": "100"})).json
    assert [m["body"] for m in rest["messages"]] == [{"index": 1}, {"index": 2}]


async def test_missing_queue(api: Api) -> None:
    queue = queue_name()
    info = await api.get(f"{MESSAGING}/queue/{queue}/info")
    assert info.json == {"queue": queue, "exists": False, "message_count": None, "consumer_count": None}
    consumed = await api.get(f"{MESSAGING}/consume/{queue}")
    assert consumed.status == 404, consumed
    assert consumed.json["details"] == {"resource_type": "queue", "resource_id": queue}
    # Neither call created it.
    assert (await api.get(f"{MESSAGING}/queue/{queue}/info")).json["exists"] is False


async def test_queue_list(api: Api) -> None:
    queue = queue_name()
    await publish(api, queue, {"a": 1})
    reply = await eventually(
        lambda: api.get(f"{MESSAGING}/queues"),
        lambda r: any(q["name"] == queue for q in r.json.get("queues", [])),
        MANAGEMENT_DEADLINE,
    )
    body = reply.json
    assert set(body) == {"count", "queues"} and body["count"] == len(body["queues"])
    names = [q["name"] for q in body["queues"]]
    assert names == sorted(names)
    (entry,) = [q for q in body["queues"] if q["name"] == queue]
    assert set(entry) == {"name", "messages", "consumers", "durable"}
    assert entry["durable"] is True and type(entry["messages"]) is int and entry["consumers"] == 0


async def test_publishing_to_a_queue_with_other_properties_conflicts(api: Api, local: Stack) -> None:
    queue = queue_name()
    connection = await broker(local)
    try:
        async with connection.channel() as channel:
            await channel.declare_queue(queue, durable=False, auto_delete=False)
        reply = await publish(api, queue, {"a": 1})
        assert reply.status == 409 and reply.json["details"] == {"reason": "queue_properties"}, reply
    finally:
        async with connection.channel() as channel:
            await channel.queue_delete(queue)
        await connection.close()


async def test_body_that_is_not_json_is_consumed_as_text(api: Api, local: Stack) -> None:
    queue = queue_name()
    await publish(api, queue, {"make": "durable"})
    connection = await broker(local)
    try:
        async with connection.channel() as channel:
            await channel.default_exchange.publish(aio_pika.Message(b"plain \xff text"), routing_key=queue)
            await channel.default_exchange.publish(
                aio_pika.Message(b'{"json": true}', content_type="text/plain"), routing_key=queue
            )
    finally:
        await connection.close()
    messages = (await api.get(f"{MESSAGING}/consume/{queue}", params={"max_messages": "3"})).json["messages"]
    assert [m["body"] for m in messages] == [{"make": "durable"}, "plain \ufffd text", '{"json": true}']
    assert messages[1]["content_type"] is None and messages[2]["content_type"] == "text/plain"


async def test_empty_message_is_400(api: Api) -> None:
    reply = await publish(api, queue_name(), {})
    assert reply.status == 400 and reply.json["message"] == "Message must not be empty", reply


@pytest.mark.parametrize(
    ("raw", "error"),
    [(b"", "missing"), (b"{", "json_invalid"), (b"[1]", "dict_type"), (b'"text"', "dict_type"), (b"null", "dict_type")],
)
async def test_message_must_be_a_json_object(api: Api, raw: bytes, error: str) -> None:
    reply = await api.post(
        f"{MESSAGING}/publish/{queue_name()}", data=raw, headers={"Content-Type": "application/json"}
    )
    assert validation_errors(reply) == [(("body",), error)]


async def test_body_errors_are_reported_with_the_others(api: Api) -> None:
    by_path = await api.post(
        f"{MESSAGING}/publish/bad%20name", data=b"[]", headers={"Content-Type": "application/json"}
    )
    assert validation_errors(by_path) == [(("path", "queue"), "string_pattern_mismatch"), (("body",), "dict_type")]
    by_query = await api.post(f"{MESSAGING}/publish", data=b"{", headers={"Content-Type": "application/json"})
    assert validation_errors(by_query) == [(("query", "queue_name"), "missing"), (("body",), "json_invalid")]


@pytest.mark.parametrize(
    ("queue", "error"),
    [("amq.reserved", "reserved_name"), ("q" * 101, "string_too_long"), ("slash%2Fq", "string_pattern_mismatch")],
)
async def test_queue_name_rules(api: Api, queue: str, error: str) -> None:
    published = await api.post(f"{MESSAGING}/publish/{queue}", json_body={"a": 1})
    assert validation_errors(published) == [(("path", "queue"), error)]
    by_query = await api.post(f"{MESSAGING}/publish?queue_name={queue}", json_body={"a": 1})
    assert validation_errors(by_query) == [(("query", "queue_name"), error)]
    consumed = await api.get(f"{MESSAGING}/consume/{queue}")
    assert validation_errors(consumed) == [(("path", "queue"), error)]


@pytest.mark.parametrize(
    ("raw", "error"), [("0", "greater_than_equal"), ("101", "less_than_equal"), ("x", "int_parsing")]
)
async def test_max_messages_bounds(api: Api, raw: str, error: str) -> None:
    reply = await api.get(f"{MESSAGING}/consume/{queue_name()}", params={"max_messages": raw})
    assert validation_errors(reply) == [(("query", "max_messages"), error)]


async def test_messages_must_be_sent_as_json(api: Api) -> None:
    reply = await api.post(
        f"{MESSAGING}/publish/{queue_name()}", data='{"a": 1}', headers={"Content-Type": "text/plain"}
    )
    assert reply.status == 415 and reply.json["details"] == {"allowed_content_types": ["application/json"]}, reply


async def test_message_size_is_its_compact_serialization(strict: Api) -> None:
    limit = STRICT_MAX_MESSAGE_SIZE
    queue = queue_name()
    # Compact: '{"x":"' + payload + '"}' is 8 bytes of framing.
    fits = '{"x":"' + "a" * (limit - 8) + '"}'
    padded = fits.replace(":", " :    ").replace("{", "{   ")  # raw body over the limit, compact form at it
    reply = await strict.post(f"{MESSAGING}/publish/{queue}", data=padded, headers={"Content-Type": "application/json"})
    assert reply.status == 200, reply
    over = await strict.post(f"{MESSAGING}/publish/{queue}", json_body={"x": "a" * (limit - 7)})
    assert over.status == 413 and over.json["details"] == {"max_bytes": limit}, over
    # Non-ASCII is kept, not escaped: 'é' counts 2 bytes, not the 6 of '\u00e9'.
    non_ascii = await strict.post(f"{MESSAGING}/publish/{queue}", json_body={"x": "é" * ((limit - 8) // 2)})
    assert non_ascii.status == 200, non_ascii
