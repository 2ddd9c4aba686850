"""`python -m app` operator commands, run as real subprocesses against the test database."""

from __future__ import annotations

import subprocess
import sys

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import User
from tests.support import PROJECT_DIR, env_with

# The commands are other processes: what they write is committed.
pytestmark = pytest.mark.committed


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=PROJECT_DIR,
        env=env_with(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_create_user_makes_a_staff_user_that_can_sign_in(
    client: AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    result = run_cli(
        "create-user",
        "--username",
        "opsadmin",
        "--password",
        "a strong password",
        "--email",
        "ops@example.com",
        "--staff",
    )
    assert result.returncode == 0, result.stderr
    assert "created staff 'opsadmin'" in result.stdout
    async with db() as session:
        user = await session.scalar(select(User).where(User.username == "opsadmin"))
    assert user is not None
    assert user.is_staff is True
    assert user.is_superuser is False
    assert user.email == "ops@example.com"
    assert user.hashed_password.startswith("$argon2id$")
    resp = await client.post(
        "/api/auth/token/", data={"username": "opsadmin", "password": "a strong password"}
    )
    assert resp.status_code == 200


async def test_create_superuser_is_staff_too(db: async_sessionmaker[AsyncSession]) -> None:
    result = run_cli(
        "create-user", "--username", "root2", "--password", "a strong password", "--superuser"
    )
    assert result.returncode == 0, result.stderr
    async with db() as session:
        user = await session.scalar(select(User).where(User.username == "root2"))
    assert user is not None
    assert (user.is_staff, user.is_superuser) == (True, True)


async def test_create_user_refuses_duplicates_and_weak_passwords(
    db: async_sessionmaker[AsyncSession],
) -> None:
    assert (
        run_cli("create-user", "--username", "dup", "--password", "a strong password").returncode
        == 0
    )
    again = run_cli("create-user", "--username", "DUP", "--password", "a strong password")
    assert again.returncode == 1
    assert "already taken" in again.stderr
    weak = run_cli("create-user", "--username", "weakling", "--password", "123")
    assert weak.returncode == 1
    assert "password" in weak.stderr
    async with db() as session:
        names = list(await session.scalars(select(User.username)))
    assert names == ["dup"]


def test_check_passes_with_working_configuration() -> None:
    result = run_cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("configuration: ok", "database: ok", "schema: ok", "broker: ok", "media: ok"):
        assert line in result.stdout


def test_check_fails_when_the_database_is_unreachable() -> None:
    result = run_cli("check", DATABASE_URL="mysql+asyncmy://root@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert "database: FAILED" in result.stdout


def test_check_refuses_the_placeholder_secret_in_production() -> None:
    result = run_cli(
        "check", ENVIRONMENT="production", SECRET_KEY="dev-only-insecure-secret-key-change-me"
    )
    assert result.returncode == 1
    assert "SECRET_KEY" in result.stderr
