"""The API server's sockets and settings (app/serve.py); its processes are exercised in
tests/integration/test_serve.py."""

from __future__ import annotations

import asyncio
import socket

import pytest

from app import serve
from app.cli import build_parser, serve_options


async def test_accepted_connections_have_nagle_turned_off() -> None:
    """asyncio sets TCP_NODELAY only on sockets made with IPPROTO_TCP; without it every
    response that takes two writes waits for the client's delayed ACK (~40 ms)."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[int] = loop.create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    sock = serve.listening_socket("127.0.0.1", 0, reuse_port=True)
    server = await loop.create_server(Probe, sock=sock)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_sockets_of_one_group_share_the_port() -> None:
    first = serve.listening_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    with first, serve.listening_socket("127.0.0.1", port, reuse_port=True) as second:
        first.listen()
        second.listen()
        assert second.getsockname()[1] == port
        with pytest.raises(OSError, match="in use"):  # outside the group while it listens
            serve.listening_socket("127.0.0.1", port, reuse_port=False).close()


def test_servers_run_on_the_asyncio_loop() -> None:
    """uvloop leaves some connections waiting for seconds under saturation (module docstring)."""
    config = serve._uvicorn_config(serve.ServeOptions(proxy_headers=True, graceful_timeout=25))
    assert config.loop == "asyncio"
    assert config.proxy_headers is True
    assert config.timeout_graceful_shutdown == 25
    assert config.app == serve.ASGI_APP


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_workers_must_be_a_positive_number(workers: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", workers])


def test_serve_rejects_no_workers() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        serve.serve(serve.ServeOptions(workers=0))


@pytest.mark.parametrize(
    "options",
    [
        serve.ServeOptions(),
        serve.ServeOptions(
            host="0.0.0.0",  # noqa: S104
            port=9001,
            workers=3,
            proxy_headers=True,
            graceful_timeout=7.5,
            log_level="warning",
        ),
    ],
)
def test_the_command_built_from_options_serves_with_those_options(
    options: serve.ServeOptions,
) -> None:
    """`make run`, the tests and the benches start the server through `argv()`."""
    argv = options.argv("python")
    assert argv[:4] == ["python", "-m", "app", "serve"]
    assert serve_options(build_parser().parse_args(argv[3:])) == options
