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

    The COUNT is skipped when the page itself tells the total (a short page is the last one).
    """
    rows = list(
        await session.scalars(
            select(model)
            .where(*conditions)
            .order_by(time_column.desc(), model.id.desc())  # type: ignore[attr-defined]
            .limit(limit)
            .offset(offset)
        )
    )
    total = total_from_page(limit=limit, offset=offset, rows=len(rows))
    if total is None:
        total = await session.scalar(select(func.count()).select_from(model).where(*conditions))
    return rows, int(total or 0)


def total_from_page(*, limit: int, offset: int, rows: int) -> int | None:
    """The total that a page implies on its own, else None (then it has to be counted).

    A page shorter than `limit` is the last one, so the total is `offset + rows`, unless it is
    empty past the start (then the rows may end anywhere before `offset`).
    """
    if rows < limit and (rows > 0 or offset == 0):
        return offset + rows
    return None
