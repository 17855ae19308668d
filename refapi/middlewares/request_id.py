"""Adopt a well-formed X-Request-ID or mint a uuid4; echo it on every response and expose it to logs."""

from __future__ import annotations

import re
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from refapi import keys
from refapi.logs import request_id_var

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def request_id_of(request: web.Request) -> str:
    return request[keys.REQUEST_ID]


def request_id_middleware() -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(HEADER)
        rid = incoming if incoming is not None and _VALID.fullmatch(incoming) else str(uuid.uuid4())
        request[keys.REQUEST_ID] = rid
        token = request_id_var.set(rid)
        try:
            response = await handler(request)
        finally:
            request_id_var.reset(token)
        response.headers[HEADER] = rid
        return response

    return request_id
