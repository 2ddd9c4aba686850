"""`python -m bench.load [--quick]`: start the stack, run the load, print, check, clean up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench.load.scenarios import LoadRun, Plan, Results
from bench.load.stack import PROJECT_DIR, Stack, StackConfig

SCENARIOS = ("files", "uploads", "dashboard", "callbacks", "uploads-plain")


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


async def _run_async(
    stack: Stack,
    plan: Plan,
    scenarios: Sequence[str],
    generator: str,
    out: Callable[[str], None],
) -> Results:
    load = LoadRun(stack, plan, generator=generator, out=out)
    await load.open_db()
    try:
        await load.setup()
        steps = {
            "files": load.scenario_files,
            "uploads": load.scenario_uploads,
            "dashboard": load.scenario_dashboard,
            "callbacks": load.scenario_callbacks,
            "uploads-plain": load.scenario_uploads_plain,
        }
        for name in SCENARIOS:
            if name in scenarios:
                await steps[name]()
                stack.check_alive()
        await load.end_check()
    finally:
        await load.close_db()
    return load.results


def run(
    config: StackConfig,
    plan: Plan,
    *,
    scenarios: Sequence[str] = SCENARIOS,
    generator: str = "auto",
    out: Callable[[str], None] = _say,
) -> Results:
    """Start the stack, run the load, stop and remove everything; the results."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        loop_factory = None
    with Stack(config) as stack:
        out(
            f"stack: {stack.database_url.split('@')[-1]} | broker "
            f"{config.broker_url or 'embedded'} | counters {config.redis_url or '-'} | "
            f"app serve --workers {config.api_workers} | celery --concurrency "
            f"{config.worker_concurrency} | simulator {stack.sim_url}"
        )
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(_run_async(stack, plan, scenarios, generator, out))
        if not results.ok:
            stack.failed = True
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a few seconds per scenario (smoke)")
    p.add_argument(
        "--database",
        default=os.environ.get("LOAD_DATABASE", "mysql+asyncmy://root@127.0.0.1:3306"),
        help="MariaDB server URL (a fresh database load_<timestamp> is made there and "
        "dropped at the end), or 'sqlite'",
    )
    p.add_argument(
        "--database-prefix",
        default=os.environ.get("LOAD_DATABASE_PREFIX", "load_"),
        help="prefix of the fresh database's name (default load_), so that runs of several "
        "people on one server cannot collide",
    )
    p.add_argument(
        "--broker",
        default=os.environ.get("LOAD_BROKER_URL", "redis://127.0.0.1:6379/10"),
        help="Redis database for the Celery broker, flushed at start and end ('' = embedded)",
    )
    p.add_argument(
        "--counters",
        default=os.environ.get("LOAD_REDIS_URL", "redis://127.0.0.1:6379/11"),
        help="Redis database for the shared counters, flushed at start and end",
    )
    p.add_argument(
        "--api-workers",
        type=int,
        default=2,
        help="API processes: python -m app serve --workers (default 2)",
    )
    p.add_argument(
        "--worker-concurrency", type=int, default=2, help="celery --concurrency (default 2)"
    )
    p.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="for the plain GET scenario: wrk when installed (auto), or the Python client",
    )
    p.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}"
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the app processes (tuning), repeatable",
    )
    p.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `celery worker` (tuning), repeatable",
    )
    p.add_argument(
        "--baseline",
        metavar="COMMIT",
        help="also run the same scenarios against COMMIT (a git worktree of it in a temporary "
        "folder, its own processes and a fresh database on the same server), and print each "
        "headline figure beside the baseline's",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --baseline: alternate baseline and this code this many times each "
        "(medians are compared), which evens out other work on the machine",
    )
    p.add_argument("--uploads", type=int, help="uploads-plain: how many uploads (bounded)")
    p.add_argument("--clients", type=int, help="uploads-plain: clients at a time")
    p.add_argument("--json", type=Path, help="also write the figures here (JSON)")
    return p


@contextlib.contextmanager
def checkout_of(commit: str) -> Iterator[Path]:
    """A `git worktree` of `commit` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="load-baseline-")) / "src"
    subprocess.run(
        [
            "git",
            "-C",
            str(PROJECT_DIR),
            "worktree",
            "add",
            "--detach",
            "--quiet",
            str(folder),
            commit,
        ],
        check=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "worktree", "remove", "--force", str(folder)],
            check=False,
        )
        subprocess.run(["git", "-C", str(PROJECT_DIR), "worktree", "prune"], check=False)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()


def comparison(baseline: dict[str, float], current: dict[str, float]) -> list[str]:
    """Each headline figure beside the baseline's, with the ratio (this / baseline)."""
    lines = [f"  {'figure':<28} {'baseline':>10} {'this':>10} {'this/base':>10}"]
    for key, base in baseline.items():
        value = current.get(key, math.nan)
        ratio = value / base if base else math.nan
        lines.append(f"  {key:<28} {base:>10.1f} {value:>10.1f} {ratio:>10.2f}")
    return lines


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in runs[0] if all(k in r for r in runs)] if runs else []
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    if args.uploads:
        plan = dataclasses.replace(plan, plain_uploads=args.uploads)
    if args.clients:
        plan = dataclasses.replace(plan, plain_clients=args.clients)
    if not {"files", "dashboard"} & set(scenarios):
        # Only the list and the dashboard need long file lists: a short setup.
        plan = dataclasses.replace(plan, users=min(plan.users, 10), files_per_user=1)
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        _say(f"unknown scenarios: {sorted(unknown)}")
        return 2
    extra = dict(item.split("=", 1) for item in args.env)
    config = StackConfig(
        database=args.database,
        database_prefix=args.database_prefix,
        broker_url=args.broker,
        redis_url=args.counters,
        api_workers=args.api_workers,
        worker_concurrency=args.worker_concurrency,
        env=extra,
        worker_args=list(args.worker_arg),
    )
    _say(
        f"bench.load {'--quick ' if args.quick else ''}on {platform.node()}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}, load average before the run "
        f"{os.getloadavg()[0]:.2f} (other work on the machine skews the figures)"
    )
    started = time.monotonic()
    base_runs: list[dict[str, float]] = []
    this_runs: list[dict[str, float]] = []
    try:
        if args.baseline:
            with checkout_of(args.baseline) as folder:
                base_config = dataclasses.replace(config, project_dir=folder)
                for n in range(max(1, args.rounds)):
                    _say(f"\n=== round {n + 1}: baseline {args.baseline} ===")
                    base = run(base_config, plan, scenarios=scenarios, generator=args.generator)
                    base_runs.append(base.metrics)
                    _say(f"\n=== round {n + 1}: this code ===")
                    results = run(config, plan, scenarios=scenarios, generator=args.generator)
                    this_runs.append(results.metrics)
                    if not base.ok:
                        results.problems.extend(f"baseline: {p}" for p in base.problems)
        else:
            results = run(config, plan, scenarios=scenarios, generator=args.generator)
    except KeyboardInterrupt:
        _say("\ninterrupted; the stack has been stopped and removed")
        return 130
    if base_runs and base_runs[0]:
        rounds = len(base_runs)
        _say(
            f"\nbaseline {args.baseline} vs this code"
            + (f" (medians of {rounds} alternated rounds)" if rounds > 1 else "")
            + ":"
        )
        for line in comparison(medians(base_runs), medians(this_runs)):
            _say(line)
    _say(
        f"\n{'PASS' if results.ok else 'FAIL'}: {results.errors} errors, "
        f"{results.status_5xx} 5xx, {len(results.problems)} problems "
        f"({time.monotonic() - started:.0f}s)"
    )
    for problem in results.problems:
        _say(f"  - {problem}")
    target = args.json or (
        PROJECT_DIR / "bench" / "results" / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "config": {
                    "api_workers": config.api_workers,
                    "worker_concurrency": config.worker_concurrency,
                    "env": extra,
                    "worker_args": config.worker_args,
                },
                "sections": [
                    {
                        "title": s.title,
                        "rows": [{"label": label, **f.as_dict()} for label, f in s.rows],
                        "lines": s.lines,
                    }
                    for s in results.sections
                ],
                "check": results.check,
                "problems": results.problems,
                "metrics": results.metrics,
                "baseline": {"commit": args.baseline, "runs": base_runs, "this_runs": this_runs}
                if args.baseline
                else None,
            },
            indent=2,
        )
    )
    shown = target.relative_to(PROJECT_DIR) if target.is_relative_to(PROJECT_DIR) else target
    _say(f"figures written to {shown}")
    return 0 if results.ok else 1
