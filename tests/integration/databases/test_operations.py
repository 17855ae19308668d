"""The database operations against the real PostgreSQL and MariaDB and the Mongo double: success paths and 422s."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
import pytest

from tests.integration.databases.conftest import Client
from tests.integration.databases.support import DATABASES, LABELS
from tests.support.contract import checked

CREATED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
OBJECT_ID = re.compile(r"[0-9a-f]{24}")

# Each pair is stored through bound parameters and must come back exactly as sent.
HOSTILE = [
    ("'; DROP TABLE refapi_examples; --", "value with 'single' and \"double\" quotes"),
    ("Robert'); DROP TABLE students;--", "\\ backslash \\' escaped quote \\0 \\n"),
    ("名前 ✓ émoji 🚀", "ünïcödé — 中文 — עברית — \u202e reversed \u200b zero width"),
    ("$1 %s %(name)s ? :name", '{"$where": "sleep(1000)", "$gt": ""}'),
    ("  padded  ", "line1\nline2\r\n\ttab "),
    ("🚀" * 100, "x" * 1000),
    ("empty value", ""),
    ("four-byte", "😀" * 1000),
]


async def insert(client: Client, db: str, name: str, value: str) -> dict[str, Any]:
    resp = await client.post(f"/examples/database/{db}", json={"name": name, "value": value})
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await checked(resp)
    return body


async def newest(client: Client, db: str, limit: int | None = None) -> dict[str, Any]:
    query = "" if limit is None else f"?limit={limit}"
    resp = await client.get(f"/examples/database/{db}{query}")
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await checked(resp)
    return body


def assert_id_shape(db: str, record_id: Any) -> None:
    if db == "mongodb":
        assert isinstance(record_id, str) and OBJECT_ID.fullmatch(record_id)
    else:
        assert type(record_id) is int and record_id > 0


async def test_postgres_query_returns_the_server_timestamp(client: Client) -> None:
    resp = await client.get("/examples/database/postgres/query")
    body = await checked(resp)
    assert resp.status == 200
    assert set(body) == {"database", "query", "result"}
    assert body["database"] == "PostgreSQL" and body["query"] == "SELECT current_timestamp"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?[+-]\d{2}:\d{2}", body["result"])
    assert datetime.fromisoformat(body["result"]).tzinfo is not None


async def test_mysql_query_returns_the_server_time(client: Client) -> None:
    resp = await client.get("/examples/database/mysql/query")
    body = await checked(resp)
    assert resp.status == 200
    assert body == {"database": "MySQL", "query": "SELECT NOW()", "result": body["result"]}
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", body["result"])


async def test_mongodb_query_lists_the_collections_sorted(client: Client) -> None:
    await insert(client, "mongodb", "n", "v")  # the demo collection exists from startup; a record makes it certain
    resp = await client.get("/examples/database/mongodb/query")
    body = await checked(resp)
    assert resp.status == 200
    assert set(body) == {"database", "collections", "count"} and body["database"] == "MongoDB"
    assert "refapi_examples" in body["collections"]
    assert body["collections"] == sorted(body["collections"]) and body["count"] == len(body["collections"])


@pytest.mark.parametrize("db", DATABASES)
async def test_hostile_strings_are_stored_and_returned_exactly(client: Client, db: str) -> None:
    inserted = []
    for name, value in HOSTILE:
        body = await insert(client, db, name, value)
        assert set(body) == {"database", "record", "action"}
        assert body["database"] == LABELS[db] and body["action"] == "inserted"
        record = body["record"]
        assert record["name"] == name and record["value"] == value
        assert_id_shape(db, record["id"])
        assert CREATED_AT.fullmatch(record["created_at"])
        inserted.append(record)

    listed = await newest(client, db, limit=len(HOSTILE))
    assert listed["database"] == LABELS[db] and listed["table"] == "refapi_examples"
    assert listed["count"] == len(HOSTILE)
    # Newest first, and every field identical to what the insert answered (created_at included).
    assert listed["records"] == inserted[::-1]


@pytest.mark.parametrize("db", DATABASES)
async def test_list_is_newest_first_and_honours_the_limit(client: Client, db: str) -> None:
    inserted = [(await insert(client, db, f"record {i}", str(i)))["record"] for i in range(11)]

    default = await newest(client, db)
    assert default["count"] == 10 and default["records"] == inserted[:0:-1]
    one = await newest(client, db, limit=1)
    assert one["count"] == 1 and one["records"] == [inserted[-1]]
    keys = [(record["created_at"], record["id"]) for record in default["records"]]
    if db != "mongodb":  # ObjectIds are not ordered like integers; their tie-break is covered by the equality above
        assert keys == sorted(keys, reverse=True)


def problems(body: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    return [(tuple(p["loc"]), p["type"]) for p in body["details"]["validation_errors"]]


LIMIT_CASES = [
    ("0", "greater_than_equal"),
    ("-1", "greater_than_equal"),
    ("101", "less_than_equal"),
    ("abc", "int_parsing"),
    ("1.0", "int_parsing"),
    ("", "int_parsing"),
]

BODY_CASES: list[tuple[Any, list[tuple[tuple[str, ...], str]]]] = [
    ({}, [(("body", "name"), "missing"), (("body", "value"), "missing")]),
    ({"name": "n"}, [(("body", "value"), "missing")]),
    ({"name": "", "value": "v"}, [(("body", "name"), "string_too_short")]),
    ({"name": "x" * 101, "value": ""}, [(("body", "name"), "string_too_long")]),
    ({"name": "n", "value": "x" * 1001}, [(("body", "value"), "string_too_long")]),
    ({"name": 1, "value": True}, [(("body", "name"), "string_type"), (("body", "value"), "string_type")]),
    ({"name": None, "value": "v"}, [(("body", "name"), "string_type")]),
    ({"name": "n", "value": "v", "extra": "x"}, [(("body", "extra"), "unknown_field")]),
    ({"name": "nul\u0000byte", "value": "v"}, [(("body", "name"), "string_pattern_mismatch")]),
    (["name", "value"], [(("body",), "dict_type")]),
    ("just a string", [(("body",), "dict_type")]),
]


@pytest.mark.parametrize("db", DATABASES)
async def test_invalid_limits_and_bodies_answer_422(client: Client, db: str) -> None:
    path = f"/examples/database/{db}"
    for raw, kind in LIMIT_CASES:
        resp = await client.get(path, params={"limit": raw})
        body = await checked(resp)
        assert resp.status == 422 and problems(body) == [(("query", "limit"), kind)], raw

    for document, expected in BODY_CASES:
        resp = await client.post(path, data=orjson.dumps(document), headers={"Content-Type": "application/json"})
        body = await checked(resp)
        assert resp.status == 422 and problems(body) == expected, document
        assert "x" * 101 not in orjson.dumps(body).decode()  # messages state the rule, never the value

    resp = await client.post(path, data=b'{"name": ', headers={"Content-Type": "application/json"})
    body = await checked(resp)
    assert resp.status == 422 and problems(body) == [(("body",), "json_invalid")]

    resp = await client.post(path)
    body = await checked(resp)
    assert resp.status == 422 and problems(body) == [(("body",), "missing")]

    resp = await client.post(path, data=b"name=n", headers={"Content-Type": "application/x-www-form-urlencoded"})
    body = await checked(resp)
    assert resp.status == 415 and body["details"] == {"allowed_content_types": ["application/json"]}

    # Nothing invalid reached the table.
    assert all(record["name"] != "nul\u0000byte" for record in (await newest(client, db, limit=100))["records"])


@pytest.mark.parametrize(
    "path",
    [
        "/examples/database/oracle",
        "/examples/database/Postgres",
        "/examples/database/postgres/",
        "/examples/database/mongodb/other",
    ],
)
async def test_unknown_databases_are_404_from_the_router(client: Client, path: str) -> None:
    for method in ("GET", "POST"):
        resp = await client.request(method, path, json={"name": "n", "value": "v"})
        body = await resp.json()
        assert resp.status == 404 and body["error"] == "NotFound" and body["message"] == "Resource not found"
        assert set(body) == {"error", "message", "status_code", "request_id"}


async def test_health_reports_each_database_and_the_group(client: Client) -> None:
    versions = {}
    for db in DATABASES:
        resp = await client.get(f"/health/{db}")
        body = await checked(resp)
        assert resp.status == 200 and body["status"] == "healthy" and set(body) == {"status", "version"}
        versions[db] = body["version"]
    assert versions["postgres"].startswith("PostgreSQL ") and "," not in versions["postgres"]
    assert re.match(r"\d+\.\d+\.\d+", versions["mysql"]) and re.match(r"\d+\.\d+\.\d+", versions["mongodb"])

    resp = await client.get("/health/database")
    body = await checked(resp)
    assert body == {
        "status": "healthy",
        "services": {db: {"status": "healthy", "version": versions[db]} for db in DATABASES},
    }
