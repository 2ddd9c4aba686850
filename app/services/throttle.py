"""Sign-in throttling per username and per client address (SPEC §5, §9), on `limits`.

Every attempt is counted *before* its password is checked, in one atomic step per counter
(`FixedWindowRateLimiter.hit`: Redis INCRBY in a Lua script, or a locked in-memory counter).
So of N guesses sent at the same moment for one username, at most LOGIN_FAILURE_LIMIT are
let through to the password check, whatever the timing; the rest are refused with 429 and
`Retry-After` without touching the database or argon2. A counter's window starts with its
first attempt and lasts LOGIN_FAILURE_WINDOW_SECONDS; every key expires with its window, so
nothing is kept longer than that.

What a successful sign-in does to the counters: it clears the username's counter (the
owner has just proved they know the password, so their earlier typos no longer count) and
gives its address back the one attempt it took (several people behind one address sign
in without using up its budget for failures). Only failures, then, stay counted.

Where the counters live: in Redis when one is configured (`settings.shared_redis_url`),
shared by every API process; otherwise in this process's memory (the single-process
embedded default). When Redis does not answer, sign-in keeps working on a per-process
in-memory counter with the same limits (each API process then enforces them on its own)
and every such attempt logs `throttle_store_unavailable` at ERROR.

The username counter's key is a hash of the canonical username (app/usernames.py): the very
form the account is looked up by, so `Alice`, `alice ` and `ａｌｉｃｅ` share one counter,
and no username, however long, is stored in the key.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis

from app.errors import TooManyRequests
from app.usernames import canonical_username

logger = logging.getLogger("app.throttle")

#: Every Redis key of the throttle starts with this.
KEY_PREFIX = "login-throttle"
REFUSED = "Too many failed sign-in attempts; try again later"


def redis_storage(redis: Redis) -> RedisStorage:
    """`limits`' async Redis storage on redis-py, sharing this client's connection pool."""
    return RedisStorage(
        "async+redis://",
        implementation="redispy",
        wrap_exceptions=True,
        key_prefix=KEY_PREFIX,
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )


@dataclass
class ThrottleStore:
    """Where the counters live (one per process, made in the lifespan): `primary` (Redis or
    memory) and, behind Redis, the in-memory stand-in used while Redis does not answer."""

    primary: Storage
    fallback: Storage

    @classmethod
    def for_redis(cls, redis: Redis | None) -> ThrottleStore:
        memory = MemoryStorage()
        return cls(redis_storage(redis) if redis is not None else memory, memory)


class Attempt:
    """One counted sign-in attempt; `succeeded()` once its password proved right."""

    def __init__(self, throttle: LoginThrottle, storage: Storage, user_id: str, addr_id: str):
        self._throttle = throttle
        self._storage = storage
        self._user_id = user_id
        self._addr_id = addr_id

    async def succeeded(self) -> None:
        limiter = FixedWindowRateLimiter(self._storage)
        try:
            await limiter.clear(self._throttle.user_item, self._user_id)
            await limiter.hit(self._throttle.address_item, self._addr_id, cost=-1)
        except StorageError:
            logger.error("throttle_store_unavailable", extra={"step": "success"})


class LoginThrottle:
    def __init__(self, store: ThrottleStore, *, limit: int, address_limit: int, window: int):
        self.store = store
        self.window = window
        self.user_item: RateLimitItem = RateLimitItemPerSecond(limit, window, namespace="user")
        self.address_item: RateLimitItem = RateLimitItemPerSecond(
            address_limit, window, namespace="addr"
        )

    @staticmethod
    def _ids(username: str, address: str) -> tuple[str, str]:
        digest = hashlib.sha256(canonical_username(username).encode()).hexdigest()[:32]
        return digest, address[:64]

    async def attempt(self, username: str, address: str) -> Attempt:
        """Count one attempt for this username and address, or raise TooManyRequests (the
        attempt then reaches no password check)."""
        user_id, addr_id = self._ids(username, address)
        try:
            return await self._attempt(self.store.primary, user_id, addr_id)
        except StorageError:
            logger.error("throttle_store_unavailable", extra={"step": "attempt"})
        return await self._attempt(self.store.fallback, user_id, addr_id)

    async def _attempt(self, storage: Storage, user_id: str, addr_id: str) -> Attempt:
        limiter = FixedWindowRateLimiter(storage)
        if not await limiter.hit(self.user_item, user_id):
            raise await self._refused(limiter, self.user_item, user_id)
        if not await limiter.hit(self.address_item, addr_id):
            # Refused before the password check: the username's slot is given back.
            await limiter.hit(self.user_item, user_id, cost=-1)
            raise await self._refused(limiter, self.address_item, addr_id)
        return Attempt(self, storage, user_id, addr_id)

    async def _refused(
        self, limiter: FixedWindowRateLimiter, item: RateLimitItem, identifier: str
    ) -> TooManyRequests:
        reset_at, _ = await limiter.get_window_stats(item, identifier)
        wait = min(max(1, math.ceil(reset_at - time.time())), self.window)
        return TooManyRequests(wait, REFUSED)
