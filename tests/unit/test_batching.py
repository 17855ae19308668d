"""Coalescing: items submitted together leave together, one batch at a time, each getting its own answer."""

from __future__ import annotations

import asyncio

import pytest

from refapi.batching import Coalescer


class Recorder:
    """A send() that records each batch and, while `gate` is set, holds the batch until it is released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        if self.gate is not None:
            await self.gate.wait()
        return [item * 10 for item in items]


async def test_items_of_one_loop_turn_share_one_batch_and_get_their_own_results() -> None:
    send = Recorder()
    batches = Coalescer(send)
    assert await asyncio.gather(*(batches.submit(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert send.batches == [[0, 1, 2, 3, 4]]


async def test_items_arriving_while_a_batch_is_in_flight_leave_together_after_it() -> None:
    send = Recorder()
    send.gate = asyncio.Event()
    batches = Coalescer(send, interval=0)
    first = asyncio.create_task(batches.submit(1))
    while not send.batches:
        await asyncio.sleep(0)
    later = [asyncio.create_task(batches.submit(n)) for n in (2, 3, 4)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert send.batches == [[1]]  # nothing else is sent while the first batch is out
    send.gate.set()
    assert await first == 10 and await asyncio.gather(*later) == [20, 30, 40]
    assert send.batches == [[1], [2, 3, 4]]


async def test_batches_are_at_least_the_interval_apart() -> None:
    send = Recorder()
    batches = Coalescer(send, interval=3600)  # far longer than the test: a second batch would hang it
    assert await batches.submit(1) == 10
    second = asyncio.create_task(batches.submit(2))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not second.done() and send.batches == [[1]]
    second.cancel()


async def test_a_failed_batch_fails_every_item_of_it_and_the_next_batch_is_sent() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return items

    batches = Coalescer(flaky, interval=0)
    results = await asyncio.gather(*(batches.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert await batches.submit(7) == 7


async def test_a_cancelled_item_does_not_disturb_the_others() -> None:
    send = Recorder()
    send.gate = asyncio.Event()
    batches = Coalescer(send)
    tasks = [asyncio.create_task(batches.submit(n)) for n in range(3)]
    while not send.batches:
        await asyncio.sleep(0)
    tasks[1].cancel()
    send.gate.set()
    assert await tasks[0] == 0 and await tasks[2] == 20
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
