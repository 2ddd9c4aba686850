"""User accounts: creation (API registration and the CLI alike) and lookups."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict
from app.models import Action, User
from app.security import hash_password
from app.services.activity import record_activity
from app.usernames import canonical_username

TAKEN = "This username is already taken"


async def get_by_username(session: AsyncSession, username: str) -> User | None:
    """The account this name means, in its canonical form (app/usernames.py): `Alice`,
    `alice ` and `álice` all find `alice`."""
    result: User | None = await session.scalar(
        select(User).where(User.username_canonical == canonical_username(username))
    )
    return result


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    email: str | None = None,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    """Add a user (flushed, not committed) and its `registered` activity row.

    Raises Conflict(`username_taken`) when the name's canonical form exists (so a name that
    differs from an existing one only in case, width, accents or surrounding whitespace),
    including when a concurrent registration wins the race on the unique index.
    """
    username = username.strip()
    if await get_by_username(session, username) is not None:
        raise Conflict(TAKEN, code="username_taken")
    user = User(
        username=username,
        username_canonical=canonical_username(username),
        email=email,
        hashed_password=await hash_password(password),
        is_active=True,
        is_staff=is_staff or is_superuser,
        is_superuser=is_superuser,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        # The caller's unit of work rolls back (nothing of it can be kept).
        raise Conflict(TAKEN, code="username_taken") from exc
    record_activity(session, user_id=user.id, action=Action.REGISTERED)
    return user
