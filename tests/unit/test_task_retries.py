"""The word-count job retries connection-level faults only: a bug fails at once."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)

from app.services.uploads import TransientError
from app.tasks.wordcount import count_words


def _error(kind: type[Exception]) -> Exception:
    if issubclass(
        kind, (IntegrityError, OperationalError, InterfaceError, DataError, ProgrammingError)
    ):
        return kind("stmt", {}, Exception("driver"))
    return kind("boom")


def _retried(exc: Exception) -> bool:
    return isinstance(exc, tuple(count_words.autoretry_for))


@pytest.mark.parametrize(
    "kind", [OperationalError, InterfaceError, ConnectionError, TimeoutError, TransientError]
)
def test_connection_level_faults_are_retried(kind: type[Exception]) -> None:
    assert _retried(_error(kind))


@pytest.mark.parametrize("kind", [IntegrityError, DataError, ProgrammingError, ValueError])
def test_bugs_are_not_retried(kind: type[Exception]) -> None:
    exc = kind("stmt", {}, Exception("driver")) if kind is ProgrammingError else _error(kind)
    assert not _retried(exc)
