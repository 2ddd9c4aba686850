"""pytest plugin: the aamarPay sandbox simulator as a real subprocess.

Fixtures:

* ``simulator_url`` (session): starts ``python -m simulator`` on a free port of 127.0.0.1,
  waits until it answers and yields its base URL; the process is stopped at the end.
* ``simulator`` (function): a :class:`SimulatorControl` for that process, reset before the test.

Load it with ``-p tests.plugins.simulator`` or ``pytest_plugins = ["tests.plugins.simulator"]``.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.processes import ChildExited, ChildProcess

SIM_STORE_ID = "aamarpaytest"
SIM_SIGNATURE_KEY = "dbb74894e82415a2f7ff0ec3a97e4183"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.05
START_ATTEMPTS = 3


class SimulatorControl:
    """Thin client for the simulator's ``/_sim/`` test-control API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store_id = SIM_STORE_ID
        self.signature_key = SIM_SIGNATURE_KEY
        self._http = httpx.Client(base_url=url, timeout=10.0)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        if response.status_code != 200:
            raise AssertionError(
                f"simulator {method} {path} -> HTTP {response.status_code}: {response.text}"
            )
        return response.json()

    def reset(self) -> None:
        """Forget every transaction and switch every fault off."""
        self._call("POST", "/_sim/reset")

    def config(self, **switches: Any) -> dict[str, Any]:
        """Change global switches (none given: just read them); returns the full config."""
        if not switches:
            return dict(self._call("GET", "/_sim/config"))
        return dict(self._call("POST", "/_sim/config", switches))

    def override(self, tran_id: str, **fields: Any) -> dict[str, Any]:
        """Change what trxcheck reports for one transaction; returns the record."""
        return dict(self._call("POST", f"/_sim/transactions/{tran_id}", fields))

    def transactions(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_sim/transactions"))

    def transaction(self, tran_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/_sim/transactions/{tran_id}"))

    def pay(self, tran_id: str, outcome: str = "success", method: str = "bkash") -> dict[str, Any]:
        """Finish the checkout as the browser would; returns callback_url, http_method, fields."""
        return dict(
            self._call("POST", f"/_sim/pay/{tran_id}", {"outcome": outcome, "method": method})
        )

    def trxcheck_preview(self, tran_id: str) -> dict[str, Any]:
        """What trxcheck would answer now, without counting as a call."""
        return dict(self._call("GET", f"/_sim/trxcheck/{tran_id}"))

    def ipn_deliveries(self) -> list[dict[str, Any]]:
        """Every IPN the simulator tried to send (copy, attempt, status or error)."""
        return list(self._call("GET", "/_sim/ipn"))

    def requests(self) -> list[dict[str, Any]]:
        """Protocol requests received so far (signature keys removed)."""
        return list(self._call("GET", "/_sim/requests"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_sim/config", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def _start(log_path: Path) -> tuple[ChildProcess, str]:
    """Start the simulator and wait (bounded) until it answers; retries on a lost port race."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SIMULATOR_")}
    failures: list[str] = []
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--public-url", url, "--log-level", "warning"]
        child = ChildProcess(
            "simulator", command, log_path=log_path, env=env, cwd=PROJECT_ROOT
        ).start()
        try:
            child.wait_until(
                functools.partial(_answers, url),
                timeout=STARTUP_TIMEOUT_SECONDS,
                interval=POLL_INTERVAL_SECONDS,
                what="to answer",
            )
        except (ChildExited, TimeoutError):  # e.g. the port was taken meanwhile
            child.stop(grace=10)
            failures.append(f"port {port}: exit code {child.returncode}")
            continue
        return child, url
    log_text = log_path.read_text(errors="replace")
    pytest.fail(f"simulator did not start ({'; '.join(failures)}):\n{log_text}", pytrace=False)


@pytest.fixture(scope="session")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a simulator subprocess shared by the whole session."""
    log_path = tmp_path_factory.mktemp("simulator") / "simulator.log"
    child, url = _start(log_path)
    try:
        yield url
    finally:
        child.stop(grace=10)


@pytest.fixture(scope="session")
def _simulator_control(simulator_url: str) -> Iterator[SimulatorControl]:
    control = SimulatorControl(simulator_url)  # one HTTP connection pool for the session
    try:
        yield control
    finally:
        control.close()


@pytest.fixture
def simulator(_simulator_control: SimulatorControl) -> SimulatorControl:
    """Control handle for the simulator, reset before the test."""
    _simulator_control.reset()
    return _simulator_control
