"""Debian's `wrk` for the plain GET scenarios: a C generator that needs a fraction of the CPU
the Python one does, so that on two cores the server, not the generator, sets the pace.

A Lua script rotates the users' bearer tokens over the requests and counts 5xx answers
per thread; `done()` prints one JSON line that is parsed here.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.load.stats import Figures

SCRIPT = r"""
tokens = {%(tokens)s}
path = "%(path)s"
counter = 0
n5xx = 0
nother = 0
threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  if #tokens == 0 then
    return wrk.format("GET", path)
  end
  return wrk.format("GET", path, {["Authorization"] = tokens[(counter %% #tokens) + 1]})
end

function response(status, headers, body)
  if status >= 500 then
    n5xx = n5xx + 1
  elseif status ~= 200 then
    nother = nother + 1
  end
end

function done(summary, latency, requests)
  local s5, so = 0, 0
  for _, t in ipairs(threads) do
    s5 = s5 + (t:get("n5xx") or 0)
    so = so + (t:get("nother") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50": %%d, "p95": %%d, "p99": %%d, ' ..
    '"max": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d, ' ..
    '"n5xx": %%d, "nother": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    s5, so))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str,
    path: str,
    *,
    clients: int,
    seconds: float,
    tokens: list[str] | None = None,
    threads: int = 1,
    timeout: float = 10.0,
) -> Figures:
    """One wrk run of `clients` keep-alive connections for `seconds` (bounded: wrk stops at
    its deadline; `timeout` bounds each request)."""
    lua_tokens = ", ".join(json.dumps(f"Bearer {t}") for t in tokens or [])
    with tempfile.TemporaryDirectory(prefix="load-wrk-") as folder:
        script = Path(folder) / "load.lua"
        script.write_text(SCRIPT % {"tokens": lua_tokens, "path": path})
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = subprocess.run(
            [
                "wrk",
                "-t",
                str(min(threads, clients)),
                "-c",
                str(clients),
                "-d",
                f"{max(1, round(seconds))}s",
                "--timeout",
                f"{timeout:g}s",
                "-s",
                str(script),
                url + path,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + timeout + 60,
            check=False,
        )
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return Figures(
        name=path,
        clients=clients,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50"] / 1000,
        p95_ms=data["p95"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
        # wrk counts any status >= 400 in `status`; 5xx and other non-200 come from the script.
        errors=socket_errors + int(data["n5xx"]) + int(data["nother"]),
        status_5xx=int(data["n5xx"]),
        generator="wrk",
        gen_cpu=cpu / wall if wall > 0 else math.nan,
        note=(
            f"socket errors: connect {data['connect']}, read {data['read']}, "
            f"write {data['write']}, timeout {data['timeout']}"
            if socket_errors
            else ""
        ),
    )
