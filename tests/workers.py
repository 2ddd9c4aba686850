"""Real worker and server processes for the tests that need them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from app.serve import ServeOptions
from tests.support import PROJECT_DIR, wait_until


class CeleryWorker:
    """`celery -A app.tasks.celery_app:celery_app worker`, exactly as operators run it."""

    def __init__(
        self,
        log_dir: Path,
        *,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        beat: bool = False,
    ) -> None:
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.env = {**os.environ, "LOG_LEVEL": "INFO", **(env or {})}
        self.beat = beat
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / f"worker-{self.hostname.split('@')[0]}.log"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "app.tasks.celery_app:celery_app",
            "worker",
            "--hostname",
            self.hostname,
            "--concurrency",
            str(self.concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
        if self.beat:
            argv += ["--beat", "--schedule", str(self.log_dir / f"beat-{self.hostname}.db")]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603
            argv,
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            return "ready." in self.log()

        wait_until(ready, timeout=timeout, interval=0.1, what="the worker to be ready")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown (SIGTERM): finish the current job, then exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool children."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


class ApiServer:
    """The API server (`python -m app serve`) as real processes (for browsers and
    cross-process tests)."""

    def __init__(
        self, log_dir: Path, *, env: dict[str, str] | None = None, workers: int = 1
    ) -> None:
        from tests.support import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PUBLIC_BASE_URL": self.url, **(env or {})}
        self.log_path = log_dir / f"api-{self.port}.log"
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import httpx

        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603
            ServeOptions(port=self.port, workers=self.workers, log_level="warning").argv(
                sys.executable
            ),
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"api exited early:\n{self.log_path.read_text()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=60, interval=0.1, what="the api to answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the worker processes too
                self.proc.wait()
