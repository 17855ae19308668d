"""Helpers shared by the database tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

DATABASES = ("postgres", "mysql", "mongodb")
LABELS = {"postgres": "PostgreSQL", "mysql": "MySQL", "mongodb": "MongoDB"}
# Generous: only a broken recovery would ever wait this long; a working one returns on the first tries.
DEADLINE = 15.0


async def eventually(condition: Callable[[], Awaitable[bool]], deadline: float = DEADLINE) -> None:
    """Poll `condition` until it holds; fail once `deadline` seconds have passed."""
    end = time.monotonic() + deadline
    while not await condition():
        assert time.monotonic() < end, f"condition not reached within {deadline} s"
        await asyncio.sleep(0.05)
