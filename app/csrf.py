"""CSRF protection for the browser pages: a signed double-submit token, and a same-origin
check in front of everything.

Every page that shows a form makes sure the browser holds a `csrftoken` cookie (random, signed
with SECRET_KEY, HttpOnly, SameSite=Lax) and puts the same value in the form. A state-changing
request must carry the value (form field `csrf_token`, which the multipart upload form sends
before its file part, or the `X-CSRF-Token` header) and it must equal the cookie. The token is
never put in a URL, so it never reaches an access log or a Referer header.

On top of the token, `CrossSiteGuard` refuses (403 `csrf_failed`) every state-changing request
that carries the session cookie but that the browser says comes from another site: an `Origin`
other than the service's own, or `Sec-Fetch-Site: cross-site`. It sits in front of every route,
the JSON API included, so no route can forget it.

The gateway's routes (/api/payment/success|fail|cancel|ipn/) are the only state-changing
routes that take no token and may be reached cross-site: the gateway, not our page, sends the
browser (or its own server) there.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.errors import Forbidden
from app.logging import get_request_id

CSRF_COOKIE = "csrftoken"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The dashboard's session cookie (app.deps.SESSION_COOKIE names the same).
SESSION_COOKIE = "session"
#: Reached cross-site by design: the gateway's browser returns and its server's IPN.
GATEWAY_PATHS = (
    "/api/payment/success",
    "/api/payment/fail",
    "/api/payment/cancel",
    "/api/payment/ipn",
)
FAILED_DETAIL = "The form has expired or came from another site; reload the page and try again"


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key, salt="csrf")


def _valid(settings: Settings, token: str | None) -> bool:
    if not token:
        return False
    try:
        _serializer(settings).loads(token)
    except BadSignature:
        return False
    return True


def get_or_create_token(request: Request, settings: Settings) -> str:
    """The browser's token (a new one if it has none or a forged one)."""
    token = request.cookies.get(CSRF_COOKIE)
    if _valid(settings, token):
        assert token is not None  # noqa: S101
        return token
    cached: str | None = getattr(request.state, "new_csrf_token", None)
    if cached is None:
        cached = str(_serializer(settings).dumps(secrets.token_urlsafe(24)))
        request.state.new_csrf_token = cached
    return cached


def set_cookie(response: Response, request: Request, settings: Settings) -> None:
    """Store the token made for this request, if any."""
    token: str | None = getattr(request.state, "new_csrf_token", None)
    if token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=settings.environment == "production",
            path="/",
        )


def check(request: Request, settings: Settings, submitted: str | None) -> None:
    """Raise Forbidden(`csrf_failed`) unless `submitted` matches the browser's cookie."""
    cookie = request.cookies.get(CSRF_COOKIE)
    submitted = submitted or request.headers.get(CSRF_HEADER)
    if (
        not cookie
        or not submitted
        or not _valid(settings, cookie)
        or not hmac.compare_digest(cookie.encode(), submitted.encode())
    ):
        raise Forbidden(FAILED_DETAIL, code="csrf_failed")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def is_cross_site(headers: Headers, public_base_url: str) -> bool:
    """What the browser says about where the request comes from: `Sec-Fetch-Site:
    cross-site`, or an `Origin` that is neither PUBLIC_BASE_URL's nor this request's own
    host (`Origin: null`, an opaque origin, counts as foreign). A request with neither
    header (an old browser, a script) is left to the token."""
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    origin = origin.strip().lower()
    if origin == _origin(public_base_url):
        return False
    host = headers.get("host", "").lower()
    # The request's own host, whatever scheme a proxy in front of us terminated.
    return not host or origin not in (f"http://{host}", f"https://{host}")


def _has_session_cookie(headers: Headers) -> bool:
    return any(
        part.split("=", 1)[0].strip() == SESSION_COOKIE
        for value in headers.getlist("cookie")
        for part in value.split(";")
    )


class CrossSiteGuard:
    """Pure ASGI: 403 `csrf_failed` for a state-changing request that carries the session
    cookie and comes from another site, before any route (or body) is read. Reads
    PUBLIC_BASE_URL from the app's current settings."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and not str(scope["path"]).startswith(GATEWAY_PATHS)
        ):
            headers = Headers(scope=scope)
            settings: Settings = scope["app"].state.settings
            if _has_session_cookie(headers) and is_cross_site(headers, settings.public_base_url):
                # The request-id middleware around this one adds the header.
                response = JSONResponse(
                    {
                        "error": "csrf_failed",
                        "detail": FAILED_DETAIL,
                        "request_id": get_request_id(),
                    },
                    status_code=403,
                    headers={"Cache-Control": "no-store"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
