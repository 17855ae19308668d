"""MySQL/MariaDB backend: one aiomysql pool per worker, the demo table, the health probe and the record queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiomysql
from aiohttp import web
from pymysql import err as mysql_errors

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

log = logging.getLogger("refapi.backends.mysql")

SERVICE = "mysql"
LABEL = "MySQL"
QUERY = "SELECT NOW()"
# Taken around the schema check so that workers starting together create the table once: a second
# CREATE TABLE IF NOT EXISTS would succeed with a note, which aiomysql turns into a Python warning.
_SCHEMA_LOCK = f"{TABLE}_schema"
_TABLE_EXISTS = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = %s"
_CREATE_TABLE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name varchar(100) NOT NULL,
    value varchar(1000) NOT NULL,
    created_at datetime(6) NOT NULL COMMENT 'UTC',
    INDEX {TABLE}_created_at_idx (created_at, id)
) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"""
_SELECT = f"SELECT id, name, value, created_at FROM {TABLE} ORDER BY created_at DESC, id DESC LIMIT %s"
_INSERT = f"INSERT INTO {TABLE} (name, value, created_at) VALUES (%s, %s, %s)"

# Server error codes: access denied (user/password, database, no password given).
_AUTH_CODES = frozenset({1044, 1045, 1698})
# Client error codes: cannot connect (socket, TCP), server gone away, connection lost mid-query, lost at handshake.
_UNREACHABLE_CODES = frozenset({2002, 2003, 2006, 2013, 2055})


def classify(exc: BaseException) -> str | None:
    """PyMySQL/aiomysql exceptions → 503 reasons; every server error is a backend failure (inputs are validated)."""
    if isinstance(exc, mysql_errors.OperationalError) and exc.args:
        if exc.args[0] in _AUTH_CODES:
            return AUTH_FAILED
        if exc.args[0] in _UNREACHABLE_CODES:
            return "unreachable"
    if isinstance(exc, (OSError, mysql_errors.InterfaceError)):
        return "unreachable"
    if isinstance(exc, mysql_errors.MySQLError):
        return "error"
    return None


def _record(row: Sequence[Any]) -> Record:
    record_id, name, value, created_at = row
    return {"id": record_id, "name": name, "value": value, "created_at": format_created_at(created_at)}


async def _fetch(pool: aiomysql.Pool, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with pool.acquire() as connection, connection.cursor() as cursor:
        await cursor.execute(sql, args)
        return list(await cursor.fetchall())


async def _insert(pool: aiomysql.Pool, *args: Any) -> int:
    async with pool.acquire() as connection, connection.cursor() as cursor:
        await cursor.execute(_INSERT, args)
        return int(cursor.lastrowid)


class MysqlBackend(PooledBackend[aiomysql.Pool]):
    """What the API uses: every call goes through the guard (breaker, BACKEND_TIMEOUT, metrics)."""

    service = SERVICE
    label = LABEL
    classify = staticmethod(classify)

    async def health(self) -> dict[str, Any]:
        """`SELECT VERSION()`, bypassing the breaker; check_service bounds it and reports failures."""
        rows = await self.connector.run(lambda pool: _fetch(pool, "SELECT VERSION()"))
        return {"status": "healthy", "version": str(rows[0][0])}

    async def query(self) -> dict[str, Any]:
        rows = await self._guard.call("query", lambda: self.connector.run(lambda pool: _fetch(pool, QUERY)))
        now = rows[0][0]
        result = now.strftime("%Y-%m-%d %H:%M:%S") if now is not None else None
        return {"database": LABEL, "query": QUERY, "result": result}

    async def list_records(self, limit: int) -> list[Record]:
        rows = await self._guard.call("list", lambda: self.connector.run(lambda pool: _fetch(pool, _SELECT, limit)))
        return [_record(row) for row in rows]

    async def insert_record(self, name: str, value: str) -> Record:
        created_at = utc_now()
        # DATETIME has no zone: the column holds UTC wall-clock time (a zoned value would be converted or refused).
        stored = created_at.replace(tzinfo=None)
        record_id = await self._guard.call(
            "insert", lambda: self.connector.run(lambda pool: _insert(pool, name, value, stored))
        )
        return {"id": record_id, "name": name, "value": value, "created_at": format_created_at(created_at)}

    async def _open(self, credentials: Mapping[str, str]) -> aiomysql.Pool:
        settings = self._settings
        # Built directly rather than with create_pool(), which loses the connections it already made when a
        # later one fails; the first acquire() fills the pool to its minimum.
        pool = aiomysql.Pool(
            minsize=settings.db_pool_min,
            maxsize=settings.db_pool_max,
            echo=False,
            pool_recycle=-1,
            loop=asyncio.get_running_loop(),
            host=settings.mysql_host,
            port=settings.mysql_port,
            user=credentials["user"],
            password=credentials["password"],
            db=credentials["database"],
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=settings.backend_timeout,
        )
        try:
            async with pool.acquire() as connection, connection.cursor() as cursor:
                await cursor.execute("SELECT GET_LOCK(%s, %s)", (_SCHEMA_LOCK, settings.backend_timeout))
                try:
                    await cursor.execute(_TABLE_EXISTS, (TABLE,))
                    (exists,) = await cursor.fetchone()
                    if not exists:
                        await cursor.execute(_CREATE_TABLE)
                finally:
                    await cursor.execute("SELECT RELEASE_LOCK(%s)", (_SCHEMA_LOCK,))
        except BaseException:
            pool.terminate()
            await pool.wait_closed()
            raise
        log.info(
            "mysql pool ready for %s:%s (database %s)",
            settings.mysql_host,
            settings.mysql_port,
            credentials["database"],
        )
        return pool

    async def _close(self, pool: aiomysql.Pool) -> None:
        pool.close()
        try:
            # Lets running queries finish; past the timeout the connections still in use are closed.
            async with asyncio.timeout(self._settings.backend_timeout):
                await pool.wait_closed()
        except TimeoutError:
            pool.terminate()


def setup(app: web.Application) -> None:
    """Register the cleanup context, guard and health check of this backend."""
    register_database(app, SERVICE, keys.MYSQL, MysqlBackend, classify)
