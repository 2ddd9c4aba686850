"""A connection pool that serves waiting requests first come, first served.

SQLAlchemy's AsyncAdaptedQueuePool lets a newcomer take a connection that has just come back
while older requests are still waiting for one (its queue's `get` tries `get_nowait` first,
and asyncio.Queue sends a waiter that lost such a race to the back of the line). Under load,
when more requests are in flight than the pool has connections, some requests are overtaken
again and again: the load test showed a few connections served 20 times less often than
others and p99 latency three times the median, with no error anywhere.

Here a returned connection is handed straight to the longest waiter; a connection sits in the
queue only when nobody waits, so taking one from it never overtakes anybody.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty


class FairAsyncQueue(AsyncAdaptedQueue[Any]):
    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()

    def _hand_over(self, item: Any) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return True
        return False

    def put_nowait(self, item: Any) -> None:
        if not self._hand_over(item):
            super().put_nowait(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if not self._hand_over(item):
            super().put(item, block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        # Items wait in the queue only while nobody waits for one: taking it is fair.
        try:
            return self.get_nowait()
        except Empty:
            if not block:
                raise
        return await_(self._wait(timeout))

    async def _wait(self, seconds: float | None) -> Any:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            done, _ = await asyncio.wait({waiter}, timeout=seconds)
        except BaseException:
            # Cancelled while waiting: a connection already handed over is passed on.
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())
            waiter.cancel()
            raise
        if not done:
            waiter.cancel()
            raise Empty()
        return waiter.result()


class FairAsyncAdaptedQueuePool(AsyncAdaptedQueuePool):
    _queue_class = FairAsyncQueue
