"""Database operations (contract §2.4): compatibility queries and the demo records on PostgreSQL, MySQL and MongoDB."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web
from marshmallow import Schema, fields
from marshmallow.validate import OneOf

from refapi import keys
from refapi.backends.database import TABLE, Record
from refapi.openapi.fields import Length, Pattern, QueryInt, Range, Str
from refapi.openapi.operation import Input, json_response, operation

routes = web.RouteTableDef()

TAGS = ("databases",)
DATABASES = ("postgres", "mysql", "mongodb")
LABELS = ("PostgreSQL", "MySQL", "MongoDB")
# PostgreSQL cannot store NUL in text at all; refusing it everywhere keeps the three databases interchangeable.
NO_NUL = r"[^\x00]*"
# The router only matches these names, so any other {db} is a plain 404.
DB_ROUTE = "/examples/database/{db:" + "|".join(DATABASES) + "}"


class RecordStore(Protocol):
    """What the three backend facades offer these handlers."""

    label: str

    async def list_records(self, limit: int) -> list[Record]: ...

    async def insert_record(self, name: str, value: str) -> Record: ...


def _store(request: web.Request, db: str) -> RecordStore:
    app = request.app
    store: RecordStore
    if db == "postgres":
        store = app[keys.POSTGRES]
    elif db == "mysql":
        store = app[keys.MYSQL]
    else:
        store = app[keys.MONGODB]
    return store


class DatabasePath(Schema):
    # The router has already matched one of these; OneOf is here for the documented enum.
    db = Str(required=True, validate=OneOf(DATABASES), metadata={"description": "Which database"})


class RecordListQuery(Schema):
    limit = QueryInt(
        load_default=10, validate=Range(min=1, max=100), metadata={"description": "Most records to return"}
    )


class RecordInput(Schema):
    """A record to insert; undeclared fields are rejected."""

    name = Str(required=True, validate=[Length(min=1, max=100), Pattern(NO_NUL)])
    value = Str(required=True, validate=[Length(min=0, max=1000), Pattern(NO_NUL)])


class DatabaseRecord(Schema):
    id = fields.Raw(
        required=True,
        metadata={
            "description": "Integer on PostgreSQL and MySQL, the 24-hex ObjectId on MongoDB",
            "oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9a-f]{24}$"}],
        },
    )
    name = fields.String(required=True)
    value = fields.String(required=True)
    created_at = fields.String(
        required=True,
        metadata={
            "description": "Set by refapi: RFC 3339 UTC, 6 fractional digits",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$",
        },
    )


class RecordList(Schema):
    database = fields.String(required=True, metadata={"enum": list(LABELS)})
    table = fields.String(required=True, metadata={"enum": [TABLE]})
    count = fields.Integer(required=True, metadata={"description": "Number of records returned"})
    records = fields.List(
        fields.Nested(DatabaseRecord), required=True, metadata={"description": "Newest first (created_at, then id)"}
    )


class RecordInserted(Schema):
    database = fields.String(required=True, metadata={"enum": list(LABELS)})
    record = fields.Nested(DatabaseRecord, required=True)
    action = fields.String(required=True, metadata={"enum": ["inserted"]})


class PostgresQueryResult(Schema):
    database = fields.String(required=True, metadata={"enum": ["PostgreSQL"]})
    query = fields.String(required=True, metadata={"enum": ["SELECT current_timestamp"]})
    result = fields.String(
        required=True,
        metadata={
            "description": "YYYY-MM-DD HH:MM:SS[.ffffff]±HH:MM (fraction omitted when zero)",
            "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?[+-]\d{2}:\d{2}$",
        },
    )


class MysqlQueryResult(Schema):
    database = fields.String(required=True, metadata={"enum": ["MySQL"]})
    query = fields.String(required=True, metadata={"enum": ["SELECT NOW()"]})
    result = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "YYYY-MM-DD HH:MM:SS", "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"},
    )


class MongoQueryResult(Schema):
    database = fields.String(required=True, metadata={"enum": ["MongoDB"]})
    collections = fields.List(
        fields.String(), required=True, metadata={"description": "Collections of the configured database, sorted"}
    )
    count = fields.Integer(required=True, metadata={"description": "Number of collections"})


@routes.get("/examples/database/postgres/query")
@operation(
    summary="PostgreSQL's current timestamp",
    description="Runs SELECT current_timestamp on the pool.",
    tags=TAGS,
    responses={200: PostgresQueryResult, 503: None},
)
async def postgres_query(request: web.Request, inp: Input) -> web.Response:
    return json_response(await request.app[keys.POSTGRES].query())


@routes.get("/examples/database/mysql/query")
@operation(
    summary="MySQL's current time",
    description="Runs SELECT NOW() on the pool.",
    tags=TAGS,
    responses={200: MysqlQueryResult, 503: None},
)
async def mysql_query(request: web.Request, inp: Input) -> web.Response:
    return json_response(await request.app[keys.MYSQL].query())


@routes.get("/examples/database/mongodb/query")
@operation(
    summary="MongoDB's collections",
    description="Lists the collections of the configured database.",
    tags=TAGS,
    responses={200: MongoQueryResult, 503: None},
)
async def mongodb_query(request: web.Request, inp: Input) -> web.Response:
    return json_response(await request.app[keys.MONGODB].query())


@routes.get(DB_ROUTE)
@operation(
    summary="Newest demo records",
    description=f"Reads {TABLE}, newest first (created_at, then id).",
    tags=TAGS,
    path=DatabasePath,
    query=RecordListQuery,
    responses={200: RecordList, 503: None},
)
async def list_records(request: web.Request, inp: Input) -> web.Response:
    store = _store(request, inp.path["db"])
    records = await store.list_records(inp.query["limit"])
    body: dict[str, Any] = {"database": store.label, "table": TABLE, "count": len(records), "records": records}
    return json_response(body)


@routes.post(DB_ROUTE)
@operation(
    summary="Insert a demo record",
    description=f"Stores name and value in {TABLE} with created_at set by refapi; bound parameters only.",
    tags=TAGS,
    path=DatabasePath,
    body=RecordInput,
    responses={201: RecordInserted, 503: None},
)
async def insert_record(request: web.Request, inp: Input) -> web.Response:
    store = _store(request, inp.path["db"])
    record = await store.insert_record(inp.body["name"], inp.body["value"])
    return json_response({"database": store.label, "record": record, "action": "inserted"}, status=201)
