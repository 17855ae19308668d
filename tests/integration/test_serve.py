"""`refapi serve`: one process answering HTTP, and HTTPS on the second port from TLS_CERT_FILE/TLS_KEY_FILE."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.conftest import OFFLINE
from tests.support.processes import REPO, free_port, wait_for_port


def self_signed_pair(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def offline_env() -> dict[str, str]:
    """The test conftest's unreachable backends, as environment variables."""
    env = {name.upper(): str(value) for name, value in OFFLINE.items() if name != "redis_nodes"}
    return {**env, "VAULT_ADDR": OFFLINE["vault_addr"], "REDIS_NODES": f"{OFFLINE['redis_host']}:1"}


async def test_serve_answers_http_and_https(tmp_path: Path) -> None:
    cert, key = self_signed_pair(tmp_path)
    http_port, https_port = free_port(), free_port()
    env = {
        **os.environ,
        **offline_env(),
        "BIND_HOST": "127.0.0.1",
        "API_FIRST_HTTP_PORT": str(http_port),
        "API_FIRST_HTTPS_PORT": str(https_port),
        "API_FIRST_ENABLE_TLS": "true",
        "TLS_CERT_FILE": str(cert),
        "TLS_KEY_FILE": str(key),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "refapi.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(http_port, process=process)
        wait_for_port(https_port, process=process)
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as session:
            for url, context in ((f"http://127.0.0.1:{http_port}", None), (f"https://localhost:{https_port}", trust)):
                async with session.get(f"{url}/", ssl=context) as root:
                    assert root.status == 200 and (await root.json())["name"] == "refapi"
                async with session.get(f"{url}/health/", ssl=context) as health:
                    assert await health.json() == {"status": "ok"}
            async with session.get(f"https://localhost:{https_port}/metrics", ssl=trust) as metrics:
                # One process serves both ports, so one registry counts both.
                text = await metrics.text()
            assert 'http_requests_total{method="GET",route="/health/",status="200"} 2.0' in text
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0  # SIGTERM is a clean shutdown
