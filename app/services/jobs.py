"""Background jobs, enqueued by name once the transaction that asked for them has committed.

A service calls `enqueue_after_commit(session, "receipts.send", payment_id)`; the unit of work
(app/uow.py) publishes the job after the commit, and never if the transaction rolls back.
Publishing by name keeps services free of task imports. If the broker cannot take the job,
the failure is logged and the periodic job that owns that kind of work sends it later
(`on_failure` may record that it was not sent).

How a job is published: with a Redis broker, an API process publishes on its own event loop
through an asyncio Redis client (`use_redis_broker`, set up by the app's lifespan): one LPUSH of
the message Celery's Redis transport would write. `celery_app.send_task` cost ~0.55 ms of CPU
per job on this kind of machine (message building, kombu's producer and channel layers, a
blocking socket) plus a hop to a worker thread, more than the rest of an upload's own work in
the API; the LPUSH costs ~0.1 ms and no thread. Anywhere else (the embedded broker, a worker
process, a route or a signal handler Celery knows and this module does not) it is
`send_task` in a worker thread, as before.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from anyio import to_thread
from redis.asyncio import Redis

from app import uow
from app.logging import get_request_id
from app.tasks.celery_app import celery_app
from app.uow import Transactional

logger = logging.getLogger("app.jobs")

#: The asyncio broker client of this process and the queue, when it may publish directly
#: (see the module docstring); None: `send_task` in a worker thread.
_broker: Redis | None = None
_queue = "celery"
#: Celery's `origin` header, as `send_task` writes it.
_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def publish(name: str, *args: Any, headers: dict[str, Any] | None = None) -> None:
    """Publish one job now (blocking). `headers`: extra message headers, which the task
    reads as `self.request.<name>`."""
    celery_app.send_task(name, args=list(args), headers=headers)


def direct_queue() -> str | None:
    """The queue every job goes to, when the direct path writes exactly what `send_task`
    would: the default queue, no routes, no publish-time signal handlers besides ours."""
    conf = celery_app.conf
    if (conf.broker_transport_options or {}).get("global_keyprefix"):
        return None
    if conf.task_routes or conf.task_queues or conf.task_default_exchange_type != "direct":
        return None
    queue: str = conf.task_default_queue
    if conf.task_default_routing_key not in (None, queue):
        return None
    if conf.task_default_exchange not in (None, "", queue):
        return None
    return queue


def use_redis_broker(client: Redis | None) -> None:
    """Publish through `client` (the broker's Redis, on this process's event loop) from now
    on; None goes back to `send_task`."""
    global _broker, _queue
    queue = direct_queue()
    _broker = client if client is not None and queue is not None else None
    # Read once: Celery's configuration is slow to read (a lookup chain per key).
    _queue = queue or _queue


def stop_using_redis_broker(client: Redis | None) -> None:
    """An app shutting down gives up its client, and only its own (another app of the same
    process, as in the tests, keeps publishing through its one)."""
    global _broker
    if client is not None and _broker is client:
        _broker = None


#: Execution options of a task registered in this process that the direct path writes as
#: `send_task` does (it takes them from the registry); any other one sends by `send_task`.
_DIRECT_OPTIONS = {"time_limit", "soft_time_limit", "serializer", "delivery_mode"}


def _time_limits(name: str) -> list[Any] | None:
    """`send_task`'s `timelimit` header for `name` ([hard, soft] from the task when it is
    registered in this process, else [None, None]); None when the task has options the
    direct path does not write."""
    task = celery_app._tasks.get(name)  # the registry, without finalising (as send_task)
    if task is None:
        return [None, None]
    options = {k: v for k, v in task._get_exec_options().items() if v is not None}
    if set(options) - _DIRECT_OPTIONS or options.get("serializer", "json") != "json":
        return None
    if options.get("delivery_mode", 2) != 2:
        return None
    return [options.get("time_limit"), options.get("soft_time_limit")]


def message(
    name: str,
    args: list[Any],
    queue: str,
    time_limits: list[Any],
    extra_headers: dict[str, Any] | None = None,
) -> bytes:
    """A task message (Celery protocol 2) as kombu's Redis transport stores it in a list
    (with `extra_headers` where `send_task(headers=...)` puts them)."""
    task_id = str(uuid.uuid4())
    body = json.dumps([args, {}, _EMBED]).encode()
    headers: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": time_limits,
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(args),
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        # What app.tasks.celery_app's before_task_publish handler adds.
        "request_id": get_request_id(),
    }
    if extra_headers:
        headers.update(extra_headers)
    properties: dict[str, Any] = {
        "correlation_id": task_id,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
    ).encode()


async def publish_async(name: str, *args: Any, headers: dict[str, Any] | None = None) -> None:
    """Publish one job from the event loop: directly when this process may (see
    `use_redis_broker`), else `send_task` in a worker thread."""
    broker = _broker
    limits = _time_limits(name) if broker is not None else None
    if broker is None or limits is None:
        await to_thread.run_sync(lambda: publish(name, *args, headers=headers))
        return
    await broker.lpush(_queue, message(name, list(args), _queue, limits, headers))


def enqueue_after_commit(
    session: Transactional,
    name: str,
    *args: Any,
    headers: dict[str, Any] | None = None,
    on_failure: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Publish the job once `session`'s transaction has committed (never if it rolls
    back). `headers`: extra message headers (a hint the task may use; the job must still
    work without them, as a re-queued one does)."""

    async def effect() -> None:
        try:
            await publish_async(name, *args, headers=headers)
        except Exception:  # noqa: BLE001 - the periodic job sends it later
            logger.warning(
                "enqueue_failed", extra={"job": name, "job_args": list(args)}, exc_info=True
            )
            if on_failure is not None:
                await on_failure()

    uow.after_commit(session, effect)
