"""Adopt a well-formed X-Request-ID or mint a uuid4; echo it on every response and expose it to logs."""

from __future__ import annotations

import random
import re

from aiohttp import web
from aiohttp.typedefs import Handler

from refapi import keys
from refapi.logs import request_id_var

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._-]{1,128}")


_random_bits = random.getrandbits
# Version 4 and the RFC 4122 variant, set on 128 random bits.
_CLEAR = ~((0xF << 76) | (0x3 << 62))
_SET = (0x4 << 76) | (0x2 << 62)


def new_request_id() -> str:
    """A uuid4 string, made a few times faster than str(uuid.uuid4()).

    Request ids need uniqueness, not secrecy, so the process's PRNG (re-seeded in every forked worker) is
    enough and avoids a getrandom() system call per request.
    """
    h = "%032x" % ((_random_bits(128) & _CLEAR) | _SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_id_of(request: web.Request) -> str:
    return request[keys.REQUEST_ID]


def request_id_middleware() -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(HEADER)
        rid = incoming if incoming is not None and _VALID.fullmatch(incoming) else new_request_id()
        request[keys.REQUEST_ID] = rid
        token = request_id_var.set(rid)
        try:
            response = await handler(request)
        finally:
            request_id_var.reset(token)
        response.headers[HEADER] = rid
        return response

    return request_id
