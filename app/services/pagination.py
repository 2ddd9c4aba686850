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
    """(rows of this page, total matching rows), ordered by time then id, newest first.

    One round trip: the total rides on every row as a scalar subquery (evaluated once). Only
    an empty page past the start needs a COUNT of its own.
    """
    count = select(func.count()).select_from(model).where(*conditions)
    found = (
        await session.execute(
            select(model, count.scalar_subquery().label("total"))
            .where(*conditions)
            .order_by(time_column.desc(), model.id.desc())  # type: ignore[attr-defined]
            .limit(limit)
            .offset(offset)
        )
    ).all()
    if found:
        return [row[0] for row in found], int(found[0].total)
    if offset == 0:
        return [], 0
    return [], int(await session.scalar(count) or 0)
