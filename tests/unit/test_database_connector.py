"""The database pool lifecycle (refapi.backends.database.Connector) with fake pools: sharing, cancellation, rotation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from refapi.backends.credentials import CredentialStore
from refapi.backends.database import Connector
from refapi.config import Settings


class Rejected(Exception):
    """What the fake backend raises for credentials it does not accept."""


class Broken(Exception):
    """Any other backend failure."""


def classify(exc: BaseException) -> str | None:
    if isinstance(exc, Rejected):
        return "auth_failed"
    return "error" if isinstance(exc, Broken) else None


class FakePool:
    def __init__(self, credentials: Mapping[str, str]) -> None:
        self.password = credentials["password"]
        self.closed = False


class FakeBackend:
    """Opens FakePools; accepts only `accepted` as the password; can be made to fail or to hang while opening."""

    def __init__(self, accepted: str = "") -> None:
        self.accepted = accepted
        self.opened: list[FakePool] = []
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None
        self.cancelled = 0

    async def open(self, credentials: Mapping[str, str]) -> FakePool:
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail_with is not None:
            raise self.fail_with
        pool = FakePool(credentials)
        self.opened.append(pool)
        return pool

    async def close(self, pool: FakePool) -> None:
        pool.closed = True

    async def query(self, pool: FakePool) -> str:
        if pool.closed:
            raise Broken("closed")
        if pool.password != self.accepted:
            raise Rejected("password authentication failed")
        return "ok"


class Vault:
    """The secret the credential store re-reads; None until a test puts one in."""

    def __init__(self) -> None:
        self.secret: dict[str, str] | None = None
        self.reads = 0

    async def read(self, name: str) -> Mapping[str, Any] | None:
        self.reads += 1
        return self.secret


def make(backend: FakeBackend, vault: Vault | None = None, timeout: float = 5.0) -> Connector[FakePool]:
    store = CredentialStore(Settings(), (vault or Vault()).read, min_refresh_interval=0)
    return Connector("postgres", store, opener=backend.open, closer=backend.close, classify=classify, timeout=timeout)


async def test_concurrent_callers_share_one_opening() -> None:
    backend = FakeBackend()
    backend.gate = asyncio.Event()
    connector = make(backend)
    waiters = [asyncio.create_task(connector.get()) for _ in range(5)]
    await asyncio.sleep(0)
    backend.gate.set()
    pools = await asyncio.gather(*waiters)
    assert len(backend.opened) == 1 and all(pool is backend.opened[0] for pool in pools)
    assert await connector.get() is backend.opened[0]
    await connector.close()


async def test_a_caller_giving_up_does_not_abort_the_opening() -> None:
    backend = FakeBackend()
    backend.gate = asyncio.Event()
    connector = make(backend)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await connector.get()
    backend.gate.set()
    pool = await connector.get()
    assert backend.cancelled == 0 and backend.opened == [pool]
    await connector.close()
    assert pool.closed


async def test_a_failed_opening_is_retried_by_the_next_call() -> None:
    backend = FakeBackend()
    backend.fail_with = Broken("refused")
    connector = make(backend)
    with pytest.raises(Broken):
        await connector.get()
    backend.fail_with = None
    assert await connector.get() is backend.opened[0]
    await connector.close()


async def test_an_opening_that_hangs_is_bounded_by_the_timeout() -> None:
    backend = FakeBackend()
    backend.gate = asyncio.Event()  # never set
    connector = make(backend, timeout=0.01)
    with pytest.raises(TimeoutError):
        await connector.get()
    assert backend.cancelled == 1 and connector.current is None


async def test_warm_up_does_not_wait_and_reports_a_backend_that_is_down(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend()
    backend.fail_with = Broken("refused")
    connector = make(backend)
    with caplog.at_level(logging.WARNING, logger="refapi"):
        connector.warm_up()
        assert connector.current is None  # returned before the opening finished
        with pytest.raises(Broken):
            await connector.get()
    assert [r.getMessage() for r in caplog.records] == [
        "postgres is unavailable at startup (Broken); connecting on first use"
    ]


async def test_rotated_credentials_rebuild_the_pool_and_retry_once() -> None:
    backend = FakeBackend(accepted="new")
    vault = Vault()
    connector = make(backend, vault)
    old = await connector.get()

    vault.secret = {"password": "new"}
    assert await connector.run(backend.query) == "ok"

    new = connector.current
    assert new is not None and new is not old and new.password == "new"
    await connector.close()
    assert old.closed and new.closed


async def test_rejection_without_new_credentials_is_raised_without_retry() -> None:
    backend = FakeBackend(accepted="something else")
    vault = Vault()
    connector = make(backend, vault)
    with pytest.raises(Rejected):
        await connector.run(backend.query)
    assert len(backend.opened) == 1 and vault.reads == 1
    await connector.close()


async def test_other_failures_do_not_touch_the_credentials() -> None:
    backend = FakeBackend()
    vault = Vault()
    connector = make(backend, vault)

    async def failing(pool: FakePool) -> str:
        raise Broken("server error")

    with pytest.raises(Broken):
        await connector.run(failing)
    assert vault.reads == 0 and len(backend.opened) == 1
    await connector.close()


async def test_close_cancels_an_opening_in_progress() -> None:
    backend = FakeBackend()
    backend.gate = asyncio.Event()
    connector = make(backend)
    connector.warm_up()
    await asyncio.sleep(0)
    await connector.close()
    assert backend.cancelled == 1 and backend.opened == [] and connector.current is None
