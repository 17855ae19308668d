"""Every AppKey and RequestKey in one place: state is typed and lives on the app or request, never in globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from refapi.api.health import HealthCheck
    from refapi.resilience.guard import Guard

SETTINGS = web.AppKey("settings", "Settings")
METRICS = web.AppKey("metrics", "Metrics")
ACCESS_LOG = web.AppKey("access_log", "AccessLog")
HTTP_SESSION = web.AppKey("http_session", "ClientSession")
CREDENTIALS = web.AppKey("credentials", "CredentialStore")
# Backend facades, set by each backend's cleanup context (refapi/backends/<name>.py).
VAULT = web.AppKey("vault", "VaultClient")
POSTGRES = web.AppKey("postgres", "PostgresBackend")
MYSQL = web.AppKey("mysql", "MysqlBackend")
MONGODB = web.AppKey("mongodb", "MongoBackend")
REDIS = web.AppKey("redis", "RedisBackend")
RABBITMQ = web.AppKey("rabbitmq", "RabbitMQ")
ROOT_BODY = web.AppKey("root_body", bytes)
HEALTH_CHECKS = web.AppKey("health_checks", dict[str, "HealthCheck"])
GUARDS = web.AppKey("guards", dict[str, "Guard"])

# Per-request state set by the middlewares.
REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_IP = web.RequestKey("client_ip", str)
PREFLIGHT = web.RequestKey("preflight", bool)
