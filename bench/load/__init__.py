"""Load test of the whole service: `python -m bench.load [--quick]`.

Starts a production-like stack on this machine (MariaDB, Redis, uvicorn with N workers, M
Celery worker processes, the aamarPay simulator), creates users and pays for them through the
simulator, runs four bounded scenarios, each beside the same load against `GET /healthz`,
prints req/s, p50/p95/p99 latency and error counts, and checks against the database that no
upload job was lost or duplicated. See README, "Performance".
"""

from bench.load.scenarios import LoadRun, Plan, Results
from bench.load.stack import Stack, StackConfig

__all__ = ["LoadRun", "Plan", "Results", "Stack", "StackConfig", "run"]


def run(*args: object, **kwargs: object) -> Results:
    from bench.load.cli import run as _run

    return _run(*args, **kwargs)  # type: ignore[arg-type]
