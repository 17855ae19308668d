"""The database backends' pure parts: driver exceptions → 503 reasons, and the created_at format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from pymongo import errors as mongo_errors
from pymysql import err as mysql_errors

from refapi.backends import mongodb, mysql, postgres
from refapi.backends.database import format_created_at


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (asyncpg.InvalidPasswordError("password authentication failed"), "auth_failed"),
        (asyncpg.InvalidAuthorizationSpecificationError('role "x" does not exist'), "auth_failed"),
        (ConnectionRefusedError(111, "refused"), "unreachable"),
        (ConnectionResetError(104, "reset"), "unreachable"),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), "unreachable"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "unreachable"),
        (asyncpg.UndefinedTableError("relation does not exist"), "error"),
        (asyncpg.DiskFullError("no space left"), "error"),
        (ValueError("a bug, not a backend failure"), None),
    ],
)
def test_postgres_classify(exc: BaseException, reason: str | None) -> None:
    assert postgres.classify(exc) == reason


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (mysql_errors.OperationalError(1045, "Access denied for user"), "auth_failed"),
        (mysql_errors.OperationalError(1044, "Access denied to database"), "auth_failed"),
        (mysql_errors.OperationalError(2003, "Can't connect to MySQL server"), "unreachable"),
        (mysql_errors.OperationalError(2013, "Lost connection to MySQL server during query"), "unreachable"),
        (mysql_errors.InterfaceError(0, ""), "unreachable"),
        (ConnectionResetError(104, "reset"), "unreachable"),
        (mysql_errors.OperationalError(1205, "Lock wait timeout exceeded"), "error"),
        (mysql_errors.ProgrammingError(1146, "Table doesn't exist"), "error"),
        (ValueError("a bug"), None),
    ],
)
def test_mysql_classify(exc: BaseException, reason: str | None) -> None:
    assert mysql.classify(exc) == reason


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (mongo_errors.OperationFailure("Authentication failed.", code=18), "auth_failed"),
        (mongo_errors.ServerSelectionTimeoutError("No servers found"), "unreachable"),
        (mongo_errors.AutoReconnect("connection reset"), "unreachable"),
        (mongo_errors.NetworkTimeout("timed out"), "timeout"),
        (mongo_errors.ExecutionTimeout("operation exceeded time limit", code=50), "timeout"),
        (mongo_errors.OperationFailure("not authorized", code=13), "error"),
        (mongo_errors.DuplicateKeyError("E11000", code=11000), "error"),
        (ValueError("a bug"), None),
    ],
)
def test_mongodb_classify(exc: BaseException, reason: str | None) -> None:
    assert mongodb.classify(exc) == reason


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 12, 4, 19, 24, 36, 186029, tzinfo=UTC), "2026-12-04T19:24:36.186029Z"),
        (datetime(2026, 12, 4, 19, 24, 36, tzinfo=UTC), "2026-12-04T19:24:36.000000Z"),
        (datetime(2026, 12, 4, 21, 24, 36, 5, tzinfo=timezone(timedelta(hours=2))), "2026-12-04T19:24:36.000005Z"),
        (datetime(2026, 12, 4, 19, 24, 36, 186029), "2026-12-04T19:24:36.186029Z"),  # naive: a UTC DATETIME
    ],
)
def test_created_at_is_rfc3339_utc_with_microseconds(moment: datetime, text: str) -> None:
    assert format_created_at(moment) == text
