"""Tests for the test helpers: the fault proxy against an echo server, and the local Redis Cluster."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .redis_cluster import DEV_SERVICES, start_cluster, stop_cluster
from .tcp_proxy import TcpProxy

HOST = "127.0.0.1"
# Upper bound for things that must happen; only a bug makes a test wait this long.
DEADLINE = 5.0
# How long a read must stay unanswered to count as "nothing arrives" for blackhole and delay.
SILENCE = 0.3

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class EchoServer:
    """Echoes every byte back, closes after the client's EOF, and records what happened to it."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.resets = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        # Aborting ends each handler's read with EOF; cancelling the tasks asyncio created for
        # them would be logged as an error on Python 3.11.
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.accepted += 1
        self.open += 1
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionResetError:
            self.resets += 1
        finally:
            self.open -= 1
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(task)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition set by another thread or task, failing after DEADLINE."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def connect(proxy: TcpProxy) -> AsyncIterator[Stream]:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def roundtrip(stream: Stream, payload: bytes) -> bytes:
    reader, writer = stream
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), DEADLINE)


async def assert_reset(reader: asyncio.StreamReader) -> None:
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), DEADLINE)


async def assert_reset_when_connecting(proxy: TcpProxy) -> None:
    """The proxy resets a new connection; the RST may even beat the client's own connect call."""
    try:
        stream = await asyncio.open_connection(proxy.host, proxy.port)
    except ConnectionResetError:
        return
    reader, writer = stream
    try:
        await assert_reset(reader)
    finally:
        writer.close()


async def assert_silent(reader: asyncio.StreamReader, size: int = 1) -> None:
    # Cancelling readexactly() leaves any bytes in the buffer, so a later read still sees them.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(size), SILENCE)


def unused_port() -> int:
    """A port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy(HOST, echo.port) as running:
        yield running


# --- TcpProxy ---------------------------------------------------------------------------------


async def test_passthrough_forwards_and_counts(proxy: TcpProxy, echo: EchoServer) -> None:
    assert proxy.mode == "pass"
    assert proxy.port != 0
    async with connect(proxy) as stream:
        assert await roundtrip(stream, b"ping") == b"ping"
        assert await roundtrip(stream, b"pong" * 50_000) == b"pong" * 50_000
        assert (proxy.connections_total, proxy.upstream_connections_total) == (1, 1)
        assert proxy.open_connections == 1
        assert echo.accepted == 1
    await eventually(lambda: proxy.open_connections == 0 and echo.open == 0, "both sides to close")
    assert echo.resets == 0


async def test_half_close_is_relayed(proxy: TcpProxy) -> None:
    async with connect(proxy) as (reader, writer):
        writer.write(b"last words")
        writer.write_eof()
        # The echo server answers, sees EOF and closes; read() returns only once that EOF got through.
        assert await asyncio.wait_for(reader.read(), DEADLINE) == b"last words"


async def test_refuse_resets_new_connections_only(proxy: TcpProxy, echo: EchoServer) -> None:
    async with connect(proxy) as before:
        # A completed TCP handshake is not yet an accepted connection; a roundtrip proves it is.
        assert await roundtrip(before, b"hi") == b"hi"
        proxy.refuse()
        assert proxy.mode == "refuse"
        await assert_reset_when_connecting(proxy)
        assert await roundtrip(before, b"still here") == b"still here"
    assert proxy.connections_total == 2
    assert proxy.upstream_connections_total == 1
    assert echo.accepted == 1

    proxy.passthrough()
    async with connect(proxy) as stream:
        assert await roundtrip(stream, b"back") == b"back"


async def test_blackhole_accepts_but_never_answers_new_connections(proxy: TcpProxy, echo: EchoServer) -> None:
    proxy.blackhole()
    assert proxy.mode == "blackhole"
    async with connect(proxy) as (reader, writer):
        writer.write(b"hello?")
        await assert_silent(reader)
        await eventually(lambda: proxy.connections_total == 1, "the proxy to accept")
        # Leaving blackhole mode does not revive a connection that was black-holed from the start.
        proxy.passthrough()
        writer.write(b"anyone?")
        await assert_silent(reader)
    assert proxy.upstream_connections_total == 0
    assert echo.accepted == 0
    # The client is gone, but a black hole sends no FIN back: the proxy holds the socket until cut.
    assert proxy.open_connections == 1
    proxy.cut()
    assert proxy.open_connections == 0


async def test_blackhole_swallows_data_on_existing_connections(proxy: TcpProxy, echo: EchoServer) -> None:
    async with connect(proxy) as stream:
        assert await roundtrip(stream, b"one") == b"one"
        proxy.blackhole()
        stream[1].write(b"lost")
        await assert_silent(stream[0])
        proxy.passthrough()
        # Were "lost" only delayed, it would arrive first; swallowed, the next bytes are "next".
        assert await roundtrip(stream, b"next") == b"next"
    assert proxy.upstream_connections_total == 1


async def test_delay_holds_chunks_until_due_or_mode_change(proxy: TcpProxy) -> None:
    with pytest.raises(ValueError, match="delay"):
        proxy.delay(-1)
    async with connect(proxy) as (reader, writer):
        proxy.delay(60)
        assert proxy.mode == "delay"
        writer.write(b"slow")
        await assert_silent(reader, 4)
        # The held chunk is not lost: switching back releases it without waiting out the minute.
        proxy.passthrough()
        assert await asyncio.wait_for(reader.readexactly(4), DEADLINE) == b"slow"

        proxy.delay(0.02)
        for part in (b"a", b"b", b"c"):
            writer.write(part)
            await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(3), DEADLINE) == b"abc"


async def test_cut_resets_both_sides_and_keeps_listening(proxy: TcpProxy, echo: EchoServer) -> None:
    async with connect(proxy) as first, connect(proxy) as second:
        assert await roundtrip(first, b"1") == b"1"
        assert await roundtrip(second, b"2") == b"2"
        # Controls are thread-safe; from async code a worker thread keeps this loop free meanwhile.
        await asyncio.to_thread(proxy.cut)
        assert proxy.open_connections == 0
        await assert_reset(first[0])
        await assert_reset(second[0])
    await eventually(lambda: echo.open == 0, "the backend to see its connections drop")
    assert echo.resets == 2
    assert proxy.mode == "pass"
    async with connect(proxy) as stream:
        assert await roundtrip(stream, b"again") == b"again"
    assert (proxy.connections_total, proxy.upstream_connections_total) == (3, 3)


async def test_unreachable_target_resets_the_client() -> None:
    with TcpProxy(HOST, unused_port()) as proxy:
        await assert_reset_when_connecting(proxy)
        assert (proxy.connections_total, proxy.upstream_connections_total) == (1, 0)


async def test_stop_closes_the_listener_and_start_reuses_the_port(echo: EchoServer) -> None:
    proxy = TcpProxy(HOST, echo.port).start()
    port = proxy.port
    proxy.stop()
    proxy.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(HOST, port)
    with proxy.start():
        assert proxy.port == port
        async with connect(proxy) as stream:
            assert await roundtrip(stream, b"revived") == b"revived"


def test_start_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        proxy = TcpProxy(HOST, 9, port=taken.getsockname()[1])
        with pytest.raises(OSError):
            proxy.start()
        proxy.stop()


# --- Redis Cluster ----------------------------------------------------------------------------


def keys_for_every_slot() -> list[str]:
    """One key per hash slot, in slot order."""
    by_slot: dict[int, str] = {}
    candidate = 0
    while len(by_slot) < REDIS_CLUSTER_HASH_SLOTS:
        key = f"slot-probe:{candidate}"
        by_slot.setdefault(key_slot(key.encode()), key)
        candidate += 1
    return [by_slot[slot] for slot in range(REDIS_CLUSTER_HASH_SLOTS)]


def cluster_status(base_port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEV_SERVICES), "redis-cluster", "status", "--base-port", str(base_port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[tuple[str, int]]]:
    nodes = start_cluster()
    yield nodes
    stop_cluster(nodes)


async def test_cluster_has_three_masters_that_serve_every_slot(cluster: list[tuple[str, int]]) -> None:
    host, port = cluster[0]
    client = RedisCluster(host=host, port=port)
    try:
        await client.initialize()
        primaries = client.get_primaries()
        assert sorted((node.host, node.port) for node in primaries) == cluster
        keys = keys_for_every_slot()
        pipe = client.pipeline()
        for key in keys:
            pipe.set(key, key)
        assert all(await pipe.execute())
        assert await client.mget_nonatomic(keys) == [key.encode() for key in keys]
        sizes = [await client.execute_command("DBSIZE", target_nodes=node) for node in primaries]
        assert sum(sizes) == REDIS_CLUSTER_HASH_SLOTS
        assert all(size > 0 for size in sizes)
    finally:
        await client.aclose()


def test_cluster_start_is_idempotent_and_stop_cleans_up() -> None:
    nodes = start_cluster()
    base_port = nodes[0][1]
    try:
        status = cluster_status(base_port)
        assert status.returncode == 0, status.stdout + status.stderr
        data_dir = Path(status.stdout.rsplit("dir: ", 1)[1].strip())
        assert data_dir.is_dir()
        again = subprocess.run(
            [str(DEV_SERVICES), "redis-cluster", "start", "--base-port", str(base_port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout
        assert start_cluster(base_port) == nodes
    finally:
        stop_cluster(nodes)
    for host, port in nodes:
        with pytest.raises(ConnectionRefusedError), socket.create_connection((host, port), timeout=DEADLINE):
            pass
    assert not data_dir.exists()
    assert cluster_status(base_port).returncode == 3
