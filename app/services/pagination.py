"""One way to list a user's rows: newest first, a page at a time, with the total."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")


async def newest_first(
    session: AsyncSession,
    model: type[T],
    *,
    conditions: list[ColumnElement[bool]],
    time_column: InstrumentedAttribute[Any],
    limit: int,
    offset: int,
) -> tuple[list[T], int]:
    """(rows of this page, total matching rows), ordered by time then id, newest first."""
    total = await session.scalar(select(func.count()).select_from(model).where(*conditions))
    rows = await session.scalars(
        select(model)
        .where(*conditions)
        .order_by(time_column.desc(), model.id.desc())  # type: ignore[attr-defined]
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total or 0)
