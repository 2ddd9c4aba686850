"""Sign-in: password check at a constant cost, throttling, token issue."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import InvalidCredentials, InvalidToken
from app.models import Action, User
from app.security import create_access_token, decode_access_token, verify_password
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


async def user_from_token(session: AsyncSession, token: str, settings: Settings) -> User:
    payload = decode_access_token(token, secret_key=settings.secret_key)
    if payload is None:
        raise InvalidToken()
    user = await session.get(User, payload.user_id)
    if user is None or not user.is_active:
        raise InvalidToken()
    return user
