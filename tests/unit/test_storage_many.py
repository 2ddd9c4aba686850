"""storage.receive_uploads: several file parts in one body, each judged on its own; a body
refused as a whole leaves no temporary file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from app.errors import FileTooLarge, InvalidInput, UploadTimeout
from app.services import storage

BOUNDARY = "xyzzy"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str, data: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )


async def chunks(body: bytes, size: int = 7, stall: bool = False) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]
    if stall:
        await anyio.sleep(10)


def leftovers(root: Path) -> list[Path]:
    incoming = root / storage.INCOMING
    return list(incoming.iterdir()) if incoming.exists() else []


async def receive(root: Path, body: bytes, **kw: object) -> list[object]:
    stall = bool(kw.pop("stall", False))
    return list(
        await storage.receive_uploads(
            chunks(body, stall=stall),
            CONTENT_TYPE,
            content_length=None,
            field="file",
            max_bytes=10,
            media_root=root,
            **kw,  # type: ignore[arg-type]
        )
    )


async def test_each_part_on_its_own(tmp_path: Path) -> None:
    body = (
        part("a.txt", b"one two")
        + part("big.txt", b"x" * 11)
        + part("empty.txt", b"")
        + part("", b"")  # a file input left empty
        + part("b.txt", b"three")
        + f"--{BOUNDARY}--\r\n".encode()
    )
    results = await receive(tmp_path, body)
    kinds = [
        (r.client_filename, type(r).__name__, getattr(r, "error", None).__class__.__name__)
        for r in results  # type: ignore[attr-defined]
    ]
    assert kinds == [
        ("a.txt", "IncomingFile", "NoneType"),
        ("big.txt", "RefusedFile", "FileTooLarge"),
        ("empty.txt", "RefusedFile", "InvalidInput"),
        ("b.txt", "IncomingFile", "NoneType"),
    ]
    kept = [r for r in results if isinstance(r, storage.IncomingFile)]
    assert [k.temp_path.read_bytes() for k in kept] == [b"one two", b"three"]
    assert sorted(leftovers(tmp_path)) == sorted(k.temp_path for k in kept)


@pytest.mark.parametrize(
    ("body", "error", "kw"),
    [
        (part("a.txt", b"one") + part("b.txt", b"two"), InvalidInput, {}),  # no closing
        (part("a.txt", b"one") + part("b.txt", b"tw"), UploadTimeout, {"stall": True}),
        (
            b"".join(part(f"{i}.txt", b"w") for i in range(3)) + b"--xyzzy--\r\n",
            InvalidInput,
            {"max_files": 2},
        ),
    ],
)
async def test_a_body_refused_whole_leaves_nothing(
    tmp_path: Path, body: bytes, error: type[Exception], kw: dict[str, object]
) -> None:
    with pytest.raises(error):
        await receive(tmp_path, body, idle_timeout=0.2, **kw)
    assert leftovers(tmp_path) == []


async def test_a_declared_length_past_the_files_limit_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileTooLarge):
        await storage.receive_uploads(
            chunks(b""),
            CONTENT_TYPE,
            content_length=2 * 10 + storage.ENVELOPE_ALLOWANCE + 1,
            field="file",
            max_bytes=10,
            max_files=2,
            media_root=tmp_path,
        )
    assert leftovers(tmp_path) == []
