"""Real nginx rendered from conf/nginx.conf in front of gunicorn-run refapi, with a certificate from Vault PKI."""

from __future__ import annotations

import asyncio
import io
import shlex
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from tests.integration.deploy.conftest import APP_LIMIT, NGINX_LIMIT, App, Nginx, issue_cert, run_nginx
from tests.servers.vault import VaultDouble
from tests.support.processes import free_port

DEADLINE = 10.0
ENVELOPE_KEYS = {"error", "message", "status_code", "request_id", "details"}


async def poll(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Call `check()` until it returns something truthy, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)  # polling interval of a bounded wait, not synchronisation


def client_context(tls_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))


def access_line(nginx: Nginx, request_id: str) -> dict[str, object] | None:
    return next((line for line in nginx.access_lines() if line["request_id"] == request_id), None)


def s_client(nginx: Nginx, tls_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """One handshake with openssl s_client; the client's own floor is lowered so refusals come from the server."""
    return subprocess.run(
        [
            "openssl", "s_client", "-connect", f"127.0.0.1:{nginx.https_port}", "-servername", "localhost",
            "-CAfile", str(tls_dir / "ca.pem"), "-verify_return_error", "-cipher", "DEFAULT:@SECLEVEL=0", *options,
        ],
        input="",
        capture_output=True,
        text=True,
        errors="replace",  # after an h2 handshake the server's binary SETTINGS frame is printed too
        timeout=30,
        check=False,
    )  # fmt: skip


async def test_https_verifies_against_the_ca_chain_and_reaches_the_app(nginx: Nginx, app: App, tls_dir: Path) -> None:
    request_id = f"deploy-{uuid.uuid4()}"
    headers = {"X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.5"}
    async with aiohttp.ClientSession() as session:
        url = f"https://localhost:{nginx.https_port}/health/"
        async with session.get(url, headers=headers, ssl=client_context(tls_dir)) as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}
            assert resp.headers["X-Request-ID"] == request_id
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    line = await poll(lambda: app.access_line(request_id), "the app's access line")
    # nginx appended its peer (127.0.0.1, a trusted proxy) to the client's header; the app skipped it.
    assert line["client_ip"] == "203.0.113.5"
    assert line["route"] == "/health/"
    proxied = await poll(lambda: access_line(nginx, request_id), "nginx's access line")
    assert proxied["tls"] in ("TLSv1.2", "TLSv1.3")
    assert proxied["upstream_status"] == "200"


async def test_https_refuses_a_client_that_does_not_trust_the_vault_ca(nginx: Nginx) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"https://localhost:{nginx.https_port}/health/", ssl=ssl.create_default_context())


@pytest.mark.parametrize("incoming", [None, "not a valid id!"])
async def test_nginx_request_id_reaches_the_app_when_the_client_sends_no_valid_one(
    nginx: Nginx, app: App, incoming: str | None
) -> None:
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    url = f"http://127.0.0.1:{nginx.http_port}/health/live"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        assert resp.status == 200
        request_id = resp.headers["X-Request-ID"]
    assert request_id != incoming
    # One id for the request everywhere: nginx's log line, the app's log line and the response.
    await poll(lambda: access_line(nginx, request_id), "nginx's access line with the response's id")
    await poll(lambda: app.access_line(request_id), "the app's access line with the response's id")


async def test_plain_http_port_serves_the_app(nginx: Nginx) -> None:
    url = f"http://127.0.0.1:{nginx.http_port}/health/live"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await resp.json() == {"status": "ok"}
        assert "Strict-Transport-Security" not in resp.headers


def test_tls_1_1_is_refused(nginx: Nginx, tls_dir: Path) -> None:
    handshake = s_client(nginx, tls_dir, "-tls1_1")
    assert handshake.returncode != 0
    assert "alert protocol version" in handshake.stderr


@pytest.mark.parametrize(("option", "protocol"), [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_accepted_with_a_verified_chain(
    nginx: Nginx, tls_dir: Path, option: str, protocol: str
) -> None:
    handshake = s_client(nginx, tls_dir, option)
    assert handshake.returncode == 0, handshake.stderr
    assert f"New, {protocol}, Cipher is " in handshake.stdout
    assert "Verify return code: 0 (ok)" in handshake.stdout


def test_http2_is_negotiated_over_tls(nginx: Nginx, tls_dir: Path) -> None:
    handshake = s_client(nginx, tls_dir, "-alpn", "h2,http/1.1")
    assert handshake.returncode == 0, handshake.stderr
    assert "ALPN protocol: h2" in handshake.stdout


async def post_body(nginx: Nginx, size: int, request_id: str) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    headers = {"Content-Type": "application/json", "X-Request-ID": request_id}
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{nginx.http_port}/examples/messaging/publish"
        async with session.post(url, data=io.BytesIO(b" " * size), headers=headers) as resp:
            return resp, await resp.json()


@pytest.mark.parametrize(
    ("size", "limit", "refused_by"),
    [(NGINX_LIMIT + 1, NGINX_LIMIT, "nginx"), (APP_LIMIT + 1, APP_LIMIT, "app")],
)
async def test_oversize_body_is_refused_with_the_envelope_by_nginx_or_the_app(
    nginx: Nginx, size: int, limit: int, refused_by: str
) -> None:
    request_id = f"big-{uuid.uuid4()}"
    resp, body = await post_body(nginx, size, request_id)
    assert resp.status == 413
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.headers["X-Request-ID"] == request_id
    assert set(body) == ENVELOPE_KEYS
    assert body == {
        "error": "PayloadTooLarge",
        "message": "Request body is too large",
        "status_code": 413,
        "request_id": request_id,
        "details": {"max_bytes": limit},
    }
    line = await poll(lambda: access_line(nginx, request_id), "nginx's access line")
    # Which side answered: nginx never contacts the app for a declared length over its own limit.
    assert line["upstream_status"] == ("" if refused_by == "nginx" else "413")


async def test_unreachable_app_gives_a_502_envelope(tls_dir: Path) -> None:
    with run_nginx(free_port(), tls_dir) as orphan:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{orphan.http_port}/health/"
            async with session.get(url, headers={"X-Request-ID": "no-upstream"}) as resp:
                assert resp.status == 502
                assert resp.headers["X-Request-ID"] == "no-upstream"
                assert await resp.json() == {
                    "error": "BadGateway",
                    "message": "The service is unavailable",
                    "status_code": 502,
                    "request_id": "no-upstream",
                }


async def served_serial(port: int, context: ssl.SSLContext) -> int:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        await writer.wait_closed()


async def test_renewal_reissues_and_reloads_without_failing_requests(
    vault: VaultDouble, app: App, tls_dir: Path, tmp_path: Path
) -> None:
    own_tls = tmp_path / "tls"
    shutil.copytree(tls_dir, own_tls)
    context = client_context(own_tls)
    with run_nginx(app.port, own_tls) as instance:
        before = await served_serial(instance.https_port, context)
        master = instance.master_pid()
        statuses: list[int] = []
        failures: list[str] = []
        stop = asyncio.Event()

        async def keep_requesting() -> None:
            # A new connection per request, so requests land on old and new workers across the reload.
            connector = aiohttp.TCPConnector(force_close=True, ssl=context)
            async with aiohttp.ClientSession(connector=connector) as session:
                while not stop.is_set():
                    try:
                        async with session.get(f"https://localhost:{instance.https_port}/health/live") as resp:
                            statuses.append(resp.status)
                    except aiohttp.ClientError as exc:
                        failures.append(repr(exc))

        load = asyncio.create_task(keep_requesting())
        await poll(lambda: len(statuses) >= 5, "requests before the renewal")
        # --renew-before 1: renew now, as the timer does once a third of the lifetime is left.
        reload_cmd = shlex.join([*instance.command, "-s", "reload"])
        renewed = await asyncio.to_thread(issue_cert, vault, own_tls, "--renew-before", "1", "--reload-cmd", reload_cmd)
        assert renewed.returncode == 0, renewed.stderr

        async def new_serial_served() -> bool:
            return await served_serial(instance.https_port, context) != before

        await poll(new_serial_served, "the renewed certificate to be served")
        served = len(statuses)
        await poll(lambda: len(statuses) >= served + 5, "requests after the reload")
        stop.set()
        await load
        assert instance.master_pid() == master
        assert instance.process.poll() is None
    assert failures == []
    assert set(statuses) == {200}
