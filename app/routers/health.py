from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.config import Settings
from app.errors import ServiceUnavailable, error_response, responses

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


async def _check_database(request: Request) -> None:
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _check_broker(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.uses_embedded_broker:
        folder = settings.embedded_broker_dir
        if not (folder.is_dir() and os.access(folder, os.W_OK)):
            raise RuntimeError(f"broker folder {folder.name!r} is not writable")
        return
    redis = request.app.state.broker_redis
    if redis is None:
        return
    await redis.ping()


async def _check_storage(request: Request) -> None:
    await request.app.state.storage.check()


@router.get("/readyz", responses=responses(ServiceUnavailable))
async def readyz(request: Request) -> Any:
    """Readiness: the database, the broker and the storage (the media folder, or the bucket:
    reachable and writable) answer (503 otherwise)."""
    checks: dict[str, str] = {}
    for name, check in (
        ("database", _check_database),
        ("broker", _check_broker),
        ("storage", _check_storage),
    ):
        try:
            await asyncio.wait_for(check(request), CHECK_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks[name] = f"unavailable: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return {"status": "ok", "checks": checks}
    response: JSONResponse = error_response(request, 503, "not_ready", checks)
    return response
