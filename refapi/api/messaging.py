"""Messaging operations (contract §2.7): publish, consume, queue info and the queue list, on RabbitMQ."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from aiohttp import web
from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load

from refapi import errors, keys
from refapi.openapi.fields import Length, Pattern, QueryInt, Range, Str, problem
from refapi.openapi.operation import Input, json_response, operation

routes = web.RouteTableDef()

TAGS = ("messaging",)
QUEUE_PATTERN = r"^[a-zA-Z0-9_.-]+$"
RESERVED_PREFIX = "amq."


def _not_reserved(value: str) -> None:
    # The broker keeps amq.* for itself; a declare would be refused, so say so before touching it.
    if value.startswith(RESERVED_PREFIX):
        raise ValidationError(problem("reserved_name", f"Queue names starting with '{RESERVED_PREFIX}' are reserved"))


class QueueName(Str):
    """Q: 1-100 characters of the pattern. Only the first rule a name breaks is reported (an empty name is
    too short, not also a pattern mismatch); the rules stay separate validators so the spec documents them."""

    def _validate(self, value: Any) -> None:
        for rule in self.validators:
            rule(value)


def _queue_name(*, writable: bool, description: str) -> QueueName:
    """`writable` adds the amq. rule that publish and consume apply."""
    rules: list[Any] = [Length(min=1, max=100), Pattern(QUEUE_PATTERN)]
    if writable:
        rules.append(_not_reserved)
    return QueueName(required=True, validate=rules, metadata={"description": description})


class PublishQuery(Schema):
    queue_name = _queue_name(
        writable=True, description="Queue to publish to, declared durable if missing; amq.* is reserved"
    )


class PublishPath(Schema):
    queue = _queue_name(
        writable=True, description="Queue to publish to, declared durable if missing; amq.* is reserved"
    )


class MessageBody(Schema):
    class Meta:
        unknown = INCLUDE
        description = "Any non-empty JSON object; it is published as its compact UTF-8 JSON serialization"

    @post_load(pass_original=True)
    def as_received(self, data: dict[str, Any], original: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # Loading rebuilds the object and may reorder its keys; publish and echo it exactly as sent.
        return original


class QueueInfoPath(Schema):
    queue_name = _queue_name(writable=False, description="Queue to inspect")


class ConsumePath(Schema):
    queue = _queue_name(writable=True, description="Queue to take messages from (never created); amq.* is reserved")


class ConsumeQuery(Schema):
    max_messages = QueryInt(
        load_default=1,
        validate=Range(min=1, max=100),
        metadata={"description": "Most messages to take; fewer when the queue runs empty"},
    )


class PublishResponse(Schema):
    queue = fields.String(required=True)
    message = fields.Dict(required=True, metadata={"description": "The message as received"})
    action = fields.String(required=True, metadata={"enum": ["published"]})


class QueueInfoResponse(Schema):
    queue = fields.String(required=True)
    exists = fields.Boolean(required=True)
    message_count = fields.Integer(required=True, allow_none=True, metadata={"description": "null if missing"})
    consumer_count = fields.Integer(required=True, allow_none=True, metadata={"description": "null if missing"})


class ConsumedMessage(Schema):
    body = fields.Raw(
        required=True,
        allow_none=True,
        metadata={"description": "Parsed JSON when it is (or may be) JSON and parses, else the text"},
    )
    content_type = fields.String(required=True, allow_none=True)
    message_id = fields.String(required=True, allow_none=True)
    timestamp = fields.String(required=True, allow_none=True, metadata={"description": "RFC 3339 UTC"})
    redelivered = fields.Boolean(required=True)


class ConsumeResponse(Schema):
    queue = fields.String(required=True)
    count = fields.Integer(required=True, metadata={"description": "Number of messages returned"})
    messages = fields.List(fields.Nested(ConsumedMessage), required=True)


class QueueListEntry(Schema):
    name = fields.String(required=True)
    messages = fields.Integer(required=True)
    consumers = fields.Integer(required=True)
    durable = fields.Boolean(required=True)


class QueueListResponse(Schema):
    count = fields.Integer(required=True)
    queues = fields.List(fields.Nested(QueueListEntry), required=True, metadata={"description": "Sorted by name"})


async def _publish(request: web.Request, queue: str, message: dict[str, Any]) -> web.Response:
    # The size rule is on what goes to the broker: compact UTF-8 JSON, exactly as published.
    encoded = orjson.dumps(message)
    limit = request.app[keys.SETTINGS].max_message_size
    if len(encoded) > limit:
        raise errors.PayloadTooLarge(limit, "Message is too large")
    if not message:
        raise errors.BadRequest("Message must not be empty")
    await request.app[keys.RABBITMQ].publish(queue, encoded)
    return json_response({"queue": queue, "message": message, "action": "published"})


PUBLISH_RESPONSES: dict[int, Any] = {200: PublishResponse, 409: None, 503: None}


@routes.post("/examples/messaging/publish")
@operation(
    summary="Publish a JSON message to a queue",
    description="Declares the queue durable, then publishes the message persistently with publisher confirms.",
    tags=TAGS,
    query=PublishQuery,
    body=MessageBody,
    responses=PUBLISH_RESPONSES,
)
async def publish_message(request: web.Request, inp: Input) -> web.Response:
    return await _publish(request, inp.query["queue_name"], inp.body)


@routes.post("/examples/messaging/publish/{queue}")
@operation(
    summary="Publish a JSON message to the queue in the path",
    description="Same as POST /examples/messaging/publish with the queue named in the path.",
    tags=TAGS,
    path=PublishPath,
    body=MessageBody,
    responses=PUBLISH_RESPONSES,
)
async def publish_message_to_queue(request: web.Request, inp: Input) -> web.Response:
    return await _publish(request, inp.path["queue"], inp.body)


@routes.get("/examples/messaging/queue/{queue_name}/info")
@operation(
    summary="Message and consumer counts of a queue",
    description="Asks the broker every time; a missing queue gives exists false and null counts.",
    tags=TAGS,
    path=QueueInfoPath,
    responses={200: QueueInfoResponse, 503: None},
)
async def queue_info(request: web.Request, inp: Input) -> web.Response:
    queue = inp.path["queue_name"]
    info = await request.app[keys.RABBITMQ].queue_info(queue)
    return json_response({"queue": queue, **dataclasses.asdict(info)})


@routes.get("/examples/messaging/consume/{queue}")
@operation(
    summary="Take messages from a queue",
    description="Fetches up to max_messages one at a time, acknowledging each once read; never creates the queue.",
    tags=TAGS,
    path=ConsumePath,
    query=ConsumeQuery,
    responses={200: ConsumeResponse, 404: None, 503: None},
)
async def consume_messages(request: web.Request, inp: Input) -> web.Response:
    queue = inp.path["queue"]
    received = await request.app[keys.RABBITMQ].consume(queue, inp.query["max_messages"])
    messages = [dataclasses.asdict(message) for message in received]
    return json_response({"queue": queue, "count": len(messages), "messages": messages})


@routes.get("/examples/messaging/queues")
@operation(
    summary="Queues of the vhost",
    description="From the RabbitMQ management HTTP API, sorted by name.",
    tags=TAGS,
    responses={200: QueueListResponse, 503: None},
)
async def list_queues(request: web.Request, inp: Input) -> web.Response:
    queues = [dataclasses.asdict(queue) for queue in await request.app[keys.RABBITMQ].list_queues()]
    return json_response({"count": len(queues), "queues": queues})
