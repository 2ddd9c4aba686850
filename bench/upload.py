"""Upload benchmark: what a large upload costs the API process, and how early an oversized one
is refused. Run with `python -m bench.upload` (or `make bench`).

It starts a real uvicorn process (SQLite, embedded broker, the gateway simulator for the
payment) in a temporary folder, then measures, each beside its baseline:

* memory: the API process's peak RSS growth (VmHWM after resetting it) while it receives a
  10 MiB upload, against the size of the upload;
* early refusal: bytes the client managed to send of a 1 GiB body before the 413 came back,
  against the 10 MiB limit, once with a chunked body (no length known up front) and once
  with a declared Content-Length.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from app.processes import ChildProcess
from app.serve import ServeOptions

PROJECT_DIR = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
LIMIT = 10 * MIB


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code < 500
    return False


@contextlib.contextmanager
def stack(folder: Path) -> Iterator[dict[str, Any]]:
    api_port, sim_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'bench.db'}",
        "CELERY_BROKER_URL": "",
        "REDIS_URL": "",
        "EMBEDDED_BROKER_DIR": str(folder / "broker"),
        "MEDIA_ROOT": str(folder / "media"),
        "MAX_UPLOAD_BYTES": str(LIMIT),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        "AAMARPAY_BASE_URL": f"http://127.0.0.1:{sim_port}",
        # The simulator knows only the public sandbox store.
        "AAMARPAY_ALLOW_SANDBOX": "true",
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "app", "migrate"],
        env=env,
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
    )
    log = folder / "processes.log"
    sim = ChildProcess(
        "simulator",
        [sys.executable, "-m", "simulator", "--port", str(sim_port), "--log-level", "warning"],
        env=env,
        cwd=PROJECT_DIR,
        log_path=log,
    )
    api = ChildProcess(
        "api",
        ServeOptions(port=api_port, log_level="warning").argv(sys.executable),
        env=env,
        cwd=PROJECT_DIR,
        log_path=log,
    )
    try:
        sim.start().wait_until(
            lambda: _answers(f"http://127.0.0.1:{sim_port}/_sim/config"), timeout=60
        )
        api.start().wait_until(lambda: _answers(f"http://127.0.0.1:{api_port}/healthz"), timeout=60)
        yield {
            "api": f"http://127.0.0.1:{api_port}",
            "sim": f"http://127.0.0.1:{sim_port}",
            "pid": api.pid,
            "port": api_port,
        }
    finally:
        for child in (api, sim):
            child.stop(grace=20)


def paid_token(urls: dict[str, Any]) -> str:
    with httpx.Client(base_url=urls["api"], timeout=30) as client:
        password = secrets.token_urlsafe(16)
        client.post("/api/auth/register/", json={"username": "bench", "password": password})
        token = client.post(
            "/api/auth/token/", data={"username": "bench", "password": password}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        tran = client.post("/api/initiate-payment/", headers=headers).json()["transaction_id"]
        fields = httpx.post(f"{urls['sim']}/_sim/pay/{tran}", json={"outcome": "success"}).json()
        paid = client.post("/api/payment/success/", data=fields["fields"])
        assert paid.json()["status"] == "success", paid.text
        return str(token)


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def memory_growth(urls: dict[str, Any], token: str, size: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    body = (b"lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
    with httpx.Client(base_url=urls["api"], timeout=60) as client:
        # Warm up: first requests import and allocate what every later one reuses.
        for _ in range(3):
            client.post("/api/upload/", files={"file": ("warm.txt", b"warm up")}, headers=headers)
        before = _status(urls["pid"])["VmRSS"]
        # Reset the peak so that VmHWM tells this upload's high-water mark.
        Path(f"/proc/{urls['pid']}/clear_refs").write_text("5")
        resp = client.post("/api/upload/", files={"file": ("big.txt", body)}, headers=headers)
        assert resp.status_code == 202, resp.text
        peak = _status(urls["pid"])["VmHWM"]
    growth = max(0, peak - before)
    return {"upload_bytes": size, "rss_before": before, "peak": peak, "growth": growth}


def _read_response(sock: socket.socket) -> str:
    sock.settimeout(10)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1", "replace")


def early_refusal(urls: dict[str, Any], token: str, *, declare_length: bool) -> dict[str, Any]:
    """Offer a 1 GiB body; count what gets sent before the answer arrives."""
    total = 1024 * MIB
    boundary = "benchboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="huge.txt"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode()
    headers = [
        "POST /api/upload/ HTTP/1.1",
        f"Host: 127.0.0.1:{urls['port']}",
        f"Authorization: Bearer {token}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
    ]
    headers.append(f"Content-Length: {total}" if declare_length else "Transfer-Encoding: chunked")
    sock = socket.create_connection(("127.0.0.1", urls["port"]))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
    sent = 0
    block = b"x" * (64 * 1024)
    status = ""
    started = time.monotonic()
    try:
        payload = head
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            data = payload or block
            payload = b""
            frame = data if declare_length else f"{len(data):x}\r\n".encode() + data + b"\r\n"
            sock.sendall(frame)
            sent += len(data)
        status = _read_response(sock)
    except OSError:
        status = _read_response(sock) or "connection closed by the server"
    finally:
        sock.close()
    return {
        "mode": "Content-Length" if declare_length else "chunked",
        "offered": total,
        "sent_before_answer": sent,
        "status": status,
        "seconds": round(time.monotonic() - started, 3),
    }


def run(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp, stack(Path(tmp)) as urls:
        token = paid_token(urls)
        memory = memory_growth(urls, token, 2 * MIB if quick else LIMIT)
        refusals = [early_refusal(urls, token, declare_length=d) for d in (False, True)]
    return {"memory": memory, "refusals": refusals, "limit": LIMIT}


def report(result: dict[str, Any]) -> str:
    m = result["memory"]
    lines = [
        "Upload: API process memory (peak RSS growth while receiving one upload)",
        f"  upload {m['upload_bytes'] / MIB:.1f} MiB -> growth {m['growth'] / MIB:.2f} MiB "
        f"(ratio to the upload {m['growth'] / m['upload_bytes']:.3f}; target < 4 MiB)",
        "Upload: bytes sent of a 1 GiB body before the refusal (limit "
        f"{result['limit'] / MIB:.0f} MiB; target < limit + 1 MiB)",
    ]
    for r in result["refusals"]:
        lines.append(
            f"  {r['mode']:<15} {r['sent_before_answer'] / MIB:8.2f} MiB sent "
            f"(x{r['sent_before_answer'] / result['limit']:.3f} of the limit) -> {r['status']} "
            f"in {r['seconds']} s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller upload")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    sys.stdout.write((json.dumps(result, indent=2) if args.json else report(result)) + "\n")


if __name__ == "__main__":
    main()
