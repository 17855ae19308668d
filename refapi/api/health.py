"""Health endpoints (contract §2.2): per-service checks bounded by HEALTH_CHECK_TIMEOUT, run concurrently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from marshmallow import Schema, fields

from refapi import keys
from refapi.config import SERVICES
from refapi.openapi.operation import Input, json_response, operation

log = logging.getLogger("refapi.health")
routes = web.RouteTableDef()

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]

# What a check reports when it cannot run, fails or times out.
UNHEALTHY: dict[str, dict[str, Any]] = {
    "vault": {"status": "unhealthy", "details": {"status": "unhealthy", "error": "Health check failed"}},
    "postgres": {"status": "unhealthy", "error": "PostgreSQL connection failed"},
    "mysql": {"status": "unhealthy", "error": "MySQL connection failed"},
    "mongodb": {"status": "unhealthy", "error": "MongoDB connection failed"},
    "redis": {"status": "unhealthy", "error": "Redis cluster health check failed"},
    "rabbitmq": {"status": "unhealthy", "error": "RabbitMQ connection failed"},
}
DATABASES = ("postgres", "mysql", "mongodb")


def register_check(app: web.Application, service: str, check: HealthCheck) -> None:
    """Backends call this from their setup; a service without a registered check reports unhealthy."""
    app[keys.HEALTH_CHECKS][service] = check


async def check_service(app: web.Application, service: str) -> dict[str, Any]:
    check = app[keys.HEALTH_CHECKS].get(service)
    if check is None:
        return UNHEALTHY[service]
    try:
        return await asyncio.wait_for(check(), app[keys.SETTINGS].health_check_timeout)
    except TimeoutError:
        log.warning("health check of %s timed out", service)
    except Exception as exc:  # a check must report, never raise
        log.warning("health check of %s failed: %s", service, type(exc).__name__)
    return UNHEALTHY[service]


async def check_many(app: web.Application, services: Iterable[str]) -> dict[str, dict[str, Any]]:
    names = list(services)
    bodies = await asyncio.gather(*(check_service(app, name) for name in names))
    return dict(zip(names, bodies, strict=True))


def overall(bodies: dict[str, dict[str, Any]]) -> str:
    return "healthy" if all(body.get("status") == "healthy" for body in bodies.values()) else "degraded"


class StatusOk(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok"]})


class VaultHealthDetails(Schema):
    status = fields.String(required=True)
    initialized = fields.Boolean()
    sealed = fields.Boolean()
    standby = fields.Boolean()
    error = fields.String()


class VaultHealth(Schema):
    status = fields.String(required=True, metadata={"enum": ["healthy", "unhealthy"]})
    details = fields.Nested(VaultHealthDetails, required=True)


class DatabaseHealth(Schema):
    status = fields.String(required=True, metadata={"enum": ["healthy", "unhealthy"]})
    version = fields.String()
    error = fields.String()


class RedisNodeHealth(Schema):
    host = fields.String(required=True)
    port = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": ["healthy", "unhealthy"]})
    version = fields.String()
    role = fields.String()
    connected_clients = fields.Integer()
    used_memory_human = fields.String()
    error = fields.String()


class RedisHealth(Schema):
    status = fields.String(required=True, metadata={"enum": ["healthy", "unhealthy"]})
    cluster_enabled = fields.Boolean()
    cluster_state = fields.String()
    nodes = fields.List(fields.Nested(RedisNodeHealth))
    total_nodes = fields.Integer()
    error = fields.String()


class RabbitHealth(Schema):
    status = fields.String(required=True, metadata={"enum": ["healthy", "unhealthy"]})
    error = fields.String()


class AllServices(Schema):
    vault = fields.Nested(VaultHealth, required=True)
    postgres = fields.Nested(DatabaseHealth, required=True)
    mysql = fields.Nested(DatabaseHealth, required=True)
    mongodb = fields.Nested(DatabaseHealth, required=True)
    redis = fields.Nested(RedisHealth, required=True)
    rabbitmq = fields.Nested(RabbitHealth, required=True)


class AllHealth(Schema):
    status = fields.String(required=True, metadata={"enum": ["healthy", "degraded"]})
    services = fields.Nested(AllServices, required=True)


class DatabaseServices(Schema):
    postgres = fields.Nested(DatabaseHealth, required=True)
    mysql = fields.Nested(DatabaseHealth, required=True)
    mongodb = fields.Nested(DatabaseHealth, required=True)


class DatabasesHealth(Schema):
    status = fields.String(required=True, metadata={"enum": ["healthy", "degraded"]})
    services = fields.Nested(DatabaseServices, required=True)


class Readiness(Schema):
    status = fields.String(required=True, metadata={"enum": ["ready", "not_ready"]})
    services = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True)


HEALTH_SCHEMAS: dict[str, type[Schema]] = {
    "vault": VaultHealth,
    "postgres": DatabaseHealth,
    "mysql": DatabaseHealth,
    "mongodb": DatabaseHealth,
    "redis": RedisHealth,
    "rabbitmq": RabbitHealth,
}


@routes.get("/health/")
@operation(summary="Liveness of the HTTP layer (no backend touched)", tags=("health",), responses={200: StatusOk})
async def health_root(request: web.Request, inp: Input) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/health")
async def health_redirect(request: web.Request) -> web.Response:
    location = "/health/" + (f"?{request.query_string}" if request.query_string else "")
    return web.Response(status=307, headers={"Location": location})


@routes.get("/health/live")
@operation(summary="Liveness probe (touches nothing)", tags=("health",), responses={200: StatusOk})
async def health_live(request: web.Request, inp: Input) -> web.Response:
    return json_response({"status": "ok"})


def _service_route(path: str, service: str, summary: str, operation_id: str) -> None:
    @routes.get(path)
    @operation(summary=summary, tags=("health",), responses={200: HEALTH_SCHEMAS[service]}, operation_id=operation_id)
    async def handler(request: web.Request, inp: Input) -> web.Response:
        return json_response(await check_service(request.app, service))


for _service in SERVICES:
    _service_route(f"/health/{_service}", _service, f"Health of {_service}", f"health_{_service}")
_service_route("/health/cache", "redis", "Health of the cache (Redis)", "health_cache")
_service_route("/health/messaging", "rabbitmq", "Health of messaging (RabbitMQ)", "health_messaging")


@routes.get("/health/all")
@operation(summary="Health of every backend, checked concurrently", tags=("health",), responses={200: AllHealth})
async def health_all(request: web.Request, inp: Input) -> web.Response:
    services = await check_many(request.app, SERVICES)
    return json_response({"status": overall(services), "services": services})


@routes.get("/health/database")
@operation(summary="Health of the three databases", tags=("health",), responses={200: DatabasesHealth})
async def health_database(request: web.Request, inp: Input) -> web.Response:
    services = await check_many(request.app, DATABASES)
    return json_response({"status": overall(services), "services": services})


@routes.get("/health/ready")
@operation(
    summary="Readiness: every CRITICAL_SERVICES backend is healthy",
    tags=("health",),
    responses={200: Readiness, 503: Readiness},
)
async def health_ready(request: web.Request, inp: Input) -> web.Response:
    services = await check_many(request.app, request.app[keys.SETTINGS].critical_services)
    ready = all(body.get("status") == "healthy" for body in services.values())
    return json_response(
        {"status": "ready" if ready else "not_ready", "services": services}, status=200 if ready else 503
    )
