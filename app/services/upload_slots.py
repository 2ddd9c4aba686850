"""How many uploads one person has in flight (SPEC §9: MAX_CONCURRENT_UPLOADS_PER_USER).

A slot is taken before an upload's body is read and given back, whatever happened, when the
request ends. With Redis configured the slots are shared by every API process: one sorted
set per person, `upload-slots:<user id>`, whose members are the in-flight uploads' random
tokens scored by the moment their lease runs out. Taking a slot first drops expired leases,
so a process that dies mid-upload (and never gives its slots back) holds them for one lease
at most. A live upload renews its lease while its body arrives: chunks come at least every
UPLOAD_IDLE_TIMEOUT_SECONDS or the upload is dropped, and the lease is longer than that, so a
live upload never loses its slot to expiry. Without Redis (the embedded single-process
default) the slots are counted in this process's memory.

Not the `limits` package: it counts events in time windows (rate limiting); this is a
semaphore, where a slot is held for as long as a request runs and handed back when it ends.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Protocol

import anyio
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from app.errors import TooManyRequests

logger = logging.getLogger("app.uploads")

KEY_PREFIX = "upload-slots:"
#: What the 429 tells the client to wait: a slot frees when one of the person's uploads
#: ends, which for a live upload is usually within seconds.
RETRY_AFTER_SECONDS = 5

# KEYS[1] the person's set; ARGV: now (ms), lease end (ms), limit, token, key TTL (ms).
# Atomic: parallel uploads from several processes cannot all see the last free slot.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""
# Renew only a lease that is still there (an expired one was already given away).
_RENEW = """
if redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[1], ARGV[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""


class SlotStore(Protocol):
    async def acquire(self, user_id: int, token: str, limit: int, lease: float) -> bool: ...

    async def renew(self, user_id: int, token: str, lease: float) -> None: ...

    async def release(self, user_id: int, token: str) -> None: ...


class MemorySlots:
    """One process's uploads (the embedded default: there is only one API process)."""

    def __init__(self) -> None:
        self._held: dict[int, set[str]] = {}

    async def acquire(self, user_id: int, token: str, limit: int, lease: float) -> bool:
        held = self._held.setdefault(user_id, set())
        if len(held) >= limit:
            return False
        held.add(token)
        return True

    async def renew(self, user_id: int, token: str, lease: float) -> None:
        return None

    async def release(self, user_id: int, token: str) -> None:
        held = self._held.get(user_id)
        if held is not None:
            held.discard(token)
            if not held:
                del self._held[user_id]


class RedisSlots:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)

    async def acquire(self, user_id: int, token: str, limit: int, lease: float) -> bool:
        now = int(time.time() * 1000)
        lease_ms = int(lease * 1000)
        got = await self._acquire(
            keys=[f"{KEY_PREFIX}{user_id}"], args=[now, now + lease_ms, limit, token, lease_ms]
        )
        return bool(got)

    async def renew(self, user_id: int, token: str, lease: float) -> None:
        lease_ms = int(lease * 1000)
        until = int(time.time() * 1000) + lease_ms
        await self._renew(keys=[f"{KEY_PREFIX}{user_id}"], args=[until, token, lease_ms])

    async def release(self, user_id: int, token: str) -> None:
        await self.redis.zrem(f"{KEY_PREFIX}{user_id}", token)


class UploadSlot:
    """One upload's slot, renewed while its body arrives (`keep_alive`)."""

    def __init__(self, store: SlotStore, user_id: int, token: str, lease: float) -> None:
        self._store = store
        self._user_id = user_id
        self._token = token
        self._lease = lease
        self._renewed = time.monotonic()
        self._released = False

    async def release(self) -> None:
        """Give the slot back (idempotent). Shielded: a request ended by cancellation must
        still give its slot back."""
        if self._released:
            return
        self._released = True
        with anyio.CancelScope(shield=True):
            try:
                await self._store.release(self._user_id, self._token)
            except RedisError:
                # The lease runs out by itself.
                logger.warning("upload_slots_unavailable")

    def release_along(self, pipe: Pipeline, redis: Redis) -> bool:
        """Queue the release on `pipe`, a pipeline of `redis` about to run anyway (the
        file-list announcement after the commit), when the slots live on that Redis: one
        round trip instead of two. False (nothing queued): give it back with `release()`."""
        store = self._store
        if self._released or not isinstance(store, RedisSlots) or store.redis is not redis:
            return False
        self._released = True
        pipe.zrem(f"{KEY_PREFIX}{self._user_id}", self._token)
        return True

    async def keep_alive(self) -> None:
        """Renew the lease if a third of it has passed (cheap to call on every chunk)."""
        now = time.monotonic()
        if now - self._renewed < self._lease / 3:
            return
        self._renewed = now
        try:
            await self._store.renew(self._user_id, self._token, self._lease)
        except RedisError:
            logger.warning("upload_slots_unavailable")


def lease_seconds(idle_timeout: float) -> float:
    """A lease outlives the longest wait between two chunks of a live upload, with room for
    what follows the body (type check, storing, the insert)."""
    return max(60.0, 3 * idle_timeout)


async def take(store: SlotStore, user_id: int, *, limit: int, idle_timeout: float) -> UploadSlot:
    """One of the person's `limit` upload slots; 429 when all are taken. Give it back with
    `release()` (the upload service registers that on the unit of work).

    If the shared store is unreachable the upload goes ahead (logged): the slots protect
    other people from one person, and refusing everyone's uploads would not.
    """
    token = secrets.token_hex(16)
    lease = lease_seconds(idle_timeout)
    try:
        got = await store.acquire(user_id, token, limit, lease)
    except RedisError:
        logger.warning("upload_slots_unavailable")
        got = True
    if not got:
        raise TooManyRequests(
            RETRY_AFTER_SECONDS,
            f"You already have {limit} uploads in progress; wait for one to finish",
        )
    return UploadSlot(store, user_id, token, lease)
