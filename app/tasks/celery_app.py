"""The Celery app: `celery -A app.tasks.celery_app:celery_app worker` (and `beat`).

Redis when CELERY_BROKER_URL says so; otherwise kombu's filesystem transport under
EMBEDDED_BROKER_DIR, so the embedded default needs no server at all.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from app.config import Settings, get_settings
from app.logging import configure_logging, get_request_id, set_request_id

TASK_MODULES = ["app.tasks.payments", "app.tasks.receipts", "app.tasks.wordcount"]
#: kombu's filesystem transport, writing each message whole before it can be taken.
EMBEDDED_TRANSPORT = "app.tasks.fsbroker:Transport"
#: kombu's Redis transport with one client object per channel (app.tasks.redisbroker).
REDIS_TRANSPORT = "app.tasks.redisbroker:Transport"
#: How often the embedded (filesystem) broker looks for work when idle.
EMBEDDED_POLLING_INTERVAL_SECONDS = 0.05


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.uses_embedded_broker:
        folder = settings.embedded_broker_dir
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # kombu sleeps this long whenever it finds nothing it may take, and with
            # prefetch 1 + late ack it finds nothing until the running job is acknowledged:
            # at the default 1 s a worker process ran one job per second at most.
            "polling_interval": EMBEDDED_POLLING_INTERVAL_SECONDS,
        }
    # Redis: an unacknowledged message (worker killed mid-task) is redelivered once it is
    # this old; workers sweep for such messages at start and every `unacked_restore_interval`.
    visibility = settings.celery_visibility_timeout_seconds
    return {
        "visibility_timeout": visibility,
        "unacked_restore_interval": min(10, max(1, visibility // 5)),
        "unacked_restore_throttle": 1,
    }


def _transport(settings: Settings) -> str | None:
    if settings.uses_embedded_broker:
        return EMBEDDED_TRANSPORT
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return REDIS_TRANSPORT
    return None


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery = Celery("wordcount", include=TASK_MODULES)
    celery.conf.update(
        broker_url=settings.broker_url,
        # The embedded broker's messages are renamed into place whole (app.tasks.fsbroker).
        broker_transport=_transport(settings),
        result_backend=settings.celery_result_backend,
        task_ignore_result=settings.celery_result_backend is None,
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        timezone="UTC",
        enable_utc=True,
        # A job is acknowledged only once it has run: a killed worker does not lose it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A pool process that grew past this (a huge .docx tree) is replaced after its job.
        worker_max_memory_per_child=512 * 1024,
        # Publishing must not hang a request when the broker is away; the periodic
        # reconcile job re-queues whatever could not be sent.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_hijack_root_logger=False,
        beat_schedule={
            "reconcile-payments": {
                "task": "payments.reconcile",
                "schedule": float(settings.reconcile_interval_seconds),
            },
            "send-due-receipts": {
                "task": "receipts.send_due",
                "schedule": float(settings.reconcile_interval_seconds),
            },
            "requeue-stuck-uploads": {
                "task": "wordcount.requeue_stuck",
                "schedule": float(settings.reconcile_interval_seconds),
            },
            "sweep-stored-orphans": {
                "task": "storage.sweep_orphans",
                "schedule": float(settings.reconcile_interval_seconds),
            },
        },
        worker_send_task_events=False,
    )
    if not settings.uses_embedded_broker:
        celery.conf.broker_transport_options.update(
            {"socket_timeout": 5, "socket_connect_timeout": 5}
        )
    return celery


celery_app = create_celery()


def _setup_logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


def _propagate_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and "request_id" not in headers:
        headers["request_id"] = get_request_id()


def _restore_request_id(task: Any = None, **_: Any) -> None:
    request_id = getattr(task.request, "request_id", None) if task is not None else None
    set_request_id(str(request_id) if request_id else None)


signals.setup_logging.connect(_setup_logging)
signals.before_task_publish.connect(_propagate_request_id)
signals.task_prerun.connect(_restore_request_id)
