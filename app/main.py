"""ASGI entry point: `app.main:app`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis

from app.admin import mount_admin
from app.config import Settings, get_settings
from app.csrf import CrossSiteGuard
from app.db import create_engine, create_sessionmaker
from app.errors import install_error_handlers
from app.i18n import LanguageCookieMiddleware
from app.logging import configure_logging, request_id_middleware
from app.routers import auth, dashboard, health, payments, uploads
from app.services import blobstore, filecache, jobs
from app.services.aamarpay import make_http_client
from app.services.filecache import FileChanges, FilePageCache
from app.services.throttle import ThrottleStore
from app.services.upload_slots import MemorySlots, RedisSlots
from app.services.uploads import Intake

logger = logging.getLogger("app")

STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_DIR = "/static/vendor/swagger-ui-5.35.0"


def _redis(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.media_root.mkdir(parents=True, exist_ok=True)
    if settings.uses_embedded_broker:
        settings.embedded_broker_dir.mkdir(parents=True, exist_ok=True)
    engine = app.state.engine
    shared_url = settings.shared_redis_url
    shared_redis = _redis(shared_url) if shared_url else None
    broker_redis = None
    if settings.broker_url.startswith(("redis://", "rediss://")):
        broker_redis = (
            shared_redis if shared_url == settings.broker_url else _redis(settings.broker_url)
        )
    app.state.broker_redis = broker_redis
    jobs.use_redis_broker(broker_redis)
    app.state.http = make_http_client(
        settings.aamarpay_connect_timeout_seconds, settings.aamarpay_read_timeout_seconds
    )
    app.state.throttle_store = ThrottleStore.for_redis(shared_redis)
    app.state.upload_slots = RedisSlots(shared_redis) if shared_redis else MemorySlots()
    file_pages = FilePageCache(settings.file_list_cache_seconds)
    app.state.file_pages = file_pages
    app.state.file_changes = FileChanges(shared_redis, file_pages)
    # One storage client for the process (STORAGE_BACKEND), closed at shutdown.
    app.state.storage = await blobstore.build(settings)
    app.state.intake = Intake(
        sessionmaker=app.state.sessionmaker,
        slots=app.state.upload_slots,
        changes=app.state.file_changes,
        storage=app.state.storage,
    )
    # The change feed needs a connection of its own, without a read timeout (it waits).
    feed_redis = (
        Redis.from_url(shared_url, socket_connect_timeout=2, socket_keepalive=True)
        if shared_url and file_pages.ttl > 0
        else None
    )
    feed = asyncio.create_task(filecache.listen(feed_redis, file_pages)) if feed_redis else None
    logger.info("startup", extra={"database": engine.url.get_backend_name()})
    # Everything loaded so far (modules, routes, models, pydantic schemas: ~150k objects)
    # lives as long as the process: move it out of the collector's reach, or every full
    # collection under load walks it again (a 100 ms pause every ~2000 requests).
    gc.freeze()
    try:
        yield
    finally:
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        jobs.stop_using_redis_broker(broker_redis)
        for client in {id(c): c for c in (shared_redis, broker_redis, feed_redis) if c}.values():
            await client.aclose()
        await app.state.http.aclose()
        await app.state.storage.aclose()
        await engine.dispose()
        logger.info("shutdown")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="Word-count upload service",
        summary="Pay once through aamarPay, upload .txt/.docx files, get their word counts.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    # The engine connects lazily (on first use, inside the server's loop); it exists from the
    # start so that the admin can be mounted on it. The lifespan disposes of it.
    app.state.engine = create_engine(settings)
    app.state.sessionmaker = create_sessionmaker(app.state.engine)
    install_error_handlers(app)
    # Added first, so it runs inside the request-id middleware (its refusals carry the id).
    app.add_middleware(CrossSiteGuard)
    # `?lang=` on a page stores the choice in the `lang` cookie (SPEC §12).
    app.add_middleware(LanguageCookieMiddleware)
    app.add_middleware(request_id_middleware)
    # Only the app's own assets; the media folder is never served as static files.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        # Swagger UI from the app's own static files, so /docs works with no internet.
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{SWAGGER_DIR}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_DIR}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(payments.router)
    app.include_router(uploads.router)
    app.include_router(dashboard.router)
    mount_admin(app, settings)
    return app


app = create_app()
