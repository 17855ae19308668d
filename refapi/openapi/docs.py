"""The served contract: /openapi.json and /openapi.yaml, plus Swagger UI and ReDoc pages built from local assets."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import web

from refapi import keys
from refapi.openapi.spec import dump_spec, generate_spec

log = logging.getLogger("refapi.openapi")

STATIC_DIR = Path(__file__).resolve().parent / "static"
# What bin/fetch-docs-assets puts in static/vendor/ (git-ignored); the pages need every one of them.
VENDOR_ASSETS = (
    "vendor/swagger-ui/swagger-ui-bundle.js",
    "vendor/swagger-ui/swagger-ui.css",
    "vendor/redoc/redoc.standalone.js",
)


@dataclass(frozen=True)
class RenderedSpec:
    """The app's OpenAPI document, serialized once at startup."""

    json: bytes
    yaml: bytes



# Everything comes from this origin; the bundles style their elements inline and use data: images.
_POLICY = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'self'",
)
SWAGGER_CSP = "; ".join(_POLICY)
# ReDoc runs its search index in a worker it creates from a blob: URL.
REDOC_CSP = "; ".join((*_POLICY, "worker-src 'self' blob:"))

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/docs.css">
{head}</head>
<body>
  <div id="{root}"></div>
{scripts}</body>
</html>
"""

SWAGGER_PAGE = _PAGE.format(
    title="refapi API (Swagger UI)",
    head='  <link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">\n',
    root="swagger-ui",
    scripts=(
        '  <script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>\n'
        '  <script src="/static/swagger-init.js"></script>\n'
    ),
).encode()

REDOC_PAGE = _PAGE.format(
    title="refapi API (ReDoc)",
    head="",
    root="redoc",
    scripts=(
        '  <script src="/static/vendor/redoc/redoc.standalone.js"></script>\n'
        '  <script src="/static/redoc-init.js"></script>\n'
    ),
).encode()


def setup(app: web.Application) -> None:
    """Add the spec and docs routes and /static/; the document is generated from `app` when it starts."""
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/openapi.yaml", openapi_yaml)
    app.router.add_get("/docs", swagger_ui)
    app.router.add_get("/redoc", redoc)
    app.router.add_static("/static", STATIC_DIR)
    app.on_startup.append(_render)


async def _render(app: web.Application) -> None:
    # A few milliseconds of CPU and a stat per asset: off the loop all the same, and done once per worker.
    app[keys.OPENAPI] = await asyncio.get_running_loop().run_in_executor(None, render, app)


def render(app: web.Application) -> RenderedSpec:
    """Generate and serialize `app`'s document; warn if the docs pages would miss their assets."""
    missing = [name for name in VENDOR_ASSETS if not (STATIC_DIR / name).is_file()]
    if missing:
        log.warning("docs pages will not render: %s missing; run bin/fetch-docs-assets", ", ".join(missing))
    spec = generate_spec(app)
    return RenderedSpec(json=orjson.dumps(spec), yaml=dump_spec(spec, "yaml").encode())


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[keys.OPENAPI].json, content_type="application/json", charset="utf-8")


async def openapi_yaml(request: web.Request) -> web.Response:
    return web.Response(body=request.app[keys.OPENAPI].yaml, headers={"Content-Type": "application/yaml"})


async def swagger_ui(request: web.Request) -> web.Response:
    return _page(SWAGGER_PAGE, SWAGGER_CSP)


async def redoc(request: web.Request) -> web.Response:
    return _page(REDOC_PAGE, REDOC_CSP)


def _page(body: bytes, policy: str) -> web.Response:
    return web.Response(
        body=body,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
