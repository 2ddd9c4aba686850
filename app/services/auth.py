"""Sign-in: password check at a constant cost, throttling, token issue; browser sessions.

Browser sessions and sign-out. The dashboard's cookie holds a JWT that the API accepts too,
so signing out must make that token useless everywhere, in every API process. Each browser
sign-in gets a random session id (the token's `sid` claim); `POST /logout` writes it to the
`revoked_session` table with the token's own expiry, and every check of a token that carries
a `sid` asks that table. API tokens (`POST /api/auth/token/`) carry no `sid` and are never
looked up, so bearer requests pay nothing for this. Where a user query already runs (every
`CurrentUser` route), the revocation test rides on it as an EXISTS in the same round trip.
The table holds at most the sessions signed out within one token lifetime: each sign-out
first deletes the rows whose tokens have expired anyway (indexed on `expires_at`).

The database rather than Redis: it is the one store every deployment has (the embedded
default runs without Redis) and a revocation must never be lost with a cache.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Exists, delete, exists, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import InvalidCredentials, InvalidToken
from app.models import Action, RevokedSession, User
from app.security import (
    TokenPayload,
    create_access_token,
    new_session_id,
    verify_password,
)
from app.services.activity import record_activity
from app.services.throttle import LoginThrottle
from app.services.users import get_by_username


async def authenticate(
    session: AsyncSession,
    throttle: LoginThrottle,
    *,
    username: str,
    password: str,
    address: str,
    staff_only: bool = False,
    via: str | None = None,
) -> User:
    """The active user with these credentials, else InvalidCredentials (or TooManyRequests).

    The attempt is counted by the throttle before anything else, so a refused one (429)
    reaches neither the database nor the password check. An unknown username, a wrong
    password and an inactive account (or, with `staff_only`, a non-staff one) cost the same
    argon2 verification, stay counted as the same failed attempt and give the same answer.
    The username is matched in its canonical form (app/usernames.py), the one the throttle
    counts. The `login` activity row is added (not committed).
    """
    attempt = await throttle.attempt(username, address)
    user = await get_by_username(session, username)
    ok = await verify_password(password, user.hashed_password if user else None)
    if not ok or user is None or not user.is_active or (staff_only and not user.is_staff):
        raise InvalidCredentials()
    await attempt.succeeded()
    extra = {"via": via} if via else {}
    record_activity(session, user_id=user.id, action=Action.LOGIN, address=address, **extra)
    return user


def issue_token(user: User, settings: Settings) -> tuple[str, int]:
    return create_access_token(
        user.id,
        secret_key=settings.secret_key,
        expires_minutes=settings.access_token_expire_minutes,
    )


def issue_browser_token(user: User, settings: Settings) -> tuple[str, int]:
    """A token for the dashboard's session cookie: like `issue_token`, plus a new session id
    so that signing out can revoke it."""
    return create_access_token(
        user.id,
        secret_key=settings.secret_key,
        expires_minutes=settings.access_token_expire_minutes,
        session_id=new_session_id(),
    )


def _revoked(session_id: str) -> Exists:
    return exists().where(RevokedSession.sid == session_id)


async def session_revoked(session: AsyncSession, payload: TokenPayload) -> bool:
    """Whether the token's browser session was signed out (False for API tokens, unasked)."""
    if payload.session_id is None:
        return False
    return bool(await session.scalar(select(_revoked(payload.session_id))))


async def end_browser_session(session: AsyncSession, payload: TokenPayload) -> None:
    """Sign the token's browser session out for good (flushed, not committed). Idempotent:
    a second sign-out of the same session, in parallel too, changes nothing."""
    if payload.session_id is None:
        return
    now = datetime.now(UTC)
    await session.execute(delete(RevokedSession).where(RevokedSession.expires_at < now))
    await session.execute(
        insert(RevokedSession)
        .values(sid=payload.session_id, expires_at=payload.expires_at)
        .prefix_with("OR IGNORE", dialect="sqlite")
        .prefix_with("IGNORE", dialect="mysql")
    )


async def user_from_payload(session: AsyncSession, payload: TokenPayload) -> User:
    """The active user a valid token names, in one round trip; InvalidToken if the user is
    gone or deactivated, or the token's browser session was signed out."""
    if payload.session_id is None:
        user = await session.get(User, payload.user_id)
    else:
        query = select(User, _revoked(payload.session_id).label("revoked")).where(
            User.id == payload.user_id
        )
        row = (await session.execute(query)).first()
        user = None if row is None or row.revoked else row.User
    if user is None or not user.is_active:
        raise InvalidToken()
    return user
