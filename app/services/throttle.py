"""Failed-login throttling per username and per client address.

Counters live in Redis when it is configured (every API process shares them); otherwise in
this process's memory, which is right for the single-process embedded default only.
Fixed windows: the first failure starts a window of `window` seconds; at `limit` failures
within it, further attempts are refused until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.errors import TooManyRequests

logger = logging.getLogger("app.throttle")

KEY_PREFIX = "login-fail:"


class CounterStore(Protocol):
    async def get(self, keys: list[str]) -> list[tuple[int, int]]:
        """(count, seconds left in the window) for each key."""

    async def incr(self, keys: list[str], window: int) -> None: ...

    async def delete(self, keys: list[str]) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[str, tuple[int, float]] = {}
        self._lock = asyncio.Lock()

    async def get(self, keys: list[str]) -> list[tuple[int, int]]:
        now = time.monotonic()
        out = []
        for key in keys:
            count, until = self._data.get(key, (0, 0.0))
            out.append((count, int(until - now) + 1) if until > now else (0, 0))
        return out

    async def incr(self, keys: list[str], window: int) -> None:
        async with self._lock:
            now = time.monotonic()
            for key in keys:
                count, until = self._data.get(key, (0, 0.0))
                if until <= now:
                    count, until = 0, now + window
                self._data[key] = (count + 1, until)
            if len(self._data) > 100_000:  # bound memory: drop expired windows
                self._data = {k: v for k, v in self._data.items() if v[1] > now}

    async def delete(self, keys: list[str]) -> None:
        async with self._lock:
            for key in keys:
                self._data.pop(key, None)


class RedisStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, keys: list[str]) -> list[tuple[int, int]]:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.ttl(key)
        raw = await pipe.execute()
        out = []
        for i in range(0, len(raw), 2):
            count = int(raw[i] or 0)
            ttl = int(raw[i + 1])
            out.append((count, ttl if ttl > 0 else 1) if count else (0, 0))
        return out

    async def incr(self, keys: list[str], window: int) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for key in keys:
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
        await pipe.execute()

    async def delete(self, keys: list[str]) -> None:
        await self._redis.delete(*keys)


class LoginThrottle:
    def __init__(self, store: CounterStore, *, limit: int, address_limit: int, window: int) -> None:
        self.store = store
        self.limit = limit
        self.address_limit = address_limit
        self.window = window

    @staticmethod
    def _keys(username: str, address: str) -> list[str]:
        # Bounded keys whatever the client sends (usernames are at most 150 characters).
        return [f"{KEY_PREFIX}user:{username.casefold()[:160]}", f"{KEY_PREFIX}addr:{address[:64]}"]

    async def check(self, username: str, address: str) -> None:
        """Raise TooManyRequests while either counter is at its limit."""
        try:
            (user_count, user_ttl), (addr_count, addr_ttl) = await self.store.get(
                self._keys(username, address)
            )
        except RedisError:
            logger.warning("throttle_store_unavailable")
            return
        waits = []
        if user_count >= self.limit:
            waits.append(user_ttl)
        if addr_count >= self.address_limit:
            waits.append(addr_ttl)
        if waits:
            raise TooManyRequests(max(waits), "Too many failed sign-in attempts; try again later")

    async def failed(self, username: str, address: str) -> None:
        try:
            await self.store.incr(self._keys(username, address), self.window)
        except RedisError:
            logger.warning("throttle_store_unavailable")

    async def succeeded(self, username: str) -> None:
        try:
            await self.store.delete(self._keys(username, "")[:1])
        except RedisError:
            logger.warning("throttle_store_unavailable")
