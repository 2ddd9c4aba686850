"""One way to list a user's rows: newest first, a page at a time, with the exact total.

A deep `OFFSET` must not cost a read of every row it skips (SPEC §13). So a page is read in
two steps inside one statement, a *deferred join*: the ids of the page are picked from the
index that leads on the owner and the time, `(user_id, time)`, which InnoDB and SQLite both
extend with the primary key, so `ORDER BY time DESC, id DESC` walks it backwards and never
touches the table for the rows it skips; then only those ids are joined back to the table
for their columns. The total is a COUNT over the same index (no table rows read either).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, Subquery, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")


def page_ids(
    id_column: Any,
    *,
    conditions: list[ColumnElement[bool]],
    order_by: list[Any],
    limit: Any,
    offset: Any,
    name: str = "page",
) -> Subquery:
    """The ids of one page, ordered and cut by an index alone: join the table to it."""
    return (
        select(id_column.label("page_id"))
        .where(*conditions)
        .order_by(*order_by)
        .limit(limit)
        .offset(offset)
        .subquery(name)
    )


def deferred_page(
    model: type[Any],
    *columns: Any,
    conditions: list[ColumnElement[bool]],
    time_column: InstrumentedAttribute[Any],
    limit: Any,
    offset: Any,
) -> Select[Any]:
    """`SELECT columns FROM model JOIN (ids of the page) ...`, newest first."""
    order = [time_column.desc(), model.id.desc()]
    ids = page_ids(model.id, conditions=conditions, order_by=order, limit=limit, offset=offset)
    return select(*columns).join_from(model, ids, model.id == ids.c.page_id).order_by(*order)


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
            deferred_page(
                model,
                model,
                count.scalar_subquery().label("total"),
                conditions=conditions,
                time_column=time_column,
                limit=limit,
                offset=offset,
            )
        )
    ).all()
    if found:
        return [row[0] for row in found], int(found[0].total)
    if offset == 0:
        return [], 0
    return [], int(await session.scalar(count) or 0)
