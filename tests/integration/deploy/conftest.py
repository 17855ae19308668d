"""Fixtures for the deployment tests: the Vault double's PKI, a gunicorn-run refapi, and real nginx in front of it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.vault import VaultDouble
from tests.support.processes import REPO, free_port, gunicorn, wait_for_port

# The app's body limit in these tests, and nginx's: deliberately different, so one body size reaches the app's
# check (over APP_LIMIT, under NGINX_LIMIT) and another is stopped by nginx (over NGINX_LIMIT).
APP_LIMIT = 64 * 1024
NGINX_LIMIT = 1024 * 1024


def require(condition: bool, reason: str) -> None:
    """Skip locally when a prerequisite is missing; in CI (bin/install --test provides it) fail instead."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def issue_cert(vault: VaultDouble, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.root_token}
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "issue-cert"), "--out", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def nginx_command(prefix: Path, conf: Path) -> list[str]:
    """nginx confined to `prefix`: its error log from the first line on, its pid file, in the foreground."""
    return [
        "nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log"),
        "-g", f"daemon off; pid {prefix / 'nginx.pid'};",
    ]  # fmt: skip


@dataclass(frozen=True)
class Nginx:
    """A running test nginx: its ports, its files, and the command line that addresses its master."""

    http_port: int
    https_port: int
    prefix: Path
    conf: Path
    process: subprocess.Popen[bytes]

    @property
    def command(self) -> list[str]:
        return nginx_command(self.prefix, self.conf)

    def master_pid(self) -> int:
        return int((self.prefix / "nginx.pid").read_text())

    def access_lines(self) -> list[dict[str, object]]:
        text = (self.prefix / "logs" / "access.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line]


@contextmanager
def run_nginx(upstream_port: int, tls_dir: Path, *, max_request_size: int = NGINX_LIMIT) -> Iterator[Nginx]:
    """Render conf/nginx.conf for a private directory and free ports, and run nginx in the foreground."""
    require(shutil.which("nginx") is not None, "nginx is not installed (Debian package 'nginx')")
    prefix = Path(tempfile.mkdtemp(prefix="refapi-nginx-"))
    try:
        # Under root, nginx's workers run as an unprivileged user: they must be able to reach the temp directory.
        prefix.chmod(0o755)
        (prefix / "logs").mkdir()
        (prefix / "tmp").mkdir()
        http_port, https_port = free_port(), free_port()
        conf = prefix / "nginx.conf"
        rendered = subprocess.run(
            [
                sys.executable, str(REPO / "bin" / "render-nginx"), "--out", str(conf),
                f"NGINX_HTTP_PORT={http_port}", f"NGINX_HTTPS_PORT={https_port}",
                f"REFAPI_UPSTREAM=127.0.0.1:{upstream_port}", f"TLS_DIR={tls_dir}",
                f"MAX_REQUEST_SIZE={max_request_size}", f"NGINX_LOG_DIR={prefix / 'logs'}",
                f"NGINX_TEMP_DIR={prefix / 'tmp'}",
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert rendered.returncode == 0, rendered.stderr
        command = nginx_command(prefix, conf)
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(http_port, process=process)
            wait_for_port(https_port, process=process)
            yield Nginx(http_port, https_port, prefix, conf, process)
        finally:
            # Graceful shutdown, the way a service manager stops nginx.
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultDouble]:
    double = VaultDouble().start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture(scope="module")
def tls_dir(vault: VaultDouble, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tls") / "tls"
    issued = issue_cert(vault, out)
    assert issued.returncode == 0, issued.stderr
    return out


@dataclass(frozen=True)
class App:
    port: int
    log_path: Path

    def access_line(self, request_id: str) -> dict[str, object] | None:
        """The app's access log line for `request_id`, if it has been written yet."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if request_id in line:
                record: dict[str, object] = json.loads(line)
                if record.get("logger") == "refapi.access" and record.get("request_id") == request_id:
                    return record
        return None


@pytest.fixture(scope="module")
def app(vault: VaultDouble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {
        "WORKERS": "2",
        "TRUSTED_PROXIES": "127.0.0.1",
        "MAX_REQUEST_SIZE": str(APP_LIMIT),
        "RATE_LIMIT_ENABLED": "false",
        "VAULT_ADDR": vault.url,
    }
    with gunicorn(env, log_path=log_path) as port:
        yield App(port, log_path)


@pytest.fixture(scope="module")
def nginx(app: App, tls_dir: Path) -> Iterator[Nginx]:
    with run_nginx(app.port, tls_dir) as instance:
        yield instance
