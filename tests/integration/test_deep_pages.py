"""Deep pages of the lists (SPEC §13) hold exactly the rows a plain OFFSET query gives,
whichever end of the index they are read from, on either database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import ActivityLog
from tests.support import Account

#: Deep enough that the back half is read from the oldest end (app/services/pagination.py).
ROWS = 2_500


async def test_every_depth_of_the_activity_list_matches_a_plain_offset(
    client: AsyncClient,
    user: Account,
    db: async_sessionmaker[AsyncSession],
) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    async with db() as session:
        await session.execute(
            insert(ActivityLog),
            [
                # Pairs of rows share a timestamp: the id decides between them.
                {
                    "user_id": user.id,
                    "action": "login",
                    "metadata_": {"n": n},
                    "timestamp": start + timedelta(seconds=n // 2),
                }
                for n in range(ROWS)
            ],
        )
        await session.commit()
        expected = list(
            (
                await session.scalars(
                    select(ActivityLog.id)
                    .where(ActivityLog.user_id == user.id)
                    .order_by(ActivityLog.timestamp.desc(), ActivityLog.id.desc())
                )
            ).all()
        )
    total = len(expected)
    assert total > ROWS  # the registration's own row too
    headers = {"Authorization": f"Bearer {user.token}"}
    for offset in (0, 19, 999, 1_001, total // 2 - 7, total // 2 + 3, total - 45, total - 1):
        resp = await client.get(
            "/api/activity/", params={"offset": offset, "limit": 40}, headers=headers
        )
        assert resp.status_code == 200
        page = resp.json()
        assert page["total"] == total
        assert [item["id"] for item in page["items"]] == expected[offset : offset + 40], offset
    past = await client.get("/api/activity/", params={"offset": total + 5}, headers=headers)
    assert past.json() == {"items": [], "total": total, "limit": 20, "offset": total + 5}
