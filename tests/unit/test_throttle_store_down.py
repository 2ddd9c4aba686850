"""The throttle when Redis does not answer: sign-in keeps working, on a per-process counter
with the same limits, and says so in the log at ERROR."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from app.errors import TooManyRequests
from app.services.throttle import LoginThrottle, ThrottleStore
from tests.support import free_port


async def test_a_dead_redis_falls_back_to_counting_in_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    throttle = LoginThrottle(ThrottleStore.for_redis(dead), limit=3, address_limit=30, window=60)
    try:
        with caplog.at_level(logging.ERROR, logger="app.throttle"):
            for _ in range(3):
                await throttle.attempt("alice", "10.0.0.1")
            with pytest.raises(TooManyRequests):
                await throttle.attempt("Alice ", "10.0.0.1")
            other = await throttle.attempt("bob", "10.0.0.1")
            await other.succeeded()
    finally:
        await dead.aclose()
    assert any(r.getMessage() == "throttle_store_unavailable" for r in caplog.records)
