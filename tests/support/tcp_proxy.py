"""Fault-injecting TCP proxy, run on its own thread, for tests that need a backend to fail on cue."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

Mode = Literal["pass", "refuse", "blackhole", "delay"]

_CHUNK_SIZE = 64 * 1024
# Bounds for handing work to the proxy thread; generous because a loaded CI machine can be slow to
# schedule a thread, and only a wedged proxy would ever reach them.
_START_TIMEOUT = 10.0
_CONTROL_TIMEOUT = 10.0
# SO_LINGER on with a zero timeout makes close() send RST instead of FIN: the peer sees a reset.
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class _Setting:
    """Mode and delay swapped as one object, so a reader never sees a half-applied change."""

    mode: Mode
    delay: float = 0.0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop a connection so that the peer sees a reset rather than an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.fileno() != -1:
        # The peer may already be gone, in which case there is nothing left to reset.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class _Connection:
    """A client connection, its upstream twin once connected, and the task serving them."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)

    async def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()


class TcpProxy:
    """Forward TCP from ``host:port`` to a target, refusing, black-holing, delaying or cutting on demand.

    The proxy runs an asyncio loop on a daemon thread, so it works the same whether the test drives
    it from plain code or from its own event loop. Every control is thread-safe. Mode changes apply
    to the next chunk read on existing connections and to every connection accepted afterwards
    (a client whose handshake the kernel completed before the change, but that the proxy had not
    picked up yet, counts as new: to be sure a connection is established, exchange data first);
    ``cut()`` and ``stop()`` return once the proxy thread has carried them out, which takes no I/O
    wait (connections are aborted, never drained), so calling them from an event loop is brief.

    A stopped proxy can be started again and listens on the same port, which lets a test bring a
    "backend" back at the address the service already knows.
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._target_host = target_host
        self._target_port = target_port
        self._host = host
        self._port = port
        self._setting = _Setting("pass")
        self._connections_total = 0
        self._upstream_connections_total = 0
        self._connections: set[_Connection] = set()
        # Guards the handover of the loop between the proxy thread and callers on other threads.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        # Replaced on every mode change after being set, so a chunk waiting out a delay wakes up
        # and re-reads the mode instead of finishing an outdated delay.
        self._mode_changed: asyncio.Event | None = None

    def __repr__(self) -> str:
        return (
            f"<TcpProxy {self._host}:{self._port} -> {self._target_host}:{self._target_port}"
            f" mode={self.mode} open={self.open_connections}>"
        )

    # -- observable state ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Address clients connect to."""
        return self._host

    @property
    def port(self) -> int:
        """Port clients connect to; the ephemeral port chosen by the OS once started with ``port=0``."""
        return self._port

    @property
    def mode(self) -> Mode:
        """Current mode: ``"pass"``, ``"refuse"``, ``"blackhole"`` or ``"delay"``."""
        return self._setting.mode

    @property
    def connections_total(self) -> int:
        """Client connections accepted so far, including refused ones (they are accepted, then reset)."""
        return self._connections_total

    @property
    def upstream_connections_total(self) -> int:
        """Connections the proxy opened to the target: what the backend actually saw."""
        return self._upstream_connections_total

    @property
    def open_connections(self) -> int:
        """Client connections currently held open, black-holed ones included."""
        return len(self._connections)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start listening on a daemon thread; returns once the socket accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"{self!r} is already running")
        ready = threading.Event()
        failure: list[Exception] = []
        thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready, failure)),
            name=f"TcpProxy->{self._target_host}:{self._target_port}",
            daemon=True,
        )
        thread.start()
        if not ready.wait(_START_TIMEOUT):
            raise RuntimeError(f"{self!r} did not start listening within {_START_TIMEOUT} s")
        if failure:
            thread.join(_CONTROL_TIMEOUT)
            raise failure[0]
        self._thread = thread
        return self

    def stop(self) -> None:
        """Reset every connection, close the listening socket and end the thread. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            if self._loop is not None and self._stop_requested is not None:
                self._loop.call_soon_threadsafe(self._stop_requested.set)
        thread.join(_CONTROL_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{self!r} did not stop within {_CONTROL_TIMEOUT} s")
        self._thread = None

    def __enter__(self) -> Self:
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- controls --------------------------------------------------------------------------------

    def passthrough(self) -> None:
        """Forward traffic normally (the initial mode)."""
        self._apply(_Setting("pass"))

    def refuse(self) -> None:
        """Reset new connections as soon as they are accepted; existing ones keep forwarding."""
        self._apply(_Setting("refuse"))

    def blackhole(self) -> None:
        """Accept new connections but never connect upstream nor answer; swallow data on existing ones.

        Connections accepted in this mode stay silent for good, even after a switch back to
        ``passthrough()``; they last until the client resets them, ``cut()`` or ``stop()``.
        """
        self._apply(_Setting("blackhole"))

    def delay(self, seconds: float) -> None:
        """Hold every chunk, in both directions, for ``seconds`` before forwarding it."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {seconds!r}")
        self._apply(_Setting("delay", seconds))

    def cut(self) -> None:
        """Reset every open connection on both sides now; keep listening in the current mode."""
        self._call(self._cut_all)

    # -- plumbing between threads ----------------------------------------------------------------

    def _apply(self, setting: _Setting) -> None:
        self._setting = setting
        with self._lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._announce_mode_change)

    def _call(self, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``action`` on the proxy loop and wait for it; a no-op while the proxy is stopped."""
        with self._lock:
            if self._loop is None:
                return
            future = asyncio.run_coroutine_threadsafe(action(), self._loop)
        future.result(_CONTROL_TIMEOUT)

    # -- everything below runs on the proxy thread ------------------------------------------------

    async def _serve(self, ready: threading.Event, failure: list[Exception]) -> None:
        stop_requested = asyncio.Event()
        try:
            server = await asyncio.start_server(self._accept, self._host, self._port)
            self._port = server.sockets[0].getsockname()[1]
        except Exception as exc:  # any startup error: start() re-raises it on the caller's thread
            failure.append(exc)
            return
        finally:
            # Set before waking start() so a control issued right after start() reaches this loop.
            if not failure:
                with self._lock:
                    self._loop = asyncio.get_running_loop()
                    self._stop_requested = stop_requested
                    self._mode_changed = asyncio.Event()
            ready.set()
        try:
            await stop_requested.wait()
        finally:
            with self._lock:
                self._loop = None
            server.close()
            # Connections the listener accepted in its last moments register while we cut.
            while self._connections:
                await self._cut_all()
            await server.wait_closed()

    def _announce_mode_change(self) -> None:
        assert self._mode_changed is not None
        changed, self._mode_changed = self._mode_changed, asyncio.Event()
        changed.set()

    async def _cut_all(self) -> None:
        tasks = []
        for connection in list(self._connections):
            connection.reset()
            # Deregister here too: a task cancelled before its first step never runs its finally.
            self._connections.discard(connection)
            if connection.task is not None:
                connection.task.cancel()
                tasks.append(connection.task)
        await asyncio.gather(*tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Connection callback, kept synchronous so that every connection is registered before any
        await (nothing slips past cut() or stop()) and the serving task is ours to cancel: a task
        that asyncio's streams create is reported as an error when cancelled on Python 3.11."""
        self._connections_total += 1
        if self._setting.mode == "refuse":
            _reset(writer)
            return
        connection = _Connection(writer)
        self._connections.add(connection)
        connection.task = asyncio.create_task(self._handle(connection, reader))

    async def _handle(self, connection: _Connection, reader: asyncio.StreamReader) -> None:
        orderly = False
        try:
            orderly = await self._relay(connection, reader)
        except OSError:
            # Upstream refused or vanished: pass that on as a reset, like a dead backend would.
            pass
        finally:
            try:
                if orderly:
                    await connection.close()
            finally:
                # A no-op after an orderly close; otherwise (error, cut, stop) the peers see a reset.
                connection.reset()
                self._connections.discard(connection)

    async def _relay(self, connection: _Connection, client_reader: asyncio.StreamReader) -> bool:
        """Serve one connection; True when both sides finished with an orderly close."""
        if self._setting.mode == "blackhole":
            await self._swallow(client_reader)
            return False
        upstream_reader, upstream_writer = await asyncio.open_connection(self._target_host, self._target_port)
        connection.upstream = upstream_writer
        self._upstream_connections_total += 1
        orderly = True
        try:
            async with asyncio.TaskGroup() as pumps:
                pumps.create_task(self._pump(client_reader, upstream_writer))
                pumps.create_task(self._pump(upstream_reader, connection.client))
        except* OSError:
            # One side reset or broke the pipe; the caller resets the other side to match.
            orderly = False
        return orderly

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        """Read and discard until the client goes, then stay silent until cut or stopped."""
        while await reader.read(_CHUNK_SIZE):
            pass
        # A black hole does not answer a FIN either, so hold the socket instead of closing it.
        await asyncio.get_running_loop().create_future()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while chunk := await source.read(_CHUNK_SIZE):
            if await self._admit(received_at=loop.time()):
                sink.write(chunk)
                await sink.drain()
        # Relay the half-close so request/response protocols that rely on it keep working.
        if self._setting.mode != "blackhole" and sink.can_write_eof():
            sink.write_eof()

    async def _admit(self, received_at: float) -> bool:
        """Wait out the delay owed by a chunk; False when the chunk must be swallowed."""
        loop = asyncio.get_running_loop()
        while True:
            # Take the event before reading the mode: a change in between then still wakes us.
            changed = self._mode_changed
            setting = self._setting
            if setting.mode == "blackhole":
                return False
            if setting.mode != "delay":
                return True
            remaining = received_at + setting.delay - loop.time()
            if remaining <= 0:
                return True
            assert changed is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
