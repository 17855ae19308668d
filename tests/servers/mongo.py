"""MongoDB wire-protocol double: a TCP server that answers like mongod 7.0 and keeps its data in mongomock."""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import hmac
import itertools
import logging
import os
import secrets
import signal
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

import bson
import mongomock
from bson.binary import Binary
from bson.int64 import Int64
from bson.objectid import ObjectId
from mongomock import filtering
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.saslprep import saslprep

__all__ = ["MongoDouble"]

_log = logging.getLogger(__name__)

Document = dict[str, Any]

SERVER_VERSION = "7.0.14"
# mongod 7.0 speaks wire version 21; pymongo 4.20 needs at least 9 (MongoDB 4.4).
MAX_WIRE_VERSION = 21
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
LOGICAL_SESSION_TIMEOUT_MINUTES = 30

_OP_REPLY = 1
_OP_QUERY = 2004
_OP_MSG = 2013
_HEADER = struct.Struct("<iiii")
_OP_REPLY_PREFIX = struct.Struct("<iqii")

_CHECKSUM_PRESENT = 1 << 0
_MORE_TO_COME = 1 << 1
_EXHAUST_ALLOWED = 1 << 16
# Bits 0-15 are "required": mongod refuses a message carrying one it does not know.
_KNOWN_REQUIRED_FLAGS = _CHECKSUM_PRESENT | _MORE_TO_COME

_DEFAULT_FIRST_BATCH = 101
_CURSOR_IDLE_SECONDS = 600.0  # mongod's cursorTimeoutMillis default
_MAX_CONNECTIONS = 838_860  # what mongod reports as available on a typical Linux host

_HELLO_COMMANDS = frozenset({"hello", "isMaster", "ismaster"})
# Commands mongod accepts before authentication (their requiresAuth() is false).
_NO_AUTH_COMMANDS = _HELLO_COMMANDS | {
    "saslStart",
    "saslContinue",
    "logout",
    "ping",
    "buildInfo",
    "buildinfo",
    "connectionStatus",
}
# Fields every command may carry that say nothing about the command itself.
_GENERIC_FIELDS = frozenset(
    {
        "$db",
        "lsid",
        "txnNumber",
        "autocommit",
        "startTransaction",
        "$clusterTime",
        "$readPreference",
        "readConcern",
        "writeConcern",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "comment",
        "maxTimeMS",
    }
)

_SCRAM_DIGESTS = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
# mongod's default iteration counts and salt lengths for each mechanism.
_SCRAM_ITERATIONS = {"SCRAM-SHA-1": 10_000, "SCRAM-SHA-256": 15_000}
_SCRAM_SALT_BYTES = {"SCRAM-SHA-1": 16, "SCRAM-SHA-256": 28}
_SCRAM_CONVERSATION_ID = 1

_CODE_NAMES = {
    1: "InternalError",
    2: "BadValue",
    9: "FailedToParse",
    13: "Unauthorized",
    14: "TypeMismatch",
    16: "InvalidLength",
    17: "ProtocolError",
    18: "AuthenticationFailed",
    26: "NamespaceNotFound",
    27: "IndexNotFound",
    43: "CursorNotFound",
    48: "NamespaceExists",
    59: "CommandNotFound",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    115: "CommandNotSupported",
    186: "ClientMetadataCannotBeMutated",
    334: "MechanismUnavailable",
    352: "UnsupportedOpQueryCommand",
    11000: "DuplicateKey",
}


class _CommandError(Exception):
    """A failed command, answered with mongod's {ok: 0, errmsg, code, codeName} document."""

    def __init__(self, code: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg

    def reply(self) -> Document:
        code_name = _CODE_NAMES.get(self.code, f"Location{self.code}")
        return {"ok": 0.0, "errmsg": self.errmsg, "code": self.code, "codeName": code_name}


class _CloseConnection(Exception):
    """The peer broke the protocol or went away; mongod drops such connections without a reply."""


# --- wire format -------------------------------------------------------------------------------


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the OP_MSG checksum; the stdlib only has plain CRC-32."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _int32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little", signed=True)


def _parse_op_msg(payload: bytes, flags: int) -> Document:
    """Return the command body with every kind-1 document sequence folded in as an array field."""
    end = len(payload) - 4 if flags & _CHECKSUM_PRESENT else len(payload)
    position = 4
    body: Document | None = None
    sequences: dict[str, list[Document]] = {}
    try:
        while position < end:
            kind = payload[position]
            position += 1
            size = _int32(payload, position)
            if size < 5 or position + size > end:
                raise _CloseConnection(f"OP_MSG section overruns the message ({size} bytes)")
            if kind == 0 and body is None:
                body = bson.decode(payload[position : position + size])
            elif kind == 1:
                name_end = payload.index(b"\x00", position + 4, position + size)
                identifier = payload[position + 4 : name_end].decode()
                sequences[identifier] = bson.decode_all(payload[name_end + 1 : position + size])
            else:
                raise _CloseConnection(f"unexpected OP_MSG section kind {kind}")
            position += size
    except (bson.errors.InvalidBSON, ValueError, IndexError) as exc:
        raise _CloseConnection(f"malformed OP_MSG: {exc}") from exc
    if body is None:
        raise _CloseConnection("OP_MSG without a body section")
    for identifier, documents in sequences.items():
        if identifier in body:
            raise _CloseConnection(f"OP_MSG field {identifier!r} is both in the body and a sequence")
        body[identifier] = documents
    return body


def _parse_op_query(payload: bytes) -> tuple[str, Document]:
    """Return (full collection name, query) of a legacy OP_QUERY, unwrapping a $query envelope."""
    try:
        name_end = payload.index(b"\x00", 4)
        namespace = payload[4:name_end].decode()
        position = name_end + 1 + 8  # numberToSkip and numberToReturn mean nothing for commands
        query = bson.decode(payload[position : position + _int32(payload, position)])
    except (bson.errors.InvalidBSON, ValueError, IndexError) as exc:
        raise _CloseConnection(f"malformed OP_QUERY: {exc}") from exc
    wrapped = query.get("$query")
    return namespace, wrapped if isinstance(wrapped, dict) else query


def _pack_op_msg(request_id: int, response_to: int, reply: Document, flags: int = 0) -> bytes:
    body = struct.pack("<I", flags) + b"\x00" + bson.encode(reply)
    checksum_size = 4 if flags & _CHECKSUM_PRESENT else 0
    message = _HEADER.pack(16 + len(body) + checksum_size, request_id, response_to, _OP_MSG) + body
    if checksum_size:
        message += struct.pack("<I", _crc32c(message))
    return message


def _pack_op_reply(request_id: int, response_to: int, reply: Document) -> bytes:
    body = _OP_REPLY_PREFIX.pack(0, 0, 0, 1) + bson.encode(reply)
    return _HEADER.pack(16 + len(body), request_id, response_to, _OP_REPLY) + body


# --- SCRAM (RFC 5802 / RFC 7677), server side --------------------------------------------------


@dataclass(frozen=True)
class _ScramCredential:
    """What mongod stores for one user and mechanism: never the password itself."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def derive(cls, mechanism: str, username: str, password: str) -> _ScramCredential:
        digest = _SCRAM_DIGESTS[mechanism]
        if mechanism == "SCRAM-SHA-1":
            # mongod salts the legacy MONGODB-CR digest for SHA-1, so drivers send that, not the password.
            legacy = f"{username}:mongo:{password}".encode()
            secret = hashlib.md5(legacy, usedforsecurity=False).hexdigest().encode()
        else:
            secret = saslprep(password).encode()
        salt = os.urandom(_SCRAM_SALT_BYTES[mechanism])
        iterations = _SCRAM_ITERATIONS[mechanism]
        salted = hashlib.pbkdf2_hmac(digest, secret, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", digest)
        stored_key = hashlib.new(digest, client_key).digest()
        server_key = hmac.digest(salted, b"Server Key", digest)
        return cls(mechanism, salt, iterations, stored_key, server_key)


def _scram_attributes(message: str) -> dict[str, str]:
    attributes = {}
    for part in message.split(","):
        key, separator, value = part.partition("=")
        if not separator or len(key) != 1:
            raise _CommandError(2, f"Invalid SCRAM attribute {part!r}")
        attributes[key] = value
    return attributes


def _authentication_failed() -> _CommandError:
    # mongod never says whether the user or the proof was wrong.
    return _CommandError(18, "Authentication failed.")


class _ScramConversation:
    """One SCRAM exchange on one connection, from client-first to server-final."""

    def __init__(
        self,
        database: str,
        username: str,
        credential: _ScramCredential,
        client_first_bare: str,
        client_nonce: str,
        skip_empty_exchange: bool,
    ) -> None:
        self.database = database
        self.username = username
        self.skip_empty_exchange = skip_empty_exchange
        self.proof_verified = False
        self._credential = credential
        self._nonce = client_nonce + base64.b64encode(os.urandom(24)).decode()
        salt = base64.b64encode(credential.salt).decode()
        self.server_first = f"r={self._nonce},s={salt},i={credential.iterations}"
        self._client_first_bare = client_first_bare

    def verify(self, client_final: str) -> str:
        """Check the client's proof and return the server-final message (its own signature)."""
        attributes = _scram_attributes(client_final)
        # "biws" is base64("n,,"): no channel binding and no authorisation identity.
        if attributes.get("c") != "biws" or attributes.get("r") != self._nonce or "p" not in attributes:
            raise _authentication_failed()
        without_proof = client_final[: client_final.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self.server_first},{without_proof}".encode()
        digest = _SCRAM_DIGESTS[self._credential.mechanism]
        try:
            proof = base64.b64decode(attributes["p"], validate=True)
        except ValueError as exc:
            raise _authentication_failed() from exc
        signature = hmac.digest(self._credential.stored_key, auth_message, digest)
        client_key = bytes(left ^ right for left, right in zip(proof, signature, strict=False))
        if len(proof) != len(signature) or not hmac.compare_digest(
            hashlib.new(digest, client_key).digest(), self._credential.stored_key
        ):
            raise _authentication_failed()
        self.proof_verified = True
        server_signature = hmac.digest(self._credential.server_key, auth_message, digest)
        return "v=" + base64.b64encode(server_signature).decode()


# --- command engine ----------------------------------------------------------------------------


@dataclass
class _Session:
    """Per-connection state: who is authenticated and any SASL exchange in flight."""

    connection_id: int
    handshake_done: bool = False
    user: tuple[str, str] | None = None  # (database, username)
    conversation: _ScramConversation | None = None


@dataclass
class _Cursor:
    namespace: str
    documents: collections.deque[Document]
    last_used: float = field(default_factory=time.monotonic)


_Handler = Callable[[_Session, str, Document], Document]


def _command_name(command: Document) -> str:
    return next(iter(command), "")


def _bson_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Int64):
        return "long"
    names = {dict: "object", list: "array", str: "string", int: "int", float: "double", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _type_mismatch(command: Document, name: str, value: Any, expected: str) -> _CommandError:
    return _CommandError(
        14,
        f"BSON field '{_command_name(command)}.{name}' is the wrong type '{_bson_type(value)}', "
        f"expected type '{expected}'",
    )


@overload
def _document(command: Document, name: str) -> Document | None: ...
@overload
def _document(command: Document, name: str, default: Document) -> Document: ...
def _document(command: Document, name: str, default: Document | None = None) -> Document | None:
    value = command.get(name)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise _type_mismatch(command, name, value, "object")
    return value


def _array(command: Document, name: str) -> list[Any]:
    value = command.get(name)
    if value is None:
        raise _CommandError(40414, f"BSON field '{_command_name(command)}.{name}' is missing but a required field")
    if not isinstance(value, list):
        raise _type_mismatch(command, name, value, "array")
    return value


def _non_negative(command: Document, name: str) -> int | None:
    """A non-negative integer option such as skip, limit or batchSize; None when absent."""
    value = command.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_mismatch(command, name, value, "long")
    if value < 0:
        raise _CommandError(51024, f"BSON field '{name}' value must be >= 0, actual value '{value}'")
    return int(value)


def _sort_spec(command: Document, name: str) -> list[tuple[str, Any]] | None:
    spec = _document(command, name)
    return list(spec.items()) if spec else None


def _is_operator_update(update: Any) -> bool:
    return isinstance(update, list) or (isinstance(update, dict) and _command_name(update).startswith("$"))


def _id_first(document: Document) -> Document:
    """mongod always stores and returns _id as the first field; mongomock sometimes appends it."""
    if "_id" not in document or _command_name(document) == "_id":
        return document
    return {"_id": document["_id"], **{k: v for k, v in document.items() if k != "_id"}}


def _take_batch(documents: collections.deque[Document], limit: int | None) -> list[Document]:
    """Pop up to `limit` documents, stopping early (after at least one) at mongod's 16 MiB batch cap."""
    batch: list[Document] = []
    size = 0
    while documents and (limit is None or len(batch) < limit):
        document_size = len(bson.encode(documents[0]))
        if batch and size + document_size > MAX_BSON_OBJECT_SIZE:
            break
        batch.append(documents.popleft())
        size += document_size
    return batch


def _format_key_value(key_value: Document) -> str:
    """Render a duplicate key the way mongod's E11000 message does: { name: "x" }."""
    parts = []
    for name, value in key_value.items():
        if isinstance(value, str):
            rendered = '"' + value.replace('"', '\\"') + '"'
        elif isinstance(value, ObjectId):
            rendered = f"ObjectId('{value}')"
        elif value is None:
            rendered = "null"
        else:
            rendered = str(value)
        parts.append(f"{name}: {rendered}")
    return "{ " + ", ".join(parts) + " }"


def _dotted_value(document: Document, path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@dataclass
class _CatalogEntry:
    """What mongod's catalog knows about a collection beyond its documents."""

    uuid: Binary = field(default_factory=lambda: Binary.from_uuid(uuid.uuid4()))
    options: Document = field(default_factory=dict)


class _Engine:
    """Executes commands against mongomock; only ever called from the double's event-loop thread."""

    def __init__(self, users: dict[str, str] | None, auth_source: str) -> None:
        self.auth_required = users is not None
        self.credentials = {
            (auth_source, username): {
                mechanism: _ScramCredential.derive(mechanism, username, password) for mechanism in _SCRAM_DIGESTS
            }
            for username, password in (users or {}).items()
        }
        self.client: mongomock.MongoClient[Document] = mongomock.MongoClient()
        self.connections_accepted = 0
        self.connections_open = 0
        self.address = ""
        self.process_id = ObjectId()
        self.started_at = time.monotonic()
        self._cursors: dict[int, _Cursor] = {}
        self._catalog: dict[tuple[str, str], _CatalogEntry] = {}
        self._handlers: dict[str, _Handler] = {
            "hello": self._hello,
            "isMaster": self._hello,
            "ismaster": self._hello,
            "ping": self._acknowledge,
            "buildInfo": self._build_info,
            "buildinfo": self._build_info,
            "serverStatus": self._server_status,
            "connectionStatus": self._connection_status,
            "listDatabases": self._list_databases,
            "listCollections": self._list_collections,
            "create": self._create,
            "drop": self._drop,
            "dropDatabase": self._drop_database,
            "insert": self._insert,
            "find": self._find,
            "getMore": self._get_more,
            "killCursors": self._kill_cursors,
            "count": self._count,
            "distinct": self._distinct,
            "aggregate": self._aggregate,
            "update": self._update,
            "delete": self._delete,
            "findAndModify": self._find_and_modify,
            "findandmodify": self._find_and_modify,
            "createIndexes": self._create_indexes,
            "listIndexes": self._list_indexes,
            "dropIndexes": self._drop_indexes,
            "endSessions": self._acknowledge,
            "abortTransaction": self._acknowledge,
            "getLastError": self._get_last_error,
            "saslStart": self._sasl_start,
            "saslContinue": self._sasl_continue,
            "logout": self._logout,
        }

    # -- lifecycle

    def restart(self, address: str) -> None:
        """Forget what a restarted mongod forgets (cursors, topology identity); keep the data."""
        self.address = address
        self.process_id = ObjectId()
        self.started_at = time.monotonic()
        self._cursors.clear()

    def connect(self) -> _Session:
        self.connections_accepted += 1
        self.connections_open += 1
        return _Session(connection_id=self.connections_accepted)

    def disconnect(self) -> None:
        self.connections_open -= 1

    def run(self, session: _Session, command: Document) -> Document:
        """Execute one command; every failure becomes an error reply rather than a dropped connection."""
        name = _command_name(command)
        try:
            reply = self._dispatch(session, name, command)
        except _CommandError as exc:
            return exc.reply()
        except PyMongoError as exc:  # mongomock raises pymongo's own exception types
            return _CommandError(getattr(exc, "code", None) or 2, str(exc)).reply()
        except NotImplementedError as exc:
            return _CommandError(115, f"{name} is not supported here: {exc}").reply()
        except Exception:
            _log.exception("mongo double: %s failed", name)
            return _CommandError(1, f"internal error while running {name}").reply()
        reply["ok"] = 1.0
        return reply

    def awaitable_hello_delay(self, command: Document) -> float | None:
        """Seconds an awaitable hello must wait before answering, or None for an ordinary command.

        A client passing our topologyVersion asks to be told only about changes; nothing here ever
        changes, so it waits the whole maxAwaitTimeMS. A stale version is answered at once.
        """
        if _command_name(command) not in _HELLO_COMMANDS:
            return None
        max_await = command.get("maxAwaitTimeMS")
        known = command.get("topologyVersion")
        if not isinstance(max_await, int | float) or not isinstance(known, dict):
            return None
        if known.get("processId") != self.process_id or known.get("counter") != 0:
            return 0.0
        return max(float(max_await), 0.0) / 1000

    def _dispatch(self, session: _Session, name: str, command: Document) -> Document:
        handler = self._handlers.get(name)
        if handler is None:
            raise _CommandError(59, f"no such command: '{name}'")
        database = command.get("$db")
        if not isinstance(database, str) or not database:
            raise _CommandError(40571, "OP_MSG requests require a $db argument")
        invalid = any(character in database for character in '/\\. "$\x00') and database != "$external"
        if invalid or len(database) > 63:
            raise _CommandError(73, f"Invalid database name: '{database}'")
        if self.auth_required and session.user is None and name not in _NO_AUTH_COMMANDS:
            raise _CommandError(13, f"Command {name} requires authentication")
        return handler(session, database, command)

    # -- helpers

    def _collection_name(self, database: str, command: Document) -> str:
        name = command[_command_name(command)]
        if not isinstance(name, str):
            raise _CommandError(2, f"collection name has invalid type {_bson_type(name)}")
        if not name or "$" in name or "\x00" in name:
            raise _CommandError(73, f"Invalid namespace specified '{database}.{name}'")
        return name

    def _exists(self, database: str, name: str) -> bool:
        return name in self.client[database].list_collection_names()

    def _catalog_entry(self, database: str, name: str) -> _CatalogEntry:
        return self._catalog.setdefault((database, name), _CatalogEntry())

    def _forget(self, database: str, name: str | None = None) -> None:
        """Drop catalog entries and cursors of a collection, or of a whole database when name is None."""
        for key in [key for key in self._catalog if key[0] == database and name in (None, key[1])]:
            del self._catalog[key]
        for cursor_id, cursor in list(self._cursors.items()):
            cursor_database, _, cursor_collection = cursor.namespace.partition(".")
            if cursor_database == database and name in (None, cursor_collection):
                del self._cursors[cursor_id]

    def _cursor_reply(
        self,
        namespace: str,
        documents: list[Document],
        batch_size: int | None,
        single_batch: bool = False,
    ) -> Document:
        pending = collections.deque(_id_first(document) for document in documents)
        first_batch = _take_batch(pending, _DEFAULT_FIRST_BATCH if batch_size is None else batch_size)
        cursor_id = 0
        if pending and not single_batch:
            cursor_id = self._open_cursor(namespace, pending)
        return {"cursor": {"firstBatch": first_batch, "id": Int64(cursor_id), "ns": namespace}}

    def _open_cursor(self, namespace: str, documents: collections.deque[Document]) -> int:
        # Reap abandoned cursors here, as mongod's cursor monitor would, instead of a timer task.
        expired = time.monotonic() - _CURSOR_IDLE_SECONDS
        for stale in [key for key, cursor in self._cursors.items() if cursor.last_used < expired]:
            del self._cursors[stale]
        cursor_id = secrets.randbelow(2**63 - 1) + 1
        self._cursors[cursor_id] = _Cursor(namespace, documents)
        return cursor_id

    def _cursor_batch_size(self, command: Document) -> int | None:
        return _non_negative(_document(command, "cursor", {}), "batchSize")

    def _duplicate_key_error(self, index: int, namespace: str, document: Document) -> Document:
        """Describe which unique index a rejected insert collided with, as mongod's writeError does."""
        database, _, name = namespace.partition(".")
        collection = self.client[database][name]
        for index_name, info in collection.index_information().items():
            if index_name != "_id_" and not info.get("unique"):
                continue
            key_pattern = dict(info["key"])
            key_value = {path: _dotted_value(document, path) for path in key_pattern}
            if collection.find_one(key_value, {"_id": 1}) is not None:
                return {
                    "index": index,
                    "code": 11000,
                    "errmsg": f"E11000 duplicate key error collection: {namespace} index: "
                    f"{index_name} dup key: {_format_key_value(key_value)}",
                    "keyPattern": key_pattern,
                    "keyValue": key_value,
                }
        return {"index": index, "code": 11000, "errmsg": f"E11000 duplicate key error collection: {namespace}"}

    @staticmethod
    def _write_error(index: int, exc: Exception) -> Document:
        if isinstance(exc, _CommandError):
            return {"index": index, "code": exc.code, "errmsg": exc.errmsg}
        return {"index": index, "code": getattr(exc, "code", None) or 2, "errmsg": str(exc)}

    @staticmethod
    def _check_batch(operations: list[Any]) -> None:
        if not 1 <= len(operations) <= MAX_WRITE_BATCH_SIZE:
            raise _CommandError(
                16,
                f"Write batch sizes must be between 1 and {MAX_WRITE_BATCH_SIZE}. Got {len(operations)} operations.",
            )

    # -- handshake, diagnostics and sessions

    def _hello(self, session: _Session, database: str, command: Document) -> Document:
        if "client" in command:
            if session.handshake_done:
                raise _CommandError(186, "The client metadata document may only be sent in the first hello")
            session.handshake_done = True
        primary_field = "isWritablePrimary" if _command_name(command) == "hello" else "ismaster"
        reply: Document = {primary_field: True}
        if command.get("helloOk"):
            reply["helloOk"] = True
        reply.update(
            topologyVersion={"processId": self.process_id, "counter": Int64(0)},
            maxBsonObjectSize=MAX_BSON_OBJECT_SIZE,
            maxMessageSizeBytes=MAX_MESSAGE_SIZE,
            maxWriteBatchSize=MAX_WRITE_BATCH_SIZE,
            localTime=datetime.now(UTC),
            logicalSessionTimeoutMinutes=LOGICAL_SESSION_TIMEOUT_MINUTES,
            connectionId=session.connection_id,
            minWireVersion=0,
            maxWireVersion=MAX_WIRE_VERSION,
            readOnly=False,
        )
        asked_for = command.get("saslSupportedMechs")
        if isinstance(asked_for, str):
            user_database, _, username = asked_for.partition(".")
            mechanisms = self.credentials.get((user_database, username))
            if mechanisms:
                reply["saslSupportedMechs"] = sorted(mechanisms)
        speculative = command.get("speculativeAuthenticate")
        if isinstance(speculative, dict) and _command_name(speculative) == "saslStart":
            # A failed speculative attempt is not an error: the reply simply omits the field and the
            # driver falls back to an ordinary saslStart, which then reports the failure.
            try:
                reply["speculativeAuthenticate"] = self._sasl_start(
                    session, str(speculative.get("db", database)), speculative
                )
            except _CommandError:
                pass
        return reply

    def _acknowledge(self, session: _Session, database: str, command: Document) -> Document:
        """ping, endSessions and abortTransaction: success with nothing to report."""
        return {}

    def _build_info(self, session: _Session, database: str, command: Document) -> Document:
        return {
            "version": SERVER_VERSION,
            "gitVersion": "0" * 40,
            "modules": [],
            "allocator": "tcmalloc",
            "javascriptEngine": "mozjs",
            "sysInfo": "deprecated",
            "versionArray": [int(part) for part in SERVER_VERSION.split(".")] + [0],
            "bits": 64,
            "debug": False,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "storageEngines": ["devnull", "wiredTiger"],
        }

    def _server_status(self, session: _Session, database: str, command: Document) -> Document:
        uptime = time.monotonic() - self.started_at
        return {
            "host": self.address,
            "version": SERVER_VERSION,
            "process": "mongod",
            "pid": Int64(os.getpid()),
            "uptime": float(int(uptime)),
            "uptimeMillis": Int64(int(uptime * 1000)),
            "uptimeEstimate": Int64(int(uptime)),
            "localTime": datetime.now(UTC),
            "connections": {
                "current": self.connections_open,
                "available": _MAX_CONNECTIONS - self.connections_open,
                "totalCreated": self.connections_accepted,
            },
            "storageEngine": {"name": "wiredTiger"},
        }

    def _connection_status(self, session: _Session, database: str, command: Document) -> Document:
        users = [] if session.user is None else [{"user": session.user[1], "db": session.user[0]}]
        # Every configured user is a superuser here, like one created with the root role.
        roles = [{"role": "root", "db": "admin"}] if users else []
        return {"authInfo": {"authenticatedUsers": users, "authenticatedUserRoles": roles}}

    def _get_last_error(self, session: _Session, database: str, command: Document) -> Document:
        return {"n": 0, "err": None}

    def _sasl_start(self, session: _Session, database: str, command: Document) -> Document:
        mechanism = command.get("mechanism")
        if mechanism not in _SCRAM_DIGESTS:
            raise _CommandError(334, f"Received authentication for mechanism {mechanism} which is not enabled")
        payload = command.get("payload")
        if not isinstance(payload, bytes):
            raise _type_mismatch(command, "payload", payload, "binData")
        try:
            message = payload.decode()
        except UnicodeDecodeError as exc:
            raise _CommandError(2, "SCRAM message is not UTF-8") from exc
        header_flag, _, rest = message.partition(",")
        authorization_id, _, client_first_bare = rest.partition(",")
        if header_flag != "n" or authorization_id:
            raise _CommandError(2, "Server does not support channel binding or authorization identities")
        attributes = _scram_attributes(client_first_bare)
        if "n" not in attributes or "r" not in attributes:
            raise _CommandError(2, "Invalid SCRAM client-first message")
        username = attributes["n"].replace("=2C", ",").replace("=3D", "=")
        credential = self.credentials.get((database, username), {}).get(mechanism)
        if credential is None:
            raise _authentication_failed()
        options = _document(command, "options", {})
        conversation = _ScramConversation(
            database,
            username,
            credential,
            client_first_bare,
            attributes["r"],
            skip_empty_exchange=bool(options.get("skipEmptyExchange")),
        )
        session.conversation = conversation
        return {
            "conversationId": _SCRAM_CONVERSATION_ID,
            "done": False,
            "payload": Binary(conversation.server_first.encode()),
        }

    def _sasl_continue(self, session: _Session, database: str, command: Document) -> Document:
        conversation = session.conversation
        if (
            conversation is None
            or conversation.database != database
            or command.get("conversationId") != _SCRAM_CONVERSATION_ID
        ):
            raise _CommandError(17, "No SASL session state found")
        payload = command.get("payload")
        if not isinstance(payload, bytes):
            raise _type_mismatch(command, "payload", payload, "binData")
        if conversation.proof_verified:
            # The empty third round trip of clients that did not ask to skip it.
            session.conversation = None
            session.user = (conversation.database, conversation.username)
            return {"conversationId": _SCRAM_CONVERSATION_ID, "done": True, "payload": Binary(b"")}
        try:
            server_final = conversation.verify(payload.decode())
        except (_CommandError, UnicodeDecodeError, ValueError) as exc:
            session.conversation = None
            raise _authentication_failed() from exc
        done = conversation.skip_empty_exchange
        if done:
            session.conversation = None
            session.user = (conversation.database, conversation.username)
        return {
            "conversationId": _SCRAM_CONVERSATION_ID,
            "done": done,
            "payload": Binary(server_final.encode()),
        }

    def _logout(self, session: _Session, database: str, command: Document) -> Document:
        session.user = None
        session.conversation = None
        return {}

    # -- databases and collections

    def _list_databases(self, session: _Session, database: str, command: Document) -> Document:
        # admin, config and local always exist on a real mongod.
        names = sorted(set(self.client.list_database_names()) | {"admin", "config", "local"})
        entries: list[Document] = []
        for name in names:
            collection_count = len(self.client[name].list_collection_names())
            entries.append({"name": name, "sizeOnDisk": Int64(8192 * (1 + collection_count)), "empty": False})
        wanted = _document(command, "filter")
        if wanted:
            entries = [entry for entry in entries if filtering.filter_applies(wanted, entry)]
        if command.get("nameOnly"):
            return {"databases": [{"name": entry["name"]} for entry in entries]}
        total = sum(int(entry["sizeOnDisk"]) for entry in entries)
        return {"databases": entries, "totalSize": Int64(total), "totalSizeMb": Int64(total // 2**20)}

    def _list_collections(self, session: _Session, database: str, command: Document) -> Document:
        specs = []
        for name in sorted(self.client[database].list_collection_names()):
            entry = self._catalog_entry(database, name)
            specs.append(
                {
                    "name": name,
                    "type": "collection",
                    "options": dict(entry.options),
                    "info": {"readOnly": False, "uuid": entry.uuid},
                    "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
                }
            )
        wanted = _document(command, "filter")
        if wanted:
            specs = [spec for spec in specs if filtering.filter_applies(wanted, spec)]
        if command.get("nameOnly"):
            specs = [{"name": spec["name"], "type": spec["type"]} for spec in specs]
        return self._cursor_reply(f"{database}.$cmd.listCollections", specs, self._cursor_batch_size(command))

    def _create(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        if "viewOn" in command:
            raise _CommandError(115, "views are not supported here")
        if self._exists(database, name):
            raise _CommandError(48, f"Collection {database}.{name} already exists.")
        self.client[database].create_collection(name)
        options = {key: value for key, value in command.items() if key != "create" and key not in _GENERIC_FIELDS}
        self._catalog[(database, name)] = _CatalogEntry(options=options)
        return {}

    def _drop(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        # Since 7.0 dropping a missing collection succeeds quietly.
        if not self._exists(database, name):
            return {}
        index_count = len(self.client[database][name].index_information())
        self.client[database].drop_collection(name)
        self._forget(database, name)
        return {"nIndexesWas": index_count, "ns": f"{database}.{name}"}

    def _drop_database(self, session: _Session, database: str, command: Document) -> Document:
        self.client.drop_database(database)
        self._forget(database)
        return {}

    # -- reads

    def _find(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        documents = self.client[database][name].find(
            _document(command, "filter", {}),
            _document(command, "projection") or None,
            skip=_non_negative(command, "skip") or 0,
            limit=_non_negative(command, "limit") or 0,
            sort=_sort_spec(command, "sort"),
        )
        return self._cursor_reply(
            f"{database}.{name}",
            list(documents),
            _non_negative(command, "batchSize"),
            single_batch=bool(command.get("singleBatch")),
        )

    def _get_more(self, session: _Session, database: str, command: Document) -> Document:
        cursor_id = command["getMore"]
        if isinstance(cursor_id, bool) or not isinstance(cursor_id, int):
            raise _type_mismatch(command, "getMore", cursor_id, "long")
        name = command.get("collection")
        if not isinstance(name, str):
            raise _type_mismatch(command, "collection", name, "string")
        cursor = self._cursors.get(cursor_id)
        if cursor is None:
            raise _CommandError(43, f"cursor id {cursor_id} not found")
        namespace = f"{database}.{name}"
        if cursor.namespace != namespace:
            raise _CommandError(
                13,
                f"Requested getMore on namespace '{namespace}', but cursor belongs to a different "
                f"namespace {cursor.namespace}",
            )
        # A getMore without batchSize (or with 0) is bounded by size only.
        batch = _take_batch(cursor.documents, _non_negative(command, "batchSize") or None)
        cursor.last_used = time.monotonic()
        if not cursor.documents:
            del self._cursors[cursor_id]
            cursor_id = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": namespace}}

    def _kill_cursors(self, session: _Session, database: str, command: Document) -> Document:
        # Not _collection_name(): cursors of listCollections live in "<db>.$cmd.listCollections".
        collection = command["killCursors"]
        if not isinstance(collection, str):
            raise _type_mismatch(command, "killCursors", collection, "string")
        namespace = f"{database}.{collection}"
        killed, not_found = [], []
        for cursor_id in _array(command, "cursors"):
            cursor = self._cursors.get(cursor_id)
            if cursor is not None and cursor.namespace == namespace:
                del self._cursors[cursor_id]
                killed.append(Int64(cursor_id))
            else:
                not_found.append(Int64(cursor_id))
        return {"cursorsKilled": killed, "cursorsNotFound": not_found, "cursorsAlive": [], "cursorsUnknown": []}

    def _count(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        limit = command.get("limit") or 0
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise _type_mismatch(command, "limit", limit, "long")
        matches = self.client[database][name].find(
            _document(command, "query", {}),
            {"_id": 1},
            skip=_non_negative(command, "skip") or 0,
            # count, unlike find, has always taken a negative limit to mean the same as its absolute value.
            limit=abs(int(limit)),
        )
        return {"n": len(list(matches))}

    def _distinct(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        key = command.get("key")
        if not isinstance(key, str):
            raise _type_mismatch(command, "key", key, "string")
        return {"values": self.client[database][name].distinct(key, _document(command, "query", {}))}

    def _aggregate(self, session: _Session, database: str, command: Document) -> Document:
        if command["aggregate"] == 1:
            raise _CommandError(115, "database-level aggregation is not supported here")
        name = self._collection_name(database, command)
        pipeline = _array(command, "pipeline")
        if not isinstance(command.get("cursor"), dict):
            raise _CommandError(9, "The 'cursor' option is required, except for aggregate with the explain argument")
        results = list(self.client[database][name].aggregate(pipeline))
        if pipeline and _command_name(pipeline[-1]) in ("$out", "$merge"):
            results = []  # writing stages return an empty cursor, whatever mongomock hands back
        return self._cursor_reply(f"{database}.{name}", results, self._cursor_batch_size(command))

    # -- writes

    def _insert(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        documents = _array(command, "documents")
        self._check_batch(documents)
        ordered = bool(command.get("ordered", True))
        collection = self.client[database][name]
        inserted = 0
        errors: list[Document] = []
        for index, document in enumerate(documents):
            try:
                collection.insert_one(document)
            except DuplicateKeyError:
                errors.append(self._duplicate_key_error(index, f"{database}.{name}", document))
            except PyMongoError as exc:
                errors.append(self._write_error(index, exc))
            else:
                inserted += 1
                continue
            if ordered:
                break
        reply: Document = {"n": inserted}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def _update(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        statements = _array(command, "updates")
        self._check_batch(statements)
        ordered = bool(command.get("ordered", True))
        collection = self.client[database][name]
        matched = modified = 0
        upserted: list[Document] = []
        errors: list[Document] = []
        for index, statement in enumerate(statements):
            try:
                result = self._apply_update(collection, statement)
            except (PyMongoError, _CommandError, ValueError) as exc:
                errors.append(self._write_error(index, exc))
                if ordered:
                    break
                continue
            matched += result.matched_count
            modified += result.modified_count
            if result.upserted_id is not None:
                upserted.append({"index": index, "_id": result.upserted_id})
        reply: Document = {"n": matched + len(upserted), "nModified": modified}
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        return reply

    @staticmethod
    def _apply_update(collection: mongomock.Collection[Document], statement: Any) -> Any:
        if not isinstance(statement, dict):
            raise _CommandError(14, "update statements must be objects")
        query, update = statement.get("q"), statement.get("u")
        if not isinstance(query, dict) or update is None:
            raise _CommandError(40414, "BSON field 'update.updates.q' and 'u' are required")
        upsert = bool(statement.get("upsert"))
        if _is_operator_update(update):
            method = collection.update_many if statement.get("multi") else collection.update_one
            return method(query, update, upsert=upsert, array_filters=statement.get("arrayFilters"))
        if statement.get("multi"):
            raise _CommandError(9, "multi update is not supported for replacement-style update")
        return collection.replace_one(query, update, upsert=upsert)

    def _delete(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        statements = _array(command, "deletes")
        self._check_batch(statements)
        ordered = bool(command.get("ordered", True))
        collection = self.client[database][name]
        deleted = 0
        errors: list[Document] = []
        for index, statement in enumerate(statements):
            try:
                if not isinstance(statement, dict) or not isinstance(statement.get("q"), dict):
                    raise _CommandError(40414, "BSON field 'delete.deletes.q' is missing but a required field")
                limit = statement.get("limit")
                if limit not in (0, 1):
                    raise _CommandError(9, f"The limit field in delete objects must be 0 or 1. Got {limit}")
                remove = collection.delete_one if limit == 1 else collection.delete_many
                deleted += remove(statement["q"]).deleted_count
            except (PyMongoError, _CommandError) as exc:
                errors.append(self._write_error(index, exc))
                if ordered:
                    break
        reply: Document = {"n": deleted}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def _find_and_modify(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        collection = self.client[database][name]
        query = _document(command, "query", {})
        sort = _sort_spec(command, "sort")
        fields = _document(command, "fields")
        remove, update, upsert = bool(command.get("remove")), command.get("update"), bool(command.get("upsert"))
        if remove == (update is not None):
            raise _CommandError(9, "Either an update or remove=true must be specified")
        if remove and upsert:
            raise _CommandError(9, "Cannot specify both upsert=true and remove=true")
        if remove:
            value = collection.find_one_and_delete(query, projection=fields, sort=sort)
            return {"lastErrorObject": {"n": int(value is not None)}, "value": value and _id_first(value)}
        if not isinstance(update, dict | list):
            raise _type_mismatch(command, "update", update, "object")
        operation = "find_one_and_update" if _is_operator_update(update) else "find_one_and_replace"
        modify: Callable[..., Any] = getattr(collection, operation)
        extra = {"array_filters": command["arrayFilters"]} if command.get("arrayFilters") else {}
        existed = collection.find_one(query, {"_id": 1}, sort=sort) is not None
        if existed or not upsert:
            value = modify(
                query,
                update,
                projection=fields,
                sort=sort,
                return_document=ReturnDocument.AFTER if command.get("new") else ReturnDocument.BEFORE,
                **extra,
            )
            last_error = {"n": int(existed), "updatedExisting": existed}
        else:
            # Upsert that inserts: fetch the new _id first, since mongod reports it even when the
            # caller asked for the (non-existent) document as it was before.
            created = modify(
                query, update, projection={"_id": 1}, upsert=True, return_document=ReturnDocument.AFTER, **extra
            )
            value = collection.find_one({"_id": created["_id"]}, fields) if command.get("new") else None
            last_error = {"n": 1, "updatedExisting": False, "upserted": created["_id"]}
        return {"lastErrorObject": last_error, "value": value and _id_first(value)}

    # -- indexes

    def _create_indexes(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        specs = _array(command, "indexes")
        existed = self._exists(database, name)
        collection = self.client[database][name]
        before = len(collection.index_information())
        created = 0
        for spec in specs:
            key = spec.get("key") if isinstance(spec, dict) else None
            if not isinstance(key, dict) or not key:
                raise _CommandError(9, "Error in specification: the 'key' field must be a non-empty object")
            key_list = list(key.items())
            index_name = spec.get("name") or "_".join(f"{path}_{kind}" for path, kind in key_list)
            options = {
                option: spec[option]
                for option in ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression")
                if spec.get(option) not in (None, False)
            }
            if self._index_exists(collection, index_name, key_list, options):
                continue
            collection.create_index(key_list, name=index_name, **options)
            created += 1
        reply: Document = {"numIndexesBefore": before, "numIndexesAfter": before + created}
        if created:
            reply["createdCollectionAutomatically"] = not existed
        else:
            reply["note"] = "all indexes already exist"
        return reply

    @staticmethod
    def _index_exists(
        collection: mongomock.Collection[Document], name: str, key: list[tuple[str, Any]], options: Document
    ) -> bool:
        """True for an identical index; conflicting ones fail the way mongod fails them."""
        for existing_name, info in collection.index_information().items():
            existing_options = {option: value for option, value in info.items() if option not in ("key", "v")}
            same_key = list(info["key"]) == key
            if existing_name == name:
                if same_key and existing_options == options:
                    return True
                raise _CommandError(
                    86,
                    f"An existing index has the same name as the requested index. "
                    f'Requested index: {{ key: {dict(key)}, name: "{name}" }}, '
                    f'existing index: {{ key: {dict(info["key"])}, name: "{existing_name}" }}',
                )
            if same_key:
                raise _CommandError(85, f"Index already exists with a different name: {existing_name}")
        return False

    def _list_indexes(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        if not self._exists(database, name):
            raise _CommandError(26, f"ns does not exist: {database}.{name}")
        specs = [
            {"v": info.get("v", 2), "key": dict(info["key"]), "name": index_name}
            | {option: value for option, value in info.items() if option not in ("v", "key")}
            for index_name, info in self.client[database][name].index_information().items()
        ]
        return self._cursor_reply(f"{database}.{name}", specs, self._cursor_batch_size(command))

    def _drop_indexes(self, session: _Session, database: str, command: Document) -> Document:
        name = self._collection_name(database, command)
        if not self._exists(database, name):
            raise _CommandError(26, f"ns not found {database}.{name}")
        collection = self.client[database][name]
        indexes = collection.index_information()
        target = command.get("index")
        reply: Document = {"nIndexesWas": len(indexes)}
        if target == "*":
            names = [index_name for index_name in indexes if index_name != "_id_"]
            reply["msg"] = "non-_id indexes dropped for collection"
        elif isinstance(target, str):
            names = [target]
        elif isinstance(target, list) and all(isinstance(item, str) for item in target):
            names = target
        elif isinstance(target, dict):
            names = [index_name for index_name, info in indexes.items() if dict(info["key"]) == target]
            if not names:
                raise _CommandError(27, f"can't find index with key: {_format_key_value(target)}")
        else:
            raise _type_mismatch(command, "index", target, "string")
        for index_name in names:
            if index_name == "_id_":
                raise _CommandError(72, "cannot drop _id index")
            if index_name not in indexes:
                raise _CommandError(27, f"index not found with name [{index_name}]")
        for index_name in names:
            collection.drop_index(index_name)
        return reply


# --- network front end -------------------------------------------------------------------------


class MongoDouble:
    """A mongod stand-in listening on a real TCP port, serving from its own thread and event loop."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: dict[str, str] | None = None,
        auth_source: str = "admin",
    ) -> None:
        self.host = host
        self.port = port
        self._engine = _Engine(users, auth_source)
        self._request_ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mongodb://{host}:{self.port}"

    @property
    def connection_count(self) -> int:
        """Connections accepted since construction, across restarts."""
        return self._engine.connections_accepted

    @property
    def open_connections(self) -> int:
        return self._engine.connections_open

    def start(self) -> MongoDouble:
        """Listen (on the same port again after a stop()) and return once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("MongoDouble is already running")
        ready = threading.Event()
        failures: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failures), name=f"mongo-double-{self.port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failures:
            self._thread.join()
            self._thread = None
            raise failures[0]
        return self

    def stop(self) -> None:
        """Close the listener and every open connection; the data survives for a later start()."""
        if self._thread is None:
            return
        assert self._loop is not None and self._stop_requested is not None
        self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join()
        self._thread = None

    def _run(self, ready: threading.Event, failures: list[BaseException]) -> None:
        try:
            asyncio.run(self._serve(ready))
        except Exception as exc:
            if ready.is_set():
                _log.exception("mongo double: server loop crashed")
            else:  # start() re-raises it in the caller, typically a port already in use
                failures.append(exc)
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        server = await asyncio.start_server(self._handle_connection, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._engine.restart(f"{socket.gethostname()}:{self.port}")
        ready.set()
        async with server:
            await self._stop_requested.wait()
            server.close()
            # Closing the transports (rather than cancelling the handlers, which Python 3.11's
            # start_server callback reports as an unhandled error) ends every read with EOF.
            for writer in self._connections.values():
                writer.close()
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        session = self._engine.connect()
        try:
            await self._converse(reader, writer, session)
        except (asyncio.IncompleteReadError, ConnectionError, _CloseConnection) as exc:
            _log.debug("mongo double: connection %d closed: %r", session.connection_id, exc)
        finally:
            self._engine.disconnect()
            del self._connections[task]
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: _Session) -> None:
        while True:
            header = await reader.readexactly(_HEADER.size)
            length, request_id, _, opcode = _HEADER.unpack(header)
            if not _HEADER.size < length <= MAX_MESSAGE_SIZE:
                raise _CloseConnection(f"message length {length} out of range")
            payload = await reader.readexactly(length - _HEADER.size)
            if opcode == _OP_MSG:
                await self._on_op_msg(reader, writer, session, request_id, header + payload)
            elif opcode == _OP_QUERY:
                writer.write(self._on_op_query(session, request_id, payload))
            else:
                raise _CloseConnection(f"unsupported opcode {opcode}")
            await writer.drain()

    async def _on_op_msg(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: _Session,
        request_id: int,
        message: bytes,
    ) -> None:
        payload = message[_HEADER.size :]
        if len(payload) < 5:
            raise _CloseConnection("OP_MSG too short")
        (flags,) = struct.unpack_from("<I", payload)
        if flags & 0xFFFF & ~_KNOWN_REQUIRED_FLAGS:
            raise _CloseConnection(f"unknown required OP_MSG flags {flags:#x}")
        if (
            flags & _CHECKSUM_PRESENT
            and _crc32c(message[:-4]) != struct.unpack_from("<I", message, len(message) - 4)[0]
        ):
            raise _CloseConnection("OP_MSG checksum mismatch")
        command = _parse_op_msg(payload, flags)
        reply_flags = flags & _CHECKSUM_PRESENT  # answer a checksummed request with a checksummed reply
        delay = self._engine.awaitable_hello_delay(command)
        if delay is not None:
            await self._stream_hello(reader, writer, session, request_id, command, delay, reply_flags, flags)
            return
        reply = self._engine.run(session, command)
        if not flags & _MORE_TO_COME:  # moreToCome on a request means the client wants no answer (w: 0)
            writer.write(_pack_op_msg(next(self._request_ids), request_id, reply, reply_flags))

    async def _stream_hello(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: _Session,
        request_id: int,
        command: Document,
        delay: float,
        reply_flags: int,
        request_flags: int,
    ) -> None:
        """Answer an awaitable hello after its wait; with exhaustAllowed keep answering until the peer leaves."""
        if request_flags & _EXHAUST_ALLOWED:
            reply_flags |= _MORE_TO_COME
        max_await = float(command["maxAwaitTimeMS"]) / 1000
        response_to = request_id
        while True:
            if await self._peer_left_within(reader, delay):
                raise _CloseConnection("client went away during an awaitable hello")
            reply_id = next(self._request_ids)
            writer.write(_pack_op_msg(reply_id, response_to, self._engine.run(session, command), reply_flags))
            if not reply_flags & _MORE_TO_COME:
                return
            await writer.drain()
            # Each streamed reply answers the previous one, as mongod's exhaust replies do.
            response_to, delay = reply_id, max_await

    @staticmethod
    async def _peer_left_within(reader: asyncio.StreamReader, seconds: float) -> bool:
        """Wait up to `seconds`; True as soon as the client closes (or, illegally, sends) instead."""
        try:
            await asyncio.wait_for(reader.read(1), seconds)
        except TimeoutError:
            return False
        return True

    def _on_op_query(self, session: _Session, request_id: int, payload: bytes) -> bytes:
        namespace, query = _parse_op_query(payload)
        database, _, collection = namespace.partition(".")
        name = _command_name(query)
        if collection == "$cmd" and name in _HELLO_COMMANDS:
            reply = self._engine.run(session, {**query, "$db": database})
        else:
            reply = _CommandError(
                352,
                f"Unsupported OP_QUERY command: {name}. The client driver may require an upgrade. "
                "For more details see https://dochub.mongodb.org/core/legacy-opcode-removal",
            ).reply()
        return _pack_op_reply(next(self._request_ids), request_id, reply)


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.servers.mongo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument(
        "--user", action="append", metavar="NAME:PASSWORD", help="require SCRAM authentication (repeatable)"
    )
    parser.add_argument("--auth-source", default="admin")
    args = parser.parse_args(argv)
    users = None
    if args.user:
        if any(":" not in entry for entry in args.user):
            parser.error("--user takes NAME:PASSWORD")
        users = dict(entry.split(":", 1) for entry in args.user)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Block before the server thread exists so it inherits the mask and only sigwait() sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    double = MongoDouble(host=args.host, port=args.port, users=users, auth_source=args.auth_source).start()
    _log.info("MongoDB double (version %s) listening on %s", SERVER_VERSION, double.uri)
    signal.sigwait(stop_signals)
    double.stop()


if __name__ == "__main__":
    main()
