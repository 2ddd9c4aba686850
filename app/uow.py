"""Unit of work: side effects that belong to a database transaction.

A service that changes data registers what must happen because of the change, on the session
it was given (an AsyncSession, or on the hottest paths an app.fastdb Work: one connection
without an ORM session), and returns; it never commits. The caller (a router or a task) ends the
transaction with `commit()` or `rollback()`, which run what was registered:

- `after_commit(session, effect)`: runs only once the commit has succeeded (enqueue a job,
  announce a change, send a receipt). A failing effect is logged and the others still run: the
  data is committed, and every effect registered here has a periodic job that repairs its loss.
- `on_rollback(session, compensation)`: undoes an outside change made before the commit (delete
  a stored file or object) when the transaction does not commit, whether the commit itself
  failed or the caller rolled back. Compensations run newest first.
- `raise_after_commit(session, error)`: the service's answer is an error, but what it wrote
  must stay (a payment marked `failed` answers 402): `commit()` commits, runs the effects, then
  raises it.

A use case whose writes must be visible before an outside call (the pending payment before
the gateway is asked, a claimed gateway question) commits at that point with `commit()` too: a
checkpoint, which runs what was registered so far. `transaction()` runs a step in a unit of work
of its own.

A session's registrations are dropped as soon as they have run, so a session can carry on
into another transaction. `app.db.session_scope` (and so every request's session) rolls back
through here when its caller raised.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")


class Transactional(Protocol):
    """What a unit of work runs on: an AsyncSession, or app.fastdb's Work (one connection
    without an ORM session)."""

    @property
    def info(self) -> dict[Any, Any]: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


logger = logging.getLogger("app.uow")

Effect = Callable[[], Awaitable[Any] | Any]

_AFTER_COMMIT = "uow.after_commit"
_ON_ROLLBACK = "uow.on_rollback"
_ERROR = "uow.error"


def after_commit(session: Transactional, effect: Effect) -> None:
    session.info.setdefault(_AFTER_COMMIT, []).append(effect)


def on_rollback(session: Transactional, compensation: Effect) -> None:
    session.info.setdefault(_ON_ROLLBACK, []).append(compensation)


def raise_after_commit(session: Transactional, error: BaseException) -> None:
    session.info[_ERROR] = error


def _take(session: Transactional) -> tuple[list[Effect], list[Effect], BaseException | None]:
    return (
        session.info.pop(_AFTER_COMMIT, []),
        session.info.pop(_ON_ROLLBACK, []),
        session.info.pop(_ERROR, None),
    )


async def _run(effect: Effect, what: str) -> None:
    try:
        result = effect()
        if inspect.isawaitable(result):
            await result
    except Exception:  # noqa: BLE001 - one failing effect must not stop the others
        logger.exception(what, extra={"effect": getattr(effect, "__qualname__", repr(effect))})


async def commit(session: Transactional) -> None:
    """Commit, then run the after-commit effects; compensate if the commit fails."""
    try:
        await session.commit()
    except BaseException:
        await rollback(session)
        raise
    effects, _, error = _take(session)
    for effect in effects:
        await _run(effect, "after_commit_effect_failed")
    if error is not None:
        raise error


async def rollback(session: Transactional) -> None:
    """Roll back, drop the after-commit effects and run the compensations."""
    _, compensations, _ = _take(session)
    try:
        await session.rollback()
    finally:
        for compensation in reversed(compensations):
            await _run(compensation, "rollback_compensation_failed")


async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """Run `work` in a unit of work of its own: committed if it returns, rolled back (with its
    compensations) if it raises. For effects that must write (e.g. record that a job could
    not be published) and for tasks' short steps."""
    async with sessionmaker() as session:
        try:
            result = await work(session)
        except BaseException:
            await rollback(session)
            raise
        await commit(session)
        return result
