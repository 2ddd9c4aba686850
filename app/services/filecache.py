"""Pages of `GET /api/files/` kept in each API process, dropped as soon as their files change.

The file list is the API's hottest read: the dashboard polls it while anything is processing,
and a client waiting for its count does the same. Between two changes of a person's files
every answer is the same, so each API process keeps the serialized pages it served and
answers from memory, with no database round trip.

Correctness rests on one rule: **whoever changes a person's uploads announces it after the
commit** (`FileChanges.announce`): the API when it accepts an upload, the worker when a count
finishes. The announcement is a Redis PUBLISH on `CHANNEL`; every API process listens
(`listen`) and drops that person's pages (the announcing process drops its own at once, so a
client always sees its own upload on the next read of the same process). A page read from the
database is kept only if no announcement for its owner arrived while it was being read, so a
page that missed a change is never stored after the change was announced.

What the cache does not see, it bounds: a page older than `file_list_cache_seconds` (5 s by
default) is read again, in the background, on its next request (answered meanwhile with the
old page, so no request waits for an expiry under load; a refused read, say of an account
deactivated straight in the database, removes the page). That is how long such a
deactivation, or a change whose announcement was lost (its process died between commit and
publish), can go unnoticed. While the listener is not subscribed (Redis away, reconnecting)
nothing is cached and every read goes to the database; without Redis (the embedded default)
the cache is off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

logger = logging.getLogger("app.filecache")

CHANNEL: Final = "app:files-changed"
#: Announced instead of a user id: drop every page (operators, tests).
EVERYONE: Final = "*"

PageKey = tuple[int, int, int, str | None]  # user id, limit, offset, status filter


class FilePageCache:
    """Serialized pages per user, each valid until its owner's next change or its expiry."""

    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._pages: dict[int, dict[PageKey, tuple[float, bytes]]] = {}
        self._entries = 0
        # Bumped by every drop of a user's pages: a read that started before a drop may not
        # store what it read.
        self._generations: dict[int, int] = {}
        self._epoch = 0  # bumped by clear()
        # Reads of a page in progress: concurrent misses of one page wait for the same read.
        self._loading: dict[PageKey, asyncio.Future[bytes]] = {}
        self.subscribed = False
        self.hits = 0
        self.stale = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """Pages are served and stored only while changes are being heard."""
        return self.subscribed and self.ttl > 0

    def get(self, key: PageKey) -> bytes | None:
        if not self.enabled:
            return None
        found = self._pages.get(key[0], {}).get(key)
        if found is None or found[0] <= self._clock():
            self.misses += 1
            return None
        self.hits += 1
        return found[1]

    async def fetch(self, key: PageKey, load: Callable[[], Awaitable[bytes]]) -> bytes:
        """The page from memory, else from `load()` (which reads the database).

        Concurrent misses of one page share one `load()`. An expired page is still answered
        while one `load()` refreshes it in the background (stale-while-revalidate), so under
        load no request waits for an expiry; a page dropped by a change is gone, and the
        next request waits for a fresh read. A change also detaches the read in progress, so
        a request that arrives after the change never waits for a read that may have missed it.
        """
        if not self.enabled:
            return await load()
        found = self._pages.get(key[0], {}).get(key)
        if found is not None:
            if found[0] > self._clock():
                self.hits += 1
            else:
                self.stale += 1
                self._load(key, load)
            return found[1]
        self.misses += 1
        # Shielded: a waiter that goes away (client disconnected) leaves the read to the others.
        return await asyncio.shield(self._load(key, load))

    def _load(self, key: PageKey, load: Callable[[], Awaitable[bytes]]) -> asyncio.Future[bytes]:
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(load())
            self._loading[key] = pending
            pending.add_done_callback(partial(self._loaded, key, self.token(key[0])))
        return pending

    def _loaded(self, key: PageKey, token: tuple[int, int], done: asyncio.Future[bytes]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if not done.cancelled() and done.exception() is None:
            self.put(key, done.result(), token)
        elif token == self.token(key[0]):
            # Refused (say, the account was deactivated): never answer with the old page. A
            # read detached by a change leaves alone what later reads stored.
            self._forget(key)

    def _forget(self, key: PageKey) -> None:
        pages = self._pages.get(key[0])
        if pages is not None and pages.pop(key, None) is not None:
            self._entries -= 1

    def token(self, user_id: int) -> tuple[int, int]:
        """Taken before reading a page from the database; `put` needs it back."""
        return self._epoch, self._generations.get(user_id, 0)

    def put(self, key: PageKey, body: bytes, token: tuple[int, int]) -> bool:
        """Keep a page read from the database, unless its owner's files changed meanwhile."""
        user_id = key[0]
        if not self.enabled or token != self.token(user_id):
            return False
        if self._entries >= self.max_entries:
            self.clear()
            return False
        pages = self._pages.setdefault(user_id, {})
        if key not in pages:
            self._entries += 1
        pages[key] = (self._clock() + self.ttl, body)
        return True

    def drop(self, user_id: int) -> None:
        """Forget a user's pages (their files changed)."""
        self._generations[user_id] = self._generations.get(user_id, 0) + 1
        pages = self._pages.pop(user_id, None)
        if pages:
            self._entries -= len(pages)
        for key in [key for key in self._loading if key[0] == user_id]:
            del self._loading[key]
        if len(self._generations) > self.max_entries:
            self.clear()

    def clear(self) -> None:
        self._pages.clear()
        self._loading.clear()
        self._generations.clear()
        self._entries = 0
        self._epoch += 1

    def heard(self, message: bytes | str) -> None:
        """Apply one announcement from `CHANNEL`."""
        text = message.decode() if isinstance(message, bytes) else message
        if text == EVERYONE:
            self.clear()
            return
        try:
            self.drop(int(text))
        except ValueError:
            logger.warning("file_change_unreadable", extra={"announcement": text[:64]})


class FileChanges:
    """Announces changes of a person's uploads to every API process (after the commit)."""

    def __init__(self, redis: Redis | None, cache: FilePageCache | None = None) -> None:
        self._redis = redis
        self._cache = cache

    async def announce(
        self, user_id: int, *, along: Callable[[Pipeline, Redis], object] | None = None
    ) -> None:
        """Drop this process's pages of `user_id` and PUBLISH the change. `along(pipeline,
        redis)` may queue more commands to send in the same round trip (the upload slot's
        release); the round trip is finished even if the caller is cancelled meanwhile."""
        if self._cache is not None:
            self._cache.drop(user_id)
        if self._redis is None:
            return
        try:
            if along is None:
                await self._redis.publish(CHANNEL, str(user_id))
                return
            pipe = self._redis.pipeline(transaction=False)
            along(pipe, self._redis)
            pipe.publish(CHANNEL, str(user_id))
            await asyncio.shield(pipe.execute())
        except (RedisError, OSError):
            # Other processes keep their pages until they expire (file_list_cache_seconds).
            logger.warning("file_change_not_announced", extra={"user_id": user_id}, exc_info=True)


async def listen(redis: Redis, cache: FilePageCache, *, retry_seconds: float = 1.0) -> None:
    """Keep `cache` in step with `CHANNEL` for as long as the process runs (cancel to stop).

    The cache is enabled only between the subscription's confirmation and the loss of the
    connection; it starts empty each time, so nothing missed while away is ever served.
    """
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "subscribe":
                        cache.clear()
                        cache.subscribed = True
                    elif kind == "message":
                        cache.heard(message["data"])
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            if cache.subscribed:
                logger.warning("file_changes_lost", extra={"error": type(exc).__name__})
        finally:
            cache.subscribed = False
            cache.clear()
        await asyncio.sleep(retry_seconds)
