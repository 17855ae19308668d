"""Per-request metrics and the access line: both need the route template, final status and duration."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from refapi import keys
from refapi.client_ip import client_ip
from refapi.metrics import UNMATCHED_ROUTE
from refapi.middlewares.request_id import request_id_of

# Methods outside this set are labelled OTHER: a label must never carry client-chosen text.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REDACTED_PREFIXES = ("/examples/vault/transit/encrypt/", "/examples/vault/transit/decrypt/")


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED_ROUTE
    return resource.canonical


def loggable_path(path: str) -> str:
    """The request path with transit payloads replaced (contract §5): they are plaintext or ciphertext."""
    for prefix in _REDACTED_PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            return prefix + "[REDACTED]"
    return path


def metrics_middleware() -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        app = request.app
        metrics = app[keys.METRICS]
        method = request.method if request.method in _METHODS else "OTHER"
        route = route_of(request)
        metrics.request_started(method, route)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = 499  # the client went away; nothing was sent
            raise
        finally:
            duration = time.perf_counter() - started
            metrics.request_finished(method, route, status, duration)
            app[keys.ACCESS_LOG].write(
                request_id=request_id_of(request),
                method=method,
                route=route,
                path=loggable_path(request.path),
                status=status,
                duration=duration,
                client_ip=client_ip(request, app[keys.SETTINGS].trusted_proxies),
            )

    return observe
