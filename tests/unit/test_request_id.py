"""X-Request-ID: adopted when well-formed, minted otherwise, echoed on every response."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import ClientFactory


@pytest.mark.parametrize("incoming", ["abc-123", "A.b_c-9", "x" * 128])
async def test_valid_incoming_id_is_adopted(client, incoming: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/health/", headers={"X-Request-ID": incoming})
    assert resp.headers["X-Request-ID"] == incoming


@pytest.mark.parametrize("incoming", ["", "x" * 129, "has space", "semi;colon", "ünïcode"])
async def test_invalid_incoming_id_is_replaced(client, incoming: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/health/", headers={"X-Request-ID": incoming})
    assert uuid.UUID(resp.headers["X-Request-ID"]).version == 4


async def test_absent_id_is_minted_and_errors_carry_it(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/no/such/route")
    body = await resp.json()
    assert resp.status == 404
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert uuid.UUID(body["request_id"]).version == 4


async def test_head_and_preflight_carry_the_id(make_client: ClientFactory) -> None:
    client = await make_client()
    head = await client.head("/", headers={"X-Request-ID": "head-1"})
    assert head.status == 200 and head.headers["X-Request-ID"] == "head-1"
    assert await head.read() == b""
    preflight = await client.options(
        "/", headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET", "X-Request-ID": "pf-1"}
    )
    assert preflight.headers["X-Request-ID"] == "pf-1"
