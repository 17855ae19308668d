"""RabbitMQ backend helpers: error classification, body decoding, timestamps, management API parsing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aio_pika.exceptions import (
    AMQPConnectionError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    DeliveryError,
    ProbableAuthenticationError,
)
from aiormq.exceptions import ConnectionNotAllowed
from pamqp.commands import Basic

from refapi.backends import rabbitmq
from refapi.backends.rabbitmq import QueueSummary, ReceivedMessage, classify


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ProbableAuthenticationError("ACCESS_REFUSED"), "auth_failed"),
        (ConnectionNotAllowed("NOT_ALLOWED"), "auth_failed"),
        (ConnectionRefusedError(), "unreachable"),
        (AMQPConnectionError("closed"), "unreachable"),
        (ChannelInvalidStateError("no transport"), "unreachable"),
        (rabbitmq.BrokerDown(), "unreachable"),
        (aiohttp.ServerDisconnectedError(), "unreachable"),
        (DeliveryError(None, Basic.Nack()), "error"),
        (ChannelNotFoundEntity("NOT_FOUND"), "error"),
        (aiohttp.ClientPayloadError(), "error"),
        (ValueError(), None),
    ],
)
def test_classify(exc: BaseException, reason: str | None) -> None:
    assert classify(exc) == reason


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"a": [1, "\xc3\xa9"]}', "application/json", {"a": [1, "é"]}),
        (b'{"a": 1}', None, {"a": 1}),
        (b'"text"', "Application/JSON; charset=utf-8", "text"),
        (b'{"a": 1}', "text/plain", '{"a": 1}'),
        (b"{broken", "application/json", "{broken"),
        (b"plain", None, "plain"),
        (b"bad \xff byte", "application/octet-stream", "bad \ufffd byte"),
        (b"", None, ""),
    ],
)
def test_decode_body(body: bytes, content_type: str | None, expected: Any) -> None:
    assert rabbitmq._decode_body(body, content_type) == expected


def test_timestamps_are_rfc3339_utc_with_microseconds() -> None:
    aware = datetime(2026, 12, 4, 20, 24, 36, 186029, tzinfo=timezone(timedelta(hours=1)))
    assert rabbitmq._rfc3339(aware) == "2026-12-04T19:24:36.186029Z"
    assert rabbitmq._rfc3339(datetime(2026, 12, 4, 19, 24, 36)) == "2026-12-04T19:24:36.000000Z"
    assert rabbitmq._rfc3339(None) is None


def test_read_reports_absent_properties_as_null() -> None:
    message = SimpleNamespace(body=b"x", content_type=None, message_id=None, timestamp=None, redelivered=None)
    assert rabbitmq._read(message) == ReceivedMessage(  # type: ignore[arg-type]
        body="x", content_type=None, message_id=None, timestamp=None, redelivered=False
    )


def test_queue_summaries_default_missing_counts_and_sort_by_name() -> None:
    payload = [
        {"name": "b", "messages": 3, "consumers": 1, "durable": True},
        {"name": "a", "durable": False},  # a queue the broker has no stats for yet
    ]
    assert rabbitmq._queue_summaries(payload) == [
        QueueSummary(name="a", messages=0, consumers=0, durable=False),
        QueueSummary(name="b", messages=3, consumers=1, durable=True),
    ]
