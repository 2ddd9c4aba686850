"""The unit of work: effects run after a successful commit only, compensations when the
transaction does not commit, an error registered by a service is raised after the commit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app import uow
from app.db import session_scope


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "thing"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)


@pytest.fixture
async def sessions() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def names(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list((await session.scalars(select(Thing.name).order_by(Thing.id))).all())


async def test_effects_run_after_the_commit_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    seen: list[object] = []
    async with sessions() as session:
        session.add(Thing(name="a"))

        async def announce() -> None:
            # The change is visible to another session when the effect runs.
            seen.append(await names(sessions))

        uow.after_commit(session, announce)
        uow.after_commit(session, lambda: seen.append("sync"))
        uow.on_rollback(session, lambda: seen.append("compensated"))
        assert seen == []
        await uow.commit(session)
    assert seen == [["a"], "sync"]


async def test_a_failed_commit_compensates_and_drops_the_effects(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        session.add(Thing(name="taken"))
        await uow.commit(session)
    seen: list[str] = []
    async with sessions() as session:
        session.add(Thing(name="taken"))
        uow.after_commit(session, lambda: seen.append("enqueued"))
        uow.on_rollback(session, lambda: seen.append("first stored"))
        uow.on_rollback(session, lambda: seen.append("second stored"))
        with pytest.raises(IntegrityError):
            await uow.commit(session)
        # Newest first; nothing of the failed transaction runs later either.
        assert seen == ["second stored", "first stored"]
        session.add(Thing(name="next"))
        await uow.commit(session)
    assert seen == ["second stored", "first stored"]
    assert await names(sessions) == ["taken", "next"]


async def test_session_scope_compensates_when_the_caller_raises(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    seen: list[str] = []
    # As FastAPI drives a yield dependency when the handler raises.
    scope = session_scope(sessions)
    session = await anext(scope)
    session.add(Thing(name="half"))
    await session.flush()
    uow.on_rollback(session, lambda: seen.append("deleted"))
    uow.after_commit(session, lambda: seen.append("enqueued"))
    with pytest.raises(RuntimeError):
        await scope.athrow(RuntimeError("boom"))
    assert seen == ["deleted"]
    assert await names(sessions) == []


async def test_an_error_registered_by_a_service_is_raised_after_the_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    seen: list[str] = []
    async with sessions() as session:
        session.add(Thing(name="failed"))
        uow.after_commit(session, lambda: seen.append("logged"))
        uow.raise_after_commit(session, LookupError("not paid"))
        with pytest.raises(LookupError, match="not paid"):
            await uow.commit(session)
    assert seen == ["logged"]
    assert await names(sessions) == ["failed"]


async def test_a_failing_effect_is_logged_and_the_others_still_run(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken() -> None:
        raise ConnectionError("broker away")

    async with sessions() as session:
        session.add(Thing(name="x"))
        uow.after_commit(session, broken)
        uow.after_commit(session, lambda: seen.append("announced"))
        with caplog.at_level(logging.ERROR, logger="app.uow"):
            await uow.commit(session)
    assert seen == ["announced"]
    assert [r.message for r in caplog.records] == ["after_commit_effect_failed"]
