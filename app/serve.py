"""The API server: ``python -m app serve [--workers N]``.

uvicorn processes on the standard asyncio event loop, each with a listening socket of its own
on the same address (``SO_REUSEPORT``), under a small supervisor that starts another process
when one dies and stops them all on SIGTERM or SIGINT. With one worker it is a single uvicorn
server, without a supervisor.

Why not ``uvicorn --workers N`` (measured with ``python -m bench.load`` on two cores):

* Its workers share one listening socket, and whichever wakes first accepts every pending
  connection: 200 keep-alive clients ended up 77/423-style lopsided with uvloop and all on one
  worker with the asyncio loop, leaving a core idle while the other queued. With a socket
  each, the kernel spreads new connections over the processes by a hash of their addresses.
* uvloop, uvicorn's loop when it is installed, lets some connections wait for seconds once
  the process is saturated (other connections' new requests are served first): p99 of a bare
  ASGI app at 200 connections went from 30 ms (asyncio) to 0.4-0.7 s (uvloop), and
  ``GET /api/files/`` at 200 clients had p99 3 s with uvloop, 138 ms with asyncio, at 13% less
  throughput. The asyncio loop is the one used here.
* asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets whose protocol is
  IPPROTO_TCP, so the listening sockets are made with it explicitly; a plain
  ``socket.socket()`` leaves every response waiting ~40 ms for the client's delayed ACK.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a server runs: the CLI builds commands without it
    import uvicorn

ASGI_APP = "app.main:app"
#: The exit status of a server that never started serving (uvicorn uses the same number).
STARTUP_FAILURE = 3

logger = logging.getLogger("app.serve")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    proxy_headers: bool = False
    graceful_timeout: float = 25.0
    log_level: str = "info"

    def argv(self, python: str) -> list[str]:
        """The command that serves with these options (`python -m app serve ...`)."""
        return [
            python,
            "-m",
            "app",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *(["--proxy-headers"] if self.proxy_headers else []),
            "--timeout-graceful-shutdown",
            f"{self.graceful_timeout:g}",
            "--log-level",
            self.log_level,
        ]


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound TCP socket (not yet listening); with ``reuse_port``, one of a group."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _uvicorn_config(options: ServeOptions) -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(
        ASGI_APP,
        host=options.host,
        port=options.port,
        loop="asyncio",
        proxy_headers=options.proxy_headers,
        timeout_graceful_shutdown=max(1, round(options.graceful_timeout)),
        log_level=options.log_level,
    )


def _serve_one(options: ServeOptions, *, reuse_port: bool) -> int:
    """Run one uvicorn server until it is told to stop; STARTUP_FAILURE if it never started."""
    import uvicorn

    try:
        sock = listening_socket(options.host, options.port, reuse_port=reuse_port)
    except OSError as exc:
        logger.error("cannot listen on %s:%s: %s", options.host, options.port, exc)
        return STARTUP_FAILURE
    server = uvicorn.Server(_uvicorn_config(options))
    with sock:
        server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE


def _worker_main(options: ServeOptions) -> None:  # runs in a spawned process
    sys.exit(_serve_one(options, reuse_port=True))


def serve(options: ServeOptions) -> int:
    """Serve the API until SIGTERM/SIGINT; return the process exit status."""
    if options.workers < 1:
        raise ValueError("workers must be at least 1")
    if options.workers == 1:
        return _serve_one(options, reuse_port=False)
    if not hasattr(socket, "SO_REUSEPORT"):
        logger.error("several workers need SO_REUSEPORT; run --workers 1 processes instead")
        return STARTUP_FAILURE
    return _Supervisor(options).run()


class _Supervisor:
    """Keeps ``options.workers`` server processes running until told to stop."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.stopping = threading.Event()

    def _start(self) -> BaseProcess:
        process = self.context.Process(
            target=_worker_main, args=(self.options,), name="api", daemon=True
        )
        process.start()
        return process

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping.set()

    def run(self) -> int:
        options = self.options
        # Bind one member of the group here, never listening (so it is given no connection):
        # an address already in use fails now, in the foreground, before any worker starts.
        try:
            reservation = listening_socket(options.host, options.port, reuse_port=True)
        except OSError as exc:
            logger.error("cannot listen on %s:%s: %s", options.host, options.port, exc)
            return STARTUP_FAILURE
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        status = 0
        try:
            self.processes = [self._start() for _ in range(options.workers)]
            logger.info(
                "serving on %s:%s with %d processes (pids %s)",
                options.host,
                options.port,
                len(self.processes),
                ", ".join(str(p.pid) for p in self.processes),
            )
            while not self.stopping.wait(0.25):
                status = self._replace_dead()
                if status:
                    break
        finally:
            self._stop_all()
            reservation.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _replace_dead(self) -> int:
        for index, process in enumerate(self.processes):
            code = process.exitcode
            if code is None:
                continue
            if code == STARTUP_FAILURE:
                logger.error("api process %s could not start; stopping", process.pid)
                return STARTUP_FAILURE
            replacement = self._start()
            logger.warning(
                "api process %s exited (%s); started %s in its place",
                process.pid,
                code,
                replacement.pid,
            )
            self.processes[index] = replacement
        return 0

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        # uvicorn waits up to graceful_timeout for requests in flight, then closes.
        deadline = time.monotonic() + self.options.graceful_timeout + 5
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.exitcode is None:
                logger.warning("api process %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
