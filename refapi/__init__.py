"""refapi: a reference aiohttp service integrating Vault, SQL, MongoDB, Redis and RabbitMQ."""

__version__ = "1.0.0"
