"""Rate limiting per client IP and scope (contract §3.3), before routing so unknown paths count too."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from refapi import errors, keys
from refapi.client_ip import client_ip
from refapi.config import Settings
from refapi.middlewares.errors import error_response
from refapi.resilience.rate_limit import RateCounter


def scope_of(path: str) -> str:
    if path == "/health" or path.startswith("/health/"):
        return "health"
    if path == "/metrics":
        return "metrics"
    return "general"


def limits_by_scope(settings: Settings) -> dict[str, int]:
    return {
        "general": settings.rate_limit_general,
        "health": settings.rate_limit_health,
        "metrics": settings.rate_limit_metrics,
    }


def rate_limit_middleware(counter: RateCounter, settings: Settings) -> web.middleware:  # type: ignore[valid-type]
    limits = limits_by_scope(settings)
    trusted = settings.trusted_proxies

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        scope = scope_of(request.path)
        limit = limits[scope]
        hit = await counter.hit(f"{scope}:{client_ip(request, trusted)}")
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - hit.count)),
            "X-RateLimit-Reset": str(hit.reset),
        }
        if hit.count > limit:
            metrics = request.app[keys.METRICS]
            metrics.add(metrics.rate_limit_rejections, scope)
            headers["Retry-After"] = headers["X-RateLimit-Reset"]
            return error_response(request, errors.RateLimitExceeded(scope=scope, limit=limit, headers=headers))
        response = await handler(request)
        response.headers.update(headers)
        return response

    return rate_limit
