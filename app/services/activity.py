"""Activity log: rows added inside the caller's transaction (never committed here)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Action, ActivityLog
from app.services.pagination import newest_first


def record_activity(
    session: AsyncSession, *, user_id: int, action: Action, **metadata: Any
) -> ActivityLog:
    entry = ActivityLog(user_id=user_id, action=action.value, metadata_=metadata)
    session.add(entry)
    return entry


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
