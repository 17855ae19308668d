"""The MongoDB double, exercised through pymongo and at the wire level."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import bson
import pytest
from pymongo import AsyncMongoClient, MongoClient, ReturnDocument, monitoring
from pymongo.common import MIN_SUPPORTED_WIRE_VERSION
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DuplicateKeyError,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from tests.servers.mongo import SERVER_VERSION, MongoDouble, _crc32c

Client = AsyncMongoClient[dict[str, Any]]

USERS = {"app": "s3cret, with=odd chars"}


class CommandLog(monitoring.CommandListener):
    """Names of the commands a client sent, in order, and of those that failed."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.failures: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.failures.append(event.command_name)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.01)


@pytest.fixture
def mongo_double() -> Iterator[MongoDouble]:
    double = MongoDouble().start()
    yield double
    double.stop()


@pytest.fixture
def auth_double() -> Iterator[MongoDouble]:
    double = MongoDouble(users=USERS).start()
    yield double
    double.stop()


@pytest.fixture
async def mongo(mongo_double: MongoDouble) -> AsyncIterator[Client]:
    client: Client = AsyncMongoClient(mongo_double.uri, serverSelectionTimeoutMS=2000)
    yield client
    await client.close()


# --- through pymongo ---------------------------------------------------------------------------


async def test_reports_a_supported_mongod(mongo: Client) -> None:
    info = await mongo.server_info()
    hello = await mongo.admin.command("hello")

    assert info["version"] == SERVER_VERSION
    assert info["versionArray"][:2] == [7, 0]
    assert hello["isWritablePrimary"] is True
    assert hello["maxWireVersion"] >= MIN_SUPPORTED_WIRE_VERSION
    assert hello["topologyVersion"]["counter"] == 0
    assert isinstance(hello["connectionId"], int)
    assert hello["ok"] == 1.0


def test_sync_client_smoke(mongo_double: MongoDouble) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_double.uri, serverSelectionTimeoutMS=2000)
    with client:
        assert client.admin.command("ping") == {"ok": 1.0}
        client.refapi.things.insert_one({"name": "sync"})
        assert client.refapi.things.find_one({}, {"_id": 0}) == {"name": "sync"}


async def test_find_sorts_limits_and_pages_with_get_more(mongo_double: MongoDouble) -> None:
    log = CommandLog()
    client: Client = AsyncMongoClient(mongo_double.uri, event_listeners=[log])
    try:
        records = client.refapi.records
        await records.insert_many([{"i": i, "even": i % 2 == 0} for i in range(250)])

        everything = await records.find({}, {"_id": 0, "i": 1}).sort("i", -1).to_list()
        page = await records.find({"even": True}, {"_id": 0, "i": 1}).sort("i", 1).skip(10).limit(3).to_list()
        small_batches = await records.find({"i": {"$lt": 25}}).batch_size(10).to_list()
    finally:
        await client.close()

    assert [doc["i"] for doc in everything] == list(range(249, -1, -1))
    assert page == [{"i": 20}, {"i": 22}, {"i": 24}]
    assert len(small_batches) == 25
    # 250 documents exceed the 101-document first batch; 25 in batches of 10 take two getMores.
    assert log.names.count("getMore") == 1 + 2


async def test_insert_one_update_and_delete(mongo: Client) -> None:
    things = mongo.refapi.things
    inserted = await things.insert_one({"name": "a", "value": "1"})

    updated = await things.find_one_and_update(
        {"_id": inserted.inserted_id}, {"$set": {"value": "2"}}, return_document=ReturnDocument.AFTER
    )
    upserted = await things.update_one({"name": "b"}, {"$set": {"value": "3"}}, upsert=True)
    deleted = await things.delete_many({"name": {"$in": ["a", "b"]}})

    assert updated == {"_id": inserted.inserted_id, "name": "a", "value": "2"}
    assert upserted.upserted_id is not None
    assert deleted.deleted_count == 2
    assert await things.find_one() is None


async def test_count_documents_and_estimate(mongo: Client) -> None:
    records = mongo.refapi.records
    await records.insert_many([{"i": i} for i in range(30)])

    assert await records.count_documents({}) == 30
    assert await records.count_documents({"i": {"$gte": 25}}) == 5
    assert await records.count_documents({}, skip=5, limit=10) == 10
    assert await records.estimated_document_count() == 30
    assert await mongo.refapi.missing.count_documents({}) == 0


async def test_lists_and_drops_collections(mongo: Client) -> None:
    db = mongo.refapi
    await db.create_collection("zeta")
    await db.alpha.insert_one({})

    names = await db.list_collection_names()
    filtered = await db.list_collection_names(filter={"name": {"$regex": "^a"}})
    await db.drop_collection("zeta")

    assert sorted(names) == ["alpha", "zeta"]
    assert filtered == ["alpha"]
    assert await db.list_collection_names() == ["alpha"]
    assert "refapi" in await mongo.list_database_names()
    with pytest.raises(OperationFailure) as failure:
        await db.command("create", "alpha")
    assert failure.value.code == 48


async def test_list_collections_pages_and_kills_its_cursor(mongo_double: MongoDouble) -> None:
    log = CommandLog()
    client: Client = AsyncMongoClient(mongo_double.uri, event_listeners=[log])
    try:
        db = client.refapi
        for number in range(5):
            await db.create_collection(f"c{number}")
        names = [spec["name"] async for spec in await db.list_collections(cursor={"batchSize": 2})]
        abandoned = await db.list_collections(cursor={"batchSize": 2})
        await abandoned.next()
        await abandoned.close()
    finally:
        await client.close()

    assert names == ["c0", "c1", "c2", "c3", "c4"]
    # The first batch holds two; one getMore without a batch size takes the other three.
    assert log.names.count("getMore") == 1
    assert "killCursors" in log.names
    assert log.failures == []


async def test_unique_index_rejects_duplicates(mongo: Client) -> None:
    users = mongo.refapi.users

    name = await users.create_index("email", unique=True)
    await users.insert_one({"email": "a@example.org"})
    with pytest.raises(DuplicateKeyError) as duplicate:
        await users.insert_one({"email": "a@example.org"})
    with pytest.raises(BulkWriteError) as bulk:
        await users.insert_many([{"_id": 1}, {"_id": 1}, {"_id": 2}])
    indexes = await users.index_information()
    await users.drop_index(name)

    assert name == "email_1"
    assert indexes["email_1"]["unique"] is True
    assert duplicate.value.code == 11000
    assert duplicate.value.details is not None
    assert duplicate.value.details["keyValue"] == {"email": "a@example.org"}
    # Ordered inserts stop at the first failure.
    assert bulk.value.details["nInserted"] == 1
    assert [error["code"] for error in bulk.value.details["writeErrors"]] == [11000]
    assert list(await users.index_information()) == ["_id_"]


async def test_aggregate_returns_a_cursor(mongo: Client) -> None:
    records = mongo.refapi.records
    await records.insert_many([{"kind": kind} for kind in "aabbbc"])

    cursor = await records.aggregate([{"$group": {"_id": "$kind", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}])

    assert await cursor.to_list() == [{"_id": "a", "n": 2}, {"_id": "b", "n": 3}, {"_id": "c", "n": 1}]


async def test_unknown_command_is_command_not_found(mongo: Client) -> None:
    with pytest.raises(OperationFailure) as failure:
        await mongo.admin.command("frobnicate")

    assert failure.value.code == 59
    assert failure.value.details is not None
    assert failure.value.details["codeName"] == "CommandNotFound"


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
async def test_scram_login_with_the_right_password(auth_double: MongoDouble, mechanism: str) -> None:
    client: Client = AsyncMongoClient(
        auth_double.uri, username="app", password=USERS["app"], authSource="admin", authMechanism=mechanism
    )
    try:
        status = await client.admin.command("connectionStatus")
        await client.refapi.things.insert_one({"ok": True})
    finally:
        await client.close()

    assert status["authInfo"]["authenticatedUsers"] == [{"user": "app", "db": "admin"}]


async def test_default_mechanism_authenticates_speculatively(auth_double: MongoDouble) -> None:
    log = CommandLog()
    client: Client = AsyncMongoClient(auth_double.uri, username="app", password=USERS["app"], event_listeners=[log])
    try:
        await client.refapi.things.find_one()
    finally:
        await client.close()

    # saslStart rode along in the handshake's hello, so only saslContinue is a command of its own.
    assert "saslStart" not in log.names
    assert "saslContinue" in log.names


async def test_wrong_password_fails(auth_double: MongoDouble) -> None:
    client: Client = AsyncMongoClient(
        auth_double.uri, username="app", password="wrong", authMechanism="SCRAM-SHA-256", serverSelectionTimeoutMS=2000
    )
    try:
        with pytest.raises(OperationFailure) as failure:
            await client.refapi.things.find_one()
    finally:
        await client.close()

    assert failure.value.code == 18


async def test_unauthenticated_commands_are_unauthorized(auth_double: MongoDouble) -> None:
    client: Client = AsyncMongoClient(auth_double.uri, serverSelectionTimeoutMS=2000)
    try:
        ping = await client.admin.command("ping")
        with pytest.raises(OperationFailure) as failure:
            await client.refapi.things.find_one()
    finally:
        await client.close()

    assert ping["ok"] == 1.0  # mongod answers ping before authentication too
    assert failure.value.code == 13
    assert failure.value.details is not None
    assert failure.value.details["codeName"] == "Unauthorized"


# --- lifecycle and connections -----------------------------------------------------------------


async def test_stop_fails_calls_and_start_brings_the_data_back(mongo_double: MongoDouble) -> None:
    client: Client = AsyncMongoClient(mongo_double.uri, serverSelectionTimeoutMS=300, heartbeatFrequencyMS=500)
    try:
        await client.refapi.things.insert_one({"name": "kept"})
        await asyncio.to_thread(mongo_double.stop)

        assert mongo_double.open_connections == 0
        with pytest.raises((ServerSelectionTimeoutError, AutoReconnect)):
            await client.refapi.things.find_one()

        await asyncio.to_thread(mongo_double.start)
        deadline = time.monotonic() + 5
        while True:
            try:
                found = await client.refapi.things.find_one({}, {"_id": 0})
                break
            except AutoReconnect:
                assert time.monotonic() < deadline, "client did not reconnect after restart"
    finally:
        await client.close()

    assert found == {"name": "kept"}


async def test_a_full_pool_serves_concurrent_operations(mongo_double: MongoDouble) -> None:
    pool_size = 20
    before = mongo_double.connection_count
    client: Client = AsyncMongoClient(mongo_double.uri, minPoolSize=pool_size, maxPoolSize=pool_size)
    try:
        await client.admin.command("ping")
        # The monitor's connection plus every one the pool opens to honour minPoolSize.
        await eventually(lambda: mongo_double.connection_count - before >= 1 + pool_size)

        things = client.refapi.things
        await asyncio.gather(*(things.insert_one({"n": n}) for n in range(100)))
        counts = await asyncio.gather(*(things.count_documents({"n": {"$lt": 50}}) for _ in range(100)))

        assert counts == [50] * 100
        assert sorted(await things.distinct("n")) == list(range(100))
        # The pool plus at most two monitoring connections (heartbeat and round-trip time).
        assert mongo_double.open_connections <= pool_size + 2
    finally:
        await client.close()
    await eventually(lambda: mongo_double.open_connections == 0)


# --- wire level --------------------------------------------------------------------------------

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
CHECKSUM_PRESENT, MORE_TO_COME, EXHAUST_ALLOWED = 1, 2, 1 << 16


def send(sock: socket.socket, request_id: int, opcode: int, body: bytes) -> None:
    sock.sendall(struct.pack("<iiii", 16 + len(body), request_id, 0, opcode) + body)


def receive(sock: socket.socket) -> tuple[int, int, int, bytes]:
    """Return (requestID, responseTo, opCode, body) of the next message."""
    header = sock.recv(16, socket.MSG_WAITALL)
    length, request_id, response_to, opcode = struct.unpack("<iiii", header)
    return request_id, response_to, opcode, sock.recv(length - 16, socket.MSG_WAITALL)


def op_msg(command: dict[str, Any], flags: int = 0, **sequences: list[dict[str, Any]]) -> bytes:
    body = struct.pack("<I", flags) + b"\x00" + bson.encode(command)
    for identifier, documents in sequences.items():
        section = identifier.encode() + b"\x00" + b"".join(bson.encode(document) for document in documents)
        body += b"\x01" + struct.pack("<i", 4 + len(section)) + section
    return body


def op_msg_reply(body: bytes) -> tuple[int, dict[str, Any]]:
    (flags,) = struct.unpack_from("<I", body)
    assert body[4] == 0
    return flags, bson.decode(body[5:-4] if flags & CHECKSUM_PRESENT else body[5:])


@pytest.fixture
def wire(mongo_double: MongoDouble) -> Iterator[socket.socket]:
    with socket.create_connection((mongo_double.host, mongo_double.port), timeout=5) as sock:
        yield sock


def test_crc32c_matches_the_standard_check_value() -> None:
    assert _crc32c(b"123456789") == 0xE3069283


def test_op_query_handshake_gets_an_op_reply(wire: socket.socket) -> None:
    query = bson.encode({"isMaster": 1, "helloOk": True})
    send(wire, 7, OP_QUERY, struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + query)
    _, response_to, opcode, body = receive(wire)

    flags, cursor_id, starting_from, returned = struct.unpack_from("<iqii", body)
    reply = bson.decode(body[20:])
    assert (response_to, opcode, flags, cursor_id, starting_from, returned) == (7, OP_REPLY, 0, 0, 0, 1)
    assert reply["ismaster"] is True
    assert reply["helloOk"] is True
    assert reply["ok"] == 1.0


def test_legacy_op_query_find_is_refused(wire: socket.socket) -> None:
    query = bson.encode({"find": "things"})
    send(wire, 8, OP_QUERY, struct.pack("<i", 0) + b"refapi.$cmd\x00" + struct.pack("<ii", 0, -1) + query)

    reply = bson.decode(receive(wire)[3][20:])
    assert (reply["ok"], reply["code"], reply["codeName"]) == (0.0, 352, "UnsupportedOpQueryCommand")


def test_checksummed_request_gets_a_checksummed_reply(wire: socket.socket) -> None:
    body = op_msg({"ping": 1, "$db": "admin"}, flags=CHECKSUM_PRESENT)
    header = struct.pack("<iiii", 16 + len(body) + 4, 9, 0, OP_MSG)
    wire.sendall(header + body + struct.pack("<I", _crc32c(header + body)))

    request_id, response_to, opcode, reply_body = receive(wire)
    flags, reply = op_msg_reply(reply_body)
    reply_header = struct.pack("<iiii", 16 + len(reply_body), request_id, response_to, opcode)
    assert flags & CHECKSUM_PRESENT
    assert struct.unpack("<I", reply_body[-4:])[0] == _crc32c(reply_header + reply_body[:-4])
    assert reply == {"ok": 1.0}


def test_more_to_come_request_is_applied_without_a_reply(wire: socket.socket) -> None:
    documents = [{"_id": 1}, {"_id": 2}]
    send(wire, 10, OP_MSG, op_msg({"insert": "things", "$db": "refapi"}, MORE_TO_COME, documents=documents))
    send(wire, 11, OP_MSG, op_msg({"find": "things", "$db": "refapi"}))

    _, response_to, _, body = receive(wire)
    assert response_to == 11  # the insert was answered by nothing
    assert op_msg_reply(body)[1]["cursor"]["firstBatch"] == documents


def test_awaitable_hello_streams_when_exhaust_is_allowed(wire: socket.socket) -> None:
    send(wire, 12, OP_MSG, op_msg({"hello": 1, "$db": "admin"}))
    topology_version = op_msg_reply(receive(wire)[3])[1]["topologyVersion"]
    awaitable = {"hello": 1, "topologyVersion": topology_version, "maxAwaitTimeMS": 10, "$db": "admin"}
    send(wire, 13, OP_MSG, op_msg(awaitable, EXHAUST_ALLOWED))

    first_id, first_response_to, _, first = receive(wire)
    _, second_response_to, _, second = receive(wire)

    # Each streamed reply answers the one before it, and announces more to come.
    assert (first_response_to, second_response_to) == (13, first_id)
    assert op_msg_reply(first)[0] & MORE_TO_COME
    assert op_msg_reply(second)[0] & MORE_TO_COME
    assert op_msg_reply(second)[1]["isWritablePrimary"] is True
