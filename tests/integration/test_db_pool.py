"""The pool checks a connection only after it idled (app.db.PING_AFTER_IDLE_SECONDS): no
extra round trip per request under load, and a connection cut while idle (server restart,
wait_timeout) is replaced instead of failing the request."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from app.config import Settings


@pytest.fixture(autouse=True)
def _isolated() -> None:
    """Touches no table."""


def _engine(settings: Settings) -> AsyncEngine:
    engine = db.create_engine(settings, **({} if settings.is_sqlite else {"pool_size": 1}))
    if settings.is_sqlite:
        # SQLite needs no ping in production; the mechanism is the same on any dialect.
        db._ping_idle_connections(engine)
    return engine


def _count_pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    dialect = engine.sync_engine.dialect
    original = dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(original(dbapi_connection))

    monkeypatch.setattr(dialect, "do_ping", counting)
    return pings


async def _use_then_cut(engine: AsyncEngine, settings: Settings) -> None:
    """Use the pool's one connection, give it back, then break it while it sits idle in the
    pool, as a server restart or wait_timeout would."""
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        connection_id = (
            None if settings.is_sqlite else await conn.scalar(text("SELECT CONNECTION_ID()"))
        )
    if settings.is_sqlite:
        await driver.close()
        return
    killer = db.create_engine(settings)
    try:
        async with killer.connect() as other:
            await other.execute(text(f"KILL {int(connection_id)}"))
    finally:
        await killer.dispose()


async def test_a_busy_connection_is_not_pinged(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(settings)
    pings = _count_pings(engine, monkeypatch)
    try:
        for _ in range(5):
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT 1")) == 1
        assert pings == []
    finally:
        await engine.dispose()


async def test_a_connection_cut_while_idle_is_replaced(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(settings)
    pings = _count_pings(engine, monkeypatch)
    try:
        await _use_then_cut(engine, settings)
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
        assert pings, "the idle connection was not checked"
    finally:
        await engine.dispose()
