"""The worker's async runtime: one event loop and one engine per worker process.

Tasks are thin sync functions that call `run(coro_fn)`; the coroutine gets a session from the
same services the API uses. The loop and engine are created lazily in the process that runs
the task (after the prefork), and rebuilt if the process turns out to be a new fork.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from celery import signals
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings, get_settings
from app.db import create_engine, create_sessionmaker
from app.services import blobstore
from app.services.aamarpay import make_http_client
from app.services.filecache import FileChanges

T = TypeVar("T")


@dataclass
class WorkerRuntime:
    pid: int
    loop: asyncio.AbstractEventLoop
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    #: Announces settled uploads to the API processes' file-list caches (None without Redis).
    redis: Redis | None = None
    changes: FileChanges = field(default_factory=lambda: FileChanges(None))
    #: Stored uploads (STORAGE_BACKEND): `get_runtime` builds it and `_dispose` closes it; a
    #: runtime made by hand for jobs that touch no upload gets the local folder.
    storage: blobstore.Storage = field(
        default_factory=lambda: blobstore.LocalStorage(get_settings().media_root)
    )


_runtime: WorkerRuntime | None = None


def get_runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        loop = asyncio.new_event_loop()
        settings = get_settings()
        # Small pool: one task at a time per worker process.
        engine = (
            create_engine(settings, pool_size=2, max_overflow=2)
            if not settings.is_sqlite
            else create_engine(settings)
        )
        redis = (
            Redis.from_url(settings.shared_redis_url, socket_timeout=2, socket_connect_timeout=2)
            if settings.shared_redis_url
            else None
        )
        _runtime = WorkerRuntime(
            pid=os.getpid(),
            loop=loop,
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            http=make_http_client(
                settings.aamarpay_connect_timeout_seconds, settings.aamarpay_read_timeout_seconds
            ),
            redis=redis,
            changes=FileChanges(redis),
            storage=loop.run_until_complete(blobstore.build(settings)),
        )
    return _runtime


def run(fn: Callable[[WorkerRuntime], Awaitable[T]]) -> T:
    runtime = get_runtime()
    return runtime.loop.run_until_complete(fn(runtime))


def _dispose(**_: Any) -> None:
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.loop.run_until_complete(_runtime.http.aclose())
        _runtime.loop.run_until_complete(_runtime.storage.aclose())
        if _runtime.redis is not None:
            _runtime.loop.run_until_complete(_runtime.redis.aclose())
        _runtime.loop.run_until_complete(_runtime.engine.dispose())
        _runtime.loop.close()
        _runtime = None


signals.worker_process_shutdown.connect(_dispose)
