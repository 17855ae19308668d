"""Turn every failure — ApiError, the router's 404/405, aiohttp's 413, anything unexpected — into the envelope."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from refapi import errors, keys
from refapi.middlewares.metrics import route_of
from refapi.middlewares.request_id import request_id_of

log = logging.getLogger("refapi.errors")

_BY_STATUS: dict[int, type[errors.ApiError]] = {
    400: errors.BadRequest,
    403: errors.NotFound,  # aiohttp's static handler forbids listing a folder: to a client it is not there
    404: errors.NotFound,
}


def error_response(request: web.Request, exc: errors.ApiError) -> web.Response:
    """The one place an envelope becomes a response (the CORS and rate-limit middlewares use it too)."""
    headers = {"Content-Type": errors.JSON_CONTENT_TYPE, **exc.headers}
    if isinstance(exc, errors.ServiceUnavailable):
        headers.setdefault("Retry-After", str(request.app[keys.SETTINGS].retry_after_seconds))
    metrics = request.app[keys.METRICS]
    metrics.add(metrics.http_errors, exc.error, str(exc.status))
    return web.Response(status=exc.status, body=exc.body(request_id_of(request)), headers=headers)


def from_http_exception(exc: web.HTTPException, max_request_size: int) -> errors.ApiError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return errors.MethodNotAllowed(set(exc.allowed_methods))
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        # aiohttp raises this while reading a body past client_max_size, which is MAX_REQUEST_SIZE.
        return errors.PayloadTooLarge(max_request_size)
    if isinstance(exc, web.HTTPUnsupportedMediaType):
        return errors.UnsupportedMediaType(())
    error_class = _BY_STATUS.get(exc.status, errors.InternalServerError)
    if error_class is errors.NotFound:
        return errors.NotFound()
    if error_class is errors.BadRequest:
        return errors.BadRequest()
    return errors.InternalServerError()


def errors_middleware() -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.ApiError as exc:
            if isinstance(exc, errors.InternalServerError):
                log.error("request failed: %s", exc.message, exc_info=exc)
            return error_response(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                return exc  # redirects raised by aiohttp itself stay what they are
            api_error = from_http_exception(exc, request.app[keys.SETTINGS].max_request_size)
            if isinstance(api_error, errors.InternalServerError):
                log.error("unexpected HTTP %d from a handler", exc.status)
            return error_response(request, api_error)
        except Exception:
            log.exception("unhandled error while serving %s %s", request.method, route_of(request))
            return error_response(request, errors.InternalServerError())

    return envelope
