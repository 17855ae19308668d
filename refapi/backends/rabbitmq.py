"""rabbitmq backend (being written)."""

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register the cleanup context, guard and health check of this backend."""
