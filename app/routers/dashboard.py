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
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app import csrf, i18n, uow
from app.config import Settings
from app.deps import (
    SESSION_COOKIE,
    GatewayDep,
    IntakeDep,
    SessionDep,
    SettingsDep,
    client_address,
    login_throttle,
    page_token,
    page_user,
    page_user_id,
    upload_body,
)
from app.errors import AppError, InvalidToken, NotFound, TooManyRequests
from app.i18n import N_, tr
from app.models import User
from app.schemas.users import UserCreate
from app.services import activity, auth, entitlement, payments, receipts, storage, uploads
from app.services.users import TAKEN, create_user

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")

PAGE_SIZE = 10
MAX_FORM_FIELDS = 10
#: Files the page's script sends at the same moment (the per-person limit of uploads in
#: flight, MAX_CONCURRENT_UPLOADS_PER_USER, is 3 by default: this leaves one for another tab).
PARALLEL_UPLOADS = 2
#: The results of a form POST of several files, shown once by the page it redirects to.
RESULTS_COOKIE = "upload_results"
RESULTS_MAX_AGE = 300

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; font-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: Messages chosen by code, never by text from the URL (no content spoofing); translated
#: when shown.
PAYMENT_MESSAGES = {
    "success": ("success", N_("Payment received. You can upload files now.")),
    "failed": ("danger", N_("The payment did not go through. You can try again.")),
    "cancelled": ("warning", N_("You cancelled the payment. Nothing was charged.")),
    "pending": (
        "info",
        N_(
            "aamarPay has not confirmed the payment yet. We keep checking in the background; "
            "reload this page in a minute or two."
        ),
    ),
    "unknown": ("danger", N_("We could not find that payment.")),
}
UPLOAD_ERRORS = {
    "file_too_large": N_("That file is larger than the upload limit."),
    "unsupported_file_type": N_(
        "Only .txt and .docx files are accepted, and the content must "
        "match the extension (a real Word document, or plain text)."
    ),
    "validation_error": N_("Choose a non-empty file to upload."),
    "payment_required": N_("Pay for upload access first."),
    "csrf_failed": N_("The form had expired; please try again."),
    "upload_timeout": N_("The upload stalled (no data arrived for a while); please try again."),
    "too_many_requests": N_("You have several uploads in progress; wait for one to finish."),
}
#: What the page's script shows (besides UPLOAD_ERRORS), in the page's language.
SCRIPT_MESSAGES = {
    "uploading": N_("Sending…"),
    "waiting": N_("Waiting…"),
    "accepted": N_("Uploaded. The word count appears here as soon as it is ready."),
    "failed_generic": N_("The upload failed; please try again."),
    "signed_out": N_("You are signed out; sign in again to upload."),
    "too_many_files": N_("Too many files at once: up to %(count)s."),
    "completed": N_("completed"),
    "failed": N_("failed"),
    "processing": N_("processing"),
}
NOTICES = {
    "uploaded": ("success", N_("Uploaded. The word count appears here as soon as it is ready.")),
    "already_paid": ("info", N_("You have already paid: uploading is unlocked.")),
    "gateway_error": (
        "danger",
        N_("The payment gateway did not accept the request. Please try again in a moment."),
    ),
    "gateway_unavailable": (
        "danger",
        N_("The payment gateway cannot be reached right now. Please try again in a moment."),
    ),
    "too_many_pending_payments": (
        "warning",
        N_(
            "You have several unfinished payments. Finish or cancel one of them at the gateway "
            "before starting another."
        ),
    ),
}
#: Why a registration was refused: the validators' English reasons, as shown to a person.
REGISTRATION_PROBLEMS = {
    "may contain only letters, digits and @ . + - _": N_(
        "The username may contain only letters, digits and @ . + - _"
    ),
    "must start with a letter, a digit or @ . + - _": N_(
        "The username must start with a letter, a digit or @ . + - _"
    ),
    "is not a valid email address": N_("That is not a valid e-mail address."),
    "password must be at least 8 characters": N_("The password must be at least 8 characters."),
    "password must not be blank": N_("The password must not be blank."),
    "password must not be only digits": N_("The password must not be only digits."),
    "password is too common": N_("That password is too common."),
    "password must differ from the username": N_("The password must differ from the username."),
}
FIELD_LABELS = {"username": N_("Username"), "password": N_("Password"), "email": N_("Email")}


def human_size(size: int) -> str:
    return i18n.format_size(size, "en")


def utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def short_id(value: object) -> str:
    text = str(value)
    return text if len(text) <= 12 else f"{text[:8]}…"


def describe_activity(action: str, meta: dict[str, Any], lang: str = "en") -> str:
    """One readable line for an activity row, in `lang` (escaped by the template)."""
    tx = short_id(meta.get("transaction_id", ""))
    name = str(meta.get("filename", ""))
    if action == "registered":
        return tr(lang, "Account created")
    if action == "login":
        return tr(lang, "Signed in")
    if action == "payment_initiated":
        amount = meta.get("amount", "")
        currency = str(meta.get("currency", ""))
        try:
            shown = i18n.format_amount(amount, currency, lang)
        except ArithmeticError:
            shown = f"{amount} {currency}"
        return tr(lang, "Started payment %(tx)s of %(amount)s", tx=tx, amount=shown)
    if action == "payment_succeeded":
        return tr(lang, "Payment %(tx)s confirmed by aamarPay", tx=tx)
    if action == "payment_failed":
        reason = meta.get("reason") or tr(lang, "no reason given")
        return tr(lang, "Payment %(tx)s failed (%(reason)s)", tx=tx, reason=reason)
    if action == "payment_cancelled":
        return tr(lang, "Payment %(tx)s cancelled", tx=tx)
    if action == "file_uploaded":
        size = i18n.format_size(int(meta.get("size", 0)), lang)
        return tr(lang, "Uploaded %(name)s (%(size)s)", name=name, size=size)
    if action == "file_processed":
        words = meta.get("word_count")
        count = i18n.format_number(int(words), lang) if isinstance(words, int) else str(words)
        return tr(lang, "Counted %(count)s words in %(name)s", count=count, name=name)
    if action == "file_processing_failed":
        error = meta.get("error", "")
        return tr(lang, "Could not count %(name)s: %(error)s", name=name, error=error)
    if action == "receipt_sent":
        return tr(lang, "Receipt for payment %(tx)s sent by e-mail", tx=tx)
    return action.replace("_", " ")


templates.env.filters["human_size"] = human_size
templates.env.filters["utc"] = utc
templates.env.filters["short_id"] = short_id
templates.env.globals["describe_activity"] = describe_activity
i18n.install(templates.env)


def page_language(request: Request, settings: Settings) -> str:
    return i18n.request_language(request, settings.default_language)


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
    lang = page_language(request, settings)
    links = [
        (code, i18n.LANGUAGE_NAMES[code], i18n.switch_url(request.url, code))
        for code in i18n.LANGUAGES
    ]
    response = templates.TemplateResponse(
        request,
        name,
        {
            "csrf_token": token,
            "settings": settings,
            "lang": lang,
            "language_links": links,
            **context,
        },
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
    lang = page_language(request, settings)
    notice = tr(lang, "You are signed out.") if logged_out else None
    return render(request, settings, "dashboard/login.html", {"notice": notice})


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await read_form(request)
    lang = page_language(request, settings)
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
        context["error"] = tr(lang, "Too many failed sign-in attempts. Try again in a minute.")
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
            tr(lang, UPLOAD_ERRORS["csrf_failed"])
            if exc.code == "csrf_failed"
            else tr(lang, "Incorrect username or password.")
        )
        return render(
            request, settings, "dashboard/login.html", context, status_code=exc.status_code
        )
    user.language = lang
    await uow.commit(session)
    token, lifetime = auth.issue_browser_token(user, settings)
    response = redirect("/dashboard/")
    set_session(response, token, lifetime, settings)
    return response


@router.get("/register", response_class=HTMLResponse)
async def register_page(request: Request, settings: SettingsDep) -> HTMLResponse:
    return render(request, settings, "dashboard/register.html", {})


def _validation_messages(exc: ValidationError, lang: str) -> list[str]:
    """The form's problems in `lang`: the validators' reasons by their (English) text, the
    length limits by their type, anything else as the field's name and a generic reason."""
    messages = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        label = tr(lang, FIELD_LABELS[field]) if field in FIELD_LABELS else field
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        limit = (err.get("ctx") or {}).get("min_length") or (err.get("ctx") or {}).get("max_length")
        if msg in REGISTRATION_PROBLEMS:
            messages.append(tr(lang, REGISTRATION_PROBLEMS[msg]))
        elif err.get("type") == "string_too_short" and limit is not None:
            count = i18n.format_number(int(limit), lang)
            messages.append(
                tr(lang, "%(field)s: at least %(count)s characters.", field=label, count=count)
            )
        elif err.get("type") == "string_too_long" and limit is not None:
            count = i18n.format_number(int(limit), lang)
            messages.append(
                tr(lang, "%(field)s: at most %(count)s characters.", field=label, count=count)
            )
        elif msg.startswith("is longer than"):
            messages.append(tr(lang, "The username is too long."))
        else:
            messages.append(tr(lang, "%(field)s: this value is not accepted.", field=label))
    return messages


@router.post("/register", response_class=HTMLResponse)
async def register_submit(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await read_form(request)
    lang = page_language(request, settings)
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
        user.language = lang
    except ValidationError as exc:
        context["errors"] = _validation_messages(exc, lang)
        return render(request, settings, "dashboard/register.html", context, status_code=422)
    except AppError as exc:
        if exc.code == "csrf_failed":
            context["errors"] = [tr(lang, UPLOAD_ERRORS["csrf_failed"])]
        elif exc.code == "username_taken" or exc.detail == TAKEN:
            context["errors"] = [tr(lang, "This username is already taken.")]
        else:
            context["errors"] = [str(exc.detail)]
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
    payload = page_token(request, settings)
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
    lang = page_language(request, settings)
    if i18n.is_language(request.query_params.get(i18n.QUERY)) and user.language != lang:
        # An explicit choice: the e-mails follow it too.
        await session.execute(update(User).where(User.id == user.id).values(language=lang))
        await session.commit()
    files_context = await _files_context(session, user.id, files_page)
    if files_context is None:
        return redirect("/login")
    events, events_total = await activity.list_activity(
        session, user_id=user.id, limit=PAGE_SIZE, offset=(activity_page - 1) * PAGE_SIZE
    )
    txs, txs_total = await payments.list_transactions(
        session, user_id=user.id, limit=PAGE_SIZE, offset=(payments_page - 1) * PAGE_SIZE
    )
    messages: list[tuple[str, str]] = []
    if welcome:
        messages.append(
            (
                "success",
                tr(lang, "Welcome, %(name)s! Your account is ready.", name=user.username),
            )
        )
    if payment in PAYMENT_MESSAGES:
        level, text = PAYMENT_MESSAGES[payment]
        messages.append((level, tr(lang, text)))
    if notice in NOTICES:
        level, text = NOTICES[notice]
        messages.append((level, tr(lang, text)))
    if upload_error in UPLOAD_ERRORS:
        messages.append(("danger", tr(lang, UPLOAD_ERRORS[upload_error])))
    results = _read_results(request, settings, user.id, lang)
    response = render(
        request,
        settings,
        "dashboard/dashboard.html",
        {
            "user": user,
            "allowance": allowance,
            "messages": messages,
            **files_context,
            "upload_results": results,
            "max_files": storage.MAX_FILES_PER_REQUEST,
            "parallel_uploads": PARALLEL_UPLOADS,
            "js_messages": _script_messages(lang),
            "events": events,
            "events_pager": _page(events_total, activity_page),
            "transactions": txs,
            "payments_pager": _page(txs_total, payments_page),
            "accepted": ",".join(uploads.KINDS),
            "max_upload": i18n.format_size(settings.max_upload_bytes, lang),
        },
    )
    if request.cookies.get(RESULTS_COOKIE):
        response.delete_cookie(RESULTS_COOKIE, path="/dashboard/", httponly=True, samesite="lax")
    return response


async def _files_context(
    session: AsyncSession, user_id: int, files_page: int
) -> dict[str, Any] | None:
    found = await uploads.list_files_of_active_user(
        session, user_id=user_id, limit=PAGE_SIZE, offset=(files_page - 1) * PAGE_SIZE
    )
    if found is None:
        return None
    files, files_total = found
    return {
        "files": files,
        "files_pager": _page(files_total, files_page),
        "files_offset": (files_page - 1) * PAGE_SIZE,
        "page_size": PAGE_SIZE,
    }


def _script_messages(lang: str) -> dict[str, str]:
    texts = {code: tr(lang, text) for code, text in UPLOAD_ERRORS.items()}
    texts.update({key: tr(lang, text) for key, text in SCRIPT_MESSAGES.items()})
    texts["too_many_files"] = tr(
        lang,
        SCRIPT_MESSAGES["too_many_files"],
        count=i18n.format_number(storage.MAX_FILES_PER_REQUEST, lang),
    )
    texts["lang"] = lang
    return texts


def _results_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt="dashboard-upload-results")


def _read_results(
    request: Request, settings: Settings, user_id: int, lang: str
) -> list[dict[str, str]]:
    """The results of this person's last multi-file form POST (signed, short-lived)."""
    raw = request.cookies.get(RESULTS_COOKIE)
    if not raw:
        return []
    try:
        data = _results_serializer(settings).loads(raw, max_age=RESULTS_MAX_AGE)
    except BadSignature:
        return []
    if not isinstance(data, dict) or data.get("u") != user_id:
        return []
    shown = []
    for name, code in data.get("r", [])[: storage.MAX_FILES_PER_REQUEST]:
        if code is None:
            text = tr(lang, NOTICES["uploaded"][1])
        else:
            text = tr(lang, UPLOAD_ERRORS.get(code, UPLOAD_ERRORS["validation_error"]))
        shown.append(
            {
                "name": str(name),
                "level": "success" if code is None else "danger",
                "state": "accepted" if code is None else "refused",
                "text": text,
            }
        )
    return shown


@router.get("/dashboard/payments/{transaction_id}/receipt", response_class=HTMLResponse)
async def receipt(
    request: Request, transaction_id: str, session: SessionDep, settings: SettingsDep
) -> Response:
    """The printable receipt of one of your successful payments: what the e-mail says."""
    user = await page_user(request, session, settings)
    if user is None:
        return redirect("/login")
    lang = page_language(request, settings)
    try:
        found = await receipts.of_owner(session, user_id=user.id, transaction_id=transaction_id)
    except NotFound:
        return render(request, settings, "dashboard/receipt.html", {"user": user}, status_code=404)
    return render(
        request,
        settings,
        "dashboard/receipt.html",
        {"user": user, **receipts.content(found, settings, lang)},
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
    """The form's multipart POST of one or more files (the page's script sends each file
    to the API instead, with progress). Its CSRF token is the form field placed before the
    file parts (checked by the streaming parser before any file is read), or the
    `X-CSRF-Token` header for a script; never a URL parameter.

    One file: back to the dashboard with its notice or error, as always. Several: each is
    accepted or refused on its own (a refused one leaves nothing behind) and the dashboard
    lists each result."""
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
        results = await uploads.receive_many(
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
    if len(results) == 1:
        refusal = results[0].error
        return redirect("/dashboard/?notice=uploaded" if refusal is None else _error_url(refusal))
    response = redirect("/dashboard/")
    shown = [(result.filename, result.error) for result in results]
    response.set_cookie(
        RESULTS_COOKIE,
        _results_serializer(settings).dumps({"u": user_id, "r": shown}),
        max_age=RESULTS_MAX_AGE,
        path="/dashboard/",
        httponly=True,
        samesite="lax",
        secure=settings.environment == "production",
    )
    return response


def _error_url(code: str) -> str:
    return f"/dashboard/?upload_error={code if code in UPLOAD_ERRORS else 'validation_error'}"
