"""Latency/throughput figures, CPU accounting from /proc, and the printed tables."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Figures:
    """What one measured run produced, for one kind of request."""

    name: str
    clients: int
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    errors: int = 0  # connection failures, timeouts, and any status the scenario did not expect
    status_5xx: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    generator: str = "python"
    gen_cpu: float = math.nan  # share of one core the generator used
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core, per component
    note: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "clients": self.clients,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1) if not math.isnan(self.rps) else None,
            "p50_ms": _r(self.p50_ms),
            "p95_ms": _r(self.p95_ms),
            "p99_ms": _r(self.p99_ms),
            "max_ms": _r(self.max_ms),
            "errors": self.errors,
            "status_5xx": self.status_5xx,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "generator": self.generator,
            "gen_cpu": _r(self.gen_cpu),
            "cpu": {k: _r(v) for k, v in self.cpu.items()},
            "note": self.note,
        }


def _r(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 2)


class Recorder:
    """Collects latencies and outcomes per kind of request during one measured window."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.statuses: dict[str, dict[int, int]] = {}
        self.errors: dict[str, int] = {}
        self.samples: dict[str, list[str]] = {}

    def record(self, kind: str, seconds: float, status: int, ok: bool, detail: str = "") -> None:
        self.latencies.setdefault(kind, []).append(seconds)
        by_status = self.statuses.setdefault(kind, {})
        by_status[status] = by_status.get(status, 0) + 1
        if not ok:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            samples = self.samples.setdefault(kind, [])
            if len(samples) < 3:
                samples.append(f"{status} {detail}"[:300])

    def kinds(self) -> list[str]:
        return list(self.latencies)

    def figures(self, kind: str, clients: int, seconds: float) -> Figures:
        values = sorted(self.latencies.get(kind, []))
        statuses = self.statuses.get(kind, {})
        return Figures(
            name=kind,
            clients=clients,
            requests=len(values),
            seconds=seconds,
            p50_ms=percentile(values, 50) * 1000,
            p95_ms=percentile(values, 95) * 1000,
            p99_ms=percentile(values, 99) * 1000,
            max_ms=(values[-1] * 1000) if values else math.nan,
            errors=self.errors.get(kind, 0),
            status_5xx=sum(n for s, n in statuses.items() if s >= 500),
            statuses=dict(statuses),
            note="; ".join(self.samples.get(kind, [])),
        )


# --- CPU accounting ---------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime seconds) of a live process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; it is wrapped in parentheses.
    rest = raw[raw.rindex(")") + 2 :].split()
    ppid = int(rest[1])
    ticks = int(rest[11]) + int(rest[12])
    return ppid, ticks / CLK_TCK


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None:
            children.setdefault(stat[0], []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pids_named(name: str) -> list[int]:
    found = []
    for pid in _all_pids():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == name:
            found.append(pid)
    return found


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop(), as a share of one
    core over the wall time (1.0 = one core busy; 2.0 = both cores of this machine).
    `per_process` groups are also reported process by process (`api:1`, `api:2`, ...), which
    shows how evenly the API processes share the connections."""

    def __init__(
        self, groups: Mapping[str, Iterable[int]], per_process: Iterable[str] = ()
    ) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.per_process = set(per_process)
        self._start: dict[tuple[str, int], float] = {}
        self._t0 = 0.0
        #: CPU seconds per group between start() and stop() (set by stop()).
        self.seconds: dict[str, float] = {}

    def _sample(self) -> dict[tuple[str, int], float]:
        out = {}
        for name, pids in self.groups.items():
            for pid in pids:
                stat = _proc_stat(pid)
                out[(name, pid)] = stat[1] if stat is not None else 0.0
        return out

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        end = self._sample()
        totals: dict[str, float] = dict.fromkeys(self.groups, 0.0)
        self.seconds = dict.fromkeys(self.groups, 0.0)
        detail: dict[str, list[float]] = {}
        for (name, pid), seconds in end.items():
            spent = max(0.0, seconds - self._start.get((name, pid), seconds))
            self.seconds[name] += spent
            used = spent / elapsed
            totals[name] += used
            if name in self.per_process and used > 0.005:
                detail.setdefault(name, []).append(used)
        for name, shares in detail.items():
            if len(shares) > 1:
                for i, share in enumerate(sorted(shares, reverse=True), 1):
                    totals[f"{name}:{i}"] = share
        return totals


# --- tables ---------------------------------------------------------------------------------

HEADER = (
    f"{'':2}{'load':<34} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} "
    f"{'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'5xx':>4}"
)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else (f"{value:.1f}" if value < 100 else f"{value:.0f}")


def row(fig: Figures, label: str | None = None) -> str:
    rps = "-" if math.isnan(fig.rps) else f"{fig.rps:.0f}"
    return (
        f"  {(label or fig.name)[:34]:<34} {fig.clients:>7} {fig.requests:>8} {rps:>8} "
        f"{_ms(fig.p50_ms):>8} {_ms(fig.p95_ms):>8} {_ms(fig.p99_ms):>8} {fig.errors:>6} "
        f"{fig.status_5xx:>4}"
    )


def cpu_line(fig: Figures) -> str:
    if not fig.cpu:
        return ""
    shown: list[str] = []
    for key, value in fig.cpu.items():
        name, _, index = key.partition(":")
        if index:
            continue
        shares = [v for k, v in fig.cpu.items() if k.startswith(name + ":")]
        split = f" ({'+'.join(f'{p * 100:.0f}' for p in shares)})" if shares else ""
        shown.append(f"{name} {value * 100:.0f}%{split}")
    return f"  {'':34} cpu (100% = one core): {' '.join(shown)}"
