"""Every web.AppKey in one place: application state is typed and lives on the app, never in globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from refapi.api.health import HealthCheck
    from aiohttp import ClientSession

    from refapi.config import Settings
    from refapi.logs import AccessLog
    from refapi.metrics import Metrics

SETTINGS = web.AppKey("settings", "Settings")
METRICS = web.AppKey("metrics", "Metrics")
ACCESS_LOG = web.AppKey("access_log", "AccessLog")
HTTP_SESSION = web.AppKey("http_session", "ClientSession")
ROOT_BODY = web.AppKey("root_body", bytes)
HEALTH_CHECKS = web.AppKey("health_checks", dict[str, "HealthCheck"])
