"""Contract §3.1: request bodies (content type and size), on the strict instance's 4096-byte limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.contract.conftest import STRICT_MAX_REQUEST_SIZE, Stack
from tests.contract.http import ERROR_CODES, Api, raw_exchange, unique

ALL_TYPES = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]


def raw_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", "X-Forwarded-For: 10.255.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def assert_raw_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict[str, Any]:
    assert status == expected, (status, headers, body)
    assert "x-request-id" in headers, headers
    envelope: dict[str, Any] = json.loads(body)
    assert envelope["status_code"] == expected and envelope["error"] in ERROR_CODES[expected], envelope
    assert envelope["request_id"] == headers["x-request-id"]
    return envelope


async def test_a_body_without_content_type_is_400(stack: Stack) -> None:
    status, headers, body = await raw_exchange(
        stack.main_url, raw_request("POST", f"/examples/cache/{unique()}", {"Content-Length": "2"}, b"{}")
    )
    assert_raw_error(status, headers, body, 400)


async def test_a_chunked_body_without_content_type_is_400(stack: Stack) -> None:
    chunked = b"2\r\n{}\r\n0\r\n\r\n"
    status, headers, body = await raw_exchange(
        stack.main_url,
        raw_request("POST", "/examples/database/postgres", {"Transfer-Encoding": "chunked"}, chunked),
    )
    assert_raw_error(status, headers, body, 400)


async def test_no_body_needs_no_content_type(api: Api) -> None:
    reply = await api.post(f"/examples/cache/{unique()}", params={"value": "v"})
    assert reply.status == 200, reply


@pytest.mark.parametrize("content_type", ["text/xml", "application/octet-stream", "application/jsonx", "json"])
async def test_other_media_types_are_415_with_the_four(api: Api, content_type: str) -> None:
    reply = await api.post("/examples/messaging/publish/q", data=b"{}", headers={"Content-Type": content_type})
    assert reply.status == 415, reply
    assert reply.json["details"] == {"allowed_content_types": ALL_TYPES}


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain; charset=utf-8"],
)
async def test_json_operations_refuse_the_other_three(api: Api, content_type: str) -> None:
    reply = await api.post("/examples/vault/transit/encrypt", data=b"x", headers={"Content-Type": content_type})
    assert reply.status == 415, reply
    assert reply.json["details"] == {"allowed_content_types": ["application/json"]}


@pytest.mark.parametrize(
    "content_type", ["Application/JSON", "application/json; charset=UTF-8", "APPLICATION/json;x=y"]
)
async def test_media_types_compare_case_insensitively_ignoring_parameters(api: Api, content_type: str) -> None:
    reply = await api.post(
        "/examples/vault/transit/encrypt", data=b'{"plaintext": "x"}', headers={"Content-Type": content_type}
    )
    assert reply.status == 200, reply


async def test_a_declared_length_over_the_limit_is_413_before_reading(strict: Api, stack: Stack) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(STRICT_MAX_REQUEST_SIZE + 1)}
    # No body follows: the answer must come from the header alone.
    assert stack.strict_url is not None
    status, reply_headers, body = await raw_exchange(
        stack.strict_url, raw_request("POST", "/examples/vault/transit/encrypt", headers)
    )
    envelope = assert_raw_error(status, reply_headers, body, 413)
    assert envelope["details"] == {"max_bytes": STRICT_MAX_REQUEST_SIZE}


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
async def test_the_size_limit_applies_to_every_method(strict: Api, stack: Stack, method: str) -> None:
    assert stack.strict_url is not None
    headers = {"Content-Type": "text/plain", "Content-Length": str(STRICT_MAX_REQUEST_SIZE + 1)}
    status, reply_headers, body = await raw_exchange(stack.strict_url, raw_request(method, "/health/live", headers))
    assert status in (405, 413), status
    if method == "GET":
        assert_raw_error(status, reply_headers, body, 413)


async def test_a_chunked_body_is_counted_as_read(strict: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"plaintext": "'
        for _ in range(STRICT_MAX_REQUEST_SIZE // 512 + 1):
            yield b"a" * 512
        yield b'"}'

    reply = await strict.post(
        "/examples/vault/transit/encrypt", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert reply.status == 413 and reply.json["details"] == {"max_bytes": STRICT_MAX_REQUEST_SIZE}, reply


async def test_a_body_at_the_limit_is_read(strict: Api) -> None:
    framing = len('{"plaintext": ""}')
    body = '{"plaintext": "' + "a" * (STRICT_MAX_REQUEST_SIZE - framing) + '"}'
    assert len(body) == STRICT_MAX_REQUEST_SIZE
    reply = await strict.post(
        "/examples/vault/transit/encrypt", data=body, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 200, reply


async def test_content_type_is_checked_before_size(strict: Api, stack: Stack) -> None:
    assert stack.strict_url is not None
    headers = {"Content-Type": "text/xml", "Content-Length": str(STRICT_MAX_REQUEST_SIZE + 1)}
    status, reply_headers, body = await raw_exchange(
        stack.strict_url, raw_request("POST", "/examples/vault/transit/encrypt", headers)
    )
    assert_raw_error(status, reply_headers, body, 415)
