"""Smoke test of the load tool (`python -m bench.load`): every scenario (uploads-plain too) at
tiny sizes against a stack of real processes (the API server with 2 workers, a Celery worker
restarted with 1 then 2 processes, the simulator), asserting correctness only, never timings:
no errors, no 5xx, every upload completed exactly once, every payment confirmed once.

With TEST_DATABASE_URL and TEST_REDIS_URL set, the stack uses a database of its own next to
the suite's (`<name>_load`, dropped afterwards) and the suite's Redis database (only the keys
the run added are removed). Otherwise it runs on a SQLite file and the embedded broker in a
temporary folder, as the rest of the suite does.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url

from bench.load import Plan, StackConfig, run

pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def _isolated() -> None:
    """Replaces the integration suite's shared-database cleanup: the load brings its own
    database, broker and media folder, and removes them itself."""


def stack_config() -> StackConfig:
    database_url = os.environ.get("TEST_DATABASE_URL", "")
    redis_url = os.environ.get("TEST_REDIS_URL", "")
    if database_url and redis_url:
        parsed = make_url(database_url)
        return StackConfig(
            database=parsed.render_as_string(hide_password=False),
            database_name=f"{parsed.database}_load",
            broker_url=redis_url,
            redis_url=redis_url,
            flush_redis=False,
            worker_concurrency=1,
        )
    return StackConfig(
        database="sqlite", broker_url="", redis_url="", flush_redis=False, worker_concurrency=1
    )


def test_every_scenario_runs_without_errors_and_loses_no_job() -> None:
    lines: list[str] = []
    results = run(stack_config(), Plan.tiny(), out=lines.append)
    report = "\n".join(lines)

    assert results.problems == [], report
    assert results.errors == 0, report
    assert results.status_5xx == 0, report
    titles = [section.title for section in results.sections]
    assert [t.split(".")[0] for t in titles] == ["1", "2", "3", "4", "5"], titles
    for _label, fig in (row for section in results.sections for row in section.rows):
        assert fig.requests > 0, report

    plain = results.metrics
    assert plain["uploads/s"] > 0, report
    assert plain["api cpu ms/upload"] > 0, report
    assert plain["worker cpu ms/upload"] > 0, report
    assert plain["completed p50 ms"] > 0, report

    check = results.check
    assert check["uploads_made"] > 0, report
    assert check["rows"] == check["uploads_made"], report
    assert check["completed"] == check["rows"], report
    assert check["completed_exactly_once"] == check["rows"], report
    assert check["duplicated"] == check["lost"] == check["wrong_word_count"] == 0, report
    assert check["payments_success"] == check["payments_expected"] > 0, report
    assert check["payment_succeeded_logs"] == check["payments_success"], report
