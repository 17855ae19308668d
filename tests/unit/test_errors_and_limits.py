"""The envelope on every error status, and the request-body rules (content type, size, chunked)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web
from marshmallow import Schema

from refapi.app import build_app
from refapi.openapi.fields import Length, Str
from refapi.openapi.operation import Input, json_response, operation
from tests.conftest import ClientFactory, offline_settings

ENVELOPE_KEYS = {"error", "message", "status_code", "request_id"}
seen_bodies: list[Any] = []


class EchoBody(Schema):
    text = Str(required=True, validate=Length(max=10))


@operation(summary="echo", tags=("test",), responses={200: EchoBody}, body=EchoBody)
async def echo(request: web.Request, inp: Input) -> web.Response:
    seen_bodies.append(inp.body)
    return json_response(inp.body)


async def read_raw(request: web.Request) -> web.Response:
    body = await request.read()
    seen_bodies.append(body)
    return json_response({"size": len(body)})


async def explode(request: web.Request) -> web.Response:
    raise RuntimeError("db password is hunter2")


def app_with_test_routes(**overrides: Any) -> web.Application:
    app = build_app(offline_settings(**overrides))
    app.router.add_post("/test/echo", echo)
    app.router.add_post("/test/raw", read_raw)
    app.router.add_get("/test/explode", explode)
    return app


def assert_envelope(body: dict[str, Any], resp: Any, status: int, error: str) -> None:
    assert resp.status == status
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert set(body) - {"details"} == ENVELOPE_KEYS
    assert (body["error"], body["status_code"]) == (error, status)
    assert body["request_id"] == resp.headers["X-Request-ID"]


async def test_router_404_and_405_use_the_envelope(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/health/nope")
    assert_envelope(await resp.json(), resp, 404, "NotFound")
    resp = await client.delete("/health/")
    body = await resp.json()
    assert_envelope(body, resp, 405, "MethodNotAllowed")
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "HEAD"}


async def test_trailing_slash_variants_are_not_found(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/metrics/")).status == 404
    resp = await client.get("/health?x=1", allow_redirects=False)
    assert resp.status == 307 and resp.headers["Location"] == "/health/?x=1"


async def test_unexpected_exception_is_a_bare_500(make_client: ClientFactory, caplog) -> None:  # type: ignore[no-untyped-def]
    client = await make_client(app_with_test_routes())
    with caplog.at_level(logging.ERROR):
        resp = await client.get("/test/explode")
    body = await resp.json()
    assert_envelope(body, resp, 500, "InternalServerError")
    assert body["message"] == "Internal server error" and "details" not in body
    assert "hunter2" not in await resp.text()
    assert any(record.exc_info for record in caplog.records)  # the traceback goes to the server log only


async def test_body_without_content_type_is_400(make_client: ClientFactory) -> None:
    client = await make_client(app_with_test_routes())
    resp = await client.post("/test/echo", data=b'{"text": "hi"}', skip_auto_headers=["Content-Type"])
    assert_envelope(await resp.json(), resp, 400, "BadRequest")


async def test_disallowed_content_type_is_415_with_the_allowed_list(make_client: ClientFactory) -> None:
    client = await make_client(app_with_test_routes())
    resp = await client.post("/test/echo", data=b"<x/>", headers={"Content-Type": "application/xml"})
    body = await resp.json()
    assert_envelope(body, resp, 415, "UnsupportedMediaType")
    assert body["details"]["allowed_content_types"] == [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
    ]


async def test_json_operation_rejects_other_allowed_types(make_client: ClientFactory) -> None:
    client = await make_client(app_with_test_routes())
    resp = await client.post("/test/echo", data=b"text=hi", headers={"Content-Type": "text/plain; charset=utf-8"})
    body = await resp.json()
    assert_envelope(body, resp, 415, "UnsupportedMediaType")
    assert body["details"]["allowed_content_types"] == ["application/json"]


async def test_content_type_media_type_is_case_insensitive(make_client: ClientFactory) -> None:
    client = await make_client(app_with_test_routes())
    resp = await client.post(
        "/test/echo", data=b'{"text": "hi"}', headers={"Content-Type": "Application/JSON; charset=UTF-8"}
    )
    assert resp.status == 200 and await resp.json() == {"text": "hi"}


async def test_declared_length_over_the_limit_is_413_before_reading(make_client: ClientFactory) -> None:
    seen_bodies.clear()
    client = await make_client(app_with_test_routes(max_request_size=100))
    resp = await client.post("/test/raw", data=b"x" * 101, headers={"Content-Type": "text/plain"})
    body = await resp.json()
    assert_envelope(body, resp, 413, "PayloadTooLarge")
    assert body["details"] == {"max_bytes": 100}
    assert seen_bodies == []


async def test_chunked_body_over_the_limit_is_413_and_never_reaches_the_handler(make_client: ClientFactory) -> None:
    seen_bodies.clear()
    client = await make_client(app_with_test_routes(max_request_size=100))

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"y" * 30

    resp = await client.post("/test/raw", data=chunks(), headers={"Content-Type": "text/plain"})
    body = await resp.json()
    assert_envelope(body, resp, 413, "PayloadTooLarge")
    assert body["details"] == {"max_bytes": 100}
    assert seen_bodies == []


async def test_body_at_the_limit_is_accepted(make_client: ClientFactory) -> None:
    client = await make_client(app_with_test_routes(max_request_size=100))
    resp = await client.post("/test/raw", data=b"z" * 100, headers={"Content-Type": "text/plain"})
    assert resp.status == 200 and await resp.json() == {"size": 100}


async def test_validation_errors_are_typed_and_never_echo_input(make_client: ClientFactory) -> None:
    client = await make_client(app_with_test_routes())
    resp = await client.post("/test/echo", json={"text": "much-too-long-secret", "extra": 1})
    body = await resp.json()
    assert_envelope(body, resp, 422, "ValidationError")
    assert body["message"] == "Request validation failed"
    assert body["details"]["validation_errors"] == [
        {"loc": ["body", "text"], "msg": "String should have at most 10 characters", "type": "string_too_long"},
        {"loc": ["body", "extra"], "msg": "Extra inputs are not permitted", "type": "unknown_field"},
    ]
    assert "much-too-long-secret" not in await resp.text()


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(b"{not json", "json_invalid"), (b"[1, 2]", "dict_type"), (b'{"text": 5}', "string_type"), (b"{}", "missing")],
)
async def test_body_problems(make_client: ClientFactory, payload: bytes, kind: str) -> None:
    client = await make_client(app_with_test_routes())
    resp = await client.post("/test/echo", data=payload, headers={"Content-Type": "application/json"})
    body = await resp.json()
    assert resp.status == 422
    assert [problem["type"] for problem in body["details"]["validation_errors"]] == [kind]


async def test_a_static_folder_is_not_found_not_forbidden(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/static/")
    assert_envelope(await resp.json(), resp, 404, "NotFound")


async def test_a_long_but_valid_request_line_reaches_the_operation(client) -> None:  # type: ignore[no-untyped-def]
    # 10000 four-byte characters percent-encoded: far over aiohttp's default request-line limit.
    value = "😀" * 10000
    resp = await client.post("/examples/cache/long-line", params={"value": value})
    assert resp.status != 400  # Redis is unreachable in these tests: the operation itself answers (503)
    body = await resp.json()
    assert body["request_id"] == resp.headers["X-Request-ID"]
