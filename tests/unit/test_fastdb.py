"""app.fastdb: a unit of work on one connection without an ORM session. Committed work runs
its effects after the commit; work that raises (or is left uncommitted) is rolled back with
its compensations; no connection is held before the first statement; on a sessionmaker bound
to a caller's connection (as tests bind it), only SAVEPOINTs are used, never the caller's
transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import AsyncAdaptedQueuePool

from app import uow
from app.db import create_sessionmaker
from app.fastdb import unit_of_work
from tests.support import sqlite_savepoints


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)


INSERT = insert(Item.__table__)  # type: ignore[arg-type]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    from sqlalchemy.ext.asyncio import create_async_engine

    db = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'work.db'}", poolclass=AsyncAdaptedQueuePool, pool_size=2
    )
    sqlite_savepoints(db)
    async with db.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield db
    await db.dispose()


async def names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.scalars(select(Item.name).order_by(Item.id))).all())


async def test_committed_work_runs_its_effects_after_the_commit(engine: AsyncEngine) -> None:
    seen: list[object] = []
    async with unit_of_work(create_sessionmaker(engine)) as work:
        await work.execute(INSERT, {"name": "a"})

        async def announce() -> None:
            seen.append(await names(engine))  # committed: another connection sees it

        uow.after_commit(work, announce)
        uow.on_rollback(work, lambda: seen.append("compensated"))
        await uow.commit(work)
        # A second transaction on the same Work.
        await work.execute(INSERT, {"name": "b"})
        await uow.commit(work)
    assert seen == [["a"]]
    assert await names(engine) == ["a", "b"]


async def test_work_that_raises_is_rolled_back_with_its_compensations(
    engine: AsyncEngine,
) -> None:
    seen: list[str] = []

    async def failing() -> None:
        async with unit_of_work(create_sessionmaker(engine)) as work:
            await work.execute(INSERT, {"name": "a"})
            uow.after_commit(work, lambda: seen.append("effect"))
            uow.on_rollback(work, lambda: seen.append("compensated"))
            raise RuntimeError("the service failed")

    with pytest.raises(RuntimeError):
        await failing()
    assert seen == ["compensated"]
    assert await names(engine) == []


async def test_a_failed_statement_rolls_back_the_whole_transaction(engine: AsyncEngine) -> None:
    seen: list[str] = []

    async def failing() -> None:
        async with unit_of_work(create_sessionmaker(engine)) as work:
            uow.on_rollback(work, lambda: seen.append("compensated"))
            await work.execute(INSERT, {"name": "a"})
            await work.execute(INSERT, {"name": "a"})  # unique: fails
            await uow.commit(work)

    with pytest.raises(IntegrityError):
        await failing()
    assert seen == ["compensated"]
    assert await names(engine) == []


async def test_uncommitted_work_is_rolled_back(engine: AsyncEngine) -> None:
    async with unit_of_work(create_sessionmaker(engine)) as work:
        await work.execute(INSERT, {"name": "a"})
    assert await names(engine) == []


async def test_no_connection_is_held_before_the_first_statement(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool
    assert isinstance(pool, AsyncAdaptedQueuePool)
    async with unit_of_work(create_sessionmaker(engine)) as work:
        uow.after_commit(work, lambda: None)
        assert pool.checkedout() == 0  # e.g. while an upload's body arrives
        await work.execute(INSERT, {"name": "a"})
        assert pool.checkedout() == 1
        await uow.commit(work)
    assert pool.checkedout() == 0


async def test_on_a_bound_connection_only_savepoints_are_used(engine: AsyncEngine) -> None:
    """A sessionmaker bound to a caller's connection inside its transaction (the tests'
    rolled-back transaction): the Work shares that connection, commits and rolls back its
    own SAVEPOINTs, and the caller's rollback undoes everything."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        bound: async_sessionmaker[AsyncSession] = async_sessionmaker(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        async with unit_of_work(bound) as work:
            await work.execute(INSERT, {"name": "kept"})
            await uow.commit(work)

        async def failing() -> None:
            async with unit_of_work(bound) as work:
                await work.execute(INSERT, {"name": "dropped"})
                raise RuntimeError("the service failed")

        with pytest.raises(RuntimeError):
            await failing()
        # The caller's transaction is still open and sees the committed savepoint only.
        assert outer.is_active
        seen = list((await conn.scalars(select(Item.name).order_by(Item.id))).all())
        assert seen == ["kept"]
        # Nothing reached the database outside the caller's transaction.
        assert await names(engine) == []
        await outer.rollback()
    assert await names(engine) == []
