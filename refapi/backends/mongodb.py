"""MongoDB backend: one pymongo AsyncMongoClient per worker, the demo collection, the health probe and the queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pymongo
from aiohttp import web
from pymongo import DESCENDING, AsyncMongoClient
from pymongo import errors as mongo_errors

from refapi import keys
from refapi.backends.database import (
    AUTH_FAILED,
    TABLE,
    PooledBackend,
    Record,
    format_created_at,
    register_database,
    utc_now,
)

log = logging.getLogger("refapi.backends.mongodb")

SERVICE = "mongodb"
LABEL = "MongoDB"
_AUTHENTICATION_FAILED = 18
_NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]

Client = AsyncMongoClient[dict[str, Any]]


def classify(exc: BaseException) -> str | None:
    """pymongo's exceptions → 503 reasons (timeouts first: NetworkTimeout is also a connection failure)."""
    if isinstance(exc, mongo_errors.OperationFailure) and exc.code == _AUTHENTICATION_FAILED:
        return AUTH_FAILED
    if isinstance(exc, (mongo_errors.NetworkTimeout, mongo_errors.ExecutionTimeout, mongo_errors.WTimeoutError)):
        return "timeout"
    if isinstance(exc, (mongo_errors.ConnectionFailure, OSError)):
        return "unreachable"
    if isinstance(exc, mongo_errors.PyMongoError):
        return "error"
    return None


def _record(document: Mapping[str, Any]) -> Record:
    return {
        "id": str(document["_id"]),
        "name": document["name"],
        "value": document["value"],
        "created_at": format_created_at(document["created_at"]),
    }


class MongoBackend(PooledBackend[Client]):
    """What the API uses: every call goes through the guard (breaker, BACKEND_TIMEOUT, metrics)."""

    service = SERVICE
    label = LABEL
    classify = staticmethod(classify)

    async def health(self) -> dict[str, Any]:
        """`ping` + `buildInfo`, bypassing the breaker; check_service bounds it and reports failures."""

        async def probe(client: Client) -> str:
            await client.admin.command("ping")
            info = await client.admin.command("buildInfo")
            return str(info["version"])

        return {"status": "healthy", "version": await self.connector.run(probe)}

    async def query(self) -> dict[str, Any]:
        async def collections(client: Client) -> list[str]:
            return await client[self._database].list_collection_names()

        names = sorted(await self._guard.call("query", lambda: self.connector.run(collections)))
        return {"database": LABEL, "collections": names, "count": len(names)}

    async def list_records(self, limit: int) -> list[Record]:
        async def newest(client: Client) -> list[dict[str, Any]]:
            cursor = client[self._database][TABLE].find({}, sort=_NEWEST_FIRST, limit=limit)
            return await cursor.to_list()

        return [_record(document) for document in await self._guard.call("list", lambda: self.connector.run(newest))]

    async def insert_record(self, name: str, value: str) -> Record:
        # BSON dates hold milliseconds: drop the rest now, so this answer and later reads show the same instant.
        created_at = utc_now()
        created_at = created_at.replace(microsecond=created_at.microsecond // 1000 * 1000)

        async def insert(client: Client) -> Any:
            document = {"name": name, "value": value, "created_at": created_at}
            return (await client[self._database][TABLE].insert_one(document)).inserted_id

        inserted_id = await self._guard.call("insert", lambda: self.connector.run(insert))
        return {"id": str(inserted_id), "name": name, "value": value, "created_at": format_created_at(created_at)}

    @property
    def _database(self) -> str:
        return self._credentials.get(SERVICE)["database"]

    async def _open(self, credentials: Mapping[str, str]) -> Client:
        settings = self._settings
        timeout_ms = int(settings.backend_timeout * 1000)
        # pymongo waits out server selection while a server is down: giving up at half the guard's timeout reports
        # a refusing server as unreachable rather than letting the guard call it a timeout.
        selection_ms = timeout_ms // 2
        auth: dict[str, Any] = {}
        if credentials["user"]:
            auth = {
                "username": credentials["user"],
                "password": credentials["password"],
                "authSource": settings.mongodb_auth_source,
            }
        client: Client = AsyncMongoClient(
            settings.mongodb_host,
            settings.mongodb_port,
            maxPoolSize=settings.db_pool_max,
            serverSelectionTimeoutMS=selection_ms,
            connectTimeoutMS=timeout_ms,
            tz_aware=True,
            appname="refapi",
            **auth,
        )
        try:
            # Creating the index creates the collection too, and is a no-op when both exist (any worker may race).
            await client[credentials["database"]][TABLE].create_index(_NEWEST_FIRST, name=f"{TABLE}_created_at_idx")
        except BaseException:
            # Shielded: a second cancellation (shutdown during a timed-out attempt) must not leave it open.
            await asyncio.shield(self._close(client))
            raise
        log.info(
            "mongodb client ready for %s:%s (database %s)",
            settings.mongodb_host,
            settings.mongodb_port,
            credentials["database"],
        )
        return client

    async def _close(self, client: Client) -> None:
        budget = self._settings.backend_timeout
        # close() first ends the server sessions, which waits for server selection when MongoDB is gone; that
        # courtesy gets half the budget (pymongo's own timeout, so the client still closes its pools after it).
        with pymongo.timeout(budget / 2):
            async with asyncio.timeout(budget):
                await client.close()


def setup(app: web.Application) -> None:
    """Register the cleanup context, guard and health check of this backend."""
    register_database(app, SERVICE, keys.MONGODB, MongoBackend, classify)
