"""The production-like stack the load runs against, as local subprocesses.

MariaDB (a fresh database, created and migrated with `python -m app migrate`) or a SQLite file,
Redis (one database for the broker, one for the shared counters) or the embedded broker,
`python -m app serve --workers N`, `celery ... worker --concurrency M`, and the aamarPay
simulator, with ENVIRONMENT=production, a generated SECRET_KEY, LOG_LEVEL=WARNING and one
temporary MEDIA_ROOT shared by the api and the worker.

`Stack` is a context manager and removes everything it made (processes, database, Redis
keys, folders) on the way out, whatever the way out is: an exception, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.processes import ChildExited, ChildProcess
from app.serve import ServeOptions

PROJECT_DIR = Path(__file__).resolve().parents[2]
CELERY_APP = "app.tasks.celery_app:celery_app"


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_of(url: URL) -> URL:
    """The same server without a database (`URL.set(database=None)` would keep it)."""
    return URL.create(
        url.drivername,
        username=url.username,
        password=url.password,
        host=url.host,
        port=url.port,
        query=url.query,
    )


def run_async(factory: Callable[[], Any]) -> Any:
    """Run a coroutine on a private loop in another thread (safe inside a running loop)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@dataclass
class StackConfig:
    #: `mysql+asyncmy://user@host:port` (a fresh database `<database_prefix><timestamp>` is
    #: made on that server and dropped at the end) or `sqlite` (a file in the work folder).
    database: str = "mysql+asyncmy://root@127.0.0.1:3306"
    database_prefix: str = "load_"
    #: Fixed database name instead of prefix+timestamp (it is dropped and recreated).
    database_name: str | None = None
    #: Redis URL for the Celery broker; empty = the embedded filesystem broker.
    broker_url: str = "redis://127.0.0.1:6379/10"
    #: Redis URL for the shared counters; empty = the broker's (or in-process counters).
    redis_url: str = "redis://127.0.0.1:6379/11"
    #: Flush the Redis databases at the start and the end (only for databases we own).
    flush_redis: bool = True
    api_workers: int = 2
    worker_concurrency: int = 2
    #: Extra environment for the app processes (tuning knobs).
    env: dict[str, str] = field(default_factory=dict)
    #: Extra command-line arguments for `celery worker` (e.g. --prefetch-multiplier=4).
    worker_args: list[str] = field(default_factory=list)
    #: Keep the logs folder when the run fails (printed).
    keep_logs_on_failure: bool = True
    #: The checkout whose code the stack's processes run (another commit's `git worktree`
    #: for a baseline); None = this one.
    project_dir: Path | None = None


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="load-"))
        self.media_root = self.workdir / "media"
        self.logs = self.workdir / "logs"
        self.media_root.mkdir()
        self.logs.mkdir()
        self.processes: dict[str, ChildProcess] = {}
        self.api_port = free_port()
        self.sim_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.database_url = ""
        self._db_created = False
        self._redis_keys_before: dict[str, set[bytes]] = {}
        self._previous_handlers: dict[int, Any] = {}
        self.worker_hostname = ""
        self.worker_concurrency = 0
        self.failed = False
        self.project_dir = config.project_dir or PROJECT_DIR

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self._install_signal_handlers()
        try:
            self.start()
        except BaseException:
            self.failed = True
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.failed = True
        self.close()

    def _install_signal_handlers(self) -> None:
        # SIGTERM behaves like Ctrl-C, so that `finally` blocks (and close()) run.
        def to_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        if hasattr(signal, "SIGTERM"):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous_handlers[signal.SIGTERM] = signal.signal(
                    signal.SIGTERM, to_keyboard_interrupt
                )

    def env(self) -> dict[str, str]:
        cfg = self.config
        env = {
            **os.environ,
            "ENVIRONMENT": "production",
            "SECRET_KEY": self._secret,
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": cfg.broker_url,
            "REDIS_URL": cfg.redis_url,
            "EMBEDDED_BROKER_DIR": str(self.workdir / "broker"),
            "MEDIA_ROOT": str(self.media_root),
            "PUBLIC_BASE_URL": self.api_url,
            "AAMARPAY_BASE_URL": self.sim_url,
            # The simulator knows only the public sandbox store.
            "AAMARPAY_ALLOW_SANDBOX": "true",
            # The load has its own users hammering logins from one address.
            "LOGIN_ADDRESS_FAILURE_LIMIT": "1000",
            "PYTHONUNBUFFERED": "1",
            **cfg.env,
        }
        if cfg.project_dir is not None:
            # Its `app` before the one installed (editable) from this checkout.
            env["PYTHONPATH"] = os.pathsep.join(
                [str(cfg.project_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
        # The suite's TEST_* variables must not leak into the stack's processes.
        for key in ("TEST_DATABASE_URL", "TEST_REDIS_URL"):
            env.pop(key, None)
        return env

    def start(self) -> None:
        self._secret = secrets.token_urlsafe(48)
        self._create_database()
        self._prepare_redis()
        self._migrate()
        self.start_simulator()
        self.start_api()
        self.start_worker(self.config.worker_concurrency)

    def close(self) -> None:
        # A second Ctrl-C must not interrupt the cleanup.
        previous_int = None
        with contextlib.suppress(ValueError):
            previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for name in reversed(list(self.processes)):
                self.stop(name)
            self._cleanup_redis()
            self._drop_database()
            if self.failed and self.config.keep_logs_on_failure:
                kept = Path(tempfile.mkdtemp(prefix="load-logs-"))
                with contextlib.suppress(OSError):
                    shutil.copytree(self.logs, kept, dirs_exist_ok=True)
                    sys.stderr.write(f"logs of the failed run kept in {kept}\n")
            shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            with contextlib.suppress(ValueError, TypeError):
                if previous_int is not None:
                    signal.signal(signal.SIGINT, previous_int)
            for signum, handler in self._previous_handlers.items():
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(signum, handler)
            self._previous_handlers.clear()

    # --- database and redis --------------------------------------------------------------

    def _create_database(self) -> None:
        cfg = self.config
        if cfg.database == "sqlite" or cfg.database.startswith("sqlite"):
            self.database_url = f"sqlite+aiosqlite:///{self.workdir / 'load.db'}"
            return
        server = make_url(cfg.database)
        name = cfg.database_name or f"{cfg.database_prefix}{time.strftime('%Y%m%d_%H%M%S')}"
        if not name.replace("_", "").isalnum():
            raise StackError(f"refusing database name {name!r}")
        self.database_name = name
        self.database_url = server.set(database=name).render_as_string(hide_password=False)

        async def create() -> None:
            engine = create_async_engine(server_of(server))
            try:
                async with engine.connect() as conn:
                    exists = await conn.scalar(
                        text(
                            "SELECT COUNT(*) FROM information_schema.schemata "
                            "WHERE schema_name = :n"
                        ),
                        {"n": name},
                    )
                    if exists:
                        await conn.execute(text(f"DROP DATABASE `{name}`"))
                    await conn.execute(
                        text(
                            f"CREATE DATABASE `{name}` "
                            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                        )
                    )
            finally:
                await engine.dispose()

        run_async(create)
        self._db_created = True

    def _drop_database(self) -> None:
        if not self._db_created:
            return
        server = make_url(self.database_url)
        name = server.database

        async def drop() -> None:
            engine = create_async_engine(server_of(server))
            try:
                async with engine.connect() as conn:
                    await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            finally:
                await engine.dispose()

        try:
            run_async(drop)
            self._db_created = False
        except Exception as exc:  # noqa: BLE001 - report, keep cleaning
            sys.stderr.write(f"could not drop database {name}: {exc}\n")

    def _redis_urls(self) -> list[str]:
        return sorted({u for u in (self.config.broker_url, self.config.redis_url) if u})

    def _prepare_redis(self) -> None:
        import redis

        for url in self._redis_urls():
            client = redis.Redis.from_url(url)
            try:
                if self.config.flush_redis:
                    client.flushdb()
                else:
                    self._redis_keys_before[url] = {
                        k if isinstance(k, bytes) else k.encode() for k in client.keys("*")
                    }
            finally:
                client.close()

    def _cleanup_redis(self) -> None:
        import redis

        for url in self._redis_urls():
            try:
                client = redis.Redis.from_url(url)
                try:
                    if self.config.flush_redis:
                        client.flushdb()
                    else:
                        # A shared database: remove only what this run added, but keep the
                        # queue bindings (other publishers cache them).
                        before = self._redis_keys_before.get(url, set())
                        added = [
                            k
                            for k in {
                                k if isinstance(k, bytes) else k.encode() for k in client.keys("*")
                            }
                            - before
                            if not k.startswith(b"_kombu.binding")
                        ]
                        if added:
                            client.delete(*added)
                finally:
                    client.close()
            except Exception as exc:  # noqa: BLE001 - report, keep cleaning
                sys.stderr.write(f"could not clean Redis {url}: {exc}\n")

    # --- processes -----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> ChildProcess:
        # Own process group (app.processes): Ctrl-C reaches only the bench, which stops each.
        process = ChildProcess(
            name, argv, log_path=self.logs / f"{name}.log", env=self.env(), cwd=self.project_dir
        ).start()
        self.processes[name] = process
        return process

    def stop(self, name: str, timeout: float = 5.0) -> None:
        """SIGTERM to the main process (as Docker does), then SIGKILL to whatever is left of
        its group. The bench stops a worker only when no job is running or queued, so a
        Celery warm shutdown that dawdles (seconds, on the filesystem broker) is cut short
        without losing anything."""
        process = self.processes.pop(name, None)
        if process is not None:
            process.stop(grace=timeout)

    def _migrate(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "app", "migrate"],
            cwd=self.project_dir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"migration failed:\n{result.stdout}\n{result.stderr}")

    def _wait_http(self, process: ChildProcess, url: str, timeout: float = 60.0) -> None:
        def answers() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            process.wait_until(answers, timeout=timeout, what=f"to answer {url}")
        except (ChildExited, TimeoutError) as exc:
            raise StackError(str(exc)) from exc

    def start_simulator(self) -> None:
        proc = self._spawn(
            "simulator",
            [
                sys.executable,
                "-m",
                "simulator",
                "--port",
                str(self.sim_port),
                "--log-level",
                "warning",
            ],
        )
        self._wait_http(proc, f"{self.sim_url}/_sim/config")

    def api_argv(self, workers: int) -> list[str]:
        # As docker-compose.yml runs it, on a local port.
        return ServeOptions(
            port=self.api_port, workers=workers, proxy_headers=True, log_level="warning"
        ).argv(sys.executable)

    def start_api(self, workers: int | None = None) -> None:
        self.stop("api")
        proc = self._spawn("api", self.api_argv(workers or self.config.api_workers))
        self._wait_http(proc, f"{self.api_url}/readyz")

    def start_worker(self, concurrency: int) -> None:
        current = self.processes.get("worker")
        if current is not None and current.running and self.worker_concurrency == concurrency:
            return
        self.stop("worker")
        self.worker_hostname = f"load-{uuid.uuid4().hex[:8]}@localhost"
        proc = self._spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                CELERY_APP,
                "worker",
                "--hostname",
                self.worker_hostname,
                "--concurrency",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
                *self.config.worker_args,
            ],
        )
        self.worker_concurrency = concurrency
        self._wait_worker(proc, concurrency)

    def _wait_worker(self, process: ChildProcess, concurrency: int, timeout: float = 90.0) -> None:
        """Started once its pool processes exist. Whether it consumes is proven by the first
        uploads, which every scenario waits for (a `celery inspect ping` would cost seconds
        of interpreter start-up per try)."""
        from bench.load.stats import descendants

        try:
            process.wait_until(
                lambda: len(descendants(process.pid)) > concurrency,
                timeout=timeout,
                what="to start its pool",
            )
        except (ChildExited, TimeoutError) as exc:
            raise StackError(str(exc)) from exc
        time.sleep(0.5)  # the consumer connects right after forking the pool

    def check_alive(self) -> None:
        for process in self.processes.values():
            if not process.running:
                raise StackError(f"{process.name} died:\n{process.tail()}")

    def pids(self, name: str) -> list[int]:
        from bench.load.stats import descendants

        process = self.processes.get(name)
        return descendants(process.pid) if process else []
