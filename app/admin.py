"""Read-only SQLAdmin at /admin for staff (SPEC §7).

Staff (`is_staff`, active) sign in with username + password. The admin keeps its own signed
session cookie (Starlette's SessionMiddleware, keyed by SECRET_KEY): it never issues or accepts
an API token. Sign-in uses the same constant-cost password check and the same failed-login
throttle as the API, so /admin is no faster way to guess passwords.

Nothing can be created, edited or deleted here, enforced twice:

* every view has `can_create = can_edit = can_delete = can_import = False`; sqladmin checks
  these flags in its create, edit, delete, import and ajax-lookup routes and answers 403;
* `ReadOnlyGuard` refuses every request method other than GET/HEAD (the one exception is the
  login form's POST) before sqladmin sees it, so no crafted POST/DELETE reaches a write path,
  including any that a future sqladmin version might add.

sqladmin's file download/preview routes are closed as well: they would serve any file that a
text column names, relative to the working directory, and user-chosen values such as a
username or an upload's original file name can look like paths.

`hashed_password` appears in no list, detail page, export, search, sort or filter: every
column list below is explicit.

CSV exports are safe to open in a spreadsheet: a cell that starts with `=`, `+`, `-`, `@`, a
tab or a carriage return (a formula, e.g. an upload named `=HYPERLINK(...)`) is written with a
leading `'` (`spreadsheet_safe`), so it stays text.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from fastapi import FastAPI
from markupsafe import Markup
from sqladmin import Admin, ModelView
from sqladmin.authentication import AuthenticationBackend
from sqladmin.filters import AllUniqueStringValuesFilter, BooleanFilter, StaticValuesFilter
from sqladmin.formatters import BASE_FORMATTERS
from sqladmin.helpers import Writer, secure_filename, stream_to_csv
from starlette import status
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app import uow
from app.config import Settings
from app.deps import client_address, login_throttle
from app.errors import InvalidCredentials, TooManyRequests
from app.models import (
    Action,
    ActivityLog,
    FileUpload,
    PaymentStatus,
    PaymentTransaction,
    UploadStatus,
    User,
)
from app.services.auth import authenticate

ADMIN_TITLE = "Word-count service admin"
ADMIN_BASE_URL = "/admin"
#: The admin's own cookie, scoped to /admin: distinct from the dashboard's `session` cookie.
ADMIN_COOKIE = "admin_session"
#: A staff sign-in lasts one working day.
ADMIN_SESSION_SECONDS = 8 * 60 * 60
#: sqladmin looks for template overrides here first (there are none yet). Its default is a
#: `templates` folder relative to the working directory, which could shadow its pages.
TEMPLATES_DIR = Path(__file__).parent / "templates" / "admin"

_SESSION_KEY = "staff_user_id"
_STATE_KEY = "admin_staff"

REFUSED = "Incorrect username or password, or the account may not use the admin."


@dataclass(frozen=True)
class StaffIdentity:
    id: int
    username: str


def current_staff(request: Request) -> StaffIdentity | None:
    """The staff member `authenticate` confirmed for this request, if any."""
    staff: StaffIdentity | None = getattr(request.state, _STATE_KEY, None)
    return staff


class StaffAuthBackend(AuthenticationBackend):
    """Username + password sign-in for active staff; the session holds only the user id."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        super().__init__(
            secret_key=settings.secret_key,
            session_cookie=ADMIN_COOKIE,
            max_age=ADMIN_SESSION_SECONDS,
            path=ADMIN_BASE_URL,
            same_site="lax",
            https_only=settings.environment == "production",
        )
        # Read per request: the lifespan creates the throttle store, and tests swap settings.
        self._app = app
        #: sqladmin's template engine, set once the Admin exists (to render refusals).
        self.templates: Any = None

    async def _refuse(
        self, request: Request, message: str, status_code: int, headers: dict[str, str]
    ) -> Response:
        response: Response = await self.templates.TemplateResponse(
            request, "sqladmin/login.html", {"error": message}, status_code=status_code
        )
        response.headers.update(headers)
        return response

    async def login(self, request: Request) -> Response | bool:
        form = await request.form()
        username, password = form.get("username"), form.get("password")
        if isinstance(username, UploadFile) or isinstance(password, UploadFile):
            return await self._refuse(request, REFUSED, status.HTTP_400_BAD_REQUEST, {})
        async with self._app.state.sessionmaker() as session:
            try:
                user = await authenticate(
                    session,
                    login_throttle(self._app),
                    username=(username or "").strip(),
                    password=password or "",
                    address=client_address(request),
                    staff_only=True,
                    via="admin",
                )
            except TooManyRequests as exc:
                return await self._refuse(
                    request, f"{exc.detail}.", status.HTTP_429_TOO_MANY_REQUESTS, exc.headers
                )
            except InvalidCredentials:
                return await self._refuse(request, REFUSED, status.HTTP_400_BAD_REQUEST, {})
            await uow.commit(session)
        request.session.clear()
        request.session[_SESSION_KEY] = user.id
        return True

    async def logout(self, request: Request) -> Response | bool:
        request.session.clear()
        return RedirectResponse(request.url_for("admin:login"), status_code=status.HTTP_302_FOUND)

    async def authenticate(self, request: Request) -> Response | bool:
        """Every admin request: the session's user must still be active staff."""
        user_id = request.session.get(_SESSION_KEY)
        if not isinstance(user_id, int):
            return False
        async with self._app.state.sessionmaker() as session:
            user = await session.get(User, user_id)
        if user is None or not user.is_active or not user.is_staff:
            request.session.clear()
            return False
        setattr(request.state, _STATE_KEY, StaffIdentity(user.id, user.username))
        return True

    async def get_user_id(self, request: Request) -> Any:
        staff = current_staff(request)
        return staff.id if staff else None


class ReadOnlyGuard:
    """Pure ASGI: only GET and HEAD reach the admin, plus POST to its login form."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            route = path[len(root) :] if root and path.startswith(root) else path
            if not (scope["method"] == "POST" and route == "/login"):
                response = PlainTextResponse(
                    "The admin is read-only.",
                    status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
                    headers={"Allow": "GET, HEAD"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- formatting ------------------------------------------------------------------------------


def format_utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_money(value: Decimal) -> str:
    return f"{value:.2f}"


def format_json(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def format_json_block(model: Any, prop: str) -> Markup:
    """A JSON column as an indented block on detail pages (its text escaped)."""
    value = getattr(model, prop)
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, indent=2, default=str)
    return Markup('<pre class="mb-0">{}</pre>').format(text)


#: First characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> str:
    """A CSV cell as text that no spreadsheet evaluates: `'` before a formula's first sign."""
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_TRIGGERS) else text


TYPE_FORMATTERS: dict[type[Any], Callable[[Any], Any]] = {
    **BASE_FORMATTERS,
    datetime: format_utc,
    Decimal: format_money,
    dict: format_json,
}


# --- views -----------------------------------------------------------------------------------


class ReadOnlyView(ModelView):
    """Lists, details and CSV export for signed-in staff; nothing else."""

    can_create = False
    can_edit = False
    can_delete = False
    can_import = False
    can_export = True
    can_view_details = True
    export_types: ClassVar[list[str]] = ["csv"]
    page_size = 50
    column_type_formatters = TYPE_FORMATTERS

    def is_accessible(self, request: Request) -> bool:
        return current_staff(request) is not None

    def is_visible(self, request: Request) -> bool:
        return current_staff(request) is not None

    async def get_object_filepath(self, identifier: str, column_name: str) -> Path:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND)

    async def export_data(
        self, data: list[Any], export_type: str = "csv", request: Request | None = None
    ) -> StreamingResponse:
        """sqladmin's CSV export (same columns, header and values), every cell passed
        through `spreadsheet_safe`. Other types are refused earlier (`export_types`)."""
        if export_type != "csv":
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND)
        names = self.get_export_columns()

        async def generate(writer: Writer) -> AsyncGenerator[Any, None]:
            yield writer.writerow([spreadsheet_safe(name) for name in names])
            for row in data:
                yield writer.writerow(
                    [spreadsheet_safe(await self.get_prop_value(row, name)) for name in names]
                )

        filename = secure_filename(self.get_export_name(export_type="csv"))
        return StreamingResponse(
            content=stream_to_csv(generate),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment;filename={filename}"},
        )


class UserAdmin(ReadOnlyView, model=User):
    name = "User"
    name_plural = "Users"
    icon = "fa-solid fa-users"
    column_list = [
        User.id,
        User.username,
        User.email,
        User.is_active,
        User.is_staff,
        User.is_superuser,
        User.date_joined,
        User.upload_credits,
    ]
    column_details_list = column_list
    column_export_list = column_list
    column_searchable_list = [User.username, User.email]
    column_sortable_list = [User.id, User.username, User.date_joined, User.upload_credits]
    column_default_sort = [(User.date_joined, True), (User.id, True)]
    # No form is ever rendered (can_create/can_edit are off); should one be, no hash in it.
    form_excluded_columns = [User.hashed_password]
    column_filters = [
        BooleanFilter(User.is_staff, title="Staff"),
        BooleanFilter(User.is_active, title="Active"),
        BooleanFilter(User.is_superuser, title="Superuser"),
    ]


class FileUploadAdmin(ReadOnlyView, model=FileUpload):
    name = "Upload"
    name_plural = "Uploads"
    icon = "fa-solid fa-file-lines"
    column_list = [
        FileUpload.id,
        FileUpload.user,
        FileUpload.filename,
        FileUpload.status,
        FileUpload.word_count,
        FileUpload.size,
        FileUpload.upload_time,
        FileUpload.completed_at,
    ]
    column_details_list = [
        FileUpload.id,
        FileUpload.user,
        FileUpload.filename,
        FileUpload.status,
        FileUpload.word_count,
        FileUpload.size,
        FileUpload.content_type,
        FileUpload.upload_time,
        FileUpload.completed_at,
        FileUpload.error,
        FileUpload.sha256,
        FileUpload.file,
        FileUpload.queued_at,
        FileUpload.attempts,
    ]
    column_export_list = column_details_list
    column_labels = {FileUpload.size: "size (bytes)", FileUpload.file: "stored as"}
    column_searchable_list = [FileUpload.filename, "user.username"]
    column_sortable_list = [
        FileUpload.id,
        FileUpload.upload_time,
        FileUpload.completed_at,
        FileUpload.word_count,
        FileUpload.size,
        FileUpload.status,
    ]
    column_default_sort = [(FileUpload.upload_time, True), (FileUpload.id, True)]
    column_filters = [
        StaticValuesFilter(
            FileUpload.status, values=[(s.value, s.value) for s in UploadStatus], title="Status"
        ),
        AllUniqueStringValuesFilter(FileUpload.content_type, title="Content type"),
    ]


class PaymentAdmin(ReadOnlyView, model=PaymentTransaction):
    name = "Payment"
    name_plural = "Payments"
    icon = "fa-solid fa-money-bill"
    column_list = [
        PaymentTransaction.id,
        PaymentTransaction.user,
        PaymentTransaction.transaction_id,
        PaymentTransaction.amount,
        PaymentTransaction.currency,
        PaymentTransaction.status,
        PaymentTransaction.pg_txnid,
        PaymentTransaction.timestamp,
        PaymentTransaction.updated_at,
    ]
    column_details_list = [*column_list, PaymentTransaction.gateway_response]
    column_export_list = column_list
    column_formatters_detail = {PaymentTransaction.gateway_response: format_json_block}
    column_searchable_list = [
        PaymentTransaction.transaction_id,
        PaymentTransaction.pg_txnid,
        "user.username",
    ]
    column_sortable_list = [
        PaymentTransaction.id,
        PaymentTransaction.timestamp,
        PaymentTransaction.updated_at,
        PaymentTransaction.amount,
        PaymentTransaction.status,
    ]
    column_default_sort = [(PaymentTransaction.timestamp, True), (PaymentTransaction.id, True)]
    column_filters = [
        StaticValuesFilter(
            PaymentTransaction.status,
            values=[(s.value, s.value) for s in PaymentStatus],
            title="Status",
        ),
        AllUniqueStringValuesFilter(PaymentTransaction.currency, title="Currency"),
    ]


class ActivityAdmin(ReadOnlyView, model=ActivityLog):
    name = "Activity"
    name_plural = "Activity"
    icon = "fa-solid fa-list"
    column_list = [
        ActivityLog.id,
        ActivityLog.user,
        ActivityLog.action,
        ActivityLog.metadata_,
        ActivityLog.timestamp,
    ]
    column_details_list = column_list
    column_export_list = column_list
    column_labels = {ActivityLog.metadata_: "metadata"}
    column_formatters_detail = {ActivityLog.metadata_: format_json_block}
    column_searchable_list = [ActivityLog.action, "user.username"]
    column_sortable_list = [ActivityLog.id, ActivityLog.timestamp, ActivityLog.action]
    column_default_sort = [(ActivityLog.timestamp, True), (ActivityLog.id, True)]
    column_filters = [
        StaticValuesFilter(
            ActivityLog.action, values=[(a.value, a.value) for a in Action], title="Action"
        ),
    ]


VIEWS: tuple[type[ReadOnlyView], ...] = (UserAdmin, FileUploadAdmin, PaymentAdmin, ActivityAdmin)


def mount_admin(app: FastAPI, settings: Settings) -> Admin:
    """Mount the admin at /admin on the app's engine and sessionmaker."""
    auth = StaffAuthBackend(app, settings)
    admin = Admin(
        app,
        # sqladmin calls `configure(autoflush=False)` on it: the app's sessionmaker already is.
        session_maker=app.state.sessionmaker,
        base_url=ADMIN_BASE_URL,
        title=ADMIN_TITLE,
        favicon_url="/static/favicon.svg",
        templates_dir=str(TEMPLATES_DIR),
        middlewares=[Middleware(ReadOnlyGuard)],
        authentication_backend=auth,
    )
    auth.templates = admin.templates
    for view in VIEWS:
        admin.add_view(view)
    return admin
