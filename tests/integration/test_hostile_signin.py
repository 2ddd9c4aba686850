"""Hostile users at sign-in (SPEC §5 auth, §9 sign-in): guesses sent all at once, names
spelled many ways, look-alike registrations, and the migration that meets old look-alikes.

With TEST_DATABASE_URL / TEST_REDIS_URL set, the API runs as real server processes on
MariaDB with the counters in Redis (two processes, sharing them); without, one process on
SQLite with the counters in its memory.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.models import User
from app.services import auth as auth_service
from app.services.throttle import KEY_PREFIX
from tests.integration.test_cli import run_cli
from tests.support import (
    UserFactory,
    alembic,
    assert_error,
    drop_database,
    recreate_database,
    run_async,
)
from tests.workers import ApiServer

LIMIT = 10  # LOGIN_FAILURE_LIMIT (default)
ADDRESS_LIMIT = 30  # LOGIN_ADDRESS_FAILURE_LIMIT (default)
WINDOW = 60  # LOGIN_FAILURE_WINDOW_SECONDS (default)
GUESSES = 40


@pytest.fixture
def api(
    committed: None, migrated_database: str, run_dir: Path, redis_url: str
) -> Iterator[ApiServer]:
    # Counters in memory are per process, so without Redis one process keeps one count.
    server = ApiServer(run_dir, workers=2 if redis_url else 1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def attacker(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=GUESSES * 2)
    async with httpx.AsyncClient(base_url=api.url, timeout=60, limits=limits) as c:
        yield c


@pytest.fixture
async def bystander(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """Someone else, from another address (127.0.0.2 is loopback too)."""
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=api.url, timeout=60, transport=transport) as c:
        yield c


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/token/", data={"username": username, "password": password})


def refused_properly(responses: list[httpx.Response]) -> None:
    for resp in responses:
        if resp.status_code == 429:
            assert_error(resp, 429, "too_many_requests")
            assert 1 <= int(resp.headers["retry-after"]) <= WINDOW


async def redis_keys_all_expire(redis_url: str) -> int:
    """Nothing the throttle stores outlives its window; returns how many keys it holds."""
    if not redis_url:
        return 0
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{KEY_PREFIX}*")]
        for key in keys:
            assert 0 < await client.ttl(key) <= WINDOW, key
        return len(keys)
    finally:
        await client.aclose()


# --- guesses sent at the same moment -----------------------------------------------------


async def test_parallel_guesses_for_one_username_reach_the_password_check_at_most_limit_times(
    user_factory: UserFactory,
    attacker: httpx.AsyncClient,
    bystander: httpx.AsyncClient,
    redis_url: str,
) -> None:
    victim = await user_factory.create()
    other = await user_factory.create()
    guesses = [sign_in(attacker, victim.username, f"wrong guess {i}") for i in range(GUESSES)]
    results = await asyncio.gather(*guesses, sign_in(bystander, other.username, other.password))
    answers, other_login = list(results[:-1]), results[-1]

    counts = Counter(r.status_code for r in answers)
    assert set(counts) <= {401, 429}, counts
    assert 1 <= counts[401] <= LIMIT, counts
    assert counts[429] == GUESSES - counts[401]
    refused_properly(answers)
    # Another person, signing in at the same moment, is unaffected.
    assert other_login.status_code == 200, other_login.text
    # The owner's right password is refused too while the window lasts: guessing gains nothing.
    assert_error(
        await sign_in(attacker, victim.username, victim.password), 429, "too_many_requests"
    )
    # A handful of keys, each expiring with its window.
    assert await redis_keys_all_expire(redis_url) <= 4


async def test_parallel_guesses_from_one_address_are_capped_per_address(
    attacker: httpx.AsyncClient, bystander: httpx.AsyncClient, user_factory: UserFactory
) -> None:
    other = await user_factory.create()
    total = ADDRESS_LIMIT * 2
    guesses = [sign_in(attacker, f"spray{i}", "wrong guess") for i in range(total)]
    results = await asyncio.gather(*guesses, sign_in(bystander, other.username, other.password))
    answers, other_login = list(results[:-1]), results[-1]
    counts = Counter(r.status_code for r in answers)
    assert set(counts) <= {401, 429}, counts
    assert 1 <= counts[401] <= ADDRESS_LIMIT, counts
    refused_properly(answers)
    assert other_login.status_code == 200, other_login.text


@pytest.mark.committed
async def test_password_checks_counted_in_process(
    client: AsyncClient, user_factory: UserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same, counting the argon2 checks themselves (app in this process)."""
    victim = await user_factory.create()
    checks = 0
    real_verify = auth_service.verify_password

    async def counting_verify(password: str, hashed: str | None) -> bool:
        nonlocal checks
        checks += 1
        return await real_verify(password, hashed)

    monkeypatch.setattr(auth_service, "verify_password", counting_verify)
    answers = await asyncio.gather(
        *(sign_in(client, victim.username, f"guess {i}") for i in range(GUESSES))
    )
    assert checks <= LIMIT
    assert Counter(r.status_code for r in answers) == {401: checks, 429: GUESSES - checks}


# --- one name, many spellings -------------------------------------------------------------

SPELLINGS = ["alice", "Alice", "ALICE", "alice ", " alice", "ａｌｉｃｅ", "Ａｌｉｃｅ ", "álice"]


async def test_spellings_of_a_name_are_one_account(
    client: AsyncClient, user_factory: UserFactory
) -> None:
    alice = await user_factory.create("alice")
    for spelling in SPELLINGS:
        token = await user_factory.login(spelling, alice.password)
        me = await client.get("/api/auth/me/", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["id"] == alice.id, spelling
        assert me.json()["username"] == "alice"


async def test_spellings_of_a_name_share_one_counter(
    client: AsyncClient, user_factory: UserFactory
) -> None:
    alice = await user_factory.create("alice")
    for i in range(LIMIT):
        spelling = SPELLINGS[i % len(SPELLINGS)]
        assert_error(await sign_in(client, spelling, "wrong guess"), 401, "invalid_credentials")
    for spelling in SPELLINGS:
        assert_error(await sign_in(client, spelling, alice.password), 429, "too_many_requests")


@pytest.mark.parametrize(
    "lookalike",
    ["Alice", "ALICE", " alice", "alice ", "álice", "ÁLICE", "ａｌｉｃｅ", "a\u0301lice"],
)
async def test_registering_a_lookalike_name_is_refused(
    client: AsyncClient, db: async_sessionmaker[AsyncSession], lookalike: str
) -> None:
    first = await client.post(
        "/api/auth/register/", json={"username": "alice", "password": "a fine passphrase"}
    )
    assert first.status_code == 201, first.text
    resp = await client.post(
        "/api/auth/register/", json={"username": lookalike, "password": "a fine passphrase"}
    )
    assert_error(resp, 409, "username_taken")
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_distinct_names_in_other_scripts_still_register(client: AsyncClient) -> None:
    for name in ("রহিম", "রহিমা", "Zoë"):
        resp = await client.post(
            "/api/auth/register/", json={"username": name, "password": "a fine passphrase"}
        )
        assert resp.status_code == 201, resp.text


@pytest.mark.committed  # the command is another process
async def test_create_user_refuses_a_lookalike_name(user_factory: UserFactory) -> None:
    await user_factory.create("opsboss")
    result = run_cli("create-user", "--username", "OPSBOSS ", "--password", "a strong password")
    assert result.returncode == 1
    assert "already taken" in result.stderr


async def test_admin_sign_in_uses_the_canonical_name(
    client: AsyncClient, user_factory: UserFactory, db: async_sessionmaker[AsyncSession]
) -> None:
    from sqlalchemy import update

    staff = await user_factory.create("Boss")
    async with db() as session:
        await session.execute(update(User).where(User.id == staff.id).values(is_staff=True))
        await session.commit()
    resp = await client.post(
        "/admin/login", data={"username": "ｂｏｓｓ", "password": staff.password}
    )
    assert resp.status_code == 302, resp.text
    assert (await client.get("/admin/user/list")).status_code == 200


# --- the migration meets names that already clash ------------------------------------------


@pytest.fixture
def scratch_url(database_url: str, run_dir: object) -> Iterator[str]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        scratch = url.set(database=str(url.database) + ".clash")
    else:
        scratch = url.set(database=f"{url.database}_clash")
    rendered = scratch.render_as_string(hide_password=False)
    recreate_database(rendered)
    yield rendered
    drop_database(rendered)


def scratch_sql(url: str, *statements: str, params: list[dict[str, Any]] | None = None) -> Any:
    async def go() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                result = None
                for i, statement in enumerate(statements):
                    result = await conn.execute(text(statement), (params or [{}] * 99)[i])
                return result.fetchall() if result is not None and result.returns_rows else None
        finally:
            await engine.dispose()

    return run_async(go)


INSERT = (
    "INSERT INTO user (id, username, hashed_password, is_active, is_staff, is_superuser, "
    "date_joined, upload_credits) VALUES (:id, :name, 'x', 1, 0, 0, '2026-01-01 00:00:00', 0)"
)


def test_migration_refuses_to_merge_clashing_names(scratch_url: str) -> None:
    alembic("upgrade", "0001", database_url=scratch_url)
    mysql = not scratch_url.startswith("sqlite")
    if mysql:  # MariaDB's old index compared accent-blind: rows from before it, say.
        scratch_sql(scratch_url, "ALTER TABLE user DROP INDEX uq_user_username")
    scratch_sql(
        scratch_url,
        INSERT,
        INSERT,
        INSERT,
        params=[{"id": 1, "name": "alice"}, {"id": 2, "name": "Álice"}, {"id": 3, "name": "bob"}],
    )
    with pytest.raises(AssertionError) as failed:
        alembic("upgrade", "head", database_url=scratch_url)
    message = str(failed.value)
    assert "id 1 'alice'" in message
    assert "id 2 'Álice'" in message
    assert "bob" not in message
    # Nothing changed: still at 0001, every row and name as it was.
    assert alembic("current", database_url=scratch_url).stdout.split() == ["0001"]
    rows = scratch_sql(scratch_url, "SELECT id, username FROM user ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, "alice"), (2, "Álice"), (3, "bob")]

    # Renamed by the operator, it goes through, and each name has its canonical form.
    scratch_sql(scratch_url, "UPDATE user SET username = 'alice2' WHERE id = 2")
    if mysql:
        scratch_sql(scratch_url, "ALTER TABLE user ADD UNIQUE INDEX uq_user_username (username)")
    alembic("upgrade", "head", database_url=scratch_url)
    rows = scratch_sql(scratch_url, "SELECT username_canonical FROM user ORDER BY id")
    assert [r[0] for r in rows] == ["alice", "alice2", "bob"]
