"""One way to run a child process: start it, wait until it is ready, stop it.

Used by `python -m app run` (api, worker, simulator), the benchmarks and the tests (real API
servers, Celery workers, the gateway simulator, SeaweedFS, the compose services run natively).
A child runs in a process group of its own, so that stopping it also ends whatever it started
(a Celery pool, uvicorn's workers) and a Ctrl-C reaches only the parent, which stops each child
once. Its output goes to a log file (so a test can show it), or to the parent's terminal.
`app/serve.py` supervises its own uvicorn processes (a listening socket each): it is the
server, not a user of this module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class ChildExited(RuntimeError):
    """The child ended while it was waited on to become ready."""


class ChildProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    # --- running ----------------------------------------------------------------------------

    def start(self) -> ChildProcess:
        if self.running:
            raise RuntimeError(f"{self.name} is running already")
        with contextlib.ExitStack() as stack:
            log = None
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = stack.enter_context(self.log_path.open("ab"))
            self.proc = subprocess.Popen(  # noqa: S603 - argv chosen by the caller
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(
        self,
        ready: Callable[[], bool],
        *,
        timeout: float,
        interval: float = 0.1,
        what: str = "to be ready",
    ) -> None:
        """Poll `ready` until it holds; ChildExited if the child ends first, TimeoutError
        after `timeout` seconds (both carry the end of its log)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ChildExited(
                    f"{self.name} exited with {self.proc.returncode} while waiting {what}:\n"
                    f"{self.tail()}"
                )
            if ready():
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: not {what} after {timeout}s:\n{self.tail()}")
            time.sleep(interval)

    def wait(self, timeout: float) -> int:
        """Wait for a child that ends by itself (a one-shot command); its exit status.
        TimeoutError (after killing it) if it does not end in time."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(
                f"{self.name} did not finish in {timeout}s:\n{self.tail()}"
            ) from None

    # --- stopping ---------------------------------------------------------------------------

    def stop(self, grace: float = 30.0, *, sig: int = signal.SIGTERM) -> int | None:
        """`sig` (SIGTERM: a graceful stop) to the child, then SIGKILL to its whole group
        after `grace` seconds; whatever it started ends with it. Its exit status, None if it
        had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                code: int | None = self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                code = None
        else:
            code = self.proc.returncode
        self._kill_group()
        return code

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, as `kill -9` would)."""
        if self.proc is not None:
            self._kill_group()

    def _kill_group(self) -> None:
        assert self.proc is not None  # noqa: S101
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)

    # --- its output -------------------------------------------------------------------------

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])
