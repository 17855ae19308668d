"""The ApiError family and the one JSON error envelope every 4xx/5xx body uses (contract §1.3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class ApiError(Exception):
    """An error answered with the envelope; subclasses fix the status, code and default message."""

    status: ClassVar[int] = 500
    error: ClassVar[str] = "InternalServerError"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = dict(details or {})
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def body(self, request_id: str) -> bytes:
        envelope: dict[str, Any] = {
            "error": self.error,
            "message": self.message,
            "status_code": self.status,
            "request_id": request_id,
        }
        if self.details:
            envelope["details"] = self.details
        return orjson.dumps(envelope)


class BadRequest(ApiError):
    status, error, default_message = 400, "BadRequest", "Bad request"


class Unauthorized(ApiError):
    status, error, default_message = 401, "Unauthorized", "A valid API key is required"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})


class Forbidden(ApiError):
    status, error, default_message = 403, "Forbidden", "Forbidden"

    def __init__(self, message: str | None = None, *, reason: str) -> None:
        super().__init__(message, details={"reason": reason})


class NotFound(ApiError):
    status, error, default_message = 404, "NotFound", "Resource not found"

    def __init__(
        self,
        message: str | None = None,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        extra = dict(details or {})
        if resource_type is not None:
            extra = {"resource_type": resource_type, "resource_id": resource_id, **extra}
        super().__init__(message, details=extra)


class MethodNotAllowed(ApiError):
    status, error, default_message = 405, "MethodNotAllowed", "Method not allowed"

    def __init__(self, allowed: set[str]) -> None:
        methods = set(allowed)
        if "GET" in methods:
            methods.add("HEAD")
        super().__init__(headers={"Allow": ", ".join(sorted(methods))})


class Conflict(ApiError):
    status, error, default_message = 409, "Conflict", "The request conflicts with the backend's state"

    def __init__(self, message: str | None = None, *, reason: str) -> None:
        super().__init__(message, details={"reason": reason})


class PayloadTooLarge(ApiError):
    status, error, default_message = 413, "PayloadTooLarge", "Request body is too large"

    def __init__(self, max_bytes: int, message: str | None = None) -> None:
        super().__init__(message, details={"max_bytes": max_bytes})


class UnsupportedMediaType(ApiError):
    status, error, default_message = 415, "UnsupportedMediaType", "Unsupported content type"

    def __init__(self, allowed: tuple[str, ...] | list[str]) -> None:
        super().__init__(details={"allowed_content_types": list(allowed)})


class ValidationFailed(ApiError):
    status, error, default_message = 422, "ValidationError", "Request validation failed"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(details={"validation_errors": errors})


class RateLimitExceeded(ApiError):
    status, error, default_message = 429, "RateLimitExceeded", "Rate limit exceeded"

    def __init__(self, *, scope: str, limit: int, headers: Mapping[str, str]) -> None:
        super().__init__(details={"scope": scope, "limit": limit}, headers=headers)


class InternalServerError(ApiError):
    """Anything unexpected: fixed message, never details."""


class ServiceUnavailable(ApiError):
    status, error, default_message = 503, "ServiceUnavailable", "Service temporarily unavailable"

    # Retry-After (RETRY_AFTER_SECONDS) is added by the error middleware, which owns the settings.
    def __init__(self, service: str, reason: str | None = None) -> None:
        details = {"service": service} if reason is None else {"service": service, "reason": reason}
        super().__init__(f"{SERVICE_NAMES.get(service, service)} is unavailable", details=details)
        self.service = service
        self.reason = reason


class CircuitOpen(ApiError):
    status, error = 503, "CircuitOpen"

    def __init__(self, service: str, seconds_to_half_open: float) -> None:
        super().__init__(
            f"Circuit breaker for {SERVICE_NAMES.get(service, service)} is open",
            details={"service": service},
            headers={"Retry-After": str(max(1, math.ceil(seconds_to_half_open)))},
        )
        self.service = service


SERVICE_NAMES = {
    "vault": "Vault",
    "postgres": "PostgreSQL",
    "mysql": "MySQL",
    "mongodb": "MongoDB",
    "redis": "Redis",
    "rabbitmq": "RabbitMQ",
}
