"""The admin's CSV export streams in keyset batches, newest first, up to its row cap (SPEC §13)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import admin
from app.models import ActivityLog, User
from tests.support import UserFactory


async def test_export_is_read_in_batches_and_capped(
    client: AsyncClient,
    user_factory: UserFactory,
    db: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    staff = await user_factory.create(username="exporter")
    async with db() as session:
        await session.execute(update(User).where(User.id == staff.id).values(is_staff=True))
        start = datetime(2025, 1, 1, tzinfo=UTC)
        await session.execute(
            insert(ActivityLog),
            [
                {
                    "user_id": staff.id,
                    "action": "login",
                    "metadata_": {"n": n},
                    "timestamp": start + timedelta(seconds=n),
                }
                for n in range(45)
            ],
        )
        await session.commit()
        newest = list(
            (await session.scalars(select(ActivityLog.id).order_by(ActivityLog.id.desc()))).all()
        )
    monkeypatch.setattr(admin, "EXPORT_BATCH_ROWS", 10)
    monkeypatch.setattr(admin.ActivityAdmin, "export_max_rows", 25)
    resp = await client.post(
        "/admin/login", data={"username": staff.username, "password": staff.password}
    )
    assert resp.status_code == 302
    listing = await client.get("/admin/activity-log/list")
    assert 'data-export-cap="25"' in listing.text  # the page states the cap
    async with db() as session:  # the sign-in added its own row
        newest = list(
            (await session.scalars(select(ActivityLog.id).order_by(ActivityLog.id.desc()))).all()
        )

    batches: list[int] = []
    real = admin.ReadOnlyView.export_rows

    async def counted(self: admin.ReadOnlyView):  # type: ignore[no-untyped-def]
        async for batch in real(self):
            batches.append(len(batch))
            yield batch

    monkeypatch.setattr(admin.ReadOnlyView, "export_rows", counted)
    export = await client.get("/admin/activity-log/export/csv")
    assert export.status_code == 200
    lines = export.text.splitlines()
    assert lines[0] == "id,user,action,metadata_,timestamp"
    assert [int(line.split(",")[0]) for line in lines[1:]] == newest[:25]
    assert batches == [10, 10, 5]


@pytest.mark.committed  # counts the app's own pool, which a rolled-back test does not use
async def test_a_batch_is_sent_with_no_connection_held(
    app: FastAPI, user_factory: UserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stops reading the export holds no database connection meanwhile."""
    await user_factory.create(username="reader")
    view = admin.UserAdmin()
    view.session_maker = app.state.sessionmaker
    pool = app.state.engine.pool
    rows = view.export_rows()
    try:
        first = await anext(rows)
        assert [row[view._export_prop_names.index("username")] for row in first] == ["reader"]
        assert pool.checkedout() == 0
    finally:
        await rows.aclose()
