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


#: Past this offset the total is read first, so that a page in the back half can be read
#: from the oldest end of the index: the deepest page then walks as little as the first.
FAR_OFFSET = 1_000


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

    Near the start, one round trip: the total rides on every row as a scalar subquery
    (evaluated once); only an empty page past the start needs a COUNT of its own. Deeper,
    the COUNT comes first (it walks the index once), and a page in the back half is read
    oldest-first from the other end of the index, then turned round.
    """
    count = select(func.count()).select_from(model).where(*conditions)
    if offset > FAR_OFFSET:
        total = int(await session.scalar(count) or 0)
        if offset >= total:
            return [], total
        if offset > total // 2:
            size = min(limit, total - offset)
            oldest_first = [time_column.asc(), model.id.asc()]  # type: ignore[attr-defined]
            ids = page_ids(
                model.id,  # type: ignore[attr-defined]
                conditions=conditions,
                order_by=oldest_first,
                limit=size,
                offset=total - offset - size,
            )
            rows = await session.scalars(
                select(model)
                .join_from(model, ids, model.id == ids.c.page_id)  # type: ignore[attr-defined]
                .order_by(*oldest_first)
            )
            return list(reversed(rows.all())), total
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
