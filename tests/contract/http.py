"""A black-box HTTP client for the contract suite: every reply is checked against the invariants of contract §1."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from tests.support.contract import assert_matches_spec, contract

JSON_TYPE = "application/json; charset=utf-8"
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ENVELOPE_KEYS = {"error", "message", "status_code", "request_id"}
ERROR_CODES: dict[int, set[str]] = {
    400: {"BadRequest"},
    401: {"Unauthorized"},
    403: {"Forbidden"},
    404: {"NotFound"},
    405: {"MethodNotAllowed"},
    409: {"Conflict"},
    413: {"PayloadTooLarge"},
    415: {"UnsupportedMediaType"},
    422: {"ValidationError"},
    429: {"RateLimitExceeded"},
    500: {"InternalServerError"},
    503: {"ServiceUnavailable", "CircuitOpen"},
}
SERVICES = {"vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq"}
REASONS_503 = {"unreachable", "timeout", "auth_failed", "denied", "not_configured", "cluster_disabled", "error"}
# Responses that are not JSON objects (contract §1.1), besides the docs pages' assets under /static/.
NON_JSON_PATHS = frozenset({"/metrics", "/openapi.yaml", "/docs", "/redoc"})


def is_non_json(path: str) -> bool:
    return path in NON_JSON_PATHS or path.startswith("/static/")


def unique(prefix: str = "c") -> str:
    """A name no other test or earlier run uses (lower case, so it also survives case-folding rules)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def fake_client_ip() -> str:
    """A private address of its own per test: the instances trust loopback, so rate limits never interfere."""
    bits = uuid.uuid4().int
    return f"10.{bits >> 16 & 0xFF}.{bits >> 8 & 0xFF}.{(bits & 0xFF) or 1}"


@dataclass
class Reply:
    """One HTTP exchange, read in full."""

    method: str
    path: str
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    sent_headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def text(self) -> str:
        return self.raw.decode()

    @property
    def request_id(self) -> str:
        return self.headers["X-Request-ID"]

    def __repr__(self) -> str:
        body = self.raw[:400].decode(errors="replace")
        return f"<{self.method} {self.path} → {self.status} {dict(self.headers)!r} {body!r}>"


class Api:
    """Requests to one refapi instance; `request` asserts the invariants every response must satisfy."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, client_ip: str | None, rate_limited: bool = True
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.client_ip = client_ip
        self.rate_limited = rate_limited

    def with_ip(self, client_ip: str | None) -> Api:
        """The same instance seen from another client address (a fresh rate-limit budget)."""
        return Api(self.session, self.base_url, client_ip=client_ip, rate_limited=self.rate_limited)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        json_body: Any = None,
        data: bytes | str | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        spec: bool = True,
    ) -> Reply:
        """Send one request (path taken literally, never re-encoded) and check the §1 invariants on the reply.

        `spec=False` skips the OpenAPI check, for replies to requests that no documented operation serves.
        """
        sent: CIMultiDict[str] = CIMultiDict()
        if self.client_ip is not None:
            sent["X-Forwarded-For"] = self.client_ip
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        url = self.base_url + path
        async with self.session.request(
            method, url, params=params, data=data, headers=sent, allow_redirects=False
        ) as resp:
            raw = await resp.read()
            reply = Reply(method.upper(), urlsplit(str(resp.url)).path, resp.status, resp.headers, raw, sent)
        check_invariants(reply, rate_limited=self.rate_limited)
        if spec:
            check_spec(reply)
        return reply

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def head(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("HEAD", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("POST", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("DELETE", path, **kwargs)


def check_invariants(reply: Reply, *, rate_limited: bool) -> None:
    """Contract §1.1–§1.3 and §3.3 for any reply: request id, content type, the error envelope, limit headers."""
    request_id = reply.headers.get("X-Request-ID")
    assert request_id is not None, f"no X-Request-ID on {reply!r}"
    sent_id = reply.sent_headers.get("X-Request-ID")
    if sent_id is not None and REQUEST_ID.fullmatch(sent_id):
        assert request_id == sent_id, f"a valid X-Request-ID was not adopted: {reply!r}"
    else:
        assert UUID4.fullmatch(request_id), f"the minted X-Request-ID is not a uuid4: {reply!r}"
    preflight = reply.method == "OPTIONS" and "Access-Control-Request-Method" in reply.sent_headers
    if rate_limited and not preflight:
        check_rate_limit_headers(reply)
    if reply.method == "HEAD" or reply.status == 304:
        assert reply.raw == b"", f"{reply.status} to {reply.method} must have no body: {reply!r}"
        return
    if reply.status >= 400 and not (reply.path == "/health/ready" and reply.status == 503):
        check_envelope(reply)
    elif reply.status in (200, 201) and not is_non_json(reply.path) and not preflight:
        assert reply.headers.get("Content-Type") == JSON_TYPE, f"JSON replies declare {JSON_TYPE}: {reply!r}"
        assert isinstance(reply.json, dict), f"JSON bodies are objects: {reply!r}"


def check_rate_limit_headers(reply: Reply) -> None:
    values = {}
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        value = reply.headers.get(name)
        assert value is not None and re.fullmatch(r"[0-9]+", value), f"{name} missing or not an integer: {reply!r}"
        values[name] = int(value)
    assert 1 <= values["X-RateLimit-Reset"] <= 60, reply
    assert values["X-RateLimit-Remaining"] <= values["X-RateLimit-Limit"], reply


def check_envelope(reply: Reply) -> dict[str, Any]:
    """Contract §1.3: the exact key set, the code for the status, the request id, and the status's headers."""
    assert reply.headers.get("Content-Type") == JSON_TYPE, f"error bodies are JSON: {reply!r}"
    body = reply.json
    assert isinstance(body, dict), reply
    keys = set(body)
    assert ENVELOPE_KEYS <= keys <= ENVELOPE_KEYS | {"details"}, f"envelope keys {sorted(keys)}: {reply!r}"
    if "details" in body:
        assert isinstance(body["details"], dict) and body["details"], f"details only when non-empty: {reply!r}"
    assert body["status_code"] == reply.status and type(body["status_code"]) is int, reply
    assert body["request_id"] == reply.headers["X-Request-ID"], reply
    assert body["error"] in ERROR_CODES.get(reply.status, set()), f"error code for {reply.status}: {reply!r}"
    assert isinstance(body["message"], str) and body["message"], reply
    details = body.get("details", {})
    if reply.status == 500:
        assert body["message"] == "Internal server error" and "details" not in body, reply
    if reply.status == 401:
        assert reply.headers.get("WWW-Authenticate") == 'ApiKey header="X-API-Key"', reply
    if reply.status == 405:
        assert body["message"] == "Method not allowed" and "Allow" in reply.headers, reply
    if reply.status == 422:
        assert body["message"] == "Request validation failed", reply
        check_validation_errors(details.get("validation_errors"), reply)
    if reply.status == 429:
        assert set(details) == {"scope", "limit"}, reply
        assert reply.headers.get("Retry-After") == reply.headers.get("X-RateLimit-Reset"), reply
    if reply.status == 503:
        assert details.get("service") in SERVICES, reply
        assert set(details) <= {"service", "reason"}, reply
        if "reason" in details:
            assert details["reason"] in REASONS_503, reply
        retry_after = reply.headers.get("Retry-After", "")
        assert re.fullmatch(r"[0-9]+", retry_after) and int(retry_after) >= 1, reply
    return body


VALIDATION_TYPES = {
    "missing", "string_type", "int_type", "int_parsing", "string_too_short", "string_too_long",
    "string_pattern_mismatch", "greater_than_equal", "less_than_equal", "json_invalid", "dict_type",
    "unknown_field", "too_few_fields", "too_many_fields", "value_type", "mutually_exclusive", "reserved_name",
    "invalid_ciphertext",
}  # fmt: skip
LOCATION_ORDER = {"path": 0, "query": 1, "body": 2}


def check_validation_errors(errors: Any, reply: Reply) -> None:
    """Contract §1.4: typed problems with well-formed locations, path before query before body."""
    assert isinstance(errors, list) and errors, f"422 without validation_errors: {reply!r}"
    order = []
    for error in errors:
        assert isinstance(error, dict) and set(error) == {"loc", "msg", "type"}, reply
        assert error["type"] in VALIDATION_TYPES, reply
        assert isinstance(error["msg"], str) and error["msg"], reply
        loc = error["loc"]
        assert isinstance(loc, list) and loc and loc[0] in LOCATION_ORDER, reply
        assert (len(loc) == 1 and loc[0] == "body") or (len(loc) == 2 and isinstance(loc[1], str)), reply
        order.append(LOCATION_ORDER[loc[0]])
    assert order == sorted(order), f"validation errors must be ordered path, query, body: {reply!r}"


def check_spec(reply: Reply) -> None:
    """The reply against the OpenAPI document, where a documented operation serves the request."""
    try:
        _, operation = contract().operation(reply.method, reply.path)
    except AssertionError:
        return  # no documented operation (unknown path, wrong method, docs/spec routes)
    if reply.status in (404, 405) and str(reply.status) not in operation["responses"]:
        return  # the router's own 404/405 can occur anywhere (contract §2)
    is_json = reply.headers.get("Content-Type", "").startswith("application/json")
    body = reply.json if reply.method != "HEAD" and reply.raw and is_json else None
    assert_matches_spec(reply.method, reply.path, reply.status, body, reply.headers)


def validation_errors(reply: Reply) -> list[tuple[tuple[str, ...], str]]:
    """The (loc, type) pairs of a 422, in order."""
    assert reply.status == 422, reply
    return [(tuple(error["loc"]), error["type"]) for error in reply.json["details"]["validation_errors"]]


def assert_not_echoed(reply: Reply, *values: str) -> None:
    """Contract §1.3/§5: error bodies never carry submitted values."""
    for value in values:
        assert value not in reply.text, f"the reply echoes {value!r}: {reply!r}"


async def raw_exchange(base_url: str, request: bytes, *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (e.g. a Content-Length the client library would not lie about); parse the reply."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), timeout)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
        return status, headers, body
    finally:
        writer.close()
