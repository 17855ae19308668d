"""Backend credentials (contract §3.6): per field, the service's Vault secret, else the env var, else the default."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from refapi.config import Settings

log = logging.getLogger("refapi.credentials")

# service -> (Vault KV secret name, {field: Settings attribute holding the env/default value})
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "postgres": ("postgres", {"user": "postgres_user", "password": "postgres_password", "database": "postgres_db"}),
    "mysql": ("mysql", {"user": "mysql_user", "password": "mysql_password", "database": "mysql_database"}),
    "mongodb": ("mongodb", {"user": "mongodb_user", "password": "mongodb_password", "database": "mongodb_database"}),
    "redis": ("redis-1", {"password": "redis_password"}),
    "rabbitmq": ("rabbitmq", {"user": "rabbitmq_user", "password": "rabbitmq_password", "vhost": "rabbitmq_vhost"}),
}
READ_ONLY_SECRETS = frozenset(secret for secret, _ in SOURCES.values())

# Reads one KV secret's data, or None when absent; raises when Vault cannot answer.
SecretReader = Callable[[str], Awaitable[Mapping[str, Any] | None]]


class CredentialStore:
    """Resolved once at startup; re-read from Vault when a backend rejects them, at most every 30 s per service."""

    def __init__(self, settings: Settings, reader: SecretReader | None, *, min_refresh_interval: float = 30.0) -> None:
        self._settings = settings
        self._reader = reader
        self._min_interval = min_refresh_interval
        self._values: dict[str, dict[str, str]] = {service: self._merge(service, None) for service in SOURCES}
        self._last_read: dict[str, float] = {}
        self._locks = {service: asyncio.Lock() for service in SOURCES}

    def get(self, service: str) -> Mapping[str, str]:
        return self._values[service]

    async def load_all(self) -> None:
        await asyncio.gather(*(self._read(service) for service in SOURCES))

    async def refresh(self, service: str) -> bool:
        """After an authentication failure: re-read the secret (rate-limited); True if the credentials changed."""
        async with self._locks[service]:
            last = self._last_read.get(service)
            if last is not None and time.monotonic() - last < self._min_interval:
                return False
            before = self._values[service]
            await self._read(service)
            return self._values[service] != before

    async def _read(self, service: str) -> None:
        self._last_read[service] = time.monotonic()
        if self._reader is None:
            return
        secret_name = SOURCES[service][0]
        try:
            secret = await self._reader(secret_name)
        except Exception as exc:  # Vault down: keep what we have (env/defaults at startup)
            log.warning(
                "could not read credentials for %s from Vault (%s); using environment/defaults",
                service,
                type(exc).__name__,
            )
            return
        self._values[service] = self._merge(service, secret)

    def _merge(self, service: str, secret: Mapping[str, Any] | None) -> dict[str, str]:
        fields = SOURCES[service][1]
        merged = {}
        for name, attribute in fields.items():
            value = secret.get(name) if secret else None
            merged[name] = str(value) if value is not None else getattr(self._settings, attribute)
        return merged
