"""The only place that wires refapi together: settings, backends, routes and the middleware chain."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import ClientSession, web

from refapi import keys, logs
from refapi.api import cache, cluster, database, health, messaging, meta, vault
from refapi.backends import mongodb, mysql, postgres, rabbitmq, redis
from refapi.backends import vault as vault_backend
from refapi.config import Settings
from refapi.logs import AccessLog
from refapi.metrics import Metrics
from refapi.middlewares.auth import auth_middleware
from refapi.middlewares.cache import cache_middleware
from refapi.middlewares.cors import cors_middleware
from refapi.middlewares.errors import errors_middleware
from refapi.middlewares.limits import limits_middleware
from refapi.middlewares.metrics import metrics_middleware
from refapi.middlewares.rate_limit import rate_limit_middleware
from refapi.middlewares.request_id import request_id_middleware
from refapi.openapi import docs
from refapi.resilience.rate_limit import RateCounter

log = logging.getLogger("refapi.app")

ROUTE_TABLES = (
    meta.routes,
    health.routes,
    vault.routes,
    database.routes,
    cache.routes,
    cluster.routes,
    messaging.routes,
)
MAX_REQUEST_LINE = 128 * 1024
# Vault first: the other backends take their credentials from it at startup.
BACKENDS = (vault_backend, postgres, mysql, mongodb, redis, rabbitmq)


async def http_session_ctx(app: web.Application) -> AsyncIterator[None]:
    """One pooled HTTP client per worker, shared by the Vault client and the RabbitMQ management API."""
    async with ClientSession(json_serialize=lambda value: orjson.dumps(value).decode()) as session:
        app[keys.HTTP_SESSION] = session
        yield


def redis_client(app: web.Application) -> Any | None:
    """The worker's Redis client once the Redis backend has connected (shared by the limiter and the cache)."""
    facade = app.get(keys.REDIS)
    return getattr(facade, "client", None)


async def freeze_startup_heap(app: web.Application) -> None:
    """Move everything built at startup out of the garbage collector's sight.

    The imports, schemas, spec and pools are some 80,000 long-lived objects; a full collection walks them all
    and stalls the event loop for about 40 ms, which was most of the benchmark's p99. Frozen, they are never
    scanned again; what requests allocate is collected as usual. No collection first: the little garbage
    startup leaves is cheaper to keep than a forced collection, which would also run the finalizers of
    whatever else the process holds at an arbitrary moment (in a test process, earlier tests' leftovers).
    """
    gc.freeze()


def build_app(settings: Settings) -> web.Application:
    """Build the application for `settings`; nothing connects until the app starts (cleanup contexts)."""
    # Outermost first. CORS and the rate limiter wrap the error envelope so errors carry their headers; the
    # limiter also runs before the router's 404/405 surface (aiohttp resolves the route first, but raises inside).
    chain = [request_id_middleware(), metrics_middleware(), cors_middleware()]
    if settings.rate_limit_enabled:
        counter = RateCounter(lambda: redis_client(app))
        chain.append(rate_limit_middleware(counter, settings))
    chain += [errors_middleware(), auth_middleware(), limits_middleware(), cache_middleware()]
    app = web.Application(
        middlewares=chain,
        client_max_size=settings.max_request_size,
        handler_args={
            "access_log": None,  # refapi.access writes the one access line
            # The longest documented inputs must fit in the request line once percent-encoded: a 10000-character
            # cache value of 4-byte characters is 120 kB. aiohttp's default of 8190 bytes would answer those
            # valid requests with a bare text/plain 400 instead of the operation's own answer.
            "max_line_size": MAX_REQUEST_LINE,
        },
    )
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = Metrics()
    app[keys.ACCESS_LOG] = AccessLog()
    app[keys.HEALTH_CHECKS] = {}
    app[keys.GUARDS] = {}
    app[keys.ROOT_BODY] = orjson.dumps(meta.root_document(settings))
    app.cleanup_ctx.append(http_session_ctx)
    for backend in BACKENDS:
        backend.setup(app)
    for table in ROUTE_TABLES:
        app.router.add_routes(table)
    docs.setup(app)
    app.on_startup.append(freeze_startup_heap)  # last: after every backend's startup
    return app


async def create_app() -> web.Application:
    """gunicorn's aiohttp worker entry point: `gunicorn refapi.app:create_app` (it must be an async factory)."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    return build_app(settings)
