"""Shared FastAPI dependencies as Annotated aliases.

Every dependency is `async def`, even when it does no I/O: FastAPI runs a plain `def`
dependency in the thread pool, and that hop (plus the GIL handoff back) costs more than the
whole of a cheap request under load. `login_throttle` stays a plain function for direct calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app import csrf
from app.config import Settings
from app.db import session_scope
from app.errors import InvalidToken, NotAuthenticated
from app.models import User
from app.security import TokenPayload, decode_access_token
from app.services import uploads
from app.services.aamarpay import AamarPayClient
from app.services.auth import session_revoked, user_from_payload
from app.services.payments import gateway_for
from app.services.throttle import LoginThrottle

#: Name of the browser session cookie (an HttpOnly browser-session token, see
#: app.services.auth); app.csrf's cross-site guard looks for it.
SESSION_COOKIE = csrf.SESSION_COOKIE

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token/", auto_error=False)


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    scope = session_scope(request.app.state.sessionmaker)
    session = await anext(scope)
    try:
        yield session
    finally:
        # Closed here, also when the route raised: iterating the scope in a loop left it
        # open on an error, so its rollback (and the compensations, e.g. deleting a stored
        # object) ran only whenever the generator was garbage-collected.
        await scope.aclose()


def login_throttle(app: Any) -> LoginThrottle:
    """The failed-login throttle on the app's shared store, with the current limits."""
    settings: Settings = app.state.settings
    return LoginThrottle(
        app.state.throttle_store,
        limit=settings.login_failure_limit,
        address_limit=settings.login_address_failure_limit,
        window=settings.login_failure_window_seconds,
    )


async def get_intake(request: Request) -> uploads.Intake:
    intake: uploads.Intake = request.app.state.intake
    return intake


def upload_body(request: Request) -> uploads.Body:
    length = request.headers.get("content-length", "")
    return uploads.Body(
        chunks=request.stream(),
        content_type=request.headers.get("content-type", ""),
        content_length=int(length) if length.isdigit() else None,
    )


async def get_throttle(request: Request) -> LoginThrottle:
    return login_throttle(request.app)


async def get_gateway(request: Request) -> AamarPayClient:
    """The gateway client over the app's one shared httpx client (built per request: cheap,
    and it follows the current settings)."""
    settings: Settings = request.app.state.settings
    return gateway_for(request.app.state.http, settings)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
GatewayDep = Annotated[AamarPayClient, Depends(get_gateway)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
ThrottleDep = Annotated[LoginThrottle, Depends(get_throttle)]
IntakeDep = Annotated[uploads.Intake, Depends(get_intake)]


def _request_token(request: Request, bearer: str | None) -> tuple[str, bool]:
    """(token, came from the cookie): the bearer header first, then the session cookie."""
    if bearer:
        return bearer, False
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotAuthenticated()
    return token, True


def _api_token(request: Request, settings: Settings, bearer: str | None) -> TokenPayload:
    token, from_cookie = _request_token(request, bearer)
    payload = decode_access_token(token, secret_key=settings.secret_key)
    if payload is None:
        raise InvalidToken()
    if from_cookie and request.method not in csrf.SAFE_METHODS:
        csrf.check(request, settings, None)
    return payload


async def get_api_token(
    request: Request,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
) -> TokenPayload:
    """Who an API request is from: the bearer token, else the browser session cookie (the
    dashboard's script), whose state-changing requests must carry the CSRF token
    (`X-CSRF-Token`). The signature and expiry are checked here; that the user is active and
    the browser session not signed out, by what builds on it (`CurrentUser`, `TokenUserId`)."""
    return _api_token(request, settings, bearer)


ApiToken = Annotated[TokenPayload, Depends(get_api_token)]


async def signed_out(request: Request, payload: TokenPayload) -> bool:
    """Whether the token's browser session was signed out, asked in a short session of its
    own (so a route that then reads a body holds no pooled connection); API tokens: no."""
    if payload.session_id is None:
        return False
    async for session in session_scope(request.app.state.sessionmaker):
        revoked = await session_revoked(session, payload)
    return revoked


async def get_current_user(token: ApiToken, session: SessionDep) -> User:
    """The active user the token names, its browser session not signed out: one query."""
    return await user_from_payload(session, token)


async def get_token_user_id(
    request: Request, bearer: Annotated[str | None, Depends(oauth2_scheme)]
) -> int:
    """The id the token names, without loading the user: for hot routes whose own first
    query checks, in the same round trip, that this user still exists and is active (then
    answering InvalidToken as CurrentUser does): the file list, the upload's right check.
    `get_api_token`'s checks in this one dependency (each dependency FastAPI resolves costs
    more than the check it runs)."""
    token = _api_token(request, request.app.state.settings, bearer)
    if await signed_out(request, token):
        raise InvalidToken()
    return token.user_id


def page_token(request: Request, settings: Settings) -> TokenPayload | None:
    """Who a page request is from: the browser session cookie's valid token, or nobody."""
    token = request.cookies.get(SESSION_COOKIE)
    return decode_access_token(token, secret_key=settings.secret_key) if token else None


async def page_user(request: Request, session: AsyncSession, settings: Settings) -> User | None:
    """The signed-in person of a page (active, session not signed out), or None."""
    payload = page_token(request, settings)
    if payload is None:
        return None
    try:
        return await user_from_payload(session, payload)
    except InvalidToken:
        return None


async def page_user_id(request: Request, settings: Settings) -> int | None:
    """`page_user` without loading the user, for routes whose own first query checks that
    the user is still active (the dashboard, its form upload)."""
    payload = page_token(request, settings)
    if payload is None or await signed_out(request, payload):
        return None
    return payload.user_id


CurrentUser = Annotated[User, Depends(get_current_user)]
#: Token checked, user not loaded: see get_token_user_id.
TokenUserId = Annotated[int, Depends(get_token_user_id)]


@dataclass(frozen=True)
class Pagination:
    limit: int
    offset: int


async def get_pagination(
    limit: Annotated[int, Query(ge=1, le=100, description="Page size (1-100)")] = 20,
    offset: Annotated[int, Query(ge=0, description="Rows to skip")] = 0,
) -> Pagination:
    return Pagination(limit=limit, offset=offset)


PaginationDep = Annotated[Pagination, Depends(get_pagination)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
