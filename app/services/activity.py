"""Activity log: rows added inside the caller's transaction (never committed here)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Action, ActivityLog
from app.services.paging import total_from_page


def record_activity(
    session: AsyncSession, *, user_id: int, action: Action, **metadata: Any
) -> ActivityLog:
    entry = ActivityLog(user_id=user_id, action=action.value, metadata_=metadata)
    session.add(entry)
    return entry


async def list_activity(
    session: AsyncSession, *, user_id: int, limit: int, offset: int
) -> tuple[list[ActivityLog], int]:
    rows = list(
        await session.scalars(
            select(ActivityLog)
            .where(ActivityLog.user_id == user_id)
            .order_by(ActivityLog.timestamp.desc(), ActivityLog.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )
    total = total_from_page(limit=limit, offset=offset, rows=len(rows))
    if total is None:
        total = await session.scalar(
            select(func.count()).select_from(ActivityLog).where(ActivityLog.user_id == user_id)
        )
    return rows, int(total or 0)
