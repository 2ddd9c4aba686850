"""The browser pages: sign-in, registration, and the dashboard (Jinja2 + Bootstrap, no JS
framework). They call the same services as the JSON API; only the presentation differs.

The browser session is an HttpOnly, SameSite=Lax cookie holding a JWT the API accepts too
(Lax, not Strict: the person comes back from the gateway on a cross-site navigation). It
carries a session id, so `POST /logout` ends it for good, for the pages and the API alike
(see app.services.auth). Every form carries a CSRF token in its body (see app.csrf).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from app import csrf, uow
from app.config import Settings
from app.db import session_scope
from app.deps import (
    SESSION_COOKIE,
    GatewayDep,
    IntakeDep,
    SessionDep,
    SettingsDep,
    client_address,
    login_throttle,
    upload_body,
)
from app.errors import AppError, InvalidToken, TooManyRequests
from app.models import User
from app.schemas.users import UserCreate
from app.security import decode_access_token
from app.services import activity, auth, entitlement, payments, uploads
from app.services.users import create_user

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")

PAGE_SIZE = 10
MAX_FORM_FIELDS = 10

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: Messages chosen by code, never by text from the URL (no content spoofing).
PAYMENT_MESSAGES = {
    "success": ("success", "Payment received. You can upload files now."),
    "failed": ("danger", "The payment did not go through. You can try again."),
    "cancelled": ("warning", "You cancelled the payment. Nothing was charged."),
    "pending": (
        "info",
        "aamarPay has not confirmed the payment yet. We keep checking in the background; "
        "reload this page in a minute or two.",
    ),
    "unknown": ("danger", "We could not find that payment."),
}
UPLOAD_ERRORS = {
    "file_too_large": "That file is larger than the upload limit.",
    "unsupported_file_type": "Only .txt and .docx files are accepted, and the content must "
    "match the extension (a real Word document, or plain text).",
    "validation_error": "Choose a non-empty file to upload.",
    "payment_required": "Pay for upload access first.",
    "csrf_failed": "The form had expired; please try again.",
    "upload_timeout": "The upload stalled (no data arrived for a while); please try again.",
    "too_many_requests": "You have several uploads in progress; wait for one to finish.",
}
NOTICES = {
    "uploaded": ("success", "Uploaded. The word count appears here as soon as it is ready."),
    "already_paid": ("info", "You have already paid: uploading is unlocked."),
    "gateway_error": (
        "danger",
        "The payment gateway did not accept the request. Please try again in a moment.",
    ),
    "gateway_unavailable": (
        "danger",
        "The payment gateway cannot be reached right now. Please try again in a moment.",
    ),
    "too_many_pending_payments": (
        "warning",
        "You have several unfinished payments. Finish or cancel one of them at the gateway "
        "before starting another.",
    ),
}


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def short_id(value: object) -> str:
    text = str(value)
    return text if len(text) <= 12 else f"{text[:8]}…"


def describe_activity(action: str, meta: dict[str, Any]) -> str:
    """One readable line for an activity row (escaped by the template)."""
    tx = short_id(meta.get("transaction_id", ""))
    name = meta.get("filename", "")
    texts = {
        "registered": "Account created",
        "login": "Signed in",
        "payment_initiated": f"Started payment {tx} of {meta.get('amount', '')} "
        f"{meta.get('currency', '')}",
        "payment_succeeded": f"Payment {tx} confirmed by aamarPay",
        "payment_failed": f"Payment {tx} failed ({meta.get('reason', 'no reason given')})",
        "payment_cancelled": f"Payment {tx} cancelled",
        "file_uploaded": f"Uploaded {name} ({human_size(int(meta.get('size', 0)))})",
        "file_processed": f"Counted {meta.get('word_count')} words in {name}",
        "file_processing_failed": f"Could not count {name}: {meta.get('error', '')}",
    }
    return texts.get(action, action.replace("_", " "))


templates.env.filters["human_size"] = human_size
templates.env.filters["utc"] = utc
templates.env.filters["short_id"] = short_id
templates.env.globals["describe_activity"] = describe_activity


def render(
    request: Request,
    settings: Settings,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    token = csrf.get_or_create_token(request, settings)
    response = templates.TemplateResponse(
        request,
        name,
        {"csrf_token": token, "settings": settings, **context},
        status_code=status_code,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )
    csrf.set_cookie(response, request, settings)
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def set_session(response: Response, token: str, max_age: int, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=settings.environment == "production",
        path="/",
    )


async def page_user(request: Request, session: SessionDep, settings: Settings) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return await auth.user_from_token(session, token, settings)
    except InvalidToken:
        return None


async def page_user_id(request: Request, settings: Settings) -> int | None:
    """The id the session cookie's valid token names, for routes whose own first query
    checks that the user is still active; None if the session was signed out. The sign-out
    check runs in a short session of its own: the form upload must not hold a pooled
    connection while its body arrives."""
    token = request.cookies.get(SESSION_COOKIE)
    payload = decode_access_token(token, secret_key=settings.secret_key) if token else None
    if payload is None:
        return None
    async for session in session_scope(request.app.state.sessionmaker):
        revoked = await auth.session_revoked(session, payload)
    return None if revoked else payload.user_id


async def read_form(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    return {k: v for k, v in form.items() if isinstance(v, str)}


# --- sign-in and registration --------------------------------------------------------------


@router.get("/", response_class=RedirectResponse)
async def home() -> RedirectResponse:
    return redirect("/dashboard/")


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Request, settings: SettingsDep, logged_out: bool = False
) -> HTMLResponse:
    notice = "You are signed out." if logged_out else None
    return render(request, settings, "dashboard/login.html", {"notice": notice})


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await read_form(request)
    username = form.get("username", "").strip()
    context: dict[str, Any] = {"username": username}
    try:
        csrf.check(request, settings, form.get(csrf.CSRF_FIELD))
        user = await auth.authenticate(
            session,
            login_throttle(request.app),
            username=username,
            password=form.get("password", ""),
            address=client_address(request),
        )
    except TooManyRequests as exc:
        context["error"] = "Too many failed sign-in attempts. Try again in a minute."
        return render(
            request,
            settings,
            "dashboard/login.html",
            context,
            status_code=429,
            headers=exc.headers,
        )
    except AppError as exc:
        context["error"] = (
            UPLOAD_ERRORS["csrf_failed"]
            if exc.code == "csrf_failed"
            else "Incorrect username or password."
        )
        return render(
            request, settings, "dashboard/login.html", context, status_code=exc.status_code
        )
    await uow.commit(session)
    token, lifetime = auth.issue_browser_token(user, settings)
    response = redirect("/dashboard/")
    set_session(response, token, lifetime, settings)
    return response


@router.get("/register", response_class=HTMLResponse)
async def register_page(request: Request, settings: SettingsDep) -> HTMLResponse:
    return render(request, settings, "dashboard/register.html", {})


def _validation_messages(exc: ValidationError) -> list[str]:
    messages = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        messages.append(f"{field}: {msg}" if field else msg)
    return messages


@router.post("/register", response_class=HTMLResponse)
async def register_submit(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await read_form(request)
    context: dict[str, Any] = {
        "username": form.get("username", ""),
        "email": form.get("email", ""),
    }
    try:
        csrf.check(request, settings, form.get(csrf.CSRF_FIELD))
        body = UserCreate(
            username=form.get("username", ""),
            password=form.get("password", ""),
            email=form.get("email") or None,
        )
        user = await create_user(
            session, username=body.username, password=body.password, email=body.email
        )
    except ValidationError as exc:
        context["errors"] = _validation_messages(exc)
        return render(request, settings, "dashboard/register.html", context, status_code=422)
    except AppError as exc:
        context["errors"] = [
            UPLOAD_ERRORS["csrf_failed"] if exc.code == "csrf_failed" else str(exc.detail)
        ]
        return render(
            request, settings, "dashboard/register.html", context, status_code=exc.status_code
        )
    await uow.commit(session)
    token, lifetime = auth.issue_browser_token(user, settings)
    response = redirect("/dashboard/?welcome=1")
    set_session(response, token, lifetime, settings)
    return response


@router.get("/logout", response_class=HTMLResponse)
async def logout_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """A page with the sign-out button: a GET (a link, an <img> on another site) signs
    nobody out."""
    user = await page_user(request, session, settings)
    if user is None:
        return redirect("/login")
    return render(request, settings, "dashboard/logout.html", {"user": user})


@router.post("/logout", response_class=RedirectResponse)
async def logout(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Sign out: this browser session's token is refused from now on, by the pages and the
    API, in every process (CSRF-protected, so another site cannot sign anyone out)."""
    form = await read_form(request)
    csrf.check(request, settings, form.get(csrf.CSRF_FIELD))
    token = request.cookies.get(SESSION_COOKIE)
    payload = decode_access_token(token, secret_key=settings.secret_key) if token else None
    if payload is not None:
        await auth.end_browser_session(session, payload)
        await uow.commit(session)
    response = redirect("/login?logged_out=true")
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.environment == "production",
    )
    return response


# --- the dashboard ---------------------------------------------------------------------------


def _page(total: int, page: int) -> dict[str, int]:
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return {"page": min(page, pages), "pages": pages, "total": total}


@router.get("/dashboard/", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    payment: str | None = None,
    notice: str | None = None,
    upload_error: str | None = None,
    welcome: bool = False,
    files_page: int = Query(1, ge=1),
    activity_page: int = Query(1, ge=1),
    payments_page: int = Query(1, ge=1),
) -> Response:
    user_id = await page_user_id(request, settings)
    signed_in = (
        None
        if user_id is None
        else await entitlement.active_user_and_allowance(session, user_id, settings)
    )
    if signed_in is None:
        return redirect("/login")
    user, allowance = signed_in
    found = await uploads.list_files_of_active_user(
        session, user_id=user.id, limit=PAGE_SIZE, offset=(files_page - 1) * PAGE_SIZE
    )
    if found is None:
        return redirect("/login")
    files, files_total = found
    events, events_total = await activity.list_activity(
        session, user_id=user.id, limit=PAGE_SIZE, offset=(activity_page - 1) * PAGE_SIZE
    )
    txs, txs_total = await payments.list_transactions(
        session, user_id=user.id, limit=PAGE_SIZE, offset=(payments_page - 1) * PAGE_SIZE
    )
    messages: list[tuple[str, str]] = []
    if welcome:
        messages.append(("success", f"Welcome, {user.username}! Your account is ready."))
    if payment in PAYMENT_MESSAGES:
        messages.append(PAYMENT_MESSAGES[payment])
    if notice in NOTICES:
        messages.append(NOTICES[notice])
    if upload_error in UPLOAD_ERRORS:
        messages.append(("danger", UPLOAD_ERRORS[upload_error]))
    return render(
        request,
        settings,
        "dashboard/dashboard.html",
        {
            "user": user,
            "allowance": allowance,
            "messages": messages,
            "files": files,
            "files_pager": _page(files_total, files_page),
            "events": events,
            "events_pager": _page(events_total, activity_page),
            "transactions": txs,
            "payments_pager": _page(txs_total, payments_page),
            "accepted": ",".join(uploads.KINDS),
            "max_upload": human_size(settings.max_upload_bytes),
            "any_processing": any(f.status.value == "processing" for f in files),
            "files_offset": (files_page - 1) * PAGE_SIZE,
            "page_size": PAGE_SIZE,
        },
    )


@router.post("/dashboard/pay", response_class=RedirectResponse)
async def pay(
    request: Request, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> Response:
    form = await read_form(request)
    csrf.check(request, settings, form.get(csrf.CSRF_FIELD))
    user = await page_user(request, session, settings)
    if user is None:
        return redirect("/login")
    try:
        outcome = await payments.start(session, gateway, user, settings)
        await uow.commit(session)
        if problem := outcome.problem():
            raise problem
    except AppError as exc:
        code = exc.code if exc.code in NOTICES else "gateway_error"
        return redirect(f"/dashboard/?notice={code}")
    return redirect(outcome.extra["payment_url"])


@router.post("/dashboard/upload", response_class=RedirectResponse)
async def upload(
    request: Request, session: SessionDep, intake: IntakeDep, settings: SettingsDep
) -> Response:
    """The form's multipart POST. Its CSRF token is the form field placed before the file
    part (checked by the streaming parser before any of the file is read), or the
    `X-CSRF-Token` header for a script; never a URL parameter."""
    header_token = request.headers.get(csrf.CSRF_HEADER)

    def check_token(fields: Mapping[str, str]) -> None:
        csrf.check(request, settings, fields.get(csrf.CSRF_FIELD))

    try:
        if header_token:
            csrf.check(request, settings, header_token)
    except AppError:
        return redirect("/dashboard/?upload_error=csrf_failed")
    user_id = await page_user_id(request, settings)
    if user_id is None:
        return redirect("/login")
    try:
        # Its first query checks that the user is still active (InvalidToken if not).
        await uploads.receive(
            session,
            intake,
            upload_body(request),
            user_id=user_id,
            settings=settings,
            before_file=None if header_token else check_token,
        )
        await uow.commit(session)
    except InvalidToken:
        return redirect("/login")
    except AppError as exc:
        code = exc.code if exc.code in UPLOAD_ERRORS else "validation_error"
        return redirect(f"/dashboard/?upload_error={code}")
    return redirect("/dashboard/?notice=uploaded")
