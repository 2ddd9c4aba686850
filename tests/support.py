"""Helpers shared by the test suite (no fixtures here; see conftest.py)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
DEFAULT_PASSWORD = "correct horse battery staple"

T = TypeVar("T")


def test_env(run_dir: Path, database_url: str, redis_url: str) -> dict[str, str]:
    """The environment the app (and any subprocess the tests start) runs with."""
    return {
        "ENVIRONMENT": "test",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "REDIS_URL": redis_url,
        "EMBEDDED_BROKER_DIR": str(run_dir / "broker"),
        "MEDIA_ROOT": str(run_dir / "media"),
        # Receipts without an SMTP server land here as .eml files (never in the project's var/).
        "MAIL_DIR": str(run_dir / "mail"),
        "PUBLIC_BASE_URL": "http://testserver",
        "LOG_LEVEL": "WARNING",
        # Nothing may reach the real gateway from a test.
        "AAMARPAY_BASE_URL": "http://127.0.0.1:9",
        # Tests pay through the simulator, which knows only the public sandbox store.
        "AAMARPAY_ALLOW_SANDBOX": "true",
    }


def describe_url(url: str) -> str:
    parsed = make_url(url)
    return parsed.render_as_string(hide_password=True)


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private loop in another thread, so it never
    disturbs the test session's event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _server_url(parsed: URL) -> URL:
    """The same server with no database selected (`URL.set(database=None)` keeps it)."""
    return URL.create(
        parsed.drivername,
        username=parsed.username,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port,
        query=parsed.query,
    )


def _database_name(parsed: URL) -> str:
    name = parsed.database
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to touch database {name!r}")
    return name


def recreate_database(url: str) -> None:
    """A fresh, empty database (SQLite: the file removed)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            for suffix in ("", "-wal", "-shm"):
                Path(parsed.database + suffix).unlink(missing_ok=True)
        return
    name = _database_name(parsed)

    async def _go() -> None:
        engine = create_async_engine(_server_url(parsed))
        async with engine.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            await conn.execute(
                text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            )
        await engine.dispose()

    run_async(_go)


def drop_database(url: str) -> None:
    """Remove a MariaDB/MySQL test database (no-op for SQLite: its folder goes)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return
    name = _database_name(parsed)

    async def _go() -> None:
        engine = create_async_engine(_server_url(parsed))
        async with engine.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await engine.dispose()

    run_async(_go)


def alembic(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(PROJECT_DIR / "alembic.ini"), *args],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    if result.returncode != 0:
        raise AssertionError(f"alembic {' '.join(args)} failed:\n{result.stderr}")
    return result


#: Where watch_shared_connection leaves what the engine calls when a statement fails.
_STATEMENT_FAILED = "tests.statement_failed"


def savepoint_engine(settings: Any) -> Any:
    """An engine on the test database whose transactions, SAVEPOINTs included, are the
    database's own. MariaDB's already are; Python's sqlite3 driver begins a transaction
    only before a write and lets a SAVEPOINT start (and its release commit) one, so on
    SQLite the driver's handling is switched off and SQLAlchemy emits BEGIN itself (the
    recipe of SQLAlchemy's SQLite dialect documentation)."""
    from sqlalchemy import event

    from app.db import create_engine

    engine = create_engine(settings)

    @event.listens_for(engine.sync_engine, "handle_error")
    def _statement_failed(context: Any) -> None:
        if context.connection is not None:
            context.connection.info.get(_STATEMENT_FAILED, lambda: None)()

    if engine.dialect.name == "sqlite":
        sqlite_savepoints(engine)
    return engine


def sqlite_savepoints(engine: Any) -> None:
    """SQLAlchemy's documented recipe for real SAVEPOINTs on pysqlite/aiosqlite: the driver's
    own transaction handling off, SQLAlchemy emitting BEGIN."""
    from sqlalchemy import event

    @event.listens_for(engine.sync_engine, "connect")
    def _driver_leaves_transactions_alone(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def watch_shared_connection(connection: Any) -> list[str]:
    """Misuse of a test's one shared connection, which must fail the test instead of
    passing it by accident or hanging it. Sessions take SAVEPOINTs on it one inside the
    other, so one must end before an outer one does; two at once (as `asyncio.gather` of two
    requests makes) end them out of order, which MariaDB does not refuse (releasing the outer
    one silently releases the inner one), and may send a statement while another is in
    flight, which breaks the driver's protocol. The second is refused before it is sent."""
    from sqlalchemy import event

    open_names: list[str] = []
    overlaps: list[str] = []
    in_flight: list[str] = []

    def before_cursor_execute(*args: Any) -> None:
        statement: str = args[2]
        if in_flight:
            overlaps.append(f"{statement[:60]!r} sent while {in_flight[0][:60]!r} ran")
            raise RuntimeError("two statements at once on the test's shared connection")
        in_flight.append(statement)
        words = statement.split()
        if len(words) < 2 or "SAVEPOINT" not in words[:3]:
            return
        name = words[-1]
        if words[0] == "SAVEPOINT":
            open_names.append(name)
        elif open_names and open_names[-1] == name:
            open_names.pop()
        else:
            overlaps.append(f"{name} ended while {open_names[-1:]} was the innermost")
            if name in open_names:
                open_names.remove(name)

    def done(*_args: Any) -> None:
        in_flight.clear()

    sync = connection.sync_connection
    event.listen(sync, "before_cursor_execute", before_cursor_execute)
    event.listen(sync, "after_cursor_execute", done)
    sync.info[_STATEMENT_FAILED] = done  # see savepoint_engine
    return overlaps


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def fresh_store(store: Any) -> Any:
    """A clean login-throttle store for a new test (memory) or the same one (Redis, which
    clean_state empties); the in-memory stand-in behind Redis starts empty either way."""
    from limits.aio.storage import MemoryStorage

    from app.services.throttle import ThrottleStore

    memory = MemoryStorage()
    primary = memory if isinstance(store.primary, MemoryStorage) else store.primary
    return ThrottleStore(primary, memory)


async def clear_throttle(settings: Any) -> None:
    from redis.asyncio import Redis

    from app.services.throttle import KEY_PREFIX

    url = settings.shared_redis_url
    if not url:
        return
    client = Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{KEY_PREFIX}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def forget_file_pages(settings: Any) -> None:
    """Rows were deleted behind the app's back: every API process drops its cached pages."""
    from redis.asyncio import Redis

    from app.services.filecache import CHANNEL, EVERYONE

    url = settings.shared_redis_url
    if not url:
        return
    client = Redis.from_url(url)
    try:
        await client.publish(CHANNEL, EVERYONE)
    finally:
        await client.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = ""
) -> None:
    """Bounded poll: return as soon as `predicate()` holds, fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


async def async_wait_until(
    predicate: Callable[[], Coroutine[Any, Any, bool]],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


class SettingsOverride:
    """Swap the running app's settings for the rest of one test."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def __call__(self, **changes: Any) -> Any:
        self.app.state.settings = self.app.state.settings.model_copy(update=changes)
        return self.app.state.settings


@dataclass
class Account:
    id: int
    username: str
    password: str
    token: str
    headers: dict[str, str] = field(default_factory=dict)


_counter = itertools.count(1)


@functools.cache
def password_hash(password: str) -> str:
    """One argon2 hash per distinct password for the whole run."""
    from app.security import hash_password_sync

    return hash_password_sync(password)


class UserFactory:
    """Accounts for tests. Given the test's sessions and settings, it writes what registering
    and signing in would (the user, its `registered` and `login` activity rows) and mints the
    token, skipping two argon2 computations and two requests per account; without them it
    registers and signs in through `client`'s API (the auth tests, other processes)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        db: Any = None,
        settings: Any = None,
    ) -> None:
        self.client = client
        self.db = db
        self.settings = settings

    async def create(
        self, username: str | None = None, password: str = DEFAULT_PASSWORD, **extra: Any
    ) -> Account:
        username = username or f"user{next(_counter)}_{os.getpid()}"
        if self.db is None:
            resp = await self.client.post(
                "/api/auth/register/", json={"username": username, "password": password, **extra}
            )
            assert resp.status_code == 201, resp.text
            user_id: int = resp.json()["id"]
            token = await self.login(username, password)
        else:
            user_id, token = await self._mint(username, password, **extra)
        return Account(
            id=user_id,
            username=username,
            password=password,
            token=token,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def _mint(
        self, username: str, password: str, email: str | None = None
    ) -> tuple[int, str]:
        from app.models import Action, User
        from app.services.activity import record_activity
        from app.services.auth import issue_token
        from app.usernames import canonical_username

        username = username.strip()
        async with self.db() as session:
            user = User(
                username=username,
                username_canonical=canonical_username(username),
                email=email,
                hashed_password=password_hash(password),
                is_active=True,
                is_staff=False,
                is_superuser=False,
            )
            session.add(user)
            await session.flush()
            record_activity(session, user_id=user.id, action=Action.REGISTERED)
            record_activity(session, user_id=user.id, action=Action.LOGIN, address="127.0.0.1")
            await session.commit()
        token, _ = issue_token(user, self.settings)
        return user.id, token

    async def login(self, username: str, password: str) -> str:
        resp = await self.client.post(
            "/api/auth/token/", data={"username": username, "password": password}
        )
        assert resp.status_code == 200, resp.text
        token: str = resp.json()["access_token"]
        return token


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The SPEC envelope: status, `error` code, a `detail`, and the request id echoed."""
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"error", "detail", "request_id"}, body
    assert body["error"] == code, body
    assert body["request_id"] == resp.headers["x-request-id"]
    return body


def env_with(overrides: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, **overrides}


async def grant_payment(db: Any, user_id: int, credits: int = 0) -> None:
    """A successful payment written directly (for tests about what comes after paying)."""
    from decimal import Decimal

    from app.models import PaymentStatus, PaymentTransaction, User

    async with db() as session:
        session.add(
            PaymentTransaction(
                user_id=user_id,
                transaction_id=f"paid{user_id:028d}",
                amount=Decimal("100.00"),
                currency="BDT",
                status=PaymentStatus.SUCCESS,
                gateway_response={},
                pg_txnid=f"AAM{user_id:016d}",
            )
        )
        if credits:
            user = await session.get(User, user_id)
            assert user is not None
            user.upload_credits = credits
        await session.commit()
