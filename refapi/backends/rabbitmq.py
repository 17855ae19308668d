"""RabbitMQ backend: one robust AMQP connection per worker, a channel per operation, the management HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aio_pika.connection import make_url
from aio_pika.exceptions import (
    AMQPError,
    AuthenticationError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    ProbableAuthenticationError,
)
from aiohttp import ClientConnectionError, ClientError, ClientSession, encode_basic_auth, web
from aiormq.exceptions import ConnectionNotAllowed
from yarl import URL

from refapi import errors, keys
from refapi.api.health import register_check
from refapi.backends.credentials import CredentialStore
from refapi.config import Settings
from refapi.resilience.guard import Guard, make_guard

log = logging.getLogger("refapi.rabbitmq")

SERVICE = "rabbitmq"
JSON_TYPE = "application/json"
# Pause between reconnection attempts while the broker is away: how soon a returning broker is used again.
RECONNECT_INTERVAL = 2.0
# The broker answers a wrong user/password (ACCESS_REFUSED during the handshake: "probable" to aiormq) or a
# vhost the user may not use (NOT_ALLOWED) by closing the connection.
AUTH_ERRORS = (AuthenticationError, ProbableAuthenticationError, ConnectionNotAllowed)
MANAGEMENT_COLUMNS = "name,messages,consumers,durable"


class BrokerDown(ConnectionError):
    """The robust connection is between reconnection attempts: answer now instead of waiting for it."""


@dataclass(frozen=True)
class QueueInfo:
    exists: bool
    message_count: int | None
    consumer_count: int | None


@dataclass(frozen=True)
class ReceivedMessage:
    body: Any
    content_type: str | None
    message_id: str | None
    timestamp: str | None
    redelivered: bool


@dataclass(frozen=True)
class QueueSummary:
    name: str
    messages: int
    consumers: int
    durable: bool


def classify(exc: BaseException) -> str | None:
    """Map a driver exception that escaped an operation to the 503 reason (None: not a backend failure)."""
    if isinstance(exc, AUTH_ERRORS):
        return "auth_failed"
    # ChannelInvalidStateError is what a channel reports once the connection under it has gone.
    if isinstance(exc, (ConnectionError, OSError, ChannelInvalidStateError, ClientConnectionError)):
        return "unreachable"
    if isinstance(exc, (AMQPError, ClientError)):
        return "error"
    return None


class RabbitMQ:
    """The worker's broker access: every public coroutine is one API operation, run through the guard."""

    def __init__(self, settings: Settings, credentials: CredentialStore, guard: Guard, http: ClientSession) -> None:
        self._settings = settings
        self._credentials = credentials
        self._guard = guard
        self._http = http
        self._connection: aio_pika.RobustConnection | None = None
        self._connect_lock = asyncio.Lock()
        self._credential_check: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect once, bounded; a broker that is down only costs a warning (the next use connects)."""
        try:
            async with asyncio.timeout(self._settings.backend_timeout):
                await self._connected()
        except Exception as exc:  # any failure here only means "connect on first use"
            log.warning("RabbitMQ is not available at startup (%s); connecting on first use", type(exc).__name__)

    async def close(self) -> None:
        if self._credential_check is not None:
            self._credential_check.cancel()
            await asyncio.gather(self._credential_check, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    # -- API operations ---------------------------------------------------------------------------------

    async def publish(self, queue: str, body: bytes) -> None:
        """Declare `queue` durable and publish `body` (JSON) persistently; returns once the broker confirmed."""

        async def run() -> None:
            # Confirms make the broker answer only once it owns the message (persisted, for a durable queue);
            # on_return_raises turns a message it could not route into an error instead of a silent loss.
            async with self._channel(confirms=True) as channel:
                try:
                    await channel.declare_queue(queue, durable=True)
                except ChannelPreconditionFailed:
                    raise errors.Conflict(
                        "Queue already exists with different properties", reason="queue_properties"
                    ) from None
                message = aio_pika.Message(
                    body,
                    content_type=JSON_TYPE,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(uuid.uuid4()),
                    timestamp=datetime.now(UTC),
                )
                await channel.default_exchange.publish(message, routing_key=queue)

        await self._guard.call("publish", run)

    async def queue_info(self, queue: str) -> QueueInfo:
        """Fresh counts from a passive declare; a missing queue is an answer, not an error."""

        async def run() -> QueueInfo:
            async with self._channel() as channel:
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                except ChannelNotFoundEntity:
                    return QueueInfo(exists=False, message_count=None, consumer_count=None)
                result = declared.declaration_result
                return QueueInfo(exists=True, message_count=result.message_count, consumer_count=result.consumer_count)

        return await self._guard.call("queue_info", run)

    async def consume(self, queue: str, max_messages: int) -> list[ReceivedMessage]:
        """Take up to `max_messages`, one basic.get at a time, each acked once read; never creates the queue."""

        async def run() -> list[ReceivedMessage]:
            async with self._channel() as channel:
                try:
                    source = await channel.declare_queue(queue, passive=True)
                except ChannelNotFoundEntity:
                    raise errors.NotFound("Queue not found", resource_type="queue", resource_id=queue) from None
                received: list[ReceivedMessage] = []
                while len(received) < max_messages:
                    # The guard bounds the whole operation; no second, shorter timeout per message.
                    message = await source.get(no_ack=False, fail=False, timeout=None)
                    if message is None:
                        break
                    received.append(_read(message))
                    await message.ack()
                return received

        return await self._guard.call("consume", run)

    async def list_queues(self) -> list[QueueSummary]:
        """The vhost's queues from the management HTTP API, sorted by name."""
        credentials = self._credentials.get(SERVICE)
        base = self._settings.rabbitmq_management_url.rstrip("/")
        # "/" (the default vhost) must travel as %2F: encode it ourselves and stop yarl from re-quoting.
        url = URL(f"{base}/api/queues/{quote(credentials['vhost'], safe='')}", encoded=True)

        async def run() -> list[QueueSummary]:
            async with self._http.get(
                url,
                params={"columns": MANAGEMENT_COLUMNS},
                headers={"Authorization": encode_basic_auth(credentials["user"], credentials["password"])},
            ) as response:
                if response.status == 401:
                    self._check_credentials()
                    raise errors.ServiceUnavailable(SERVICE, "auth_failed")
                if response.status != 200:
                    log.warning("RabbitMQ management API answered HTTP %d", response.status)
                    raise errors.ServiceUnavailable(SERVICE, "error")
                payload = await response.read()
            try:
                return _queue_summaries(orjson.loads(payload))
            except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
                log.warning("RabbitMQ management API sent an unexpected queue list")
                raise errors.ServiceUnavailable(SERVICE, "error") from None

        return await self._guard.call("queues", run)

    async def health(self) -> dict[str, Any]:
        """Open a channel on the vhost and close it; raising is how a check reports unhealthy."""
        async with self._channel():
            pass
        return {"status": "healthy"}

    # -- connection and channels ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _channel(self, *, confirms: bool = False) -> AsyncIterator[AbstractChannel]:
        """A plain (not robust) channel for one operation.

        Plain, because it fails at once while the connection is down, and a channel the broker closes on
        purpose (404 on a passive declare, 406 on a conflicting one) is not reopened behind our back; robust
        channels would also answer repeated passive declares from their cache instead of the broker.
        """
        connection = await self._connected()
        channel = aio_pika.Channel(connection, publisher_confirms=confirms, on_return_raises=confirms)
        await channel.initialize()
        try:
            yield channel
        finally:
            if not channel.is_closed:
                # The operation's outcome is already decided; a connection dying under the close must not
                # turn a success into an error.
                with contextlib.suppress(AMQPError, ConnectionError, ChannelInvalidStateError):
                    await channel.close()

    async def _connected(self) -> aio_pika.RobustConnection:
        connection = self._connection
        if connection is None:
            async with self._connect_lock:
                if self._connection is None:
                    self._connection = await self._connect()
                connection = self._connection
        if not connection.connected.is_set():
            self._check_credentials()
            raise BrokerDown("RabbitMQ connection is re-establishing")
        return connection

    async def _connect(self) -> aio_pika.RobustConnection:
        try:
            return await self._open()
        except AUTH_ERRORS:
            if not await self._credentials.refresh(SERVICE):
                raise
            log.info("RabbitMQ rejected the credentials; retrying with the ones re-read from Vault")
            return await self._open()

    async def _open(self) -> aio_pika.RobustConnection:
        """The first connection attempt is ours (it raises); after one success aio-pika reconnects by itself."""
        connection = aio_pika.RobustConnection(
            self._url(),
            reconnect_interval=RECONNECT_INTERVAL,
            client_properties={"connection_name": "refapi"},
        )
        try:
            await connection.connect(timeout=self._settings.backend_timeout)
        except BaseException:
            # Also on cancellation: the attempt runs in a task of the connection's own that would live on.
            await connection.close()
            raise
        log.info("connected to RabbitMQ")
        return connection

    def _url(self) -> URL:
        credentials = self._credentials.get(SERVICE)
        return make_url(
            host=self._settings.rabbitmq_host,
            port=self._settings.rabbitmq_port,
            login=credentials["user"],
            password=credentials["password"],
            virtualhost=credentials["vhost"],
        )

    def _check_credentials(self) -> None:
        """While the broker keeps us out, re-read the credentials in the background (rate-limited by the store).

        The robust connection retries with the URL it holds; if the credentials were rotated, the next
        attempt must use the new ones.
        """
        if self._credential_check is None or self._credential_check.done():
            self._credential_check = asyncio.create_task(self._refresh_credentials())

    async def _refresh_credentials(self) -> None:
        if await self._credentials.refresh(SERVICE) and self._connection is not None:
            log.info("RabbitMQ credentials changed in Vault; reconnecting with them")
            self._connection.url = self._url()


def _read(message: AbstractIncomingMessage) -> ReceivedMessage:
    return ReceivedMessage(
        body=_decode_body(message.body, message.content_type),
        content_type=message.content_type,
        message_id=message.message_id,
        timestamp=_rfc3339(message.timestamp),
        redelivered=bool(message.redelivered),
    )


def _decode_body(body: bytes, content_type: str | None) -> Any:
    """JSON when declared (or undeclared) and parseable; otherwise the text, undecodable bytes replaced."""
    media_type = content_type.split(";", 1)[0].strip().lower() if content_type else None
    if media_type in (None, JSON_TYPE):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return body.decode("utf-8", errors="replace")


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # AMQP timestamps carry no zone: they are UTC by convention.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _queue_summaries(payload: Any) -> list[QueueSummary]:
    queues = [
        QueueSummary(
            name=str(entry["name"]),
            messages=int(entry.get("messages") or 0),
            consumers=int(entry.get("consumers") or 0),
            durable=bool(entry.get("durable")),
        )
        for entry in payload
    ]
    return sorted(queues, key=lambda queue: queue.name)


def setup(app: web.Application) -> None:
    """Register the cleanup context, guard and health check of this backend."""
    guard = make_guard(app, SERVICE, classify)

    async def rabbitmq_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[keys.SETTINGS]
        # Until the Vault backend provides the store, credentials come from the environment/defaults.
        credentials = app.get(keys.CREDENTIALS) or CredentialStore(settings, None)
        rabbitmq = RabbitMQ(settings, credentials, guard, app[keys.HTTP_SESSION])
        await rabbitmq.start()
        app[keys.RABBITMQ] = rabbitmq
        try:
            yield
        finally:
            await rabbitmq.close()

    async def check() -> dict[str, Any]:
        return await app[keys.RABBITMQ].health()

    app.cleanup_ctx.append(rabbitmq_ctx)
    register_check(app, SERVICE, check)
