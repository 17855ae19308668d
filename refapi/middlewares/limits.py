"""Request bodies (contract §3.1): the content-type allow-list, and the size limit before and while reading.

The limit while reading is aiohttp's `client_max_size` (set to MAX_REQUEST_SIZE in app.py); its 413 is turned
into the envelope by the error middleware, chunked bodies included.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from refapi import errors, keys

ALLOWED_CONTENT_TYPES = (
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
)
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def limits_middleware() -> web.middleware:  # type: ignore[valid-type]
    allowed = frozenset(ALLOWED_CONTENT_TYPES)

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            return await handler(request)  # routing errors come first
        if request.method in _WITH_BODY and request.body_exists:
            declared = request.headers.get("Content-Type")
            if declared is None or not declared.strip():
                raise errors.BadRequest("Content-Type header is required for a request body")
            if declared.split(";", 1)[0].strip().lower() not in allowed:
                raise errors.UnsupportedMediaType(ALLOWED_CONTENT_TYPES)
        length = request.content_length
        max_bytes = request.app[keys.SETTINGS].max_request_size
        if length is not None and length > max_bytes:
            raise errors.PayloadTooLarge(max_bytes)
        return await handler(request)

    return limits
