from __future__ import annotations

import pytest

from app.services.pagination import total_from_page


@pytest.mark.parametrize(
    ("limit", "offset", "rows", "total"),
    [
        (20, 0, 0, 0),  # nothing at all
        (20, 0, 7, 7),  # one short page
        (20, 40, 3, 43),  # the short last page
        (20, 0, 20, None),  # a full page: there may be more
        (20, 40, 0, None),  # empty past the start: the rows end somewhere before
    ],
)
def test_total_from_page(limit: int, offset: int, rows: int, total: int | None) -> None:
    assert total_from_page(limit=limit, offset=offset, rows=rows) == total
