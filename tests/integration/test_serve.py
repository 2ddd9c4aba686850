"""`python -m app serve --workers N` as real processes: every worker listens on the port with a
socket of its own, connections are spread over them, a worker that dies is replaced, SIGTERM
stops them all, and an address in use fails at once. Linux: read through /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, wait_until
from tests.workers import PROJECT_DIR, ApiServer

LISTEN, ESTABLISHED = "0A", "01"


def child_pids(pid: int) -> set[int]:
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.add(int(entry))
    return children


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def tcp_sockets(port: int, state: str) -> set[int]:
    """Inodes of the TCP sockets in `state` whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(int(fields[9]))
    return inodes


def listeners(server: ApiServer) -> dict[int, int]:
    """pid -> listening sockets on the server's port, for its worker processes."""
    assert server.proc is not None
    listening = tcp_sockets(server.port, LISTEN)
    found = {pid: len(socket_inodes(pid) & listening) for pid in child_pids(server.proc.pid)}
    return {pid: n for pid, n in found.items() if n}


@pytest.fixture
def api(committed: None, tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path, workers=2)
    server.start()
    try:
        wait_until(lambda: len(listeners(server)) == 2, timeout=60, what="two workers listening")
        yield server
    finally:
        server.stop()


def test_each_worker_listens_and_connections_are_spread(api: ApiServer) -> None:
    assert api.proc is not None
    workers = listeners(api)
    assert sorted(workers.values()) == [1, 1]
    # The supervisor holds the address but never listens, so it is given no connection.
    assert not socket_inodes(api.proc.pid) & tcp_sockets(api.port, LISTEN)

    clients = []
    try:
        for _ in range(32):
            client = httpx.Client(base_url=api.url, timeout=10)
            clients.append(client)
            assert client.get("/healthz").status_code == 200  # keep-alive: stays open
        served = tcp_sockets(api.port, ESTABLISHED)
        per_worker = {pid: len(socket_inodes(pid) & served) for pid in workers}
    finally:
        for client in clients:
            client.close()
    # The kernel hashes each connection to one of the two sockets: all 32 on one worker
    # happens with probability 2**-31, and every one of them is somebody's.
    assert sum(per_worker.values()) == 32, per_worker
    assert all(per_worker.values()), per_worker


def test_a_worker_that_dies_is_replaced(api: ApiServer) -> None:
    (victim, survivor) = sorted(listeners(api))
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(listeners(api)) == 2 and victim not in listeners(api),
        timeout=60,
        what="a new worker in place of the killed one",
    )
    assert survivor in listeners(api)
    for _ in range(10):
        assert httpx.get(f"{api.url}/healthz", timeout=10).status_code == 200


def test_sigterm_stops_every_process(api: ApiServer) -> None:
    assert api.proc is not None
    workers = set(listeners(api))
    api.proc.send_signal(signal.SIGTERM)
    assert api.proc.wait(timeout=40) == 0
    for pid in workers:
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), timeout=10, what=str(pid))
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api.url}/healthz", timeout=5)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_address_in_use_fails_at_once(workers: int) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # a listener without SO_REUSEPORT
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", str(workers)],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 3, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
