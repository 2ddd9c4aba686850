"""Password hashing (passlib's argon2id) and JWT access tokens (python-jose, HS256)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from anyio import to_thread
from jose import JWTError, jwt
from passlib.context import CryptContext

JWT_ALGORITHM = "HS256"

# OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): ~35 ms a hash on one core.
# bcrypt is deliberately absent: passlib 1.7.4 crashes with bcrypt 5.
_pwd_context = CryptContext(
    schemes=["argon2"],
    deprecated="auto",
    argon2__type="ID",
    argon2__memory_cost=19456,
    argon2__time_cost=2,
    argon2__parallelism=1,
)

# Verified against when the username does not exist, so login costs the same either way.
_DUMMY_HASH = _pwd_context.hash(secrets.token_urlsafe(16))


def hash_password_sync(password: str) -> str:
    return str(_pwd_context.hash(password))


async def hash_password(password: str) -> str:
    """Hash off the event loop: argon2 is CPU work by design."""
    return await to_thread.run_sync(hash_password_sync, password)


async def verify_password(password: str, hashed: str | None) -> bool:
    """Constant-cost check; `hashed=None` (no such user) still runs one argon2 verify."""
    target = hashed or _DUMMY_HASH

    def _verify() -> bool:
        try:
            return bool(_pwd_context.verify(password, target))
        except (ValueError, TypeError):
            return False

    ok = await to_thread.run_sync(_verify)
    return ok and hashed is not None


#: Longest browser-session id accepted in a token (`new_session_id` makes 32 characters).
MAX_SESSION_ID_CHARS = 64


@dataclass(frozen=True)
class TokenPayload:
    user_id: int
    issued_at: datetime
    expires_at: datetime
    #: The browser session this token belongs to (`sid` claim), None for API tokens. Only
    #: such tokens can be signed out server-side (app.services.auth.end_browser_session).
    session_id: str | None = None


def new_session_id() -> str:
    """128 random bits as lower-case hex (case-blind collations compare it exactly)."""
    return secrets.token_hex(16)


def create_access_token(
    user_id: int,
    *,
    secret_key: str,
    expires_minutes: int,
    now: datetime | None = None,
    session_id: str | None = None,
) -> tuple[str, int]:
    """Return (token, lifetime in seconds). `session_id` makes it a browser-session token."""
    issued = now or datetime.now(UTC)
    lifetime = timedelta(minutes=expires_minutes)
    claims = {
        "sub": str(user_id),
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
        "typ": "access",
    }
    if session_id is not None:
        claims["sid"] = session_id
    token = jwt.encode(claims, secret_key, algorithm=JWT_ALGORITHM)
    return str(token), int(lifetime.total_seconds())


def decode_access_token(token: str, *, secret_key: str) -> TokenPayload | None:
    """The payload of a valid token, or None for anything else (bad alg, key, shape, expiry).

    A token that verified once is remembered (`_verified`, bounded): a client sends the same
    token with every request, and checking its signature and claims again cost ~0.2 ms, a
    twentieth of an upload's CPU in the API. The expiry is checked on every call; what the
    token names (its user, its session) is checked by the caller as before."""
    key = (token, secret_key)
    payload = _VERIFIED.get(key)
    if payload is None:
        payload = _verify(token, secret_key)
        if payload is None:
            return None
        if len(_VERIFIED) >= VERIFIED_TOKENS_KEPT:
            _VERIFIED.clear()
        _VERIFIED[key] = payload
    if payload.expires_at < datetime.now(UTC):
        return None
    return payload


#: How many verified tokens a process remembers (valid ones only; ~0.5 KB each).
VERIFIED_TOKENS_KEPT = 4096
_VERIFIED: dict[tuple[str, str], TokenPayload] = {}


def _verify(token: str, secret_key: str) -> TokenPayload | None:
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != JWT_ALGORITHM:
            return None
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[JWT_ALGORITHM],
            options={"require_sub": True, "require_exp": True, "require_iat": True},
        )
    except (JWTError, ValueError, TypeError, AttributeError):
        return None
    sub = claims.get("sub")
    if claims.get("typ") != "access" or not isinstance(sub, str) or not sub.isdigit():
        return None
    sid = claims.get("sid")
    if sid is not None and (not isinstance(sid, str) or not 0 < len(sid) <= MAX_SESSION_ID_CHARS):
        return None
    return TokenPayload(
        user_id=int(sub),
        issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        session_id=sid,
    )
