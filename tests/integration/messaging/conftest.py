"""Messaging test fixtures: the machine's RabbitMQ (management plugin on), unique queues, a direct AMQP link."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from refapi.app import build_app
from refapi.config import RedisNode, Settings
from tests.servers.mongo import MongoDouble
from tests.support.processes import free_port

AMQP = ("127.0.0.1", 5672)
MANAGEMENT = ("127.0.0.1", 15672)
# Enabling the management plugin restarts no broker but can take a while to bind its port on a busy machine.
MANAGEMENT_DEADLINE = 90.0
QUEUE_PREFIX = "refapi-test."

Client = TestClient[Any, web.Application]


def _listening(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def rabbitmq_with_management() -> None:
    """The queue list needs the management API: enable the plugin where it is off (bin/dev-services does too)."""
    if not _listening(AMQP):
        pytest.fail("RabbitMQ is not listening on 127.0.0.1:5672; run bin/dev-services ensure")
    if _listening(MANAGEMENT):
        return
    plugins = shutil.which("rabbitmq-plugins")
    if plugins is None:
        pytest.fail("the RabbitMQ management API is off and rabbitmq-plugins is not installed")
    subprocess.run([plugins, "enable", "rabbitmq_management"], check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + MANAGEMENT_DEADLINE
    while not _listening(MANAGEMENT):
        if time.monotonic() > deadline:
            pytest.fail("the RabbitMQ management API did not start listening on 127.0.0.1:15672")
        time.sleep(0.2)  # polling interval, bounded by the deadline


@pytest.fixture(scope="session")
def mongo_double() -> Iterator[MongoDouble]:
    """pymongo retries an absent server in the background and a retry cut short at shutdown leaks its socket
    (a ResourceWarning in whichever test collects it): give it a server."""
    double = MongoDouble().start()
    yield double
    double.stop()


@pytest.fixture(scope="module")
def settings(mongo_double: MongoDouble) -> Settings:
    """The machine's broker and management API; the other backends fail fast at a closed port (MongoDB talks to
    its double) and stay out of the way. Rate limiting and the response cache (Redis, shared with other test
    runs) are off."""
    closed = free_port()
    return Settings(
        rabbitmq_host=AMQP[0],
        rabbitmq_port=AMQP[1],
        rabbitmq_management_url=f"http://{MANAGEMENT[0]}:{MANAGEMENT[1]}",
        rate_limit_enabled=False,
        response_cache_enabled=False,
        vault_addr=f"http://127.0.0.1:{closed}",
        postgres_host="127.0.0.1",
        postgres_port=closed,
        mysql_host="127.0.0.1",
        mysql_port=closed,
        mongodb_host="127.0.0.1",
        mongodb_port=mongo_double.port,
        redis_host="127.0.0.1",
        redis_port=closed,
        redis_nodes=(RedisNode("redis-1", "127.0.0.1", closed),),
    )


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Client]:
    """refapi built from `settings`, started (cleanup contexts included) and served on loopback."""
    async with TestClient(TestServer(build_app(settings))) as client:
        yield client


# One app per module is enough: tests use their own queues.
# Tests and fixtures share the module's event loop (pytestmark = pytest.mark.asyncio(loop_scope="module")).
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with serve(settings) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="module")
async def broker() -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    """A direct connection for arranging and inspecting broker state behind refapi's back."""
    connection = await aio_pika.connect(host=AMQP[0], port=AMQP[1], timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


@pytest_asyncio.fixture(loop_scope="module")
async def queue(broker: aio_pika.abc.AbstractConnection) -> AsyncIterator[str]:
    """A fresh queue name, deleted (with whatever the test left in it) afterwards."""
    name = f"{QUEUE_PREFIX}{uuid.uuid4().hex}"
    yield name
    async with broker.channel() as channel:
        await channel.queue_delete(name)
