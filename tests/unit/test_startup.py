"""What the app does once at startup so that requests do not pay for it."""

from __future__ import annotations

import gc

from tests.conftest import ClientFactory


async def test_the_startup_heap_is_frozen_out_of_garbage_collection(make_client: ClientFactory) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    await make_client()  # starts the app
    # The imports, schemas and spec rendering are now out of every collection's scan.
    assert gc.get_freeze_count() > 10_000
