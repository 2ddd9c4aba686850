"""app.fairpool: connections go to waiters in arrival order, and none is lost."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import Empty

from app.fairpool import FairAsyncQueue


async def test_waiters_are_served_in_arrival_order_and_newcomers_queue_behind() -> None:
    queue = FairAsyncQueue(maxsize=2)
    served: list[str] = []

    async def take(name: str) -> None:
        item = await greenlet_spawn(queue.get, True, 5.0)
        served.append(f"{name}:{item}")

    first = asyncio.create_task(take("first"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(take("second"))
    await asyncio.sleep(0.01)
    queue.put_nowait("a")  # handed to `first` directly ...
    late = asyncio.create_task(take("late"))  # ... so a newcomer cannot take it
    await asyncio.sleep(0.01)
    queue.put_nowait("b")
    queue.put_nowait("c")
    await asyncio.gather(first, second, late)
    assert served == ["first:a", "second:b", "late:c"]
    assert queue.empty()


async def test_an_item_waits_in_the_queue_when_nobody_waits() -> None:
    queue = FairAsyncQueue(maxsize=2)
    queue.put_nowait("x")
    assert await greenlet_spawn(queue.get, False) == "x"
    with pytest.raises(Empty):
        await greenlet_spawn(queue.get, False)


async def test_a_timed_out_waiter_is_skipped() -> None:
    queue = FairAsyncQueue(maxsize=2)
    with pytest.raises(Empty):
        await greenlet_spawn(queue.get, True, 0.01)
    queue.put_nowait("kept")
    assert queue.qsize() == 1
    assert await greenlet_spawn(queue.get, True, 1.0) == "kept"


async def test_a_waiter_cancelled_after_the_handover_passes_the_item_on() -> None:
    queue = FairAsyncQueue(maxsize=2)
    waiting = asyncio.create_task(greenlet_spawn(queue.get, True, 5.0))
    await asyncio.sleep(0.01)
    queue.put_nowait("conn")  # handed over, but the waiter is cancelled before it resumes
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await greenlet_spawn(queue.get, False) == "conn"
