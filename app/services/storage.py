"""The media volume: streamed multipart reception, generated names, safe paths.

Layout under MEDIA_ROOT:
  .incoming/<random>.part   bodies being received (same filesystem, so the final move is an
                            atomic rename); removed on any rejection
  <user id>/<uuid>.<ext>    accepted uploads; the database stores this relative path

The client's file name is never used on disk; it is kept (sanitised) for display only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path, PurePosixPath

import anyio
from anyio import to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import AppError, FileTooLarge, InvalidInput, UploadTimeout

INCOMING = ".incoming"
#: Bytes gathered before one write to disk (off the event loop).
WRITE_BATCH = 256 * 1024
#: Multipart overhead allowed on top of MAX_UPLOAD_BYTES when judging Content-Length.
ENVELOPE_ALLOWANCE = 64 * 1024
MAX_PARTS = 8
#: Files one form POST may carry (receive_uploads: the dashboard's form without JavaScript).
MAX_FILES_PER_REQUEST = 10
MAX_HEADER_BYTES = 8 * 1024
MAX_FIELD_BYTES = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass
class IncomingFile:
    """An upload body received (not yet accepted): in a temporary file, or, when it is at
    most one write batch (WRITE_BATCH), in memory (`data`; then there is no file at
    `temp_path`), to be checked there and written once, in its final place."""

    temp_path: Path
    client_filename: str
    size: int
    sha256: str
    data: bytes | None = None

    def discard(self) -> None:
        """Remove the temporary file, if there is one."""
        if self.data is None:
            discard(self.temp_path)


def sanitize_filename(raw: str, *, fallback_ext: str = "") -> str:
    """The client's name, made safe to store and show: last path component only, no control
    or bidi-override characters, NFC, at most 255 characters (the extension kept)."""
    name = raw.replace("\\", "/").split("/")[-1]
    name = unicodedata.normalize("NFC", name)
    name = _CONTROL.sub("", name)
    name = " ".join(name.split()).strip(" .")
    if not name:
        name = f"upload{fallback_ext}"
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        keep_ext = bool(dot) and 0 < len(ext) <= 16
        name = stem[: 254 - len(ext)] + "." + ext if keep_ext else name[:255]
    return name


def extension_of(filename: str) -> str:
    """Lower-case extension with its dot ('.txt'), '' if none."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix
    return suffix.lower()


def incoming_dir(media_root: Path) -> Path:
    path = media_root / INCOMING
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_relative_path(user_id: int, ext: str) -> str:
    return f"{user_id}/{uuid.uuid4().hex}{ext}"


@functools.lru_cache(maxsize=16)
def _real_root(media_root: Path) -> str:
    """MEDIA_ROOT with its symbolic links resolved, once per process (resolving it again
    for every file cost more than the rest of a small file's read)."""
    return os.path.join(os.path.realpath(media_root), "")


def resolve(media_root: Path, relative: str) -> Path:
    """Absolute path of a stored file, refusing anything that escapes MEDIA_ROOT (by `..`
    or a symbolic link)."""
    root = _real_root(media_root)
    path = os.path.realpath(os.path.join(root, relative))
    if not path.startswith(root) or len(path) == len(root):
        raise ValueError(f"path {relative!r} is outside the media root")
    return Path(path)


def discard(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _move_into_place(temp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)


async def store(temp: Path, media_root: Path, relative: str) -> Path:
    final = resolve(media_root, relative)
    await to_thread.run_sync(_move_into_place, temp, final)
    return final


def _write_into_place(media_root: Path, relative: str, data: bytes) -> None:
    final = resolve(media_root, relative)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        with final.open("xb") as fh:
            fh.write(data)
    except BaseException:
        discard(final)
        raise


async def store_bytes(data: bytes, media_root: Path, relative: str) -> None:
    """Write a small body received in memory straight to its final place, in one hop to a
    worker thread (a temporary file and a rename were two). Nothing reads it before its row
    is committed, which happens only after this returns; a process killed half-way leaves a
    file no row names, which the periodic sweep deletes."""
    await to_thread.run_sync(_write_into_place, media_root, relative, data)


#: Called with the text fields that came before the file part, just before its first byte is
#: read (or at the end of a body without one); raising there refuses the upload.
BeforeFile = Callable[[Mapping[str, str]], None]


class _Receiver:
    """python-multipart callbacks: the `file` field goes to disk, chunk by chunk."""

    def __init__(
        self, field: str, temp_path: Path, max_bytes: int, before_file: BeforeFile | None = None
    ) -> None:
        self.field = field
        self.before_file = before_file
        #: Text fields seen so far (kept only for `before_file`; each bounded, as are parts).
        self.fields: dict[str, str] = {}
        self._field_name: str | None = None
        self._field_value = bytearray()
        self.temp_path = temp_path
        self.max_bytes = max_bytes
        self.hasher = hashlib.sha256()
        self.size = 0
        self.filename: str | None = None
        self.parts = 0
        self.pending = bytearray()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._in_file = False
        self._field_bytes = 0
        self._file_seen = False
        self.ended = False

    max_parts = MAX_PARTS

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise InvalidInput("Too many form fields")
        self._headers = {}
        self._header_bytes = 0
        self._in_file = False
        self._field_bytes = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        self._count_header(end - start)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._count_header(end - start)

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise InvalidInput("Form part headers are too large")

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._field_name = None if b"filename" in options else name
        self._field_value.clear()
        if name == self.field and b"filename" in options and not self._file_seen:
            self.run_before_file()
            self._in_file = True
            self._file_seen = True
            self.filename = options[b"filename"].decode("utf-8", "replace")

    def run_before_file(self) -> None:
        if self.before_file is not None:
            check, self.before_file = self.before_file, None
            check(self.fields)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if not self._in_file:
            self._field_bytes += n
            if self._field_bytes > MAX_FIELD_BYTES:
                raise InvalidInput("A form field is too large")
            if self.before_file is not None and self._field_name is not None:
                self._field_value += data[start:end]
            return
        self.size += n
        if self.size > self.max_bytes:
            raise FileTooLarge(f"The file is larger than the {self.max_bytes}-byte upload limit")
        chunk = data[start:end]
        self.hasher.update(chunk)
        self.pending += chunk

    def on_part_end(self) -> None:
        if self.before_file is not None and self._field_name is not None:
            self.fields[self._field_name] = self._field_value.decode("utf-8", "replace")
        self._field_name = None
        self._in_file = False

    def on_end(self) -> None:
        self.ended = True


async def _chunks_with_idle_timeout(
    stream: AsyncIterator[bytes], idle_timeout: float | None
) -> AsyncIterator[bytes]:
    """The body's chunks; UploadTimeout (408) when the client sends nothing for
    `idle_timeout` seconds (each wait for the next chunk is bounded, so a stalled body can
    hold nothing for longer than that)."""
    iterator = aiter(stream)
    while True:
        try:
            with anyio.fail_after(idle_timeout):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadTimeout(
                f"No data arrived for {idle_timeout:g} seconds; the upload was dropped"
            ) from None
        yield chunk


def _append(path: Path, data: bytes) -> None:
    try:
        fh = path.open("ab")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("ab")
    with fh:
        fh.write(data)


async def receive_upload(
    stream: AsyncIterator[bytes],
    content_type: str,
    *,
    content_length: int | None,
    field: str,
    max_bytes: int,
    media_root: Path,
    before_file: BeforeFile | None = None,
    idle_timeout: float | None = None,
    on_chunk: Callable[[], Awaitable[None]] | None = None,
) -> IncomingFile:
    """Stream a multipart body; the `field` file part lands in a temporary file.

    Refuses (413) as soon as the file passes `max_bytes`, or before reading anything when the
    declared Content-Length is already too large; 422 for a body that is not multipart or has
    no (or an empty) `field` file; 408 when the body stalls for `idle_timeout` seconds. On
    any refusal the temporary file is gone. A file of at most WRITE_BATCH bytes is returned
    in memory, with no temporary file (IncomingFile.data). `on_chunk` is awaited after each
    chunk (outside the idle timeout).

    `before_file` (e.g. the browser form's CSRF check) sees the text fields sent before the
    file part and runs before any of the file is read; what it raises refuses the upload.
    """
    mime, params = parse_options_header(content_type.encode("latin-1", "replace"))
    if mime != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidInput(
            [
                {
                    "loc": ["body", field],
                    "msg": "send the file as multipart/form-data",
                    "type": "missing",
                }
            ]
        )
    if content_length is not None and content_length > max_bytes + ENVELOPE_ALLOWANCE:
        raise FileTooLarge(f"The file is larger than the {max_bytes}-byte upload limit")
    # Created by the first write (its folder too), in the thread pool: creating it here
    # blocked the event loop on the filesystem (~1 ms a request on this machine's disk); a
    # body of at most one write batch never gets one.
    temp_path = media_root / INCOMING / f"{uuid.uuid4().hex}.part"
    receiver = _Receiver(field, temp_path, max_bytes, before_file)
    callbacks = {
        "on_part_begin": receiver.on_part_begin,
        "on_part_data": receiver.on_part_data,
        "on_part_end": receiver.on_part_end,
        "on_header_field": receiver.on_header_field,
        "on_header_value": receiver.on_header_value,
        "on_header_end": receiver.on_header_end,
        "on_headers_finished": receiver.on_headers_finished,
        "on_end": receiver.on_end,
    }
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
        written = False
        async for chunk in _chunks_with_idle_timeout(stream, idle_timeout):
            parser.write(chunk)
            if on_chunk is not None:
                await on_chunk()
            if len(receiver.pending) >= WRITE_BATCH:
                data, receiver.pending = bytes(receiver.pending), bytearray()
                await to_thread.run_sync(_append, temp_path, data)
                written = True
        parser.finalize()
        if not receiver.ended:
            raise FormParserError("the body ends before the closing boundary")
        receiver.run_before_file()
        in_memory = None if written else bytes(receiver.pending)
        if written and receiver.pending:
            await to_thread.run_sync(_append, temp_path, bytes(receiver.pending))
    except FormParserError as exc:
        discard(temp_path)
        raise InvalidInput("The multipart body is malformed") from exc
    except BaseException:
        discard(temp_path)
        raise
    missing = {"loc": ["body", field], "type": "missing"}
    if receiver.filename is None:
        discard(temp_path)
        raise InvalidInput([{**missing, "msg": f"a file field named {field!r} is required"}])
    if receiver.size == 0:
        discard(temp_path)
        raise InvalidInput([{**missing, "msg": "the file is empty"}])
    return IncomingFile(
        temp_path=temp_path,
        client_filename=receiver.filename,
        size=receiver.size,
        sha256=receiver.hasher.hexdigest(),
        data=in_memory,
    )


# --- several files in one body (the dashboard's form without JavaScript) -------------------


@dataclass
class RefusedFile:
    """A file part of a multi-file body refused on its own (nothing of it is kept)."""

    client_filename: str
    error: AppError


@dataclass
class _FilePart:
    filename: str
    temp_path: Path
    size: int = 0
    refused: AppError | None = None
    discarded: bool = False
    hasher: hashlib._Hash = dataclass_field(default_factory=hashlib.sha256)
    pending: bytearray = dataclass_field(default_factory=bytearray)


class _ManyReceiver(_Receiver):
    """Every `field` file part to a temporary file of its own, each bounded by `max_bytes`:
    a part past the limit is refused alone (its bytes dropped and its file removed) while
    the others go on; more than `max_files` file parts refuse the whole body."""

    def __init__(
        self,
        field: str,
        media_root: Path,
        max_bytes: int,
        max_files: int,
        before_file: BeforeFile | None,
    ) -> None:
        super().__init__(field, media_root / "unused.part", max_bytes, before_file)
        self.media_root = media_root
        self.max_files = max_files
        self.max_parts = max_files + MAX_PARTS
        self.files: list[_FilePart] = []
        self.current: _FilePart | None = None

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._field_name = None if b"filename" in options else name
        self._field_value.clear()
        if name == self.field and b"filename" in options:
            self.run_before_file()
            if len(self.files) >= self.max_files:
                raise InvalidInput(f"At most {self.max_files} files can be sent at once")
            self._in_file = True
            self._file_seen = True
            self.current = _FilePart(
                filename=options[b"filename"].decode("utf-8", "replace"),
                temp_path=incoming_dir(self.media_root) / f"{uuid.uuid4().hex}.part",
            )
            self.files.append(self.current)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.current
        if not self._in_file or part is None:
            super().on_part_data(data, start, end)
            return
        if part.refused is not None:
            return
        part.size += end - start
        if part.size > self.max_bytes:
            part.refused = FileTooLarge(
                f"The file is larger than the {self.max_bytes}-byte upload limit"
            )
            part.pending.clear()
            return
        chunk = data[start:end]
        part.hasher.update(chunk)
        part.pending += chunk

    def on_part_end(self) -> None:
        super().on_part_end()
        self.current = None

    async def flush(self, *, final: bool = False) -> None:
        """Write what has gathered (a part still arriving: once it is a batch), and remove
        the files of refused parts."""
        for part in self.files:
            if part.refused is not None:
                if not part.discarded:
                    await to_thread.run_sync(discard, part.temp_path)
                    part.discarded = True
                continue
            if part.pending and (
                final or part is not self.current or len(part.pending) >= WRITE_BATCH
            ):
                data, part.pending = bytes(part.pending), bytearray()
                await to_thread.run_sync(_append, part.temp_path, data)

    def discard_all(self) -> None:
        for part in self.files:
            discard(part.temp_path)


async def receive_uploads(
    stream: AsyncIterator[bytes],
    content_type: str,
    *,
    content_length: int | None,
    field: str,
    max_bytes: int,
    media_root: Path,
    max_files: int = MAX_FILES_PER_REQUEST,
    before_file: BeforeFile | None = None,
    idle_timeout: float | None = None,
    on_chunk: Callable[[], Awaitable[None]] | None = None,
) -> list[IncomingFile | RefusedFile]:
    """Like `receive_upload`, for a body with one or more `field` file parts (at most
    `max_files`, else 422 for the whole body). Each part is judged on its own: one past
    `max_bytes` (413) or empty (422) is returned as a RefusedFile with nothing of it kept,
    the others as IncomingFile in the order they came. A malformed, stalled or oversized body
    refuses everything and leaves no temporary file. File parts with an empty name and no
    content (a file input left empty) are ignored."""
    mime, params = parse_options_header(content_type.encode("latin-1", "replace"))
    missing = {"loc": ["body", field], "type": "missing"}
    if mime != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidInput([{**missing, "msg": "send the files as multipart/form-data"}])
    if content_length is not None and content_length > max_files * max_bytes + (ENVELOPE_ALLOWANCE):
        raise FileTooLarge(f"The files are larger than {max_files} times the upload limit")
    receiver = _ManyReceiver(field, media_root, max_bytes, max_files, before_file)
    callbacks = {
        "on_part_begin": receiver.on_part_begin,
        "on_part_data": receiver.on_part_data,
        "on_part_end": receiver.on_part_end,
        "on_header_field": receiver.on_header_field,
        "on_header_value": receiver.on_header_value,
        "on_header_end": receiver.on_header_end,
        "on_headers_finished": receiver.on_headers_finished,
        "on_end": receiver.on_end,
    }
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
        async for chunk in _chunks_with_idle_timeout(stream, idle_timeout):
            parser.write(chunk)
            if on_chunk is not None:
                await on_chunk()
            await receiver.flush()
        parser.finalize()
        if not receiver.ended:
            raise FormParserError("the body ends before the closing boundary")
        receiver.run_before_file()
        await receiver.flush(final=True)
    except FormParserError as exc:
        receiver.discard_all()
        raise InvalidInput("The multipart body is malformed") from exc
    except BaseException:
        receiver.discard_all()
        raise
    results: list[IncomingFile | RefusedFile] = []
    for part in receiver.files:
        if part.refused is None and part.size == 0:
            discard(part.temp_path)
            if not part.filename:
                continue
            part.refused = InvalidInput([{**missing, "msg": "the file is empty"}])
        if part.refused is not None:
            results.append(RefusedFile(part.filename, part.refused))
            continue
        results.append(
            IncomingFile(
                temp_path=part.temp_path,
                client_filename=part.filename,
                size=part.size,
                sha256=part.hasher.hexdigest(),
            )
        )
    if not results:
        raise InvalidInput([{**missing, "msg": f"a file field named {field!r} is required"}])
    return results
