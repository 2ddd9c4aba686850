"""Log records carry the request id; JSON lines for log collectors."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app.logging import JsonFormatter, is_sane_request_id, request_id_filter, set_request_id


@pytest.fixture
def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(request_id_filter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_the_request_id_and_extra_fields(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    set_request_id("req-123")
    logger.info("upload_processed", extra={"upload_id": 7, "word_count": 42})
    set_request_id(None)
    line = json.loads(stream.getvalue())
    assert line["event"] == "upload_processed"
    assert line["request_id"] == "req-123"
    assert (line["upload_id"], line["word_count"]) == (7, 42)
    assert line["level"] == "INFO"
    assert line["time"].endswith("+00:00")


def test_json_lines_include_tracebacks(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    line = json.loads(stream.getvalue())
    assert "ValueError: boom" in line["exc_info"]


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [("abc-123", True), ("a" * 128, True), ("a" * 129, False), ("x y", False), ("", False)],
)
def test_request_ids_are_kept_only_when_sane(incoming: str, kept: bool) -> None:
    assert is_sane_request_id(incoming) is kept
