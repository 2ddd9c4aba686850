"""CSRF protection for the browser pages (signed double-submit token).

Every page that shows a form makes sure the browser holds a `csrftoken` cookie (random, signed
with SECRET_KEY, HttpOnly, SameSite=Lax) and puts the same value in the form. A state-changing
request must carry the value (form field `csrf_token`, query parameter `csrf_token` for the
multipart upload, or the `X-CSRF-Token` header) and it must equal the cookie. A cross-site
page can neither read the cookie nor, with SameSite=Lax, make the browser send it on a POST.

The gateway's return routes (/api/payment/success|fail|cancel/) are the only state-changing
routes that take no token: the gateway, not our page, sends the browser there.
"""

from __future__ import annotations

import hmac
import secrets

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

from app.config import Settings
from app.errors import Forbidden

CSRF_COOKIE = "csrftoken"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
        raise Forbidden(
            "The form has expired or came from another site; reload the page and try again",
            code="csrf_failed",
        )
