"""Shared by the database backends: the pool lifecycle (lazy open, credential rotation) and the record format."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypedDict, TypeVar

from aiohttp import web

from refapi import keys
from refapi.api.health import register_check
from refapi.backends.credentials import CredentialStore
from refapi.config import Settings
from refapi.resilience.guard import Classifier, Guard, make_guard

log = logging.getLogger("refapi.backends.database")

C = TypeVar("C")
T = TypeVar("T")

TABLE = "refapi_examples"
AUTH_FAILED = "auth_failed"

# Builds a ready client (pool connected, demo table present) from the service's credentials; cleans up after itself
# when it fails or is cancelled.
Opener = Callable[[Mapping[str, str]], Awaitable[C]]
Closer = Callable[[C], Awaitable[None]]


class Record(TypedDict):
    id: int | str
    name: str
    value: str
    created_at: str


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_created_at(moment: datetime) -> str:
    """RFC 3339 UTC with 6 fractional digits and a Z (contract §1.1); naive values are UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Connector(Generic[C]):
    """The one pool (or client) of a backend in this worker, built from the service's current credentials.

    Opening starts at startup without holding it up; if the backend is down, the first call that finds it back
    opens it. The opening runs as a task of its own that every caller shares: a caller giving up (its guard or
    the health check timing out) neither aborts the opening for the others nor leaves a half-built pool behind.
    When the backend rejects the credentials, they are re-read from Vault and, if they changed, the pool is
    rebuilt with them and the call retried once (contract §3.6).
    """

    def __init__(
        self,
        service: str,
        credentials: CredentialStore,
        *,
        opener: Opener[C],
        closer: Closer[C],
        classify: Classifier,
        timeout: float,
    ) -> None:
        self.service = service
        self._credentials = credentials
        self._opener = opener
        self._closer = closer
        self._classify = classify
        self._timeout = timeout
        self._current: C | None = None
        self._opening: asyncio.Task[C] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def current(self) -> C | None:
        """The open pool, if any (None while the backend has not been reached yet)."""
        return self._current

    def warm_up(self) -> None:
        """Start opening at startup, in the background: the app never waits for a backend to come up, and one
        that is down only earns a warning (the next call tries again)."""
        self._start_opening().add_done_callback(self._report_startup)

    async def get(self) -> C:
        if self._current is not None:
            return self._current
        return await asyncio.shield(self._start_opening())

    async def run(self, fn: Callable[[C], Awaitable[T]]) -> T:
        """`fn(client)`, retried once on a rebuilt client if the credentials were rejected and have changed."""
        client: C | None = None
        try:
            client = await self.get()
            return await fn(client)
        except Exception as exc:
            if self._classify(exc) != AUTH_FAILED or not await self._credentials.refresh(self.service):
                raise
        log.warning("%s rejected its credentials; reconnecting with the ones re-read from Vault", self.service)
        if client is not None and client is self._current:
            self._retire()
        return await fn(await self.get())

    async def close(self) -> None:
        """Shutdown: stop an opening in progress, close the pool and wait for rebuilt-away pools to close."""
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        self._retire()
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def _start_opening(self) -> asyncio.Task[C]:
        if self._opening is None:
            self._opening = asyncio.create_task(self._open(), name=f"open-{self.service}")
            # Mark the outcome as seen even if every waiter has given up by the time it fails.
            self._opening.add_done_callback(lambda task: task.cancelled() or task.exception())
        return self._opening

    def _report_startup(self, task: asyncio.Task[C]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("%s is unavailable at startup (%s); connecting on first use", self.service, type(exc).__name__)

    async def _open(self) -> C:
        try:
            async with asyncio.timeout(self._timeout):
                client = await self._opener(self._credentials.get(self.service))
        finally:
            self._opening = None
        self._current = client
        return client

    def _retire(self) -> None:
        # Closed in the background: calls still running on the old pool may finish; the closer bounds the wait.
        old, self._current = self._current, None
        if old is not None:
            task = asyncio.create_task(self._close_quietly(old), name=f"close-{self.service}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _close_quietly(self, client: C) -> None:
        try:
            await self._closer(client)
        except Exception as exc:  # the pool is gone either way; shutdown and rotation must go on
            log.warning("closing the %s pool failed (%s)", self.service, type(exc).__name__)


class PooledBackend(Generic[C]):
    """The lifecycle the three database facades share: one pool (or client) opened lazily behind a Connector.

    Subclasses name their service and classifier and say how to open and close the pool; every API call goes
    through the guard (breaker, BACKEND_TIMEOUT, metrics), health checks straight to the connector.
    """

    service: str
    label: str
    classify: Classifier

    def __init__(self, settings: Settings, credentials: CredentialStore, guard: Guard) -> None:
        self._settings = settings
        self._credentials = credentials
        self._guard = guard
        self.connector: Connector[C] = Connector(
            self.service,
            credentials,
            opener=self._open,
            closer=self._close,
            classify=type(self).classify,
            timeout=settings.backend_timeout,
        )

    def start(self) -> None:
        self.connector.warm_up()

    async def close(self) -> None:
        await self.connector.close()

    async def health(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _open(self, credentials: Mapping[str, str]) -> C:
        raise NotImplementedError

    async def _close(self, client: C) -> None:
        raise NotImplementedError


def register_database(
    app: web.Application,
    service: str,
    key: web.AppKey[Any],
    factory: type[PooledBackend[Any]],
    classify: Classifier,
) -> None:
    """A database backend's setup: its guard, its health check, and the cleanup context that owns its pool."""
    settings = app[keys.SETTINGS]
    guard = make_guard(app, service, classify)

    async def check() -> dict[str, Any]:
        backend: PooledBackend[Any] = app[key]  # before startup there is none: the check reports unhealthy
        return await backend.health()

    register_check(app, service, check)

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        # The Vault backend (set up first) provides the store; without it, the environment and defaults apply.
        credentials = app.get(keys.CREDENTIALS) or CredentialStore(settings, None)
        backend = factory(settings, credentials, guard)
        backend.start()
        app[key] = backend
        try:
            yield
        finally:
            await backend.close()

    app.cleanup_ctx.append(database_ctx)
