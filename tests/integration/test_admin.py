"""The read-only staff admin at /admin (SPEC §7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.admin import ADMIN_COOKIE, VIEWS, StaffAuthBackend
from app.models import (
    ActivityLog,
    FileUpload,
    PaymentStatus,
    PaymentTransaction,
    UploadStatus,
    User,
)
from tests.support import Account, SettingsOverride, UserFactory

Sessions = async_sessionmaker[AsyncSession]

LOGIN_URL = "http://testserver/admin/login"
REFUSED = "Incorrect username or password, or the account may not use the admin."
THROTTLED = "Too many failed sign-in attempts; try again later."
LIST_PAGES = {
    "user": "/admin/user/list",
    "upload": "/admin/file-upload/list",
    "payment": "/admin/payment-transaction/list",
    "activity": "/admin/activity-log/list",
}


@dataclass
class Seeded:
    staff: Account
    customer: Account
    upload_id: int
    paid_id: int
    pending_id: int
    activity_id: int


async def make_staff(db: Sessions, user_id: int, **values: Any) -> None:
    async with db() as session:
        await session.execute(
            update(User).where(User.id == user_id).values(is_staff=True, **values)
        )
        await session.commit()


async def login(client: AsyncClient, username: str, password: str) -> Response:
    return await client.post("/admin/login", data={"username": username, "password": password})


async def staff_client(client: AsyncClient, user_factory: UserFactory, db: Sessions) -> Account:
    staff = await user_factory.create(username="staffer")
    await make_staff(db, staff.id)
    resp = await login(client, staff.username, staff.password)
    assert resp.status_code == 302, resp.text
    assert resp.headers["location"] == "http://testserver/admin/"
    return staff


async def seed(db: Sessions, staff: Account, customer: Account) -> Seeded:
    async with db() as session:
        upload = FileUpload(
            user_id=customer.id,
            file="ab/0123456789abcdef.txt",
            filename="quarterly-report.txt",
            status=UploadStatus.COMPLETED,
            word_count=4321,
            size=20480,
            sha256="c0ffee" + "0" * 58,
            content_type="text/plain",
            upload_time=datetime(2024, 5, 1, 12, 30, 5, tzinfo=UTC),
            completed_at=datetime(2024, 5, 1, 12, 30, 9, tzinfo=UTC),
        )
        paid = PaymentTransaction(
            user_id=customer.id,
            transaction_id="TXNPAIDAAAA0001",
            amount=Decimal("100.00"),
            currency="BDT",
            status=PaymentStatus.SUCCESS,
            pg_txnid="PGZZZ9001",
            gateway_response={"verify": [{"pay_status": "Successful"}]},
            timestamp=datetime(2024, 5, 2, 8, 0, 0, tzinfo=UTC),
        )
        pending = PaymentTransaction(
            user_id=staff.id,
            transaction_id="TXNPENDBBBB0002",
            amount=Decimal("250.5"),
            currency="USD",
            status=PaymentStatus.PENDING,
            gateway_response={},
            timestamp=datetime(2024, 5, 3, 8, 0, 0, tzinfo=UTC),
        )
        activity = ActivityLog(
            user_id=customer.id,
            action="file_processed",
            metadata_={"upload_id": 7, "word_count": 4321},
            timestamp=datetime(2024, 5, 1, 12, 30, 9, tzinfo=UTC),
        )
        session.add_all([upload, paid, pending, activity])
        await session.commit()
        return Seeded(staff, customer, upload.id, paid.id, pending.id, activity.id)


@pytest.fixture
async def seeded(client: AsyncClient, user_factory: UserFactory, db: Sessions) -> Seeded:
    """A signed-in staff member, a customer, and one row of each kind."""
    staff = await staff_client(client, user_factory, db)
    customer = await user_factory.create(username="customer-rahima", email="rahima@example.com")
    return await seed(db, staff, customer)


async def snapshot(db: Sessions) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, column by column."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with db() as session:
        for model in (User, FileUpload, PaymentTransaction, ActivityLog):
            rows = await session.scalars(select(model).order_by(model.id))
            out[model.__tablename__] = [
                {c.key: getattr(row, c.key) for c in model.__mapper__.column_attrs} for row in rows
            ]
    return out


def no_secrets(resp: Response) -> None:
    assert "$argon2" not in resp.text
    assert "hashed_password" not in resp.text
    assert "hashed password" not in resp.text.lower()


# --- signing in ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        *LIST_PAGES.values(),
        "/admin/user/details/1",
        "/admin/file-upload/details/1",
        "/admin/payment-transaction/details/1",
        "/admin/activity-log/details/1",
        "/admin/user/export/csv",
        "/admin/user/create",
        "/admin/user/edit/1",
    ],
)
async def test_anonymous_is_sent_to_the_login_page(client: AsyncClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status_code == 302
    assert resp.headers["location"] == LOGIN_URL


async def test_login_page_shows_the_service_title(client: AsyncClient) -> None:
    resp = await client.get("/admin/login")
    assert resp.status_code == 200
    assert "<title>Word-count service admin</title>" in resp.text
    assert "Login to Word-count service admin" in resp.text


async def test_staff_signs_in_with_an_admin_only_cookie(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    await staff_client(client, user_factory, db)
    # The admin's own cookie, for /admin only; the dashboard's `session` cookie is untouched.
    [cookie] = [c for c in client.cookies.jar if c.name == ADMIN_COOKIE]
    assert cookie.path == "/admin"
    assert cookie.secure is False  # ENVIRONMENT=test; production sets Secure (test below)
    assert "session" not in {c.name for c in client.cookies.jar}

    index = await client.get("/admin/")
    assert index.status_code == 200
    for name in ("Users", "Uploads", "Payments", "Activity"):
        assert f'<span class="nav-link-title">{name}</span>' in index.text
    # The admin cookie is no API credential.
    me = await client.get("/api/auth/me/")
    assert me.status_code == 401


async def test_admin_cookie_flags(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    staff = await user_factory.create()
    await make_staff(db, staff.id)
    resp = await login(client, staff.username, staff.password)
    assert resp.status_code == 302
    set_cookie = resp.headers["set-cookie"]
    assert set_cookie.startswith(f"{ADMIN_COOKIE}=")
    attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
    assert attributes == {"path=/admin", "max-age=28800", "httponly", "samesite=lax"}


def test_admin_cookie_is_secure_in_production(app: FastAPI) -> None:
    production = app.state.settings.model_copy(update={"environment": "production"})
    development = app.state.settings.model_copy(update={"environment": "development"})
    assert StaffAuthBackend(app, production).middlewares[0].kwargs["https_only"] is True
    assert StaffAuthBackend(app, development).middlewares[0].kwargs["https_only"] is False


async def test_successful_admin_sign_in_is_logged_as_activity(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    staff = await staff_client(client, user_factory, db)
    async with db() as session:
        rows = list(
            await session.scalars(
                select(ActivityLog)
                .where(ActivityLog.user_id == staff.id, ActivityLog.action == "login")
                .order_by(ActivityLog.id)
            )
        )
    # One from the factory's API sign-in, one from the admin.
    assert [row.metadata_.get("via") for row in rows] == [None, "admin"]


async def assert_refused(client: AsyncClient, resp: Response, message: str, status: int) -> None:
    assert resp.status_code == status
    assert message in resp.text
    assert "set-cookie" not in resp.headers
    assert ADMIN_COOKIE not in {c.name for c in client.cookies.jar}
    after = await client.get("/admin/")
    assert after.status_code == 302
    assert after.headers["location"] == LOGIN_URL


async def test_non_staff_is_refused(client: AsyncClient, user_factory: UserFactory) -> None:
    customer = await user_factory.create()
    resp = await login(client, customer.username, customer.password)
    await assert_refused(client, resp, REFUSED, 400)


async def test_inactive_staff_is_refused(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    staff = await user_factory.create()
    await make_staff(db, staff.id, is_active=False)
    resp = await login(client, staff.username, staff.password)
    await assert_refused(client, resp, REFUSED, 400)


@pytest.mark.parametrize("case", ["wrong_password", "unknown_user", "empty"])
async def test_bad_credentials_are_refused(
    client: AsyncClient, user_factory: UserFactory, db: Sessions, case: str
) -> None:
    staff = await user_factory.create()
    await make_staff(db, staff.id)
    username, password = {
        "wrong_password": (staff.username, "not the password"),
        "unknown_user": ("nobody-here", staff.password),
        "empty": ("", ""),
    }[case]
    resp = await login(client, username, password)
    await assert_refused(client, resp, REFUSED, 400)


async def test_session_ends_when_staff_is_demoted(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    staff = await staff_client(client, user_factory, db)
    assert (await client.get("/admin/user/list")).status_code == 200
    async with db() as session:
        await session.execute(update(User).where(User.id == staff.id).values(is_staff=False))
        await session.commit()
    resp = await client.get("/admin/user/list")
    assert resp.status_code == 302
    assert resp.headers["location"] == LOGIN_URL


async def test_logout_ends_the_session(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    await staff_client(client, user_factory, db)
    resp = await client.get("/admin/logout")
    assert resp.status_code == 302
    assert resp.headers["location"] == LOGIN_URL
    after = await client.get("/admin/")
    assert after.status_code == 302
    assert after.headers["location"] == LOGIN_URL


async def test_forged_session_cookie_is_ignored(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    import base64
    import json

    staff = await user_factory.create()
    await make_staff(db, staff.id)
    unsigned = base64.b64encode(json.dumps({"staff_user_id": staff.id}).encode()).decode()
    client.cookies.set(ADMIN_COOKIE, f"{unsigned}.0.forged", domain="testserver", path="/admin")
    resp = await client.get("/admin/")
    assert resp.status_code == 302
    assert resp.headers["location"] == LOGIN_URL


# --- throttling ------------------------------------------------------------------------------


async def test_failed_admin_logins_are_throttled(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    staff = await user_factory.create()
    await make_staff(db, staff.id)
    for _ in range(10):
        resp = await login(client, staff.username, "wrong guess")
        assert resp.status_code == 400
        assert REFUSED in resp.text
    blocked = await login(client, staff.username, "wrong guess")
    assert blocked.status_code == 429
    assert THROTTLED in blocked.text
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    # While throttled even the right password is refused: guessing gains nothing.
    right = await login(client, staff.username, staff.password)
    await assert_refused(client, right, THROTTLED, 429)


async def test_admin_and_api_share_the_failure_counter(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    staff = await user_factory.create()
    await make_staff(db, staff.id)
    for _ in range(10):
        resp = await client.post(
            "/api/auth/token/", data={"username": staff.username, "password": "wrong guess"}
        )
        assert resp.status_code == 401
    right = await login(client, staff.username, staff.password)
    await assert_refused(client, right, THROTTLED, 429)


async def test_non_staff_sign_in_at_the_admin_counts_as_a_failure(
    client: AsyncClient, user_factory: UserFactory, override_settings: SettingsOverride
) -> None:
    override_settings(login_failure_limit=3)
    customer = await user_factory.create()
    for _ in range(3):
        resp = await login(client, customer.username, customer.password)
        assert resp.status_code == 400
    resp = await login(client, customer.username, customer.password)
    assert resp.status_code == 429


# --- pages -----------------------------------------------------------------------------------


async def test_index_lists_the_four_views(seeded: Seeded, client: AsyncClient) -> None:
    resp = await client.get("/admin/")
    assert resp.status_code == 200
    for path in LIST_PAGES.values():
        assert f'href="http://testserver{path}"' in resp.text


async def test_users_list(seeded: Seeded, client: AsyncClient) -> None:
    resp = await client.get(LIST_PAGES["user"])
    assert resp.status_code == 200
    assert "staffer" in resp.text
    assert "customer-rahima" in resp.text
    assert "rahima@example.com" in resp.text
    no_secrets(resp)


async def test_uploads_list_shows_the_owner_and_utc_times(
    seeded: Seeded, client: AsyncClient
) -> None:
    resp = await client.get(LIST_PAGES["upload"])
    assert resp.status_code == 200
    assert "quarterly-report.txt" in resp.text
    assert "4321" in resp.text
    assert "customer-rahima" in resp.text
    assert "2024-05-01 12:30:05 UTC" in resp.text
    assert f'href="http://testserver/admin/user/details/{seeded.customer.id}"' in resp.text


async def test_payments_list_shows_money_with_two_decimals(
    seeded: Seeded, client: AsyncClient
) -> None:
    resp = await client.get(LIST_PAGES["payment"])
    assert resp.status_code == 200
    assert "TXNPAIDAAAA0001" in resp.text
    assert "TXNPENDBBBB0002" in resp.text
    assert "PGZZZ9001" in resp.text
    assert ">100.00<" in resp.text
    assert ">250.50<" in resp.text
    assert "2024-05-02 08:00:00 UTC" in resp.text


async def test_activity_list(seeded: Seeded, client: AsyncClient) -> None:
    resp = await client.get(LIST_PAGES["activity"])
    assert resp.status_code == 200
    assert "file_processed" in resp.text
    assert "registered" in resp.text
    # JSON metadata, HTML-escaped in the page.
    assert "{&#34;upload_id&#34;: 7, &#34;word_count&#34;: 4321}" in resp.text


async def test_lists_default_to_newest_first(seeded: Seeded, client: AsyncClient) -> None:
    payments = (await client.get(LIST_PAGES["payment"])).text
    assert payments.index("TXNPENDBBBB0002") < payments.index("TXNPAIDAAAA0001")
    users = (await client.get(LIST_PAGES["user"])).text
    assert users.index("customer-rahima") < users.index("staffer")


async def test_detail_pages_render(seeded: Seeded, client: AsyncClient) -> None:
    user = await client.get(f"/admin/user/details/{seeded.customer.id}")
    assert user.status_code == 200
    assert "customer-rahima" in user.text
    no_secrets(user)

    upload = await client.get(f"/admin/file-upload/details/{seeded.upload_id}")
    assert upload.status_code == 200
    assert "c0ffee" + "0" * 58 in upload.text
    assert "ab/0123456789abcdef.txt" in upload.text
    assert "customer-rahima" in upload.text

    paid = await client.get(f"/admin/payment-transaction/details/{seeded.paid_id}")
    assert paid.status_code == 200
    assert "TXNPAIDAAAA0001" in paid.text
    assert "&#34;pay_status&#34;: &#34;Successful&#34;" in paid.text
    assert "customer-rahima" in paid.text

    activity = await client.get(f"/admin/activity-log/details/{seeded.activity_id}")
    assert activity.status_code == 200
    assert "file_processed" in activity.text
    assert "customer-rahima" in activity.text


async def test_detail_pages_offer_no_edit_or_delete(seeded: Seeded, client: AsyncClient) -> None:
    resp = await client.get(f"/admin/user/details/{seeded.customer.id}")
    assert "/admin/user/edit/" not in resp.text
    assert "/admin/user/delete" not in resp.text
    listing = await client.get(LIST_PAGES["user"])
    assert "/admin/user/create" not in listing.text
    assert "/admin/user/edit/" not in listing.text
    assert "/admin/user/delete" not in listing.text


async def test_missing_row_is_404(seeded: Seeded, client: AsyncClient) -> None:
    resp = await client.get("/admin/payment-transaction/details/999999")
    assert resp.status_code == 404


async def test_user_search_and_filter(seeded: Seeded, client: AsyncClient) -> None:
    by_name = await client.get(LIST_PAGES["user"], params={"search": "rahima"})
    assert by_name.status_code == 200
    assert "customer-rahima" in by_name.text
    assert "staffer" not in by_name.text

    by_email = await client.get(LIST_PAGES["user"], params={"search": "@example.com"})
    assert "customer-rahima" in by_email.text
    assert "staffer" not in by_email.text

    staff_only = await client.get(LIST_PAGES["user"], params={"is_staff": "true"})
    assert staff_only.status_code == 200
    assert "staffer" in staff_only.text
    assert "customer-rahima" not in staff_only.text


async def test_payment_search_and_filters(seeded: Seeded, client: AsyncClient) -> None:
    # Transaction ids by prefix (through their unique index, SPEC §13).
    by_txn = await client.get(LIST_PAGES["payment"], params={"search": "TXNPENDB"})
    assert "TXNPENDBBBB0002" in by_txn.text
    assert "TXNPAIDAAAA0001" not in by_txn.text

    by_gateway_id = await client.get(LIST_PAGES["payment"], params={"search": "PGZZZ"})
    assert "TXNPAIDAAAA0001" in by_gateway_id.text
    assert "TXNPENDBBBB0002" not in by_gateway_id.text

    by_owner = await client.get(LIST_PAGES["payment"], params={"search": "staffer"})
    assert "TXNPENDBBBB0002" in by_owner.text
    assert "TXNPAIDAAAA0001" not in by_owner.text

    paid = await client.get(LIST_PAGES["payment"], params={"status": "success"})
    assert paid.status_code == 200
    assert "TXNPAIDAAAA0001" in paid.text
    assert "TXNPENDBBBB0002" not in paid.text

    dollars = await client.get(LIST_PAGES["payment"], params={"currency": "USD"})
    assert "TXNPENDBBBB0002" in dollars.text
    assert "TXNPAIDAAAA0001" not in dollars.text


async def test_upload_and_activity_filters(seeded: Seeded, client: AsyncClient) -> None:
    completed = await client.get(LIST_PAGES["upload"], params={"status": "completed"})
    assert "quarterly-report.txt" in completed.text
    failed = await client.get(LIST_PAGES["upload"], params={"status": "failed"})
    assert failed.status_code == 200
    assert "quarterly-report.txt" not in failed.text

    processed = await client.get(LIST_PAGES["activity"], params={"action": "file_processed"})
    assert "file_processed" in processed.text
    assert ">registered<" not in processed.text
    registered = await client.get(LIST_PAGES["activity"], params={"action": "registered"})
    assert ">registered<" in registered.text


async def test_sorting(seeded: Seeded, client: AsyncClient) -> None:
    ascending = await client.get(LIST_PAGES["payment"], params={"sortBy": "amount", "sort": "asc"})
    assert ascending.status_code == 200
    assert ascending.text.index("TXNPAIDAAAA0001") < ascending.text.index("TXNPENDBBBB0002")
    descending = await client.get(
        LIST_PAGES["payment"], params={"sortBy": "amount", "sort": "desc"}
    )
    assert descending.text.index("TXNPENDBBBB0002") < descending.text.index("TXNPAIDAAAA0001")


@pytest.mark.parametrize(
    "params",
    [
        {"sortBy": "hashed_password"},
        {"sortBy": "hashed_password", "sort": "desc"},
    ],
)
async def test_password_hash_cannot_be_sorted_on(
    seeded: Seeded, client: AsyncClient, params: dict[str, str]
) -> None:
    resp = await client.get(LIST_PAGES["user"], params=params)
    assert resp.status_code == 400


async def test_search_does_not_look_at_password_hashes(seeded: Seeded, client: AsyncClient) -> None:
    resp = await client.get(LIST_PAGES["user"], params={"search": "$argon2id$"})
    assert resp.status_code == 200
    assert "staffer" not in resp.text
    assert "customer-rahima" not in resp.text
    ignored_filter = await client.get(LIST_PAGES["user"], params={"hashed_password": "x"})
    assert "customer-rahima" in ignored_filter.text


# --- export and secrets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "header", "rows"),
    [
        (
            "user",
            "id,username,email,is_active,is_staff,is_superuser,date_joined,upload_credits",
            2,
        ),
        (
            "file-upload",
            "id,user,filename,status,word_count,size,content_type,upload_time,completed_at,"
            "error,sha256,file,queued_at,attempts",
            1,
        ),
        (
            "payment-transaction",
            "id,user,transaction_id,amount,currency,status,pg_txnid,timestamp,updated_at",
            2,
        ),
        # registered x2, API login x2 (the user factory), admin login, file_processed
        ("activity-log", "id,user,action,metadata_,timestamp", 6),
    ],
)
async def test_csv_export(
    seeded: Seeded, client: AsyncClient, identity: str, header: str, rows: int
) -> None:
    resp = await client.get(f"/admin/{identity}/export/csv")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.headers["content-disposition"].startswith("attachment;filename=")
    lines = resp.text.splitlines()
    assert lines[0] == header
    assert len(lines) == 1 + rows
    no_secrets(resp)


async def test_csv_export_rows(seeded: Seeded, client: AsyncClient) -> None:
    users = (await client.get("/admin/user/export/csv")).text
    assert "customer-rahima" in users
    assert "staffer" in users
    payments = (await client.get("/admin/payment-transaction/export/csv")).text
    assert f"{seeded.paid_id},customer-rahima,TXNPAIDAAAA0001,100.00,BDT,success" in payments


async def test_json_export_is_not_offered(seeded: Seeded, client: AsyncClient) -> None:
    resp = await client.get("/admin/user/export/json")
    assert resp.status_code == 404


async def test_no_admin_page_shows_a_password_hash(seeded: Seeded, client: AsyncClient) -> None:
    pages = [
        "/admin/",
        *LIST_PAGES.values(),
        f"/admin/user/details/{seeded.staff.id}",
        f"/admin/user/details/{seeded.customer.id}",
        f"/admin/file-upload/details/{seeded.upload_id}",
        f"/admin/payment-transaction/details/{seeded.paid_id}",
        f"/admin/activity-log/details/{seeded.activity_id}",
        *(f"/admin/{i}/export/csv" for i in ("user", "file-upload", "payment-transaction")),
        "/admin/activity-log/export/csv",
    ]
    for page in pages:
        resp = await client.get(page)
        assert resp.status_code == 200, page
        no_secrets(resp)


@pytest.mark.parametrize("column", ["hashed_password", "username"])
async def test_no_file_is_served_from_a_column(
    seeded: Seeded, client: AsyncClient, db: Sessions, column: str
) -> None:
    # sqladmin would serve any file a text column names (relative to the working directory);
    # a username like "pyproject.toml" must not turn into a file download.
    async with db() as session:
        await session.execute(
            update(User).where(User.id == seeded.customer.id).values(username="pyproject.toml")
        )
        await session.commit()
    for suffix in ("download/", "preview/"):
        resp = await client.get(f"/admin/user/{seeded.customer.id}/{column}/{suffix}")
        assert resp.status_code == 404
        assert "[project]" not in resp.text


async def test_no_file_is_served_from_upload_names(seeded: Seeded, client: AsyncClient) -> None:
    for column in ("file", "filename"):
        resp = await client.get(f"/admin/file-upload/{seeded.upload_id}/{column}/download/")
        assert resp.status_code == 404


# --- nothing can be changed ------------------------------------------------------------------


def test_every_view_is_read_only() -> None:
    for view in VIEWS:
        assert view.can_create is False
        assert view.can_edit is False
        assert view.can_delete is False
        assert view.can_import is False
        assert view.can_export is True
        assert view.can_view_details is True
        assert view.export_types == ["csv"]


WRITE_FORMS: dict[str, dict[str, str]] = {
    "user": {
        "username": "hacked",
        "email": "hacked@example.com",
        "hashed_password": "plain",
        "is_active": "y",
        "is_staff": "y",
        "is_superuser": "y",
        "upload_credits": "999",
        "save": "Save",
    },
    "file-upload": {
        "filename": "hacked.txt",
        "file": "../../etc/passwd",
        "status": "failed",
        "word_count": "1",
        "save": "Save",
    },
    "payment-transaction": {
        "transaction_id": "HACKED",
        "amount": "0.01",
        "status": "success",
        "pg_txnid": "HACKED",
        "save": "Save",
    },
    "activity-log": {"action": "hacked", "save": "Save"},
}


def write_requests(identity: str, pk: int) -> list[tuple[str, str, int]]:
    """(method, path, expected status) for every route that could change something."""
    return [
        # sqladmin refuses these itself (its can_create / can_edit flags): 403.
        ("GET", f"/admin/{identity}/create", 403),
        ("GET", f"/admin/{identity}/edit/{pk}", 403),
        ("GET", f"/admin/{identity}/ajax/lookup?name=user&term=a", 403),
        # Only DELETE is routed for delete; other methods are 405 from the router or the guard.
        ("GET", f"/admin/{identity}/delete?pks={pk}", 405),
        # No write method reaches sqladmin at all: 405 from the read-only guard.
        ("POST", f"/admin/{identity}/create", 405),
        ("POST", f"/admin/{identity}/edit/{pk}", 405),
        ("POST", f"/admin/{identity}/delete?pks={pk}", 405),
        ("DELETE", f"/admin/{identity}/delete?pks={pk}", 405),
        ("POST", f"/admin/{identity}/import", 405),
        ("PUT", f"/admin/{identity}/edit/{pk}", 405),
        ("PATCH", f"/admin/{identity}/edit/{pk}", 405),
        ("POST", f"/admin/{identity}/list", 405),
    ]


@pytest.mark.parametrize("identity", list(WRITE_FORMS))
async def test_create_edit_delete_are_refused_and_change_nothing(
    seeded: Seeded, client: AsyncClient, db: Sessions, identity: str
) -> None:
    pk = {
        "user": seeded.customer.id,
        "file-upload": seeded.upload_id,
        "payment-transaction": seeded.paid_id,
        "activity-log": seeded.activity_id,
    }[identity]
    before = await snapshot(db)
    for method, path, expected in write_requests(identity, pk):
        resp = await client.request(
            method,
            path,
            data=WRITE_FORMS[identity] if method in ("POST", "PUT", "PATCH") else None,
        )
        assert resp.status_code == expected, (method, path, resp.status_code)
    import_resp = await client.post(
        f"/admin/{identity}/import",
        files={"file": ("rows.csv", b"id,username\n999,imported\n", "text/csv")},
    )
    assert import_resp.status_code == 405
    assert await snapshot(db) == before


async def test_write_routes_are_refused_before_sign_in(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    victim = await user_factory.create()
    before = await snapshot(db)
    resp = await client.post(f"/admin/user/edit/{victim.id}", data=WRITE_FORMS["user"])
    assert resp.status_code == 405
    resp = await client.delete(f"/admin/user/delete?pks={victim.id}")
    assert resp.status_code == 405
    assert await snapshot(db) == before
