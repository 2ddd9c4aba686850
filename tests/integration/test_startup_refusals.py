"""Settings fail closed (SPEC §3 SECRET_KEY, §9 start-up): no key anyone can read signs
anything, and outside development the service will not start on a missing or short key or
on the aamarPay sandbox unless AAMARPAY_ALLOW_SANDBOX=true. `python -m app check` says which.
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from itsdangerous import TimestampSigner
from jose import jwt
from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.admin import ADMIN_COOKIE
from app.config import SANDBOX_SIGNATURE_KEY, SANDBOX_STORE_ID, Settings
from app.main import create_app
from app.models import User
from tests.integration.test_cli import run_cli
from tests.support import Account

#: The signing key this repository once shipped as a usable development default.
OLD_PLACEHOLDER = "dev-only-insecure-secret-key-change-me"
LIVE = {
    "aamarpay_base_url": "https://secure.aamarpay.com",
    "aamarpay_store_id": "mystore",
    "aamarpay_signature_key": "f" * 32,
}
GOOD_KEY = "k" * 48


def production(**values: object) -> Settings:
    fields = {"environment": "production", "secret_key": GOOD_KEY, **LIVE, **values}
    fields.setdefault("aamarpay_allow_sandbox", False)
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory (where var/ lives) is a scratch folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_production_with_everything_set_starts() -> None:
    assert production().secret_key == GOOD_KEY


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        ({"secret_key": ""}, "SECRET_KEY is not set"),
        ({"secret_key": "s" * 31}, "SECRET_KEY is too short"),
        ({"secret_key": OLD_PLACEHOLDER}, "SECRET_KEY is a published placeholder"),
        (
            {"aamarpay_base_url": "https://sandbox.aamarpay.com"},
            "AAMARPAY_BASE_URL is the aamarPay sandbox",
        ),
        ({"aamarpay_store_id": SANDBOX_STORE_ID}, "AAMARPAY_STORE_ID is the public sandbox"),
        (
            {"aamarpay_signature_key": SANDBOX_SIGNATURE_KEY},
            "AAMARPAY_SIGNATURE_KEY is the public sandbox",
        ),
    ],
)
@pytest.mark.parametrize("environment", ["production", "test"])
def test_outside_development_each_refusal_applies(
    values: dict[str, str], refusal: str, environment: str
) -> None:
    with pytest.raises(ValidationError, match=refusal):
        production(environment=environment, **values)


def test_the_sandbox_is_allowed_only_when_asked_for() -> None:
    sandbox = {
        "aamarpay_base_url": "https://sandbox.aamarpay.com",
        "aamarpay_store_id": SANDBOX_STORE_ID,
        "aamarpay_signature_key": SANDBOX_SIGNATURE_KEY,
    }
    with pytest.raises(ValidationError):
        production(**sandbox)
    staging = production(aamarpay_allow_sandbox=True, **sandbox)
    assert staging.aamarpay_store_id == SANDBOX_STORE_ID
    # ... which lets nothing else through.
    with pytest.raises(ValidationError, match="SECRET_KEY is not set"):
        production(aamarpay_allow_sandbox=True, secret_key="", **sandbox)


def test_development_makes_a_private_key_once_and_reuses_it(in_tmp: Path) -> None:
    first = Settings(_env_file=None, environment="development", secret_key="")  # type: ignore[call-arg]
    key_file = in_tmp / "var" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32
    assert first.secret_key == key_file.read_text().strip()
    again = Settings(_env_file=None, environment="development", secret_key="")  # type: ignore[call-arg]
    assert again.secret_key == first.secret_key
    # Without the file, a new random key.
    key_file.unlink()
    fresh = Settings(_env_file=None, environment="development", secret_key="")  # type: ignore[call-arg]
    assert fresh.secret_key != first.secret_key


def test_development_refuses_the_old_placeholder_too(in_tmp: Path) -> None:
    with pytest.raises(ValidationError, match="published placeholder"):
        Settings(_env_file=None, environment="development", secret_key=OLD_PLACEHOLDER)  # type: ignore[call-arg]


# --- python -m app check ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"SECRET_KEY": ""}, "refused: SECRET_KEY is not set"),
        ({"SECRET_KEY": "short"}, "refused: SECRET_KEY is too short"),
        (
            {"AAMARPAY_BASE_URL": "https://sandbox.aamarpay.com"},
            "refused: AAMARPAY_BASE_URL is the aamarPay sandbox",
        ),
        ({}, "refused: AAMARPAY_STORE_ID is the public sandbox store"),
    ],
)
def test_check_names_the_refusal(env: dict[str, str], refusal: str) -> None:
    result = run_cli("check", ENVIRONMENT="production", AAMARPAY_ALLOW_SANDBOX="false", **env)
    assert result.returncode == 1
    assert "configuration: FAILED" in result.stderr
    assert refusal in result.stderr, result.stderr


# --- nothing signed with a key from the repository opens anything --------------------------


@pytest.fixture
async def development_app(
    committed: None, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    """The app as `make run` starts it: development, no SECRET_KEY set (test database; its
    own engine, so the test's rows are committed)."""
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("ENVIRONMENT", "development")
    application = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
    async with application.router.lifespan_context(application):
        yield application


async def test_tokens_signed_with_the_old_placeholder_open_nothing(
    development_app: FastAPI, user: Account, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db() as session:
        await session.execute(update(User).where(User.id == user.id).values(is_staff=True))
        await session.commit()
    now = datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "typ": "access",
    }
    forged = jwt.encode(claims, OLD_PLACEHOLDER, algorithm="HS256")
    payload = base64.b64encode(json.dumps({"staff_user_id": user.id}).encode())
    admin_cookie = TimestampSigner(OLD_PLACEHOLDER).sign(payload).decode()

    transport = ASGITransport(app=development_app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as c:
        me = await c.get("/api/auth/me/", headers={"Authorization": f"Bearer {forged}"})
        assert me.status_code == 401
        c.cookies.set(ADMIN_COOKIE, admin_cookie, domain="testserver", path="/admin")
        admin = await c.get("/admin/user/list")
        assert admin.status_code == 302
        assert admin.headers["location"].endswith("/admin/login")
        # The generated key does sign: the person's own sign-in works.
        ok = await c.post(
            "/api/auth/token/", data={"username": user.username, "password": user.password}
        )
        assert ok.status_code == 200
        token = ok.json()["access_token"]
        me = await c.get("/api/auth/me/", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
