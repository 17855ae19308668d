"""Cache examples (contract §2.5): get, set and delete one string key; SCAN for keys matching a glob."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, fields

from refapi import errors, keys
from refapi.backends.redis import RESERVED_PREFIX
from refapi.openapi.fields import Int as JsonInt
from refapi.openapi.fields import Length, Pattern, QueryInt, Range, Str
from refapi.openapi.operation import Input, Problems, json_response, operation

routes = web.RouteTableDef()

TAGS = ("cache",)
MAX_TTL = 86400
NO_EXPIRATION = "no expiration"


class KeyPath(Schema):
    key = Str(
        required=True,
        validate=[Length(min=1, max=200), Pattern(r"^[a-zA-Z0-9_:.-]+$")],
        metadata={"description": f"The key; names starting with `{RESERVED_PREFIX}` are reserved"},
    )


class PatternPath(Schema):
    pattern = Str(
        required=True,
        validate=[Length(min=1, max=200), Pattern(r"^[a-zA-Z0-9_:.*?-]+$")],
        metadata={"description": "Glob: `*` any run of characters, `?` one character"},
    )


class PatternQuery(Schema):
    limit = QueryInt(load_default=100, validate=Range(min=1, max=1000), metadata={"description": "Keys to return"})


class SetQuery(Schema):
    value = Str(validate=Length(max=10000), metadata={"description": "The value (may be empty)"})
    ttl = QueryInt(validate=Range(min=1, max=MAX_TTL), metadata={"description": "Expiry in seconds; none = never"})


class SetBody(Schema):
    value = Str(required=True, validate=Length(max=10000))
    ttl = JsonInt(allow_none=True, validate=Range(min=1, max=MAX_TTL))


class CacheValue(Schema):
    key = fields.String(required=True)
    value = fields.String(required=True, allow_none=True)
    exists = fields.Boolean(required=True)
    ttl = fields.Raw(
        required=True,
        metadata={
            "description": 'Seconds left, "no expiration", or null when the key does not exist',
            "oneOf": [{"type": "integer"}, {"type": "string", "enum": [NO_EXPIRATION]}, {"type": "null"}],
        },
    )


class CacheSet(Schema):
    key = fields.String(required=True)
    value = fields.String(required=True)
    ttl = fields.Integer(required=True, allow_none=True)
    action = fields.String(required=True, metadata={"enum": ["set"]})


class CacheDelete(Schema):
    key = fields.String(required=True)
    deleted = fields.Boolean(required=True)
    action = fields.String(required=True, metadata={"enum": ["delete"]})


class PatternResult(Schema):
    pattern = fields.String(required=True)
    keys = fields.List(fields.String(), required=True)
    count = fields.Integer(required=True)
    truncated = fields.Boolean(required=True)


def _writable_key(key: str) -> str:
    if key.startswith(RESERVED_PREFIX):
        raise errors.Forbidden(f"Keys starting with {RESERVED_PREFIX} are reserved", reason="reserved_key")
    return key


def _query_xor_body(request: web.Request, inp: Input, problems: Problems) -> None:
    """The value comes from the query string or from a JSON body, never both (contract §2.5)."""
    in_query = "value" in request.query or "ttl" in request.query
    if inp.body_present:
        if in_query:
            problems.append(
                {
                    "loc": ["body"],
                    "msg": "Send value and ttl either as query parameters or as a JSON body, not both",
                    "type": "mutually_exclusive",
                }
            )
    elif "value" not in request.query:
        problems.append({"loc": ["query", "value"], "msg": "Field required", "type": "missing"})


@routes.get("/examples/cache/pattern/{pattern}")
@operation(
    summary="Find keys matching a glob (SCAN on every master)",
    tags=TAGS,
    path=PatternPath,
    query=PatternQuery,
    responses={200: PatternResult, 503: None},
)
async def cache_pattern(request: web.Request, inp: Input) -> web.Response:
    pattern = inp.path["pattern"]
    found, truncated = await request.app[keys.REDIS].scan(pattern, inp.query["limit"])
    return json_response({"pattern": pattern, "keys": found, "count": len(found), "truncated": truncated})


@routes.get("/examples/cache/{key}")
@operation(
    summary="Read a string key, its existence and TTL",
    tags=TAGS,
    path=KeyPath,
    responses={200: CacheValue, 403: None, 409: None, 503: None},
)
async def cache_get(request: web.Request, inp: Input) -> web.Response:
    key = _writable_key(inp.path["key"])
    found = await request.app[keys.REDIS].get(key)
    body: dict[str, Any]
    if found is None:
        body = {"key": key, "value": None, "exists": False, "ttl": None}
    else:
        body = {
            "key": key,
            "value": found.value,
            "exists": True,
            "ttl": NO_EXPIRATION if found.ttl is None else found.ttl,
        }
    return json_response(body)


@routes.post("/examples/cache/{key}")
@operation(
    summary="Set a string key, optionally with a TTL",
    tags=TAGS,
    path=KeyPath,
    query=SetQuery,
    body=SetBody,
    body_required=False,
    check=_query_xor_body,
    description="Send `value` (and optional `ttl`) as query parameters or as a JSON body, not both. "
    "Without `ttl` the key never expires (any previous expiry is cleared).",
    responses={200: CacheSet, 403: None, 503: None},
)
async def cache_set(request: web.Request, inp: Input) -> web.Response:
    key = _writable_key(inp.path["key"])
    source = inp.body if inp.body_present else inp.query
    value, ttl = source["value"], source.get("ttl")
    await request.app[keys.REDIS].set(key, value, ttl)
    return json_response({"key": key, "value": value, "ttl": ttl, "action": "set"})


@routes.delete("/examples/cache/{key}")
@operation(summary="Delete a key", tags=TAGS, path=KeyPath, responses={200: CacheDelete, 403: None, 503: None})
async def cache_delete(request: web.Request, inp: Input) -> web.Response:
    key = _writable_key(inp.path["key"])
    deleted = await request.app[keys.REDIS].delete(key)
    return json_response({"key": key, "deleted": deleted, "action": "delete"})
