"""Test configuration.

By default everything runs on SQLite and the embedded filesystem broker. With
TEST_DATABASE_URL (e.g. mysql+asyncmy://root@127.0.0.1:3306/app_test) and TEST_REDIS_URL
(e.g. redis://127.0.0.1:6379/15) set, the same suite runs on MariaDB and Redis; the test
database is dropped and recreated at the start of the run, and the Redis database flushed.
With TEST_STORAGE_BACKEND=s3, uploads are stored in a bucket of a SeaweedFS server the run
starts on loopback (tests/s3server.py) instead of under MEDIA_ROOT.

The environment is set here, before anything imports `app`, because settings are read once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests import support
from tests.s3server import WeedServer, clear_stored

RUN_DIR = Path(tempfile.mkdtemp(prefix="wordcount-tests-"))
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or (
    f"sqlite+aiosqlite:///{RUN_DIR / 'test.db'}"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or ""

os.environ.update(support.test_env(RUN_DIR, TEST_DATABASE_URL, TEST_REDIS_URL))

TEST_STORAGE_BACKEND = os.environ.get("TEST_STORAGE_BACKEND") or "local"
S3_SERVER = WeedServer(RUN_DIR / "s3") if TEST_STORAGE_BACKEND == "s3" else None
if S3_SERVER is not None:
    os.environ.update(S3_SERVER.env())


from fastapi import FastAPI  # noqa: E402
from httpx import ASGITransport, AsyncClient  # noqa: E402
from sqlalchemy import delete  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: E402

from app.config import Settings, get_settings  # noqa: E402
from app.db import create_engine, create_sessionmaker  # noqa: E402
from app.main import create_app  # noqa: E402
from app.models import (  # noqa: E402
    ActivityLog,
    FileUpload,
    PaymentTransaction,
    RevokedSession,
    User,
)
from app.services import blobstore  # noqa: E402
from tests.workers import CeleryWorker  # noqa: E402

pytest_plugins = ["tests.plugins.simulator", "tests.plugins.smtp"]


def pytest_unconfigure(config: pytest.Config) -> None:
    # RUN_DIR is made at import; the run_dir fixture removes it only if some test used it.
    shutil.rmtree(RUN_DIR, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"database: {support.describe_url(TEST_DATABASE_URL)}",
        f"broker: {support.describe_url(TEST_REDIS_URL) if TEST_REDIS_URL else 'embedded'}",
        f"storage: {TEST_STORAGE_BACKEND}",
    ]


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    yield RUN_DIR
    shutil.rmtree(RUN_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url() -> str:
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def migrated_database(run_dir: Path) -> str:
    """A fresh test database, migrated by Alembic (which also tests the migrations)."""
    support.recreate_database(TEST_DATABASE_URL)
    support.alembic("upgrade", "head", database_url=TEST_DATABASE_URL)
    if TEST_REDIS_URL:
        support.flush_redis(TEST_REDIS_URL)
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def object_storage(run_dir: Path) -> Iterator[WeedServer | None]:
    """The S3 server of a TEST_STORAGE_BACKEND=s3 run (with its bucket), else None."""
    if S3_SERVER is None:
        yield None
        return
    S3_SERVER.start()
    try:
        S3_SERVER.create_bucket()
        yield S3_SERVER
    finally:
        S3_SERVER.stop()


@pytest.fixture(scope="session")
def settings(migrated_database: str, object_storage: WeedServer | None) -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The tests' own sessions on the test database (separate from the app's pool)."""
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def committed() -> None:
    """Requested by what reads the database from outside the test's own connection (a worker,
    an API server, the browser's live server, concurrent sessions): such a test runs on
    committed data, and `clean_state` empties the tables after it instead of `rolled_back`."""


async def _forget_outside_database(settings: Settings) -> None:
    """What a test leaves beside the rows: login counters, cached file pages, stored files."""
    await support.clear_throttle(settings)
    await support.forget_file_pages(settings)
    clear_stored(settings)
    if settings.media_root.exists():
        for child in settings.media_root.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


@pytest.fixture
async def clean_state(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[None]:
    """Empty tables, media folder and login counters after a test on committed data."""
    yield
    async with db() as session:
        for model in (ActivityLog, FileUpload, PaymentTransaction, RevokedSession, User):
            await session.execute(delete(model))
        await session.commit()
    await _forget_outside_database(settings)


@pytest.fixture(scope="session")
async def outer_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Where `rolled_back` opens each test's transaction (SQLite with real SAVEPOINTs)."""
    engine = support.savepoint_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def rolled_back(
    app: FastAPI,
    db: async_sessionmaker[AsyncSession],
    outer_engine: AsyncEngine,
    settings: Settings,
) -> AsyncIterator[None]:
    """The test in one transaction, rolled back after it: the app's sessions and the test's
    own are bound to one connection, each joining its transaction as a SAVEPOINT (a commit
    releases it, a rollback returns to it), as SQLAlchemy's "joining a session into an
    external transaction" describes. Nothing is deleted afterwards; a test that needs the
    rows committed requests `committed`."""
    makers = (app.state.sessionmaker, db)
    saved = [dict(maker.kw) for maker in makers]
    async with outer_engine.connect() as connection:
        outer = await connection.begin()
        overlaps = support.watch_shared_connection(connection)
        for maker in makers:
            maker.configure(bind=connection, join_transaction_mode="create_savepoint")
        try:
            yield
        finally:
            for maker, kw in zip(makers, saved, strict=True):
                maker.kw = kw
            if overlaps:  # the driver's state is not to be trusted: close, don't reuse
                await connection.invalidate()
            else:
                await outer.rollback()
    await _forget_outside_database(settings)
    if overlaps:
        pytest.fail(
            f"sessions overlapped on the test's one connection ({overlaps[0]}): a test that "
            "runs requests or sessions concurrently needs committed data (request `committed`)"
        )


@pytest.fixture
def storage(app: FastAPI) -> blobstore.Storage:
    """The app's storage (STORAGE_BACKEND of the run)."""
    found: blobstore.Storage = app.state.storage
    return found


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    app.state.throttle_store = support.fresh_store(app.state.throttle_store)
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def override_settings(app: FastAPI) -> Iterator[support.SettingsOverride]:
    """Change settings for one test: `override_settings(uploads_per_payment=1)`."""
    original = app.state.settings
    yield support.SettingsOverride(app)
    app.state.settings = original


@pytest.fixture
async def user_factory(
    client: AsyncClient, db: async_sessionmaker[AsyncSession], settings: Settings
) -> support.UserFactory:
    return support.UserFactory(client, db, settings)


@pytest.fixture
async def user(user_factory: support.UserFactory) -> support.Account:
    return await user_factory.create()


@pytest.fixture
async def paid(
    user_factory: support.UserFactory, db: async_sessionmaker[AsyncSession]
) -> support.Account:
    """A user who has paid (one payment unlocks uploading for good)."""
    account = await user_factory.create()
    await support.grant_payment(db, account.id)
    return account


@pytest.fixture
def celery_worker(
    committed: None, migrated_database: str, run_dir: Path, object_storage: WeedServer | None
) -> Iterator[CeleryWorker]:
    """A real worker process on the test broker, ready before the test starts."""
    worker = CeleryWorker(run_dir)
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
