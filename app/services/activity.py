"""Activity log: rows added inside the caller's transaction (never committed here)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Executable, Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.fastdb import Work
from app.models import Action, ActivityLog
from app.services.pagination import newest_first


def record_activity(
    session: AsyncSession, *, user_id: int, action: Action, **metadata: Any
) -> ActivityLog:
    entry = ActivityLog(user_id=user_id, action=action.value, metadata_=metadata)
    session.add(entry)
    return entry


_INSERT = insert(cast(Table, ActivityLog.__table__))


async def core_execute(
    session: AsyncSession | Work, statement: Executable, params: dict[str, Any]
) -> CursorResult[Any]:
    """A Core statement on the session's connection, inside its transaction: the session's
    own execute path (ORM compile state, bind lookup) cost a third more CPU than the
    statement on the hot paths (the upload, the job), which run on a Work (app.fastdb)."""
    if isinstance(session, Work):
        return await session.execute(statement, params)
    connection = await session.connection()
    return await connection.execute(statement, params)


async def insert_activity(
    session: AsyncSession | Work, *, user_id: int, action: Action, **metadata: Any
) -> None:
    """`record_activity` as one INSERT sent now (no ORM object, no flush): for the hot paths
    (an upload, its job), where the unit-of-work flush cost more CPU than the statement."""
    await core_execute(
        session, _INSERT, {"user_id": user_id, "action": action.value, "metadata": metadata}
    )


async def list_activity(
    session: AsyncSession, *, user_id: int, limit: int, offset: int
) -> tuple[list[ActivityLog], int]:
    return await newest_first(
        session,
        ActivityLog,
        conditions=[ActivityLog.user_id == user_id],
        time_column=ActivityLog.timestamp,
        limit=limit,
        offset=offset,
    )
