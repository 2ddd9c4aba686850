"""app.tasks.redisbroker: kombu's Redis channel reuses one client object for its
bookkeeping (and builds a new one with a new pool), and delivery with late acks still works:
a delivered message sits in the unacked index until it is acknowledged."""

from __future__ import annotations

import os

import pytest
from kombu import Connection

from app.config import Settings
from app.tasks.celery_app import REDIS_TRANSPORT, create_celery

REDIS_URL = os.environ.get("TEST_REDIS_URL") or ""


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://redis.example:6380/0"])
def test_redis_brokers_use_this_transport(url: str) -> None:
    settings = Settings(_env_file=None, celery_broker_url=url)  # type: ignore[call-arg]
    assert create_celery(settings).conf.broker_transport == REDIS_TRANSPORT


@pytest.mark.skipif(not REDIS_URL, reason="needs TEST_REDIS_URL")
def test_one_client_per_pool_and_acks_still_kept() -> None:
    with Connection(REDIS_URL, transport=REDIS_TRANSPORT) as conn:
        channel = conn.default_channel
        queue = "tests.redisbroker"
        client = channel._create_client()
        assert channel._create_client() is client
        assert channel._create_client(asynchronous=True) is not client
        jobs = conn.SimpleQueue(queue)
        try:
            jobs.put({"hello": "world"})
            message = jobs.get(timeout=5)
            assert message.payload == {"hello": "world"}
            assert client.hlen(channel.unacked_key) == 1  # delivered, not yet acknowledged
            message.ack()
            assert client.hlen(channel.unacked_key) == 0
            # A new pool (after a connection error) gets a client of its own.
            channel._disconnect_pools()
            assert channel._create_client() is not client
        finally:
            jobs.clear()
            jobs.close()
