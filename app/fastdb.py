"""A unit of work on one pooled connection, without an ORM session.

For the hottest writes (an upload's row and its activity row, the word-count job's start and
settlement) an `AsyncSession` (its transaction objects, its execute path, the connection it
checks out again after each commit) cost more CPU than the statements themselves, which are
Core statements built once (their compiled form is then found in the engine's bounded
compiled cache). `unit_of_work(sessionmaker)` yields a `Work` instead:

- its connection is the one the sessionmaker's sessions would use (`app.db.bare_connection`:
  a pooled connection of its engine, or the connection its sessions are bound to, as a test
  binds them to run inside a transaction it rolls back); it is taken at the first statement,
  so a Work opened before an upload's body arrives holds no connection while it does;
- each transaction is the connection's own (`BEGIN` ... `COMMIT`), or a SAVEPOINT on a bound
  connection, whose outer transaction is never committed or rolled back here;
- it has what app.uow needs (`info`, `commit()`, `rollback()`): services register their
  after-commit effects and compensations on it as on a session, and the caller ends it with
  `uow.commit(work)`. Leaving the block without committing rolls back, with the
  compensations (`uow.rollback`). After a commit the Work may start another transaction on
  the same connection (the job commits its start before counting).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import CursorResult, Executable
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    AsyncTransaction,
    async_sessionmaker,
)

from app import uow
from app.db import bare_connection


class Work:
    """One connection and its current transaction (see the module docstring)."""

    def __init__(
        self,
        connections: contextlib.AbstractAsyncContextManager[AsyncConnection],
        *,
        bound: bool,
    ) -> None:
        self._connections = connections
        self._connection: AsyncConnection | None = None
        #: On a connection the caller owns: SAVEPOINTs, never its transaction.
        self._bound = bound
        self._transaction: AsyncTransaction | None = None
        #: What app.uow registers (after-commit effects, compensations).
        self.info: dict[Any, Any] = {}

    async def connection(self) -> AsyncConnection:
        """The connection, in a transaction (both begun on first use)."""
        connection = self._connection
        if connection is None:
            connection = await self._connections.__aenter__()
            self._connection = connection
        if self._transaction is None or not self._transaction.is_active:
            self._transaction = await (
                connection.begin_nested() if self._bound else connection.begin()
            )
        return connection

    async def execute(
        self, statement: Executable, params: dict[str, Any] | None = None
    ) -> CursorResult[Any]:
        connection = await self.connection()
        return await connection.execute(statement, params)

    async def commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None and transaction.is_active:
            await transaction.commit()

    async def rollback(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None and transaction.is_active:
            await transaction.rollback()

    async def close(self) -> None:
        """Give the connection back (its pool's own, or the caller's, untouched)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._connections.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Work]:
    """A Work on what `sessionmaker`'s sessions use; what was not committed when the block
    ends is rolled back, with its compensations, whether it raised or returned."""
    bound = isinstance(sessionmaker.kw.get("bind"), AsyncConnection)
    work = Work(bare_connection(sessionmaker), bound=bound)
    try:
        yield work
    finally:
        try:
            await uow.rollback(work)
        finally:
            await work.close()
