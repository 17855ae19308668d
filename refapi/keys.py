"""Every AppKey and RequestKey in one place: state is typed and lives on the app or request, never in globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from refapi.api.health import HealthCheck
    from refapi.backends.credentials import CredentialStore
    from refapi.backends.mongodb import MongoBackend
    from refapi.backends.mysql import MysqlBackend
    from refapi.backends.postgres import PostgresBackend
    from refapi.backends.rabbitmq import RabbitMQ
    from refapi.backends.redis import RedisBackend
    from refapi.backends.vault import VaultClient
    from refapi.config import Settings
    from refapi.logs import AccessLog
    from refapi.metrics import Metrics
    from refapi.openapi.docs import RenderedSpec
    from refapi.resilience.guard import Guard

# The annotations give type checkers the value types; at run time they are not evaluated, so importing this
# module never imports the backends.
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
ACCESS_LOG: web.AppKey[AccessLog] = web.AppKey("access_log")
HTTP_SESSION: web.AppKey[ClientSession] = web.AppKey("http_session")
CREDENTIALS: web.AppKey[CredentialStore] = web.AppKey("credentials")
# Backend facades, set by each backend's cleanup context (refapi/backends/<name>.py).
VAULT: web.AppKey[VaultClient] = web.AppKey("vault")
POSTGRES: web.AppKey[PostgresBackend] = web.AppKey("postgres")
MYSQL: web.AppKey[MysqlBackend] = web.AppKey("mysql")
MONGODB: web.AppKey[MongoBackend] = web.AppKey("mongodb")
REDIS: web.AppKey[RedisBackend] = web.AppKey("redis")
RABBITMQ: web.AppKey[RabbitMQ] = web.AppKey("rabbitmq")
ROOT_BODY: web.AppKey[bytes] = web.AppKey("root_body")
# The OpenAPI document, rendered once at startup (refapi/openapi/docs.py).
OPENAPI: web.AppKey[RenderedSpec] = web.AppKey("openapi")
HEALTH_CHECKS: web.AppKey[dict[str, HealthCheck]] = web.AppKey("health_checks")
GUARDS: web.AppKey[dict[str, Guard]] = web.AppKey("guards")

# Per-request state set by the middlewares.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
CLIENT_IP: web.RequestKey[str] = web.RequestKey("client_ip")
PREFLIGHT: web.RequestKey[bool] = web.RequestKey("preflight")
