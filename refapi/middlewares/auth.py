"""API keys (contract §5): only operations declared with `api_key=True` need one, checked before validation."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from refapi import errors, keys
from refapi.openapi.operation import operation_of

HEADER = "X-API-Key"


def auth_middleware() -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        op = operation_of(request.match_info.handler)
        if op is not None and op.api_key:
            configured = request.app[keys.SETTINGS].api_keys
            if configured and not _valid(request.headers.get(HEADER, ""), configured):
                raise errors.Unauthorized()
        return await handler(request)

    return auth


def _valid(presented: str, configured: tuple[str, ...]) -> bool:
    given = presented.encode()
    # Compare against every key, without stopping early, so timing reveals neither which key nor how much matched.
    matches = [hmac.compare_digest(given, key.encode()) for key in configured]
    return any(matches)
