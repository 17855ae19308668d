"""Running refapi (and other servers) as real subprocesses for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now and never returned before by this process: the kernel may offer the same
    free port twice in a row, and two listeners of one test (HTTP and HTTPS) would then collide."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for_port(
    port: int, *, host: str = "127.0.0.1", timeout: float = 30.0, process: subprocess.Popen | None = None
) -> None:
    """Poll until something accepts on host:port (bounded), failing early if `process` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling interval, not synchronisation: the loop is bounded by the deadline
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@contextmanager
def gunicorn(env: Mapping[str, str], *, port: int | None = None, log_path: Path | None = None) -> Iterator[int]:
    """Run `gunicorn -c conf/gunicorn.conf.py` with `env` on top of os.environ; yields the HTTP port."""
    port = port or free_port()
    full_env = {**os.environ, "API_FIRST_HTTP_PORT": str(port), "BIND_HOST": "127.0.0.1", **env}
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(REPO / "conf" / "gunicorn.conf.py")],
        cwd=REPO,
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process=process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            out.close()  # type: ignore[union-attr]
