"""The docs pages in headless Chromium: both render every operation and request nothing from another host."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from refapi.app import build_app
from refapi.config import Settings
from refapi.openapi import docs
from refapi.openapi.spec import generate_spec

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = "/usr/bin/chromium"
DEADLINE = 30.0  # seconds for the browser to start or a page to render, on a loaded 2-core CI machine
# The page's requests must all go to the test server; these schemes never leave the browser.
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--no-pings",
    # Belt and braces for the machine's no-traffic-off-loopback rule: anything not on loopback goes to a
    # closed local port, so even a request the test would flag never leaves the host.
    "--proxy-server=http://127.0.0.1:9",
    "--window-size=1280,1000",
    "--remote-debugging-port=0",
)
# Records Content-Security-Policy violations before any page script runs; the test asserts there are none.
CSP_RECORDER = (
    "window.__cspViolations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


def require(condition: bool, reason: str) -> None:
    """Skip locally when a prerequisite is missing; in CI (bin/install --test provides both) fail instead."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


async def poll(check: Callable[[], Awaitable[Any]], what: str, timeout: float = DEADLINE) -> Any:
    """Await `check()` until it returns something truthy, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)  # polling interval of a deadline-bounded loop


class Page:
    """One browser tab driven over the Chrome DevTools Protocol (flattened session on the browser socket)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.session: str | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data and data.get("sessionId") == self.session:
                self.events.append((data["method"], data.get("params", {})))
        for future in self.pending.values():
            future.set_exception(ConnectionError("the DevTools connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> Any:
        command: dict[str, Any] = {"id": next(self.ids), "method": method, "params": params or {}}
        if not browser:
            command["sessionId"] = self.session
        future = asyncio.get_running_loop().create_future()
        self.pending[command["id"]] = future
        await self.ws.send_json(command)
        reply = await asyncio.wait_for(future, DEADLINE)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def open(self) -> None:
        target = await self.send("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, browser=True
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            await self.send(f"{domain}.enable")
        await self.send("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_RECORDER})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def requested_urls(self) -> list[str]:
        return [params["request"]["url"] for method, params in self.events if method == "Network.requestWillBeSent"]

    def in_flight(self) -> list[str]:
        """URLs of network requests not yet finished (data: and blob: loads never report an end)."""
        ended = {p["requestId"] for m, p in self.events if m in ("Network.loadingFinished", "Network.loadingFailed")}
        return [
            p["request"]["url"]
            for m, p in self.events
            if m == "Network.requestWillBeSent"
            and p["requestId"] not in ended
            and urlsplit(p["request"]["url"]).scheme not in LOCAL_SCHEMES
        ]

    def exceptions(self) -> list[str]:
        return [p["exceptionDetails"].get("text", "") for m, p in self.events if m == "Runtime.exceptionThrown"]

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[Page]:
    profile = tmp_path / "profile"
    log = (tmp_path / "chromium.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:

        async def endpoint() -> str | None:
            if process.returncode is not None:
                raise AssertionError(f"chromium exited with {process.returncode}; see {log.name}")
            # Chromium writes its port and browser endpoint path here once it listens.
            active = profile / "DevToolsActivePort"
            lines = active.read_text().split() if active.exists() else []
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}" if len(lines) == 2 else None

        url = await poll(endpoint, "Chromium's DevTools endpoint")
        async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
            page = Page(ws)
            try:
                await page.open()
                yield page
            finally:
                with contextlib.suppress(Exception):
                    await page.send("Browser.close", browser=True)
                page.reader.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), DEADLINE)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    require(shutil.which(CHROMIUM) is not None, f"{CHROMIUM} is not installed (Debian package 'chromium')")
    missing = [name for name in docs.VENDOR_ASSETS if not (docs.STATIC_DIR / name).is_file()]
    require(not missing, f"docs assets missing ({', '.join(missing)}): run bin/fetch-docs-assets")
    test_server = TestServer(build_app(Settings()), host="127.0.0.1")
    await test_server.start_server()
    try:
        yield test_server
    finally:
        await test_server.close()


async def load(page: Page, url: str, rendered: str, what: str) -> Any:
    """Navigate, wait until the `rendered` expression is truthy and the network is quiet; its value."""
    await page.send("Page.navigate", {"url": url})
    value = await poll(lambda: page.evaluate(rendered), what)

    async def quiet() -> bool:
        return not page.in_flight()

    await poll(quiet, f"the requests of {url} to finish")
    return value


def assert_stayed_local(page: Page, origin: str) -> None:
    urls = page.requested_urls()
    assert urls, "the DevTools Network domain reported no requests"
    foreign = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in LOCAL_SCHEMES:
            continue
        if f"{parts.scheme}://{parts.netloc}" != origin:
            foreign.append(url)
    assert not foreign, f"the page requested other hosts: {foreign}"


async def assert_clean(page: Page) -> None:
    assert await page.evaluate("window.__cspViolations") == []
    assert page.exceptions() == []


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    spec = generate_spec()
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def documented_operations() -> tuple[set[tuple[str, str]], set[str]]:
    ops = operations()
    return {(method, path) for method, path, _ in ops}, {op["operationId"] for _, _, op in ops}


async def test_swagger_ui_lists_every_operation_from_local_assets(server: TestServer, tmp_path: Path) -> None:
    origin = f"http://127.0.0.1:{server.port}"
    expected, _ = documented_operations()
    # Deprecated operations get another path class, so find the path by its data attribute.
    rendered = (
        "(() => { const blocks = [...document.querySelectorAll('.opblock')]"
        ".map(b => [b.querySelector('.opblock-summary-method'), b.querySelector('.opblock-summary [data-path]')]);"
        " return blocks.length > 0 && blocks.every(([m, p]) => m && p)"
        " && blocks.map(([m, p]) => [m.textContent, p.dataset.path]); })()"
    )
    async with chromium(tmp_path) as page:
        shown = await load(page, f"{origin}/docs", rendered, "Swagger UI to list the operations")
        await page.screenshot(ARTIFACTS / "docs.png")
        assert {(method, path) for method, path in shown} == expected
        assert ("GET", "/health/") in expected
        assert await page.evaluate("document.querySelectorAll('.opblock-deprecated').length") == sum(
            1 for _, _, op in operations() if op.get("deprecated")
        )
        assert_stayed_local(page, origin)
        assert f"{origin}/openapi.json" in page.requested_urls()
        await assert_clean(page)


async def test_redoc_lists_every_operation_from_local_assets(server: TestServer, tmp_path: Path) -> None:
    origin = f"http://127.0.0.1:{server.port}"
    _, operation_ids = documented_operations()
    rendered = (
        "(() => { const items = [...document.querySelectorAll('[data-item-id*=\"/operation/\"]')];"
        " return items.length && items.map(i => i.dataset.itemId.split('/operation/')[1]); })()"
    )
    async with chromium(tmp_path) as page:
        shown = await load(page, f"{origin}/redoc", rendered, "ReDoc to list the operations")
        await page.screenshot(ARTIFACTS / "redoc.png")
        assert set(shown) == operation_ids
        assert "Liveness of the HTTP layer" in await page.evaluate("document.body.innerText")
        assert_stayed_local(page, origin)
        assert f"{origin}/openapi.json" in page.requested_urls()
        await assert_clean(page)
