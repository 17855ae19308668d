"""Typed, validated settings read once from the environment (contract §4)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

SERVICES = ("vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")
DEFAULT_CORS_ORIGINS = tuple(
    f"http://{host}:{port}" for host in ("localhost", "127.0.0.1") for port in (3000, 8000, 8001, 8080)
)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ConfigError(ValueError):
    """An environment variable holds a value refapi cannot use; the message names it."""


def _secret(default: Any = "") -> Any:
    # Secrets stay out of repr() so a logged Settings object never leaks them.
    return field(default=default, repr=False)


@dataclass(frozen=True)
class RedisNode:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class Settings:
    # Listeners
    http_port: int = 8001
    https_port: int = 8444
    enable_tls: bool = False
    bind_host: str = "0.0.0.0"
    workers: int = 4
    # TLS
    tls_cert_file: str = ""
    tls_key_file: str = ""
    vault_pki_mount: str = "pki_int"
    vault_pki_role: str = "refapi"
    tls_common_name: str = "localhost"
    tls_cert_ttl: str = "720h"
    # Runtime
    debug: bool = False
    log_level: str = "INFO"
    # Limits
    max_request_size: int = 10485760
    max_message_size: int = 1000000
    backend_timeout: float = 5.0
    health_check_timeout: float = 2.0
    retry_after_seconds: int = 5
    # Resilience
    circuit_breaker_failure_threshold: int = 5
    circuit_breaker_reset_timeout: float = 60.0
    critical_services: tuple[str, ...] = ()
    # Rate limits
    rate_limit_enabled: bool = True
    rate_limit_general: int = 100
    rate_limit_health: int = 200
    rate_limit_metrics: int = 1000
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Response cache
    response_cache_enabled: bool = True
    response_cache_ttl_health: int = 30
    response_cache_ttl_vault: int = 300
    # HTTP security
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    api_keys: tuple[str, ...] = _secret(())
    # Vault
    vault_addr: str = "http://localhost:8200"
    vault_token: str = _secret()
    vault_approle_dir: str = ""
    vault_role_id: str = _secret()
    vault_secret_id: str = _secret()
    vault_kv_mount: str = "secret"
    vault_transit_mount: str = "transit"
    vault_transit_key: str = "refapi"
    vault_app_secret: str = "refapi"
    # SQL
    postgres_host: str = "localhost"
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    postgres_password: str = _secret()
    postgres_db: str = "postgres"
    mysql_host: str = "localhost"
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: str = _secret()
    mysql_database: str = "refapi"
    db_pool_min: int = 5
    db_pool_max: int = 20
    # MongoDB
    mongodb_host: str = "localhost"
    mongodb_port: int = 27017
    mongodb_user: str = ""
    mongodb_password: str = _secret()
    mongodb_database: str = "refapi"
    mongodb_auth_source: str = "admin"
    # Redis
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_password: str = _secret()
    redis_cluster: bool = False
    redis_nodes: tuple[RedisNode, ...] = ()
    # RabbitMQ
    rabbitmq_host: str = "localhost"
    rabbitmq_port: int = 5672
    rabbitmq_user: str = "guest"
    rabbitmq_password: str = _secret("guest")
    rabbitmq_vhost: str = "/"
    rabbitmq_management_url: str = "http://localhost:15672"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: os.environ); raise ConfigError naming a bad variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = _ENV_NAMES.get(f.name, f.name.upper())
            raw = env.get(name)
            if raw is None:
                continue
            values[f.name] = _parse(name, f.name, raw)
        return cls(**values)

    def __post_init__(self) -> None:
        if not self.redis_nodes:
            # REDIS_NODES defaults to the one node at REDIS_HOST:REDIS_PORT.
            object.__setattr__(self, "redis_nodes", (RedisNode("redis-1", self.redis_host, self.redis_port),))
        if self.db_pool_min > self.db_pool_max:
            raise ConfigError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        unknown = set(self.critical_services) - set(SERVICES)
        if unknown:
            raise ConfigError(f"CRITICAL_SERVICES: unknown service(s) {', '.join(sorted(unknown))}")
        if self.enable_tls and bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("TLS_CERT_FILE and TLS_KEY_FILE must be set together")

    def redis_node(self, name: str) -> RedisNode | None:
        return next((node for node in self.redis_nodes if node.name == name), None)


# Fields whose environment variable is not simply the upper-cased field name.
_ENV_NAMES = {
    "http_port": "API_FIRST_HTTP_PORT",
    "https_port": "API_FIRST_HTTPS_PORT",
    "enable_tls": "API_FIRST_ENABLE_TLS",
    "api_keys": "REFAPI_API_KEYS",
}
_PORTS = {"http_port", "https_port", "postgres_port", "mysql_port", "mongodb_port", "redis_port", "rabbitmq_port"}
_POSITIVE = {
    "workers",
    "max_request_size",
    "max_message_size",
    "backend_timeout",
    "health_check_timeout",
    "circuit_breaker_failure_threshold",
    "circuit_breaker_reset_timeout",
    "rate_limit_general",
    "rate_limit_health",
    "rate_limit_metrics",
    "response_cache_ttl_health",
    "response_cache_ttl_vault",
    "db_pool_max",
    "retry_after_seconds",
}
_LOG_LEVELS = {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}


def _parse(env_name: str, field_name: str, raw: str) -> Any:
    kind = Settings.__dataclass_fields__[field_name].type
    try:
        if field_name == "trusted_proxies":
            return tuple(ipaddress.ip_network(item, strict=False) for item in _items(raw))
        if field_name == "redis_nodes":
            return _redis_nodes(raw)
        if field_name == "log_level":
            level = raw.strip().upper()
            if level not in _LOG_LEVELS:
                raise ValueError(f"expected one of {', '.join(sorted(_LOG_LEVELS))}")
            return level
        if kind == "bool":
            text = raw.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true/false, 1/0, yes/no or on/off")
        if kind in ("int", "float"):
            number = _number(raw, int if kind == "int" else float)
            if field_name in _PORTS and not 0 < number < 65536:
                raise ValueError("expected a port number 1-65535")
            if field_name in _POSITIVE and number <= 0:
                raise ValueError("expected a positive number")
            if number < 0:
                raise ValueError("expected a non-negative number")
            return number
        if kind.startswith("tuple"):
            return tuple(_items(raw))
        return raw
    except ValueError as exc:
        raise ConfigError(f"{env_name}: {exc}") from None


def _number(raw: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(raw.strip())
    except ValueError:
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}") from None


def _items(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _redis_nodes(raw: str) -> tuple[RedisNode, ...]:
    nodes = []
    for position, item in enumerate(_items(raw), start=1):
        name, _, address = item.rpartition("=")
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"entry {position} is not [name=]host:port")
        nodes.append(RedisNode(name.strip() or f"redis-{position}", host.strip("[]"), int(port)))
    if len({node.name for node in nodes}) != len(nodes):
        raise ValueError("node names must be unique")
    return tuple(nodes)
