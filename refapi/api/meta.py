"""Service metadata: the root document and Prometheus metrics (contract §2.1)."""

from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields

from refapi import __version__, keys
from refapi.config import SERVICES, Settings
from refapi.errors import JSON_CONTENT_TYPE
from refapi.middlewares.cors import ALLOWED_METHODS, MAX_AGE
from refapi.middlewares.limits import ALLOWED_CONTENT_TYPES
from refapi.openapi.operation import Input, operation

routes = web.RouteTableDef()

DESCRIPTION = "Reference REST service integrating Vault, PostgreSQL, MySQL, MongoDB, Redis and RabbitMQ"
NOTE = "This is a reference service for development and learning; do not expose it to the internet as is."
PROTECTED_OPERATIONS = ["POST /examples/vault/secret/{service_name}"]


class CorsInfo(Schema):
    enabled = fields.Boolean(required=True)
    allowed_origins = fields.String(required=True)
    allowed_methods = fields.String(required=True)
    credentials = fields.Boolean(required=True)
    max_age = fields.String(required=True)


class RateLimitInfo(Schema):
    enabled = fields.Boolean(required=True)
    general_endpoints = fields.String(required=True)
    health_checks = fields.String(required=True)
    metrics_endpoint = fields.String(required=True)


class RequestValidationInfo(Schema):
    max_request_size = fields.String(required=True)
    allowed_content_types = fields.List(fields.String(), required=True)


class CircuitBreakerInfo(Schema):
    enabled = fields.Boolean(required=True)
    services = fields.List(fields.String(), required=True)
    failure_threshold = fields.Integer(required=True)
    reset_timeout = fields.String(required=True)


class AuthenticationInfo(Schema):
    enabled = fields.Boolean(required=True)
    api_key_header = fields.String(required=True)
    protected_operations = fields.List(fields.String(), required=True)


class SecurityInfo(Schema):
    cors = fields.Nested(CorsInfo, required=True)
    rate_limiting = fields.Nested(RateLimitInfo, required=True)
    request_validation = fields.Nested(RequestValidationInfo, required=True)
    circuit_breakers = fields.Nested(CircuitBreakerInfo, required=True)
    authentication = fields.Nested(AuthenticationInfo, required=True)


class RedisClusterLinks(Schema):
    nodes = fields.String(required=True)
    slots = fields.String(required=True)
    info = fields.String(required=True)
    node_info = fields.String(required=True)


class ExampleLinks(Schema):
    vault = fields.String(required=True)
    databases = fields.String(required=True)
    cache = fields.String(required=True)
    messaging = fields.String(required=True)


class RootResponse(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    description = fields.String(required=True)
    docs = fields.String(required=True)
    health = fields.String(required=True)
    metrics = fields.String(required=True)
    security = fields.Nested(SecurityInfo, required=True)
    redis_cluster = fields.Nested(RedisClusterLinks, required=True)
    examples = fields.Nested(ExampleLinks, required=True)
    note = fields.String(required=True)


def root_document(settings: Settings) -> dict[str, object]:
    """Every value reflects the running configuration; app.py serializes it once at startup."""
    return {
        "name": "refapi",
        "version": __version__,
        "description": DESCRIPTION,
        "docs": "/docs",
        "health": "/health/all",
        "metrics": "/metrics",
        "security": {
            "cors": {
                "enabled": True,
                "allowed_origins": "*" if settings.debug else ", ".join(settings.cors_origins),
                "allowed_methods": ", ".join(ALLOWED_METHODS),
                "credentials": not settings.debug,
                "max_age": f"{MAX_AGE}s",
            },
            "rate_limiting": {
                "enabled": settings.rate_limit_enabled,
                "general_endpoints": f"{settings.rate_limit_general}/minute",
                "health_checks": f"{settings.rate_limit_health}/minute",
                "metrics_endpoint": f"{settings.rate_limit_metrics}/minute",
            },
            "request_validation": {
                "max_request_size": f"{settings.max_request_size} bytes",
                "allowed_content_types": list(ALLOWED_CONTENT_TYPES),
            },
            "circuit_breakers": {
                "enabled": True,
                "services": list(SERVICES),
                "failure_threshold": settings.circuit_breaker_failure_threshold,
                "reset_timeout": f"{settings.circuit_breaker_reset_timeout:g}s",
            },
            "authentication": {
                "enabled": bool(settings.api_keys),
                "api_key_header": "X-API-Key",
                "protected_operations": PROTECTED_OPERATIONS,
            },
        },
        "redis_cluster": {
            "nodes": "/redis/cluster/nodes",
            "slots": "/redis/cluster/slots",
            "info": "/redis/cluster/info",
            "node_info": "/redis/nodes/{node_name}/info",
        },
        "examples": {
            "vault": "/examples/vault",
            "databases": "/examples/database",
            "cache": "/examples/cache",
            "messaging": "/examples/messaging",
        },
        "note": NOTE,
    }


@routes.get("/")
@operation(summary="Service information", tags=("meta",), responses={200: RootResponse})
async def root(request: web.Request, inp: Input) -> web.Response:
    return web.Response(body=request.app[keys.ROOT_BODY], headers={"Content-Type": JSON_CONTENT_TYPE})


@routes.get("/metrics")
@operation(
    summary="Prometheus metrics of every worker",
    tags=("meta",),
    responses={200: None},
    content_type="text/plain",
)
async def metrics(request: web.Request, inp: Input) -> web.Response:
    registry = request.app[keys.METRICS]
    return web.Response(body=await registry.scrape(), headers={"Content-Type": registry.content_type})
