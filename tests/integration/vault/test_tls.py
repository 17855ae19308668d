"""HTTPS from a Vault PKI certificate: issued at startup, re-issued on the live context, HTTP-only without one."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from refapi.app import build_app
from refapi.cli import _start_https
from refapi.config import Settings
from tests.integration.vault.conftest import isolated_settings
from tests.servers.vault import VaultDouble
from tests.support.processes import free_port


@pytest.fixture
async def serving(vault: VaultDouble) -> AsyncIterator[Any]:
    """`await start(**overrides)` → the settings of an app whose HTTPS listener _start_https set up."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> Settings:
        settings = isolated_settings(vault_addr=vault.url, vault_token=vault.root_token, enable_tls=True,
                                     bind_host="127.0.0.1", https_port=free_port(), **overrides)
        runner = web.AppRunner(build_app(settings))
        runners.append(runner)
        await runner.setup()
        await _start_https(runner, settings)
        return settings

    yield start
    for runner in runners:
        await runner.cleanup()


async def trust(vault: VaultDouble) -> ssl.SSLContext:
    async with aiohttp.ClientSession() as session, session.get(f"{vault.url}/v1/pki/ca/pem") as response:
        return ssl.create_default_context(cadata=await response.text())


async def served_certificate(port: int, context: ssl.SSLContext) -> x509.Certificate:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


async def test_certificate_from_vault_pki_is_served_and_reissued(vault: VaultDouble, serving: Any) -> None:
    settings = await serving(tls_cert_ttl="3s")
    context = await trust(vault)
    first = await served_certificate(settings.https_port, context)
    assert first.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    sans = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    async with aiohttp.ClientSession() as session, session.get(
        f"https://localhost:{settings.https_port}/health/live", ssl=context
    ) as response:
        assert response.status == 200

    # Under a third of its 3 s life left, a new certificate replaces it for new handshakes.
    deadline = time.monotonic() + 15
    while (current := await served_certificate(settings.https_port, context)).serial_number == first.serial_number:
        assert time.monotonic() < deadline, "the certificate was not re-issued"
        await asyncio.sleep(0.2)  # polling interval; the loop waits for the condition
    assert current.not_valid_after_utc > first.not_valid_after_utc


async def test_without_a_certificate_https_is_not_started(
    serving: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = await serving(vault_pki_role="no-such-role")
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", settings.https_port)
    assert any(r.name == "refapi.cli" and r.levelname == "ERROR" for r in caplog.records)
