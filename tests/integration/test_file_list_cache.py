"""GET /api/files/ answered from memory, never behind an announced change (filecache.py).

With Redis (TEST_REDIS_URL) the API process keeps pages and the announcements travel through
Redis as in production; on the embedded default the cache is off and every read goes to the
database. The list must be right in both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.services import filecache
from app.services.blobstore import Storage
from app.services.filecache import FileChanges, FilePageCache
from app.tasks.wordcount import process_upload
from tests.support import Account, UserFactory, grant_payment

Sessions = async_sessionmaker[AsyncSession]


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `check` (sync or async) until it returns something truthy, for at most `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        await asyncio.sleep(0.02)


async def files(client: AsyncClient, account: Account, **params: Any) -> dict[str, Any]:
    resp = await client.get("/api/files/", params=params, headers=account.headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture
async def worker_redis(settings: Settings) -> AsyncIterator[Redis | None]:
    """What a worker process announces with: its own connection (None without Redis)."""
    url = settings.shared_redis_url
    client = Redis.from_url(url) if url else None
    yield client
    if client is not None:
        await client.aclose()


@pytest.fixture
def long_lived_pages(app: FastAPI) -> Iterator[FilePageCache]:
    """Pages that would outlive the test: a page still served after a change can only be a
    missed announcement, never an expiry."""
    cache: FilePageCache = app.state.file_pages
    ttl = cache.ttl
    cache.ttl = 300.0
    yield cache
    cache.ttl = ttl


async def test_the_list_follows_uploads_and_counts(
    client: AsyncClient,
    user_factory: UserFactory,
    db: Sessions,
    settings: Settings,
    long_lived_pages: FilePageCache,
    worker_redis: Redis | None,
    storage: Storage,
) -> None:
    cache = long_lived_pages
    with_redis = settings.shared_redis_url is not None
    if with_redis:
        await eventually(lambda: cache.enabled)
    else:
        assert not cache.enabled
    alice = await user_factory.create()
    bob = await user_factory.create()
    await grant_payment(db, alice.id)

    assert (await files(client, alice))["total"] == 0
    hits = cache.hits
    assert (await files(client, alice))["total"] == 0
    assert cache.hits == hits + (1 if with_redis else 0)

    # The uploader's next read shows the new file at once.
    resp = await client.post(
        "/api/upload/",
        files={"file": ("a.txt", b"one two three", "text/plain")},
        headers=alice.headers,
    )
    assert resp.status_code == 202, resp.text
    upload_id = resp.json()["id"]
    listed = await files(client, alice)
    assert [(f["id"], f["status"]) for f in listed["items"]] == [(upload_id, "processing")]
    assert (await files(client, alice, status="processing"))["total"] == 1
    assert (await files(client, bob))["total"] == 0

    # The worker settles it in another process; the list follows without waiting for expiry.
    result = await process_upload(db, upload_id, settings, storage, FileChanges(worker_redis))
    assert result.status == "completed"

    async def counted() -> bool:
        item = (await files(client, alice))["items"][0]
        return bool(item["status"] == "completed" and item["word_count"] == 3)

    await eventually(counted)
    assert (await files(client, alice, status="processing"))["total"] == 0
    assert (await files(client, alice, status="completed"))["total"] == 1


async def test_the_cache_is_off_while_the_change_feed_is_away(settings: Settings) -> None:
    """Nothing is kept while changes cannot be heard; with Redis, a lost feed empties the
    cache and a new subscription starts it again from empty."""
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    away = FilePageCache(300.0)
    task = asyncio.create_task(filecache.listen(unreachable, away, retry_seconds=0.01))
    try:
        await asyncio.sleep(0.2)
        assert not away.enabled
        assert away.put((1, 20, 0, None), b"page", away.token(1)) is False
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await unreachable.aclose()
    assert not away.subscribed

    url = settings.shared_redis_url
    if url is None:
        return
    feed = Redis.from_url(url)
    admin = Redis.from_url(url)
    cache = FilePageCache(300.0)
    task = asyncio.create_task(filecache.listen(feed, cache, retry_seconds=0.05))
    try:
        await eventually(lambda: cache.enabled)
        assert cache.put((1, 20, 0, None), b"page", cache.token(1))
        await admin.publish(filecache.CHANNEL, "1")
        await eventually(lambda: cache.get((1, 20, 0, None)) is None)
        cache.put((1, 20, 0, None), b"page", cache.token(1))
        # Drop every subscriber connection, as a Redis restart would.
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await eventually(lambda: cache.get((1, 20, 0, None)) is None)
        await eventually(lambda: cache.enabled)  # subscribed again, from empty
        assert cache.get((1, 20, 0, None)) is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await feed.aclose()
        await admin.aclose()


async def test_the_upload_slot_goes_back_with_the_announcement(settings: Settings) -> None:
    """After an upload's commit its slot is given back in the announcement's round trip when
    the slots live on the same Redis, and on its own otherwise; either way it is free and
    the change is heard."""
    from app.services import upload_slots

    url = settings.shared_redis_url
    if url is None:
        pytest.skip("the shared slots and the announcement are on Redis")
    redis, other, feed = Redis.from_url(url), Redis.from_url(url), Redis.from_url(url)
    cache = FilePageCache(300.0)
    listening = asyncio.create_task(filecache.listen(feed, cache, retry_seconds=0.05))
    user = 987_654
    key = f"{upload_slots.KEY_PREFIX}{user}"
    try:
        await eventually(lambda: cache.enabled)
        for store_client, along in ((redis, True), (other, False)):
            slot = await upload_slots.take(
                upload_slots.RedisSlots(store_client), user, limit=1, idle_timeout=30
            )
            assert await redis.zcard(key) == 1
            cache.put((user, 20, 0, None), b"page", cache.token(user))
            queued: list[bool] = []

            def release_along(
                pipe: Any, client: Redis, slot: Any = slot, queued: list[bool] = queued
            ) -> bool:
                queued.append(slot.release_along(pipe, client))
                return queued[-1]

            await FileChanges(redis).announce(user, along=release_along)
            assert queued == [along]
            if along:
                assert await redis.zcard(key) == 0  # gone in the same round trip
            await slot.release()  # what uploads._announce does next: no-op if it went along
            assert await redis.zcard(key) == 0
            await eventually(lambda: cache.get((user, 20, 0, None)) is None)
    finally:
        listening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listening
        await redis.delete(key)
        for client in (redis, other, feed):
            await client.aclose()
