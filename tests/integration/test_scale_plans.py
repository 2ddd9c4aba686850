"""Query plans at scale (SPEC §13), on MariaDB: what the lists and the admin ask the server.

A smaller variant of the benchmark's data (`python -m bench.scale seed --scale ...`) is seeded,
real requests are made, every statement they send is captured at the driver, and each is
EXPLAINed. On the three large tables a plan may read rows only through an index that covers
the query ("Using index") or by primary key (`eq_ref`, the page's own rows): never a full
table scan (`ALL`), never a row read for a row that is skipped or counted; and list pages
never sort (no "Using filesort" on a table: the index returns the order). Timings are the
benchmark's business, not the tests'.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import admin
from bench import scale

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("mysql"),
    reason="query plans are MariaDB's (EXPLAIN); SQLite plans differ and are not the target",
)

LARGE = {"file_upload", "activity_log", "payment_transaction"}
#: 5% of the full shape: 1,000 people, 52,500 uploads, 157,500 activity rows (heavy: 2,500 /
#: 7,500), enough rows for the optimizer to plan as it does at full size.
SCALE = 0.05
Sessions = async_sessionmaker[AsyncSession]


@dataclass
class Captured:
    sql: str
    params: Any


@contextmanager
def capture(app: FastAPI) -> Iterator[list[Captured]]:
    """Every SELECT the app's engine sends while the block runs."""
    seen: list[Captured] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            seen.append(Captured(sql, params))

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def explain(db: Sessions, query: Captured) -> list[dict[str, Any]]:
    async with db() as session:
        conn = await session.connection()
        result = await conn.exec_driver_sql(f"EXPLAIN {query.sql}", query.params)
        return [dict(row) for row in result.mappings()]


def problems(plan: list[dict[str, Any]], *, sorted_by_index: bool) -> list[str]:
    """What is wrong with one plan on the large tables (empty: nothing)."""
    found = []
    for row in plan:
        table = row["table"] or ""
        if table not in LARGE:
            continue
        extra = row["Extra"] or ""
        if row["type"] == "ALL":
            found.append(f"{table}: full table scan")
        if sorted_by_index and "filesort" in extra:
            found.append(f"{table}: sorted rows ({extra})")
        if sorted_by_index:
            covered = "Using index" in extra.replace("Using index condition", "")
            if row["type"] != "eq_ref" and not covered:
                found.append(f"{table}: reads table rows via {row['type']}/{row['key']} ({extra})")
        elif row["type"] not in ("const", "eq_ref", "ref", "range", "index_merge"):
            # A search reads only what its own index (a prefix, an owner) matched.
            found.append(f"{table}: not driven by the search's index ({row['type']}, {extra})")
    return found


async def check(
    db: Sessions, queries: list[Captured], *, sorted_by_index: bool = True
) -> list[str]:
    """Problems of every captured statement that touches a large table."""
    report = []
    for query in queries:
        if not any(f"FROM {table}" in query.sql for table in LARGE):
            continue
        for problem in problems(await explain(db, query), sorted_by_index=sorted_by_index):
            report.append(f"{problem}\n    in: {' '.join(query.sql.split())[:400]}")
    return report


@pytest.fixture
async def scaled(committed: None, settings: Any, db: Sessions) -> None:
    """The data, committed by another connection; the tables are emptied after each test."""
    await scale.seed(settings.database_url, scale.Shape().scaled(SCALE), say=lambda _: None)


async def token_of(client: AsyncClient, username: str) -> str:
    resp = await client.post(
        "/api/auth/token/", data={"username": username, "password": scale.PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


async def test_deep_pages_of_the_lists_read_only_index_entries_for_skipped_rows(
    scaled: None, app: FastAPI, client: AsyncClient, db: Sessions
) -> None:
    token = await token_of(client, scale.HEAVY)
    auth = {"Authorization": f"Bearer {token}"}
    with capture(app) as queries:
        for path, deep in (
            ("/api/files/", 2_400),
            ("/api/files/?status=completed", 2_300),
            ("/api/activity/", 7_400),
            ("/api/transactions/", 1),
        ):
            sep = "&" if "?" in path else "?"
            resp = await client.get(f"{path}{sep}offset={deep}", headers=auth)
            assert resp.status_code == 200, resp.text
            assert resp.json()["items"], path  # a real page, not past the end
        client.cookies.set("session", token)
        board = await client.get("/dashboard/", params={"files_page": 240, "activity_page": 740})
        assert board.status_code == 200
        client.cookies.clear()
    assert queries
    assert await check(db, queries) == []


async def staff_signed_in(client: AsyncClient, db: Sessions) -> None:
    resp = await client.post(
        "/admin/login", data={"username": scale.STAFF, "password": scale.PASSWORD}
    )
    assert resp.status_code == 302, resp.text


async def test_admin_list_pages_first_and_last_are_served_by_an_index(
    scaled: None, app: FastAPI, client: AsyncClient, db: Sessions
) -> None:
    await staff_signed_in(client, db)
    with capture(app) as queries:
        for view in ("file-upload", "activity-log", "payment-transaction", "user"):
            first = await client.get(f"/admin/{view}/list")
            assert first.status_code == 200
            last = await client.get(f"/admin/{view}/list", params={"page": 99_999_999})
            assert last.status_code == 302  # past the end: sent to the last page at once
            final = await client.get(last.headers["location"])
            assert final.status_code == 200
            by_id = await client.get(
                f"/admin/{view}/list", params={"sortBy": "id", "sort": "asc", "page": 3}
            )
            assert by_id.status_code == 200
    assert await check(db, queries) == []


SEARCHES = [
    ("file-upload", scale.HEAVY),  # a username, exactly
    ("file-upload", "user0000"),  # usernames by prefix
    ("file-upload", "report-42"),  # file names by prefix
    ("activity-log", scale.HEAVY),
    ("activity-log", "user00004"),
    ("payment-transaction", "TX00000001"),  # transaction ids by prefix
    ("payment-transaction", scale.HEAVY),
]


async def test_admin_searches_use_indexes(
    scaled: None, app: FastAPI, client: AsyncClient, db: Sessions
) -> None:
    await staff_signed_in(client, db)
    with capture(app) as queries:
        for view, term in SEARCHES:
            resp = await client.get(f"/admin/{view}/list", params={"search": term})
            assert resp.status_code == 200
    assert "CAST(" not in " ".join(q.sql for q in queries).upper()
    # A search by a person may read their rows in time order from (user_id, time); one by a
    # prefix may merge two index ranges and sort the rows they matched.
    assert await check(db, queries, sorted_by_index=False) == []


async def test_admin_activity_filter_by_action_is_served_by_an_index(
    scaled: None, app: FastAPI, client: AsyncClient, db: Sessions
) -> None:
    await staff_signed_in(client, db)
    with capture(app) as queries:
        resp = await client.get("/admin/activity-log/list", params={"action": "login"})
        assert resp.status_code == 200
    assert await check(db, queries) == []


async def test_large_lists_say_their_count_is_an_estimate_and_state_the_export_cap(
    scaled: None, client: AsyncClient, db: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 157,500 activity rows at this scale: past a limit of 10,000, below 5,010 payments.
    monkeypatch.setattr(admin.ReadOnlyView, "exact_count_limit", 10_000)
    await staff_signed_in(client, db)
    big = await client.get("/admin/activity-log/list")
    assert 'data-count="estimate"' in big.text
    assert "of about " in big.text
    assert 'data-export-cap="100000"' in big.text
    small = await client.get("/admin/payment-transaction/list")
    assert small.status_code == 200
    assert 'data-count="estimate"' not in small.text
