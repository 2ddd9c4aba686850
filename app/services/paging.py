"""Pages of a user's rows: `{items, total, limit, offset}` with as few queries as possible."""

from __future__ import annotations


def total_from_page(*, limit: int, offset: int, rows: int) -> int | None:
    """The total that a page implies on its own, else None (then it has to be counted).

    A page shorter than `limit` is the last one, so the total is `offset + rows`, unless it is
    empty past the start (then the rows may end anywhere before `offset`).
    """
    if rows < limit and (rows > 0 or offset == 0):
        return offset + rows
    return None
