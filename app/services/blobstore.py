"""Stored uploads: one interface, two backends (SPEC §10).

Everything that touches stored bytes goes through a `Storage`: accepting an upload (`put` the
received temporary file under a key; `delete` it when the row does not commit), the worker's
read (`stream` a .txt, `local_copy` a .docx), the download (`open_download`), readiness
(`check`) and the periodic clean-up (`list_older_than`, `delete_many`, `abort_incomplete`). One
is built per process by `build(settings)` (the API's lifespan, the worker's runtime) and closed
at shutdown; no other module knows which backend runs.

- `LocalStorage` (STORAGE_BACKEND=local): files under MEDIA_ROOT, a volume shared by the api and
  the workers; the key is the path relative to MEDIA_ROOT (`<user id>/<uuid>.<ext>`).
- `S3Storage` (STORAGE_BACKEND=s3): objects in S3_BUCKET under S3_PREFIX, through aiobotocore
  (an async client: the body is sent and read without a thread per request). The key is
  S3_PREFIX + `<user id>/<uuid>.<ext>`.

Two errors for the callers: `StorageUnavailable` (the storage is away or answers an error:
connection refused, timeout, 5xx, access denied; retry later, 503 to a client) and
`ObjectMissing` (no such key: the stored bytes are gone for good).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import anyio
from anyio import to_thread

from app.config import Settings
from app.services import storage as media

logger = logging.getLogger("app.storage")

#: Bytes read from a stored file or object at a time (the worker's .txt count, downloads).
CHUNK = 1024 * 1024
#: A local file up to this size is read on the event loop (`LocalStorage.stream`).
INLINE_READ_BYTES = 256 * 1024
#: Objects up to this size are sent with one PUT; larger ones as a multipart upload.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
#: One part of a multipart upload (S3's minimum; also what the API holds in memory at once).
PART_SIZE = 5 * 1024 * 1024
#: Keys per listing page and per bulk delete (S3's own maximum for both).
BATCH = 1000
#: Under S3_PREFIX: the readiness probe's tiny objects (deleted at once; else swept).
PROBE_DIR = ".probe/"


class StorageUnavailable(Exception):
    """The storage did not answer, or answered an error: try again later."""


class ObjectMissing(Exception):
    """No object (file) under that key."""


class ObjectTooLarge(Exception):
    """A stored object is larger than the caller accepts to copy."""


@dataclass(frozen=True)
class Download:
    """What a download serves: a local file, or the object's bytes as they arrive."""

    size: int
    path: Path | None = None
    chunks: AsyncIterator[bytes] | None = None


class Storage(Protocol):
    backend: str

    def new_key(self, user_id: int, ext: str) -> str:
        """A fresh key for an upload of `user_id` (never the client's file name)."""
        ...

    async def put(self, temp_path: Path, key: str) -> None:
        """Store a received temporary file under `key`; the temporary file is gone once this
        returns. On failure nothing is left under `key` (a multipart upload is aborted)."""
        ...

    async def put_bytes(self, data: bytes, key: str) -> None:
        """Store a small body received in memory under `key` (nothing left under it on
        failure)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key` (no error when it is not there)."""
        ...

    async def delete_many(self, keys: list[str]) -> None: ...

    def stream(self, key: str) -> AsyncIterator[bytes]:
        """The stored bytes, in chunks of at most CHUNK."""
        ...

    def local_copy(self, key: str, max_bytes: int) -> AbstractAsyncContextManager[Path]:
        """A local file with the stored bytes for the time of the `async with` (refused with
        ObjectTooLarge past `max_bytes`)."""
        ...

    async def open_download(self, key: str) -> Download: ...

    async def check(self) -> str:
        """Reachable and writable, or raise; a short description for `python -m app check`."""
        ...

    def list_older_than(self, cutoff: datetime) -> AsyncIterator[list[str]]:
        """Every stored key last written before `cutoff`, at most BATCH at a time."""
        ...

    async def abort_incomplete(self, cutoff: datetime) -> int:
        """Drop uploads begun before `cutoff` and never finished (S3 multipart uploads, the
        local volume's partial bodies); how many."""
        ...

    async def aclose(self) -> None: ...


# --- local ---------------------------------------------------------------------------------


class LocalStorage:
    """Files under MEDIA_ROOT (a volume every api and worker process mounts)."""

    backend = "local"

    def __init__(self, media_root: Path) -> None:
        self.root = media_root

    def _path(self, key: str) -> Path:
        if not self.root.is_dir():
            raise StorageUnavailable(f"media root {self.root} is not available")
        return media.resolve(self.root, key)

    def new_key(self, user_id: int, ext: str) -> str:
        return media.new_relative_path(user_id, ext)

    async def put(self, temp_path: Path, key: str) -> None:
        try:
            await media.store(temp_path, self.root, key)
        except OSError as exc:
            raise StorageUnavailable(f"cannot store {key}: {exc}") from exc

    async def put_bytes(self, data: bytes, key: str) -> None:
        try:
            await media.store_bytes(data, self.root, key)
        except OSError as exc:
            raise StorageUnavailable(f"cannot store {key}: {exc}") from exc

    async def delete(self, key: str) -> None:
        media.discard(media.resolve(self.root, key))

    async def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            await self.delete(key)

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            # A small file is read where it is asked for (the worker, whose loop runs one
            # job at a time): two hops to a worker thread cost more than reading it.
            small = path.read_bytes() if path.stat().st_size <= INLINE_READ_BYTES else None
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc
        if small is not None:
            if small:
                yield small
            return
        try:
            fh = await to_thread.run_sync(path.open, "rb")
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc
        try:
            while chunk := await to_thread.run_sync(fh.read, CHUNK):
                yield chunk
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc
        finally:
            fh.close()

    @asynccontextmanager
    async def local_copy(self, key: str, max_bytes: int) -> AsyncIterator[Path]:
        path = self._path(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc
        if size > max_bytes:
            raise ObjectTooLarge(f"{key} is larger than {max_bytes} bytes")
        yield path

    async def open_download(self, key: str) -> Download:
        path = self._path(key)
        if not path.is_file():
            raise ObjectMissing(key)
        return Download(size=path.stat().st_size, path=path)

    async def check(self) -> str:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK)):
            raise StorageUnavailable(f"{self.root} is not a writable folder")
        return str(self.root)

    def _old_files(self, cutoff: float) -> Iterator[list[str]]:
        batch: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            here = Path(folder)
            if here == self.root:
                dirs[:] = [d for d in dirs if d != media.INCOMING]
            for name in files:
                path = here / name
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        batch.append(path.relative_to(self.root).as_posix())
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    async def list_older_than(self, cutoff: datetime) -> AsyncIterator[list[str]]:
        if not self.root.is_dir():
            raise StorageUnavailable(f"media root {self.root} is not available")
        pages = self._old_files(cutoff.timestamp())
        while batch := await to_thread.run_sync(next, pages, None):
            yield batch

    async def abort_incomplete(self, cutoff: datetime) -> int:
        folder = self.root / media.INCOMING

        def sweep() -> int:
            removed = 0
            with contextlib.suppress(FileNotFoundError):
                for path in folder.iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        if path.stat().st_mtime < cutoff.timestamp():
                            path.unlink()
                            removed += 1
            return removed

        return await to_thread.run_sync(sweep)

    async def aclose(self) -> None:
        return None


# --- S3 ------------------------------------------------------------------------------------


def _is_missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in {"NoSuchKey", "404", "NotFound"} or status == 404


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """botocore's and aiohttp's errors as ObjectMissing / StorageUnavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
        if _is_missing(exc):
            raise ObjectMissing(what) from exc
        raise StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):
            raise StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        raise


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(size)


class S3Storage:
    """Objects in one bucket, under one prefix."""

    backend = "s3"

    def __init__(self, settings: Settings) -> None:
        if not settings.s3_bucket:
            raise ValueError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.settings = settings
        self.temp_dir = settings.media_root
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def start(self) -> S3Storage:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        s = self.settings
        config = AioConfig(
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 2, "mode": "standard"},
            # Servers that speak S3 without every newer checksum header (older MinIO, R2,
            # SeaweedFS) accept these requests; the TLS connection already protects them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Path-style for a custom endpoint (no per-bucket DNS name there).
            s3={"addressing_style": "path" if s.s3_endpoint_url else "auto"},
            max_pool_connections=20,
        )
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=s.s3_endpoint_url,
                region_name=s.s3_region,
                aws_access_key_id=s.aws_access_key_id,
                aws_secret_access_key=s.aws_secret_access_key,
                config=config,
            )
        )
        return self

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3Storage.start() was not awaited")
        return self._client

    def new_key(self, user_id: int, ext: str) -> str:
        return self.prefix + media.new_relative_path(user_id, ext)

    async def put(self, temp_path: Path, key: str) -> None:
        size = (await to_thread.run_sync(temp_path.stat)).st_size
        if size <= MULTIPART_THRESHOLD:
            await self.put_bytes(await to_thread.run_sync(temp_path.read_bytes), key)
        else:
            await self._put_multipart(temp_path, key, size)
        media.discard(temp_path)

    async def put_bytes(self, data: bytes, key: str) -> None:
        with _translated(f"storing {key}"):
            await self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentLength=len(data)
            )

    async def _put_multipart(self, temp_path: Path, key: str, size: int) -> None:
        with _translated(f"storing {key}"):
            started = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = started["UploadId"]
        try:
            parts = []
            for number, offset in enumerate(range(0, size, PART_SIZE), start=1):
                data = await to_thread.run_sync(_read_at, temp_path, offset, PART_SIZE)
                with _translated(f"storing {key}"):
                    sent = await self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ContentLength=len(data),
                    )
                del data
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})
            with _translated(f"storing {key}"):
                await self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            # Also when the request is cancelled: no incomplete upload stays behind (if the
            # storage is away now, the periodic job aborts it later).
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            raise

    async def delete(self, key: str) -> None:
        with _translated(f"deleting {key}"):
            await self.client.delete_object(Bucket=self.bucket, Key=key)

    async def delete_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            with _translated("deleting objects"):
                await self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )

    async def _body(self, key: str) -> tuple[Any, int]:
        with _translated(f"reading {key}"):
            answer = await self.client.get_object(Bucket=self.bucket, Key=key)
        return answer["Body"], int(answer["ContentLength"])

    async def _chunks(self, body: Any, key: str) -> AsyncIterator[bytes]:
        try:
            while True:
                with _translated(f"reading {key}"):
                    chunk = await body.read(CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        body, _ = await self._body(key)
        async for chunk in self._chunks(body, key):
            yield chunk

    @asynccontextmanager
    async def local_copy(self, key: str, max_bytes: int) -> AsyncIterator[Path]:
        body, size = await self._body(key)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=".copy", dir=self.temp_dir)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                if size > max_bytes:
                    body.close()
                    raise ObjectTooLarge(f"{key} is larger than {max_bytes} bytes")
                written = 0
                async for chunk in self._chunks(body, key):
                    written += len(chunk)
                    if written > max_bytes:
                        raise ObjectTooLarge(f"{key} is larger than {max_bytes} bytes")
                    await to_thread.run_sync(fh.write, chunk)
            yield path
        finally:
            media.discard(path)

    async def open_download(self, key: str) -> Download:
        body, size = await self._body(key)
        return Download(size=size, chunks=self._chunks(body, key))

    async def check(self) -> str:
        probe = f"{self.prefix}{PROBE_DIR}{uuid.uuid4().hex}"
        with _translated(f"bucket {self.bucket}"):
            await self.client.head_bucket(Bucket=self.bucket)
            await self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            await self.client.delete_object(Bucket=self.bucket, Key=probe)
        return f"bucket {self.bucket!r} reachable and writable under {self.prefix!r}"

    async def list_older_than(self, cutoff: datetime) -> AsyncIterator[list[str]]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = aiter(
            paginator.paginate(
                Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": BATCH}
            )
        )
        while True:
            with _translated(f"listing {self.bucket}"):
                page = await anext(pages, None)
            if page is None:
                return
            keys = [
                item["Key"]
                for item in page.get("Contents", [])
                if item["LastModified"].astimezone(UTC) < cutoff
            ]
            if keys:
                yield keys

    async def abort_incomplete(self, cutoff: datetime) -> int:
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        pages = aiter(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix))
        while True:
            with _translated(f"listing {self.bucket}"):
                page = await anext(pages, None)
            if page is None:
                return aborted
            for item in page.get("Uploads", []):
                if item["Initiated"].astimezone(UTC) < cutoff:
                    with _translated(f"aborting {item['Key']}"):
                        await self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=item["Key"], UploadId=item["UploadId"]
                        )
                    aborted += 1

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None


async def build(settings: Settings) -> Storage:
    """The storage STORAGE_BACKEND names, ready to use (close it with `aclose()`)."""
    if settings.storage_backend == "s3":
        return await S3Storage(settings).start()
    return LocalStorage(settings.media_root)
