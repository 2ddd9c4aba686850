"""app.processes: the one way children are started, waited for and stopped."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from app.processes import ChildExited, ChildProcess

# A parent that starts a grandchild (as Celery starts its pool), prints both pids, and ignores
# SIGTERM when asked to (a process that does not stop in time).
FAMILY = """
import os, signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(os.getpid(), child.pid, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): it has ended.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def gone(pid: int, timeout: float = 10) -> bool:
    """A SIGKILL is delivered asynchronously: poll (bounded) until the process has ended."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def family(tmp_path: Path, mode: str) -> tuple[ChildProcess, int]:
    child = ChildProcess(
        "family", [sys.executable, "-c", FAMILY, mode], log_path=tmp_path / "family.log"
    ).start()
    child.wait_until(lambda: len(child.log().split()) == 2, timeout=20, what="to start")
    grandchild = int(child.log().split()[1])
    assert alive(grandchild)
    return child, grandchild


def test_stop_ends_the_child_and_what_it_started(tmp_path: Path) -> None:
    child, grandchild = family(tmp_path, "polite")
    assert child.stop(grace=10) == -signal.SIGTERM
    assert not child.running
    assert gone(grandchild)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    child, grandchild = family(tmp_path, "stubborn")
    assert child.stop(grace=0.5) is None
    assert child.returncode == -signal.SIGKILL
    assert gone(grandchild)


def test_waiting_fails_fast_when_the_child_dies_and_says_why(tmp_path: Path) -> None:
    child = ChildProcess(
        "crash",
        [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"],
        log_path=tmp_path / "crash.log",
    ).start()
    with pytest.raises(ChildExited, match="exited with 3") as caught:
        child.wait_until(lambda: False, timeout=30, what="to answer")
    assert "bad config" in str(caught.value)


def test_waiting_is_bounded(tmp_path: Path) -> None:
    child = ChildProcess(
        "slow", [sys.executable, "-c", "import time; time.sleep(30)"], log_path=tmp_path / "s.log"
    ).start()
    try:
        with pytest.raises(TimeoutError, match="not to answer after 0.3s"):
            child.wait_until(lambda: False, timeout=0.3, what="to answer")
    finally:
        child.kill()
    assert not child.running


def test_a_one_shot_command_gives_its_status(tmp_path: Path) -> None:
    child = ChildProcess(
        "once", [sys.executable, "-c", "raise SystemExit(0)"], log_path=tmp_path / "o.log"
    )
    assert child.start().wait(timeout=30) == 0
