"""Liveness and readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from tests.support import assert_error


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_healthz(client: AsyncClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_readyz_ok_with_database_and_broker(client: AsyncClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    checks = {"database": "ok", "broker": "ok", "storage": "ok"}
    assert resp.json() == {"status": "ok", "checks": checks}


async def test_readyz_is_503_when_the_database_points_nowhere(settings: Settings) -> None:
    if settings.is_sqlite:
        nowhere = "sqlite+aiosqlite:////proc/no-such-dir/db.sqlite"
    else:
        nowhere = "mysql+asyncmy://root@127.0.0.1:1/nowhere"
    async with client_for(settings.model_copy(update={"database_url": nowhere})) as c:
        resp = await c.get("/readyz")
    body = assert_error(resp, 503, "not_ready")
    assert body["detail"]["database"].startswith("unavailable")
    assert body["detail"]["broker"] == "ok"


async def test_readyz_is_503_when_the_broker_points_nowhere(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"celery_broker_url": "redis://127.0.0.1:1/0", "redis_url": None}
    )
    async with client_for(broken) as c:
        resp = await c.get("/readyz")
    body = assert_error(resp, 503, "not_ready")
    assert body["detail"]["database"] == "ok"
    assert body["detail"]["broker"].startswith("unavailable")
