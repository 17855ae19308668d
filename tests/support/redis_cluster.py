"""Throwaway three-master Redis Cluster for tests, run through bin/dev-services so the script is exercised."""

from __future__ import annotations

import random
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

DEV_SERVICES = Path(__file__).resolve().parents[2] / "bin" / "dev-services"
HOST = "127.0.0.1"
NODES = 3
# Redis listens for the cluster bus on the client port + 10000.
BUS_PORT_OFFSET = 10_000
# bin/dev-services exits with this when a port was taken between our check and redis-server's bind.
_EX_PORT_BUSY = 75
_ATTEMPTS = 5
# Covers the script's own waits (90 s each) with room to spare; reached only when something hangs.
_SCRIPT_TIMEOUT = 300.0
# Base ports come from below Linux's ephemeral range (32768 up), so client sockets the kernel
# hands out cannot take a cluster or bus port between the check and the bind.
_LOWEST_BASE = 11_000
_HIGHEST_BASE = 32_767 - BUS_PORT_OFFSET - NODES


def start_cluster(base_port: int | None = None) -> list[tuple[str, int]]:
    """Start (or reuse, if already running) a cluster and return its nodes as ``(host, port)``.

    With ``base_port=None`` it picks three consecutive free ports whose bus ports are free too,
    retrying elsewhere if another process wins a race for one. Blocking: call it from a sync
    fixture, or through ``asyncio.to_thread`` from async code.
    """
    if base_port is not None:
        _dev_services("start", base_port)
        return _nodes(base_port)
    rng = random.Random()
    for _ in range(_ATTEMPTS):
        base = _free_base_port(rng)
        if _dev_services("start", base, busy_ok=True):
            return _nodes(base)
    raise RuntimeError(f"no free ports for a Redis Cluster after {_ATTEMPTS} attempts")


def stop_cluster(nodes: Sequence[tuple[str, int]]) -> None:
    """Shut down a cluster returned by :func:`start_cluster` and delete its data dir."""
    _dev_services("stop", min(port for _, port in nodes))


def _nodes(base_port: int) -> list[tuple[str, int]]:
    return [(HOST, base_port + offset) for offset in range(NODES)]


def _dev_services(command: str, base_port: int, *, busy_ok: bool = False) -> bool:
    """Run ``bin/dev-services redis-cluster COMMAND``; False when busy_ok and a port was taken."""
    result = subprocess.run(
        [str(DEV_SERVICES), "redis-cluster", command, "--base-port", str(base_port)],
        capture_output=True,
        text=True,
        timeout=_SCRIPT_TIMEOUT,
        check=False,
    )
    if result.returncode == 0:
        return True
    if busy_ok and result.returncode == _EX_PORT_BUSY:
        return False
    raise RuntimeError(
        f"bin/dev-services redis-cluster {command} --base-port {base_port} exited {result.returncode}:\n"
        f"{result.stdout}{result.stderr}"
    )


def _free_base_port(rng: random.Random) -> int:
    """A base port whose cluster ports and bus ports can all be bound right now."""
    # A random start spreads concurrent test runs apart; the scan then finds a gap near it.
    start = rng.randint(_LOWEST_BASE, _HIGHEST_BASE)
    span = _HIGHEST_BASE - _LOWEST_BASE + 1
    for step in range(0, span, NODES):
        base = _LOWEST_BASE + (start - _LOWEST_BASE + step) % span
        ports = [base + offset for offset in range(NODES)]
        if all(_bindable(port) and _bindable(port + BUS_PORT_OFFSET) for port in ports):
            return base
    raise RuntimeError("no free port range for a Redis Cluster")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Same option as redis-server, so a port in TIME_WAIT counts as free, as it is for Redis.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True
