"""One JSON access line per request with the contract's fields; transit paths redacted; credentials scrubbed."""

from __future__ import annotations

import asyncio
import json
import logging
import select
from typing import Any

from refapi import logs
from refapi.logs import JsonFormatter, redact
from refapi.middlewares.metrics import loggable_path
from tests.unit.test_errors_and_limits import app_with_test_routes


def access_lines(captured: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "refapi.access"]


async def test_one_access_line_per_request_with_contract_fields(client, capfd, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="refapi.access")
    capfd.readouterr()
    await client.get("/health/?token=abc", headers={"X-Request-ID": "log-test-1"})
    lines = access_lines(capfd.readouterr().out)
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == {
        "timestamp",
        "level",
        "logger",
        "message",
        "request_id",
        "method",
        "route",
        "path",
        "status",
        "duration_ms",
        "client_ip",
    }
    assert line["message"] == "request completed" and line["level"] == "INFO"
    assert (line["request_id"], line["method"], line["route"], line["path"], line["status"]) == (
        "log-test-1",
        "GET",
        "/health/",
        "/health/",
        200,
    )
    assert line["timestamp"].endswith("Z") and len(line["timestamp"]) == 24
    assert line["client_ip"] == "127.0.0.1"
    assert "abc" not in json.dumps(line)


async def test_5xx_access_lines_are_errors_and_level_is_honoured(make_client, capfd, caplog) -> None:  # type: ignore[no-untyped-def]
    client = await make_client(app_with_test_routes())
    caplog.set_level(logging.WARNING, logger="refapi.access")
    capfd.readouterr()
    await client.get("/health/")
    await client.get("/test/explode")
    lines = access_lines(capfd.readouterr().out)
    assert [(line["status"], line["level"]) for line in lines] == [(500, "ERROR")]


def test_transit_paths_are_redacted() -> None:
    assert loggable_path("/examples/vault/transit/encrypt/my-plaintext") == "/examples/vault/transit/encrypt/[REDACTED]"
    assert (
        loggable_path("/examples/vault/transit/decrypt/vault:v1:ab/cd==")
        == "/examples/vault/transit/decrypt/[REDACTED]"
    )
    assert loggable_path("/examples/vault/transit/encrypt") == "/examples/vault/transit/encrypt"


def test_formatter_scrubs_url_credentials_and_carries_request_id() -> None:
    record = logging.makeLogRecord(
        {
            "name": "refapi.test",
            "levelname": "WARNING",
            "levelno": 30,
            "msg": "connect to %s failed",
            "args": ("amqp://guest:s3cret@rabbit:5672/",),
            "request_id": "rid-7",
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert "s3cret" not in line["message"] and line["message"] == "connect to amqp://***@rabbit:5672/ failed"
    assert line["request_id"] == "rid-7" and line["level"] == "WARNING" and line["logger"] == "refapi.test"
    assert redact("redis://:pw@h:1") == "redis://***@h:1"


async def test_access_lines_of_one_turn_leave_in_atomic_chunks(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="refapi.access")
    writes: list[bytes] = []
    monkeypatch.setattr(logs.os, "write", lambda fd, data: writes.append(bytes(data)) or len(data))
    access = logs.AccessLog()
    for n in range(40):
        access.write(
            request_id=f"r{n}", method="GET", route="/", path="/", status=200, duration=0.001, client_ip="127.0.0.1"
        )
    assert writes == []  # nothing leaves until the loop turn ends
    await asyncio.sleep(0)
    assert 1 < len(writes) < 40
    assert all(len(chunk) <= select.PIPE_BUF and chunk.endswith(b"\n") for chunk in writes)
    ids = [json.loads(line)["request_id"] for chunk in writes for line in chunk.splitlines()]
    assert ids == [f"r{n}" for n in range(40)]
