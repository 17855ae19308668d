"""CORS (contract §3.2): preflights answered before rate limiting and routing; headers on every response, errors too.

Written here rather than with aiohttp-cors: that library answers preflights as routes (after the rate limiter
and the router), rejects them with plain-text 403s, and cannot decorate the router's own 404/405 responses —
all things the contract specifies differently.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from refapi import errors, keys
from refapi.middlewares.errors import error_response

ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
ALLOWED_HEADERS = (
    "Content-Type",
    "Authorization",
    "X-Request-ID",
    "X-API-Key",
    "Accept",
    "Origin",
    "User-Agent",
    "DNT",
    "Cache-Control",
    "X-Requested-With",
    "If-None-Match",
)
EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "ETag",
    "X-Cache",
)
MAX_AGE = 600


def cors_middleware() -> web.middleware:  # type: ignore[valid-type]
    allowed_methods = frozenset(ALLOWED_METHODS)
    allowed_headers = frozenset(header.lower() for header in ALLOWED_HEADERS)
    exposed = ", ".join(EXPOSED_HEADERS)
    preflight_methods = ", ".join(ALLOWED_METHODS)
    preflight_headers = ", ".join(ALLOWED_HEADERS)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        settings = request.app[keys.SETTINGS]
        wildcard = settings.debug
        origin = request.headers.get("Origin")
        origin_ok = origin is not None and (wildcard or origin in settings.cors_origins)

        if request.method == "OPTIONS" and (origin is not None or "Access-Control-Request-Method" in request.headers):
            request[keys.PREFLIGHT] = True
            requested_method = request.headers.get("Access-Control-Request-Method", "")
            requested_headers = {
                name.strip().lower()
                for name in request.headers.get("Access-Control-Request-Headers", "").split(",")
                if name.strip()
            }
            if not origin_ok or requested_method not in allowed_methods or not requested_headers <= allowed_headers:
                return error_response(request, errors.Forbidden("CORS preflight rejected", reason="cors"))
            response: web.StreamResponse = web.Response(status=200)
            response.headers["Access-Control-Allow-Methods"] = preflight_methods
            response.headers["Access-Control-Allow-Headers"] = preflight_headers
            response.headers["Access-Control-Max-Age"] = str(MAX_AGE)
        else:
            response = await handler(request)

        headers = response.headers
        if not wildcard:
            headers.add("Vary", "Origin")
        if origin_ok:
            headers["Access-Control-Allow-Origin"] = "*" if wildcard else origin  # type: ignore[assignment]
            if not wildcard:
                headers["Access-Control-Allow-Credentials"] = "true"
            if not request.get(keys.PREFLIGHT):
                headers["Access-Control-Expose-Headers"] = exposed
        return response

    return cors
