"""Real worker and server processes for the tests that need them (app.processes runs them)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import httpx

from app.processes import ChildProcess
from app.serve import ServeOptions
from tests.support import PROJECT_DIR


class CeleryWorker(ChildProcess):
    """`celery -A app.tasks.celery_app:celery_app worker`, exactly as operators run it."""

    def __init__(
        self,
        log_dir: Path,
        *,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        beat: bool = False,
    ) -> None:
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@localhost"
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
            str(concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
        if beat:
            argv += ["--beat", "--schedule", str(log_dir / f"beat-{self.hostname}.db")]
        super().__init__(
            "worker",
            argv,
            log_path=log_dir / f"worker-{self.hostname.split('@')[0]}.log",
            env={**os.environ, "LOG_LEVEL": "INFO", **(env or {})},
            cwd=PROJECT_DIR,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_until(lambda: "ready." in self.log(), timeout=timeout, what="to be ready")


class ApiServer(ChildProcess):
    """The API server (`python -m app serve`) as real processes (for browsers and
    cross-process tests). `start()` returns once it answers."""

    def __init__(
        self, log_dir: Path, *, env: dict[str, str] | None = None, workers: int = 1
    ) -> None:
        from tests.support import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            "api",
            ServeOptions(port=self.port, workers=workers, log_level="warning").argv(sys.executable),
            log_path=log_dir / f"api-{self.port}.log",
            env={**os.environ, "PUBLIC_BASE_URL": self.url, **(env or {})},
            cwd=PROJECT_DIR,
        )

    def start(self) -> ApiServer:
        super().start()

        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_until(up, timeout=60, what="to answer")
        return self
