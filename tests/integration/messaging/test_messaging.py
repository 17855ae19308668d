"""Messaging against the machine's RabbitMQ: publish (both forms), consume, queue info, queue list, health."""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any

import aio_pika
import pytest

from refapi.config import Settings
from tests.integration.messaging.conftest import Client, serve
from tests.support.contract import checked

pytestmark = pytest.mark.asyncio(loop_scope="module")

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
MAX_MESSAGE_SIZE = 1_000_000  # the default MAX_MESSAGE_SIZE


async def publish(client: Client, queue: str, message: Any, *, form: str = "query") -> Any:
    if form == "query":
        resp = await client.post("/examples/messaging/publish", params={"queue_name": queue}, json=message)
    else:
        resp = await client.post(f"/examples/messaging/publish/{queue}", json=message)
    assert resp.status == 200, await resp.text()
    return await checked(resp)


async def consume(client: Client, queue: str, max_messages: int | None = None) -> Any:
    params = {} if max_messages is None else {"max_messages": str(max_messages)}
    resp = await client.get(f"/examples/messaging/consume/{queue}", params=params)
    assert resp.status == 200, await resp.text()
    return await checked(resp)


async def info(client: Client, queue: str) -> Any:
    resp = await client.get(f"/examples/messaging/queue/{queue}/info")
    assert resp.status == 200, await resp.text()
    return await checked(resp)


async def test_both_publish_forms_then_consume_returns_the_bodies_in_order(client: Client, queue: str) -> None:
    first = {"n": 1, "text": "héllo ✓", "nested": {"list": [1, 2.5, None, True]}}
    second = {"n": 2}
    echo = await publish(client, queue, first)
    assert echo == {"queue": queue, "message": first, "action": "published"}
    assert list(echo["message"]) == list(first)
    assert await publish(client, queue, second, form="path") == {
        "queue": queue,
        "message": second,
        "action": "published",
    }

    body = await consume(client, queue, max_messages=10)

    assert body["queue"] == queue and body["count"] == 2
    assert [message["body"] for message in body["messages"]] == [first, second]
    # As received, key order included, in the echo and in what was published.
    assert list(body["messages"][0]["body"]) == list(first) == ["n", "text", "nested"]
    for message in body["messages"]:
        assert message["content_type"] == "application/json"
        assert uuid.UUID(message["message_id"]).version == 4
        assert TIMESTAMP.fullmatch(message["timestamp"])
        assert message["redelivered"] is False
    assert len({message["message_id"] for message in body["messages"]}) == 2


async def test_consume_takes_one_by_default_and_stops_when_the_queue_is_empty(client: Client, queue: str) -> None:
    for n in range(3):
        await publish(client, queue, {"n": n})

    assert [m["body"] for m in (await consume(client, queue))["messages"]] == [{"n": 0}]
    rest = await consume(client, queue, max_messages=100)
    assert rest["count"] == 2 and [m["body"] for m in rest["messages"]] == [{"n": 1}, {"n": 2}]
    assert await consume(client, queue) == {"queue": queue, "count": 0, "messages": []}


async def test_consumed_messages_are_acknowledged(client: Client, queue: str) -> None:
    await publish(client, queue, {"once": True})
    await consume(client, queue)
    assert (await info(client, queue))["message_count"] == 0


async def test_queue_info_counts_follow_publish_and_consume(client: Client, queue: str) -> None:
    assert await info(client, queue) == {"queue": queue, "exists": False, "message_count": None, "consumer_count": None}
    await publish(client, queue, {"n": 1})
    assert await info(client, queue) == {"queue": queue, "exists": True, "message_count": 1, "consumer_count": 0}
    await publish(client, queue, {"n": 2}, form="path")
    # Asked again, not answered from an earlier declare.
    assert (await info(client, queue))["message_count"] == 2
    await consume(client, queue)
    assert (await info(client, queue))["message_count"] == 1


async def hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that keeps what it is given unacknowledged."""


async def test_queue_info_counts_consumers(client: Client, queue: str, broker: aio_pika.abc.AbstractConnection) -> None:
    await publish(client, queue, {"n": 1})
    async with broker.channel() as channel:
        declared = await channel.declare_queue(queue, durable=True)
        await declared.consume(hold, no_ack=False)
        body = await info(client, queue)
    assert body["exists"] is True and body["consumer_count"] == 1 and body["message_count"] == 0


async def test_queue_info_reports_reserved_names_without_touching_them(client: Client) -> None:
    assert (await info(client, "amq.refapi-test-missing"))["exists"] is False


async def test_consuming_a_missing_queue_is_404_and_does_not_create_it(client: Client, queue: str) -> None:
    resp = await client.get(f"/examples/messaging/consume/{queue}")
    assert resp.status == 404
    body = await checked(resp)
    assert body["error"] == "NotFound"
    assert body["details"] == {"resource_type": "queue", "resource_id": queue}
    assert (await info(client, queue))["exists"] is False


async def test_queue_list_includes_the_queue(client: Client, queue: str) -> None:
    await publish(client, queue, {"n": 1})
    resp = await client.get("/examples/messaging/queues")
    assert resp.status == 200
    body = await checked(resp)
    names = [entry["name"] for entry in body["queues"]]
    assert names == sorted(names) and body["count"] == len(names)
    entry = next(entry for entry in body["queues"] if entry["name"] == queue)
    # The management API's counts are sampled, so only the static properties are exact here.
    assert entry["durable"] is True and entry["consumers"] == 0 and entry["messages"] >= 0


async def test_publish_to_a_queue_declared_with_other_properties_is_409_and_not_a_breaker_failure(
    settings: Settings, queue: str, broker: aio_pika.abc.AbstractConnection
) -> None:
    async with broker.channel() as channel:
        await channel.declare_queue(queue, durable=False)
    async with serve(dataclasses.replace(settings, circuit_breaker_failure_threshold=1)) as client:
        # With a threshold of 1, a 409 counted as a failure would make the second answer CircuitOpen.
        for _ in range(2):
            resp = await client.post(f"/examples/messaging/publish/{queue}", json={"n": 1})
            assert resp.status == 409
            body = await checked(resp)
            assert body["error"] == "Conflict" and body["details"] == {"reason": "queue_properties"}
        assert (await info(client, queue))["message_count"] == 0


@pytest.mark.parametrize(
    ("content_type", "raw", "expected"),
    [
        ("text/plain", b'{"looks": "like json"}', '{"looks": "like json"}'),
        (None, b'{"json": "without a content type"}', {"json": "without a content type"}),
        (None, b"not json, no content type", "not json, no content type"),
        ("application/json", b"{broken json", "{broken json"),
        ("application/json; charset=utf-8", b"[1, 2]", [1, 2]),
        ("application/octet-stream", b"caf\xff", "caf\ufffd"),
    ],
    ids=["text", "untyped-json", "untyped-text", "invalid-json", "json-with-parameters", "invalid-utf8"],
)
async def test_consume_decodes_bodies_by_content_type(
    client: Client,
    queue: str,
    broker: aio_pika.abc.AbstractConnection,
    content_type: str | None,
    raw: bytes,
    expected: Any,
) -> None:
    async with broker.channel() as channel:
        await channel.declare_queue(queue, durable=True)
        await channel.default_exchange.publish(aio_pika.Message(raw, content_type=content_type), routing_key=queue)

    (message,) = (await consume(client, queue))["messages"]

    assert message["body"] == expected
    assert message["content_type"] == content_type
    # Published without a timestamp (the client library always sets a message id).
    assert message["timestamp"] is None


async def test_health(client: Client) -> None:
    for path in ("/health/rabbitmq", "/health/messaging"):
        resp = await client.get(path)
        assert resp.status == 200
        assert await checked(resp) == {"status": "healthy"}
