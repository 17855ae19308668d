"""Shared fixtures: the real app built from settings, served in-process by pytest-aiohttp."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from refapi.app import build_app
from refapi.config import Settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, web.Application]]]


@pytest.fixture
def make_client(aiohttp_client: Any) -> ClientFactory:
    """`await make_client(**overrides)` → a test client for build_app(Settings(**overrides))."""

    async def factory(app: web.Application | None = None, **overrides: Any) -> TestClient[Any, web.Application]:
        if app is None:
            app = build_app(dataclasses.replace(Settings(), **overrides))
        return await aiohttp_client(app)

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, web.Application]:
    return await make_client()
