"""The Redis broker: kombu's Redis transport, with one client object per channel.

For its bookkeeping (a delivered message goes into the unacked index, an acknowledged one
comes out of it) kombu's channel builds a new `redis.Redis` client every time, and redis-py
copies its table of ~200 response callbacks into each one: in a worker's consumer process
that cost a fifth of the CPU it spends per job (py-spy, bench.load uploads-plain). A client
holds no connection of its own (each command or pipeline takes one from the channel's pool),
so one client per channel and pool serves every such call; it is built again when the
channel's pool is.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        client = self._shared_client
        if client is None or client.connection_pool is not pool:
            client = super()._create_client()  # type: ignore[no-untyped-call]
            self._shared_client = client
        return client


class Transport(redis.Transport):
    Channel = Channel
