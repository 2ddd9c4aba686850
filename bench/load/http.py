"""A lean HTTP/1.1 client on asyncio streams (uvloop when available) for the load generator.

Why not httpx: on a 2-core machine the generator shares the CPU with the server it measures,
and httpx spends roughly ten times more CPU per request than this (its transport, pool and
models are built for generality). This client does only what the scenarios need: one
keep-alive connection per virtual user, Content-Length and chunked bodies, a cookie jar that
ignores attributes (the app runs with ENVIRONMENT=production, so its cookies are `Secure`,
which a browser-grade client would refuse to send over plain http to 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode


class HttpError(Exception):
    """The connection failed, broke or timed out (not an HTTP status)."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def json(self) -> object:
        import json

        return json.loads(self.body)


@dataclass
class Connection:
    """One keep-alive connection to host:port; reconnects when the server closed it."""

    host: str
    port: int
    timeout: float = 30.0
    cookies: dict[str, str] = field(default_factory=dict)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _received: bool = False

    async def connect(self) -> None:
        if self._writer is None or self._writer.is_closing():
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, limit=1 << 20), self.timeout
                )
            except (OSError, TimeoutError) as exc:
                raise HttpError(f"connect: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
            self._writer = None
            self._reader = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        form: Mapping[str, str] | None = None,
    ) -> Response:
        if form is not None:
            body = urlencode(form).encode()
            headers = {**(headers or {}), "Content-Type": "application/x-www-form-urlencoded"}
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        # A kept-alive connection that the server closed while it was idle fails at once with
        # nothing received: that request never reached the application, so it is sent again
        # once on a new connection. Anything else is an error.
        for attempt in (0, 1):
            reused = self._writer is not None and not self._writer.is_closing()
            await self.connect()
            self._received = False
            try:
                return await asyncio.wait_for(self._exchange(raw), self.timeout)
            except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                await self.close()
                if attempt == 1 or not reused or self._received:
                    raise HttpError(f"{type(exc).__name__}: {exc}") from exc
            except TimeoutError as exc:
                await self.close()
                raise HttpError("timeout") from exc
        raise AssertionError("unreachable")

    async def _exchange(self, raw: bytes) -> Response:
        assert self._reader is not None
        assert self._writer is not None
        self._writer.write(raw)
        reader = self._reader
        first = await reader.read(1)
        if not first:
            raise ConnectionResetError("closed by the server before answering")
        self._received = True
        head = first + await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: list[tuple[str, str]] = []
        length: int | None = None
        chunked = False
        close = False
        for line in header_lines:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            value = value.strip()
            headers.append((key, value))
            if key == "content-length":
                length = int(value)
            elif key == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif key == "connection" and value.lower() == "close":
                close = True
            elif key == "set-cookie":
                self._store_cookie(value)
        if chunked:
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        elif length is not None:
            body = await reader.readexactly(length) if length else b""
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = await reader.read()
            close = True
        if close:
            await self.close()
        return Response(status, headers, body)

    def _store_cookie(self, value: str) -> None:
        pair, *attributes = value.split(";")
        name, _, cookie = pair.strip().partition("=")
        expired = any(
            a.strip().lower() in ("max-age=0",)
            or a.strip().lower().startswith("expires=thu, 01 jan 1970")
            for a in attributes
        )
        if expired or cookie in ("", '""'):
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = cookie


def multipart(
    field_name: str, filename: str, content: bytes, content_type: str
) -> tuple[str, bytes]:
    """(Content-Type header, body) of a one-file multipart/form-data request."""
    boundary = "load" + secrets.token_hex(12)
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            (
                f'Content-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
            ).encode(),
            f"Content-Type: {content_type}\r\n\r\n".encode(),
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return f"multipart/form-data; boundary={boundary}", body


async def open_all(conns: Iterable[Connection], *, stagger: float = 0.001) -> None:
    """Connect before a measurement starts (not timed), one connection every `stagger`
    seconds, as users arriving do. (Behind `uvicorn --workers`, connections opened in the
    same instant all landed on the worker that woke first; `python -m app serve` gives each
    process a socket of its own, and the kernel spreads them.)"""
    for conn in conns:
        await conn.connect()
        if stagger:
            await asyncio.sleep(stagger)


async def close_all(conns: Iterable[Connection]) -> None:
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
