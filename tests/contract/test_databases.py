"""Contract §2.4: the compatibility queries, inserting and listing records."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.contract.http import Api, unique, validation_errors

DATABASES = {"postgres": "PostgreSQL", "mysql": "MySQL", "mongodb": "MongoDB"}
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


async def test_postgres_query(api: Api) -> None:
    body = (await api.get("/examples/database/postgres/query")).json
    assert set(body) == {"database", "query", "result"}
    assert (body["database"], body["query"]) == ("PostgreSQL", "SELECT current_timestamp")
    assert re.fullmatch(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?[+-][0-9]{2}:[0-9]{2}", body["result"]
    ), body
    fraction = re.search(r"\.([0-9]+)", body["result"])
    assert fraction is None or int(fraction.group(1)) != 0, "a zero fraction is omitted"


async def test_mysql_query(api: Api) -> None:
    body = (await api.get("/examples/database/mysql/query")).json
    assert set(body) == {"database", "query", "result"}
    assert (body["database"], body["query"]) == ("MySQL", "SELECT NOW()")
    assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}", body["result"]), body


async def test_mongodb_query(api: Api) -> None:
    await api.post("/examples/database/mongodb", json_body={"name": unique(), "value": "v"})
    body = (await api.get("/examples/database/mongodb/query")).json
    assert set(body) == {"database", "collections", "count"}
    assert body["database"] == "MongoDB"
    assert body["collections"] == sorted(body["collections"]) and body["count"] == len(body["collections"])
    assert "refapi_examples" in body["collections"]


@pytest.mark.parametrize("db", DATABASES)
async def test_insert_then_list_newest_first(api: Api, db: str) -> None:
    inserted = []
    for value in ("first", "", "third"):
        reply = await api.post(f"/examples/database/{db}", json_body={"name": unique("rec"), "value": value})
        assert reply.status == 201, reply
        body = reply.json
        assert set(body) == {"database", "record", "action"}
        assert (body["database"], body["action"]) == (DATABASES[db], "inserted")
        record = body["record"]
        assert set(record) == {"id", "name", "value", "created_at"}
        assert record["value"] == value and TIMESTAMP.fullmatch(record["created_at"]), record
        if db == "mongodb":
            assert isinstance(record["id"], str) and re.fullmatch(r"[0-9a-f]{24}", record["id"]), record
        else:
            assert type(record["id"]) is int, record
        inserted.append(record)
    listed = (await api.get(f"/examples/database/{db}", params={"limit": "3"})).json
    assert set(listed) == {"database", "table", "count", "records"}
    assert (listed["database"], listed["table"], listed["count"]) == (DATABASES[db], "refapi_examples", 3)
    assert listed["records"] == inserted[::-1]


@pytest.mark.parametrize("db", DATABASES)
async def test_list_default_and_bounds(api: Api, db: str) -> None:
    for _ in range(11):
        await api.post(f"/examples/database/{db}", json_body={"name": "n", "value": "v"})
    assert (await api.get(f"/examples/database/{db}")).json["count"] == 10
    assert (await api.get(f"/examples/database/{db}", params={"limit": "1"})).json["count"] == 1
    for raw, error in (("0", "greater_than_equal"), ("101", "less_than_equal"), ("ten", "int_parsing")):
        reply = await api.get(f"/examples/database/{db}", params={"limit": raw})
        assert validation_errors(reply) == [(("query", "limit"), error)]


@pytest.mark.parametrize("db", DATABASES)
async def test_lengths_count_code_points(api: Api, db: str) -> None:
    name, value = "😀" * 100, "é" * 1000
    reply = await api.post(f"/examples/database/{db}", json_body={"name": name, "value": value})
    assert reply.status == 201, reply
    assert (reply.json["record"]["name"], reply.json["record"]["value"]) == (name, value)
    listed = (await api.get(f"/examples/database/{db}", params={"limit": "1"})).json["records"][0]
    assert (listed["name"], listed["value"]) == (name, value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {(("body", "name"), "missing"), (("body", "value"), "missing")}),
        ({"name": "", "value": "v"}, {(("body", "name"), "string_too_short")}),
        ({"name": "n" * 101, "value": "v"}, {(("body", "name"), "string_too_long")}),
        ({"name": "n", "value": "v" * 1001}, {(("body", "value"), "string_too_long")}),
        ({"name": 1, "value": None}, {(("body", "name"), "string_type"), (("body", "value"), "string_type")}),
        ({"name": "n", "value": "v", "id": 5}, {(("body", "id"), "unknown_field")}),
        (["n", "v"], {(("body",), "dict_type")}),
    ],
)
async def test_insert_validation(api: Api, body: Any, expected: set[Any]) -> None:
    reply = await api.post("/examples/database/postgres", json_body=body)
    assert set(validation_errors(reply)) == expected


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_database_is_404(api: Api, method: str) -> None:
    reply = await api.request(method, "/examples/database/oracle", json_body={"name": "n", "value": "v"})
    assert reply.status == 404, reply


async def test_insert_needs_json(api: Api) -> None:
    reply = await api.post(
        "/examples/database/mysql", data="name=n&value=v", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert reply.status == 415 and reply.json["details"] == {"allowed_content_types": ["application/json"]}, reply
