"""The ceiling for bin/bench: the smallest aiohttp app serving a small JSON body, under the same gunicorn setup."""

from aiohttp import web

BODY = b'{"status":"ok"}'


async def ok(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


async def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    return app
