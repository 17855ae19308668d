"""Declaring an operation: its schemas drive both request validation and the generated OpenAPI document."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from marshmallow import Schema, ValidationError

from refapi import errors

JSON_TYPE = "application/json"
Location = str  # "path" | "query" | "body"
Problems = list[dict[str, Any]]


@dataclass
class Input:
    """What an operation received, validated: path and query parameters, and the JSON body if it has one."""

    path: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    body_present: bool = False


Check = Callable[[web.Request, Input, Problems], None]
Handler = Callable[[web.Request, Input], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    """Everything the spec builder and the request parser need to know about one handler."""

    summary: str
    tags: tuple[str, ...]
    responses: Mapping[int, Schema | type[Schema] | None]
    path: type[Schema] | None = None
    query: type[Schema] | None = None
    body: type[Schema] | None = None
    body_required: bool = True
    # Extra rules spanning locations (e.g. query *or* body); they append problems before the 422 is raised.
    check: Check | None = None
    description: str = ""
    deprecated: bool = False
    api_key: bool = False
    operation_id: str = ""
    # Response headers documented per status, e.g. {200: {"ETag": "..."}}.
    headers: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    content_type: str = JSON_TYPE


OPERATION_ATTR = "__refapi_operation__"


def operation_of(handler: Any) -> Operation | None:
    return getattr(handler, OPERATION_ATTR, None)


def operation(**spec: Any) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Decorate `async def handler(request, inp)`; the result is an aiohttp handler that validates first."""

    def decorate(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        op = Operation(operation_id=spec.pop("operation_id", fn.__name__), **spec)
        schemas = {
            "path": op.path() if op.path else None,
            "query": op.query() if op.query else None,
            "body": op.body() if op.body else None,
        }

        if all(schema is None for schema in schemas.values()) and op.check is None:  # nothing to validate

            @functools.wraps(fn)
            async def handler(request: web.Request) -> web.StreamResponse:
                return await fn(request, Input())

        else:

            @functools.wraps(fn)
            async def handler(request: web.Request) -> web.StreamResponse:
                return await fn(request, await parse(request, op, schemas))

        setattr(handler, OPERATION_ATTR, op)
        return handler

    return decorate


async def parse(request: web.Request, op: Operation, schemas: Mapping[str, Schema | None]) -> Input:
    """Validate path, query and body together, reporting every problem in that order (contract §1.4)."""
    problems: Problems = []
    inp = Input()
    if schemas["path"] is not None:
        inp.path = _load(schemas["path"], dict(request.match_info), "path", problems)
    if schemas["query"] is not None:
        query = request.query
        # Only declared names are read; for a repeated one the first occurrence wins.
        raw = {name: query.getone(name) for name in schemas["query"].fields if name in query}
        inp.query = _load(schemas["query"], raw, "query", problems)
    if schemas["body"] is not None:
        inp.body_present = request.body_exists
        if inp.body_present:
            if request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower() != JSON_TYPE:
                raise errors.UnsupportedMediaType([JSON_TYPE])
            try:
                document = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                problems.append({"loc": ["body"], "msg": "Invalid JSON", "type": "json_invalid"})
            else:
                inp.body = _load(schemas["body"], document, "body", problems)
        elif op.body_required and op.check is None:
            problems.append({"loc": ["body"], "msg": "Field required", "type": "missing"})
    if op.check is not None:
        op.check(request, inp, problems)
    if problems:
        raise errors.ValidationFailed(problems)
    return inp


def _load(schema: Schema, data: Any, location: Location, problems: Problems) -> Any:
    try:
        return schema.load(data)
    except ValidationError as exc:
        problems.extend(flatten(exc.messages, location))
        return {}


def flatten(messages: Any, location: Location) -> Problems:
    """marshmallow's {field: [message]} (messages may be our typed dicts) → [{loc, msg, type}]."""
    out: Problems = []
    if not isinstance(messages, dict):
        messages = {"_schema": messages}
    for name, items in messages.items():
        loc = [location] if name == "_schema" else [location, name]
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict) and "type" in item:
                out.append({"loc": loc, "msg": item["msg"], "type": item["type"]})
            elif isinstance(item, dict):  # nested field errors
                out.extend({**p, "loc": loc + p["loc"][1:]} for p in flatten(item, location))
            else:
                out.append({"loc": loc, **_untyped(str(item))})
    return out


def _untyped(message: str) -> dict[str, str]:
    # Schema-level messages from marshmallow itself; everything field-level carries its own type.
    if message == "Unknown field.":
        return {"msg": "Extra inputs are not permitted", "type": "unknown_field"}
    if message == "Invalid input type.":
        return {"msg": "Input should be a valid object", "type": "dict_type"}
    return {"msg": "Invalid value", "type": "value_type"}


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """orjson-encoded response with the contract's content type."""
    response = web.Response(body=orjson.dumps(data), status=status, headers=headers)
    response.headers["Content-Type"] = errors.JSON_CONTENT_TYPE
    return response
