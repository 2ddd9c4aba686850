"""Logging: one setup for the API and the worker, with the request id on every record.

Request ids come from `asgi-correlation-id`: its middleware takes a sane `X-Request-ID` from the
request (or makes one), keeps it in a contextvar and echoes it on the response; its log filter
puts it on every record. Celery carries it in a task header (`app/tasks/celery_app.py`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from asgi_correlation_id import CorrelationIdFilter, CorrelationIdMiddleware, correlation_id
from starlette.types import ASGIApp

REQUEST_ID_HEADER = "X-Request-ID"
NO_REQUEST_ID = "-"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def get_request_id() -> str:
    return correlation_id.get() or NO_REQUEST_ID


def set_request_id(value: str | None) -> None:
    correlation_id.set(value)


def new_request_id() -> str:
    return uuid.uuid4().hex


def is_sane_request_id(value: str) -> bool:
    """A caller's id is kept only when it is bounded and header-safe."""
    return bool(_VALID_ID.match(value))


def request_id_middleware(app: ASGIApp) -> CorrelationIdMiddleware:
    return CorrelationIdMiddleware(
        app, header_name=REQUEST_ID_HEADER, generator=new_request_id, validator=is_sane_request_id
    )


def request_id_filter() -> logging.Filter:
    return CorrelationIdFilter(default_value=NO_REQUEST_ID)


def _record_request_id(record: logging.LogRecord) -> str:
    # An explicit `extra={"request_id": ...}` wins over the filter's contextvar copy.
    return str(
        getattr(record, "request_id", None)
        or getattr(record, "correlation_id", None)
        or get_request_id()
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            "request_id": _record_request_id(record),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in data and key != "correlation_id":
                data[key] = value
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(request_id_filter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
