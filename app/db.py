"""Async engine and session factories, shared by the API, the worker and the CLI.

One engine per process (the API builds it in its lifespan, the worker after the fork), one
`AsyncSession` per request or task. Services only flush; the caller commits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from app import uow
from app.config import Settings
from app.fairpool import FairAsyncAdaptedQueuePool


def normalise_url(raw: str) -> URL:
    """Apply the per-dialect defaults: utf8mb4 for MySQL/MariaDB, a parent folder for SQLite."""
    url = make_url(raw)
    if url.get_backend_name() == "mysql":
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
    elif url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        # Best effort: an unusable path shows up as a connection error (and /readyz 503).
        with contextlib.suppress(OSError):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets the worker write while the API reads; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


#: A pooled MySQL connection that sat idle longer than this is pinged before it is handed
#: out. SQLAlchemy's `pool_pre_ping` pings on every checkout, one extra round trip per
#: request; under load connections come back within milliseconds, so only the ones that
#: idled long enough to have been cut (server restart, wait_timeout) are checked. A
#: connection that dies while busy fails its query, and SQLAlchemy then invalidates the
#: whole pool, as it does with pre-ping.
PING_AFTER_IDLE_SECONDS = 10.0


def _ping_idle_connections(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    def on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("checked_in_at")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and hands out a fresh one.
            raise DisconnectionError("pooled connection is gone") from exc

    event.listen(sync_engine, "checkin", on_checkin)
    event.listen(sync_engine, "checkout", on_checkout)


def create_engine(settings: Settings, url: str | None = None, **overrides: Any) -> AsyncEngine:
    """Build the async engine for `DATABASE_URL` (or `url`), tuned per dialect."""
    db_url = normalise_url(url or settings.database_url)
    kwargs: dict[str, Any]
    if db_url.get_backend_name() == "sqlite":
        kwargs = {"connect_args": {"timeout": 30}}
    else:
        kwargs = {
            # Each statement sees what others have committed (as Django does on MySQL): after
            # losing a conditional UPDATE, the re-read must see the winner's row.
            "isolation_level": "READ COMMITTED",
            # Checked only after an idle spell: see PING_AFTER_IDLE_SECONDS.
            "pool_pre_ping": False,
            # Every connection reaches the pool through Session/Connection.close(), which has
            # already ended its transaction (rollback, or the commit before it); the pool's own
            # rollback-on-return would send a second ROLLBACK per request (one after every
            # commit). In asyncio a connection never returns to the pool through the garbage
            # collector, where that reset would matter: it is discarded instead.
            "pool_reset_on_return": None,
            "pool_recycle": settings.db_pool_recycle_seconds,
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow,
            "pool_timeout": 30,
            # Waiting requests get connections in arrival order (see app.fairpool).
            "poolclass": FairAsyncAdaptedQueuePool,
        }
    kwargs.update(overrides)
    engine = create_async_engine(db_url, **kwargs)
    if db_url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    elif not kwargs["pool_pre_ping"]:
        _ping_idle_connections(engine)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncGenerator[AsyncSession, None]:
    """Yield one session; close it. Whatever the caller did not commit is rolled back with
    its compensations, whether it raised or returned (e.g. a page that turned an error into a
    redirect)."""
    async with sessionmaker() as session:
        try:
            yield session
        finally:
            await uow.rollback(session)


@contextlib.asynccontextmanager
async def bare_connection(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncConnection]:
    """A connection for a few statements without an ORM session (which costs more than one
    SELECT), from what the sessionmaker's sessions use. Sessions bound to a connection (a
    caller's own transaction, as the tests bind them) share that connection."""
    bind = sessionmaker.kw["bind"]
    if isinstance(bind, AsyncConnection):
        yield bind
        return
    engine: AsyncEngine = bind
    async with engine.connect() as connection:
        yield connection
