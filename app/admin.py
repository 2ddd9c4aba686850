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

import builtins
import csv
import io
import json
from collections.abc import AsyncIterator, Callable
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
from sqladmin.helpers import secure_filename
from sqladmin.pagination import Pagination
from sqlalchemy import ColumnElement, Select, false, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
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
from app.services import uploads
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


# --- lists at a million rows (SPEC §13) -------------------------------------------------------
#
# sqladmin's defaults read a whole table on every list page: COUNT(*) of everything, a sort on
# any column (no index leads on most of them, so a full scan and a filesort), an OFFSET that
# reads every row it skips, and a search `lower(CAST(col AS CHAR)) LIKE '%term%'` that no
# index can serve. `ReadOnlyView.list` replaces that path:
#
# * sorts only on columns an index leads on (the time columns, ids, usernames), always with
#   the id as tie-breaker in the same direction, so the index returns rows in order;
# * reads a page's ids from that index and only then those rows (a deferred join); pages in
#   the back half are read from the other end of the index (the last page is as cheap as the
#   first), and a page number past the end is clamped at once;
# * counts at most EXACT_COUNT_LIMIT matching rows; past that the page shows the database's
#   own estimate (EXPLAIN's row count) and says so;
# * searches by prefix through an index: the username first (exact, else by prefix, through
#   its unique index), then file names or transaction ids by prefix;
# * streams CSV exports in keyset batches of EXPORT_BATCH_ROWS, newest first, at most
#   EXPORT_MAX_ROWS rows (the list page states the cap).

#: Up to this many matching rows a list counts them (a walk of an index that covers the
#: query: tens of milliseconds); past it, it shows the optimizer's estimate.
EXACT_COUNT_LIMIT = 200_000
#: A CSV export holds at most this many rows (the newest), read this many at a time.
EXPORT_MAX_ROWS = 100_000
EXPORT_BATCH_ROWS = 250
#: A username prefix resolves to at most this many people.
SEARCH_MAX_OWNERS = 50
LIST_TEMPLATE = "list.html"


class Estimate(int):
    """A row count that is the database's estimate: shown as "about N"."""

    def __str__(self) -> str:
        return f"about {int(self):,}"


def prefix_pattern(term: str) -> str:
    """`term%` for LIKE, with the term's own wildcards taken literally (escape `\\`)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def starts_with(column: Any, term: str) -> ColumnElement[bool]:
    """A prefix match an index on `column` serves (its collation decides the case)."""
    matched: ColumnElement[bool] = column.like(prefix_pattern(term), escape="\\")
    return matched


async def owners_named(session: AsyncSession, term: str) -> tuple[list[int], bool]:
    """(ids, exact): the person whose username is `term`, else those whose username starts
    with it (at most SEARCH_MAX_OWNERS), through the unique index on username."""
    exact = (await session.scalars(select(User.id).where(User.username == term))).all()
    if exact:
        return list(exact), True
    found = await session.scalars(
        select(User.id)
        .where(starts_with(User.username, term))
        .order_by(User.username)
        .limit(SEARCH_MAX_OWNERS)
    )
    return list(found), False


async def estimated_rows(session: AsyncSession, stmt: Select[Any]) -> int:
    """The optimizer's estimate of the rows `stmt` reads (MariaDB/MySQL: EXPLAIN)."""
    compiled = stmt.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
    )
    plan = (await session.execute(text(f"EXPLAIN {compiled}"))).mappings().all()
    return max((int(row["rows"] or 0) for row in plan), default=0)


class ReadOnlyView(ModelView):
    """Lists, details and CSV export for signed-in staff; nothing else."""

    can_create = False
    can_edit = False
    can_delete = False
    can_import = False
    can_export = True
    can_view_details = True
    export_types: ClassVar[list[str]] = ["csv"]
    export_max_rows = EXPORT_MAX_ROWS
    exact_count_limit = EXACT_COUNT_LIMIT
    page_size = 50
    column_type_formatters = TYPE_FORMATTERS
    list_template = LIST_TEMPLATE

    #: Columns a search matches by prefix, each through its own index.
    search_prefix_columns: ClassVar[list[Any]] = []
    #: The owner's column (its name), when a search also finds rows by the owner's username.
    search_owner: ClassVar[str | None] = None
    #: The columns an index serves the list's order on (the first is the default sort).
    #: Every order ends with the id in the same direction.

    def is_accessible(self, request: Request) -> bool:
        return current_staff(request) is not None

    def is_visible(self, request: Request) -> bool:
        return current_staff(request) is not None

    async def get_object_filepath(self, identifier: str, column_name: str) -> Path:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND)

    def search_placeholder(self) -> str:
        return "Username (exact or start), or the start of a name/id"

    # --- search, order, count --------------------------------------------------------------

    async def search_condition(self, session: AsyncSession, term: str) -> ColumnElement[bool]:
        """Rows of the person named `term` (exact username); otherwise rows of people whose
        username starts with it, or whose prefix columns start with it."""
        owner = getattr(self.model, self.search_owner) if self.search_owner else None
        ids: builtins.list[int] = []
        if owner is not None:
            ids, exact = await owners_named(session, term)
            if exact:
                owned: ColumnElement[bool] = owner.in_(ids)
                return owned
        matches = [starts_with(column, term) for column in self.search_prefix_columns]
        if owner is not None and ids:
            matches.append(owner.in_(ids))
        return or_(false(), *matches)

    def list_order(self, request: Request) -> list[tuple[Any, bool]]:
        """[(column, descending)], ending with the id: what an index returns in order."""
        sort_by = request.query_params.get("sortBy")
        if sort_by:
            if sort_by not in self._sort_fields:
                raise HTTPException(
                    status_code=status.HTTP_400_BAD_REQUEST, detail="Invalid sortBy parameter"
                )
            first = (getattr(self.model, sort_by), request.query_params.get("sort") == "desc")
        else:
            name, descending = self._get_default_sort()[0]
            first = (getattr(self.model, self._get_prop_name(name)), descending)
        pk = self.pk_columns[0]
        if first[0].key == pk.key:
            return [(pk, first[1])]
        return [first, (getattr(self.model, pk.key), first[1])]

    async def count_rows(self, session: AsyncSession, ids: Select[Any]) -> int:
        """Exact up to `exact_count_limit` (a bounded walk of an index); past it, the
        optimizer's estimate, as an `Estimate` (SQLite: counted, it has no estimate)."""
        limit = self.exact_count_limit
        bounded = ids.order_by(None).limit(limit + 1).subquery()
        counted = int(await session.scalar(select(func.count()).select_from(bounded)) or 0)
        if counted <= limit:
            return counted
        if session.get_bind().dialect.name != "mysql":
            return int(await session.scalar(select(func.count()).select_from(ids.subquery())) or 0)
        return Estimate(max(counted, await estimated_rows(session, ids.order_by(None))))

    async def list(self, request: Request) -> Pagination:
        page = self.validate_page_number(request.query_params.get("page"), 1)
        page_size = self.validate_page_number(request.query_params.get("pageSize"), self.page_size)
        page_size = min(page_size, max(self.page_size_options))
        if page_size < 1:
            raise HTTPException(
                status_code=status.HTTP_400_BAD_REQUEST, detail="Invalid page or pageSize parameter"
            )
        pk = getattr(self.model, self.pk_columns[0].key)
        ids: Select[Any] = select(pk)
        for filter_ in self.get_filters():
            value = request.query_params.get(filter_.parameter_name)
            if value:
                # Every filter here is a simple one (no operator).
                simple: Any = filter_
                ids = await simple.get_filtered_query(ids, value, self.model)
        order = self.list_order(request)
        search = (request.query_params.get("search") or "").strip()
        async with self.session_maker(expire_on_commit=False) as session:
            if search:
                ids = ids.where(await self.search_condition(session, search))
            count = await self.count_rows(session, ids)
            page = min(max(page, 1), Pagination.max_page(count, page_size))
            offset = (page - 1) * page_size
            # The back half is read from the other end: the last page costs what the first does.
            backwards = offset > count // 2
            if backwards:
                limit = max(0, min(page_size, count - offset))
                offset = max(0, count - offset - limit)
                walk = [(column, not descending) for column, descending in order]
            else:
                limit, walk = page_size, order
            ordered = [column.desc() if d else column.asc() for column, d in walk]
            page_ids = ids.order_by(*ordered).limit(limit).offset(offset).subquery("page")
            stmt: Select[Any] = (
                select(self.model)
                .join(page_ids, pk == page_ids.c[pk.key])
                .order_by(*ordered)
                .options(*(selectinload(relation) for relation in self._list_relations))
            )
            rows = list((await session.execute(stmt)).scalars().unique().all())
        if backwards:
            rows.reverse()
        return Pagination(rows=rows, page=page, page_size=page_size, count=count)

    # --- export ----------------------------------------------------------------------------

    async def get_model_objects(
        self, request: Request, limit: int | None = 0
    ) -> builtins.list[Any]:
        """Nothing is loaded up front: `export_data` streams the rows in batches."""
        return []

    def export_cell(self, value: Any) -> str:
        """One exported value as text (as sqladmin writes it), formula-safe."""
        return spreadsheet_safe(value)

    async def export_rows(self) -> AsyncIterator[builtins.list[builtins.list[str]]]:
        """The newest `export_max_rows` rows, EXPORT_BATCH_ROWS at a time by keyset on the id,
        each batch in its own short session (no connection held between batches)."""
        pk = getattr(self.model, self.pk_columns[0].key)
        relations = [
            getattr(self.model, name)
            for name in self._export_prop_names
            if name in self._relation_names
        ]
        last: Any = None
        sent = 0
        while sent < self.export_max_rows:
            stmt: Select[Any] = (
                select(self.model)
                .order_by(pk.desc())
                .limit(min(EXPORT_BATCH_ROWS, self.export_max_rows - sent))
                .options(*(selectinload(relation) for relation in relations))
            )
            if last is not None:
                stmt = stmt.where(pk < last)
            async with self.session_maker(expire_on_commit=False) as session:
                batch = list((await session.execute(stmt)).scalars().all())
                cells = [
                    [
                        self.export_cell(await self.get_prop_value(row, name))
                        for name in self._export_prop_names
                    ]
                    for row in batch
                ]
            if not batch:
                return
            # Sent after the session is closed: a slow reader holds no connection.
            yield cells
            last = getattr(batch[-1], pk.key)
            sent += len(batch)

    async def export_data(
        self, data: builtins.list[Any], export_type: str = "csv", request: Request | None = None
    ) -> StreamingResponse:
        if export_type != "csv":
            raise NotImplementedError("Only CSV exports are offered.")

        async def lines() -> AsyncIterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(self._export_prop_names)
            async for batch in self.export_rows():
                writer.writerows(batch)
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
            yield buffer.getvalue()

        filename = secure_filename(self.get_export_name(export_type="csv"))
        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment;filename={filename}"},
        )


class ContentTypeFilter(StaticValuesFilter):
    """The stored type by its start (`text/plain; charset=...` is text), not every distinct
    value in the table (sqladmin's AllUniqueStringValuesFilter reads the whole table)."""

    async def get_filtered_query(self, query: Select[Any], value: Any, model: Any) -> Select[Any]:
        if not value or value == "__all":
            return query
        return query.where(starts_with(FileUpload.content_type, str(value)))


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
    # Usernames by prefix (their unique index); e-mail addresses anywhere in them: people
    # are the one small table (a scan of it is milliseconds at 20,000 people).
    column_searchable_list = [User.username, User.email]
    search_prefix_columns: ClassVar[list[Any]] = [User.username]
    column_sortable_list = [User.id, User.username, User.date_joined]

    async def search_condition(self, session: AsyncSession, term: str) -> ColumnElement[bool]:
        return or_(starts_with(User.username, term), User.email.contains(term, autoescape=True))

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
    search_prefix_columns: ClassVar[list[Any]] = [FileUpload.filename]
    search_owner = "user_id"
    column_sortable_list = [FileUpload.id, FileUpload.upload_time]
    column_default_sort = [(FileUpload.upload_time, True), (FileUpload.id, True)]
    column_filters = [
        StaticValuesFilter(
            FileUpload.status, values=[(s.value, s.value) for s in UploadStatus], title="Status"
        ),
        ContentTypeFilter(
            FileUpload.content_type,
            values=[(kind, ext) for ext, kind in uploads.KINDS.items()],
            title="Content type",
        ),
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
    search_prefix_columns: ClassVar[list[Any]] = [
        PaymentTransaction.transaction_id,
        PaymentTransaction.pg_txnid,
    ]
    search_owner = "user_id"
    column_sortable_list = [
        PaymentTransaction.id,
        PaymentTransaction.timestamp,
        PaymentTransaction.amount,
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
    # `action` is a filter (below), not a search.
    column_searchable_list = ["user.username"]
    search_owner = "user_id"
    column_sortable_list = [ActivityLog.id, ActivityLog.timestamp]
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
        # sqladmin sets the sessionmaker on the view's class: each app gets classes of its
        # own, or a second app in the process (as in the tests) would take over the first's.
        admin.add_view(type(view.__name__, (view,), {}))
    return admin
