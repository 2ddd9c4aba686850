"""A real Celery worker process starts on the configured broker and answers a ping."""

from __future__ import annotations

from app.config import get_settings
from app.tasks.celery_app import create_celery
from tests.support import wait_until
from tests.workers import CeleryWorker


def test_worker_answers_ping(celery_worker: CeleryWorker) -> None:
    celery = create_celery(get_settings())
    replies: list[dict[str, object]] = []

    def pinged() -> bool:
        replies[:] = celery.control.ping(timeout=0.5) or []
        return bool(replies)

    wait_until(pinged, timeout=60, interval=0.2, what="a ping reply")
    assert any(celery_worker.hostname in reply for reply in replies)
    assert all(list(r.values())[0] == {"ok": "pong"} for r in replies)
