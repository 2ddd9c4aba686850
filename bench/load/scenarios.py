"""The load: users paid through the simulator, then four bounded scenarios, each beside the
same load against `GET /healthz`, and the end check against the database.

Everything here runs in one asyncio loop of the bench process (uvloop when installed); the
plain GET scenario uses `wrk` when it is installed (see wrk.py). Every loop is bounded in
time and in count, and talks only to the stack on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.load import wrk
from bench.load.http import Connection, HttpError, Response, close_all, multipart, open_all
from bench.load.stack import Stack
from bench.load.stats import CpuMeter, Figures, Recorder, pids_named

PASSWORD = "load test passphrase 0123"  # noqa: S105 - throwaway accounts
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
    "river",
    "stone",
    "cloud",
    "paper",
    "window",
    "garden",
    "silver",
    "copper",
]
FILENAME = re.compile(r"^load-(\d+)w-")


@dataclass(frozen=True)
class Plan:
    """Sizes and bounds of one run. `full()` is the measured run, `quick()` a smoke run."""

    users: int = 100
    files_per_user: int = 20
    list_clients: tuple[int, ...] = (50, 200, 500)
    list_seconds: float = 10.0
    warmup_seconds: float = 2.0
    upload_clients: int = 50
    upload_burst: int = 1000
    upload_paced_seconds: float = 10.0
    think_seconds: tuple[float, float] = (0.25, 0.75)
    worker_counts: tuple[int, ...] = (1, 2)
    dashboard_clients: int = 100
    dashboard_seconds: float = 10.0
    callback_clients: int = 200
    callback_rounds: int = 5
    #: `uploads-plain`: this many uploads, `plain_clients` at a time, each on a new connection.
    plain_uploads: int = 500
    plain_clients: int = 20
    setup_parallel: int = 8
    seed_parallel: int = 20
    drain_timeout: float = 180.0
    request_timeout: float = 30.0
    #: A scenario's time bound on top of its nominal duration (stragglers, drains).
    max_scenario_seconds: float = 300.0

    @classmethod
    def full(cls) -> Plan:
        return cls()

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            users=10,
            files_per_user=20,
            list_clients=(50, 200, 500),
            list_seconds=2.0,
            warmup_seconds=0.5,
            upload_burst=100,
            upload_paced_seconds=2.0,
            dashboard_clients=100,
            dashboard_seconds=2.0,
            callback_rounds=1,
            plain_uploads=300,
            drain_timeout=120.0,
        )

    @classmethod
    def tiny(cls) -> Plan:
        """For the smoke test: every code path, at sizes a SQLite stack does in seconds."""
        return cls(
            users=4,
            files_per_user=3,
            list_clients=(10, 20),
            list_seconds=1.0,
            warmup_seconds=0.3,
            upload_clients=8,
            upload_burst=16,
            upload_paced_seconds=1.5,
            think_seconds=(0.05, 0.15),
            worker_counts=(1, 2),
            dashboard_clients=8,
            dashboard_seconds=1.5,
            callback_clients=20,
            callback_rounds=1,
            plain_uploads=24,
            plain_clients=8,
            setup_parallel=4,
            seed_parallel=4,
            drain_timeout=90.0,
        )


@dataclass
class Account:
    username: str
    user_id: int
    token: str
    paid: bool = False


@dataclass
class Section:
    title: str
    rows: list[tuple[str, Figures]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass
class Results:
    sections: list[Section] = field(default_factory=list)
    check: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Headline figures by name (`uploads-plain`), for the side-by-side with a baseline.
    metrics: dict[str, float] = field(default_factory=dict)

    def figures(self) -> list[Figures]:
        return [fig for section in self.sections for _, fig in section.rows]

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.figures())

    @property
    def status_5xx(self) -> int:
        return sum(f.status_5xx for f in self.figures())

    @property
    def ok(self) -> bool:
        return not self.problems and self.errors == 0 and self.status_5xx == 0


# --- requests -------------------------------------------------------------------------------


async def timed(
    rec: Recorder,
    kind: str,
    conn: Connection,
    method: str,
    path: str,
    *,
    expect: Sequence[int] = (200,),
    **kwargs: Any,
) -> Response | None:
    started = time.perf_counter()
    try:
        resp = await conn.request(method, path, **kwargs)
    except HttpError as exc:
        rec.record(kind, time.perf_counter() - started, 0, False, str(exc))
        return None
    ok = resp.status in expect
    rec.record(
        kind,
        time.perf_counter() - started,
        resp.status,
        ok,
        "" if ok else resp.body[:200].decode("utf-8", "replace"),
    )
    return resp


async def closed_loop(
    conns: Sequence[Connection],
    seconds: float,
    body: Callable[[int, Connection, Recorder], Awaitable[None]],
    *,
    max_iterations: int | None = None,
) -> tuple[Recorder, float]:
    """Every connection is one client repeating `body` until the deadline (or the shared
    iteration budget runs out). Returns what was recorded and the elapsed time."""
    rec = Recorder()
    deadline = time.monotonic() + seconds
    budget = [max_iterations]

    async def client(index: int, conn: Connection) -> None:
        while time.monotonic() < deadline:
            if budget[0] is not None:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            await body(index, conn, rec)

    started = time.monotonic()
    await asyncio.gather(*(client(i, c) for i, c in enumerate(conns)))
    return rec, time.monotonic() - started


def text_file(rng: random.Random, index: int) -> tuple[str, bytes, int]:
    """A small .txt upload whose word count is in its name (checked at the end)."""
    words = rng.randint(40, 300)
    content = " ".join(rng.choice(WORDS) for _ in range(words))
    lines = re.sub(r"((?:\S+ ){12})", r"\1\n", content)
    return f"load-{words}w-{index}.txt", lines.encode(), words


# --- the run --------------------------------------------------------------------------------


class LoadRun:
    def __init__(
        self,
        stack: Stack,
        plan: Plan,
        *,
        generator: str = "auto",
        out: Callable[[str], None] = print,
    ) -> None:
        self.stack = stack
        self.plan = plan
        self.out = out
        self.use_wrk = generator == "wrk" or (generator == "auto" and wrk.available())
        if generator == "wrk" and not wrk.available():
            raise RuntimeError("--generator wrk: wrk is not installed (apt-get install wrk)")
        url = urlsplit(stack.api_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.results = Results()
        self.accounts: list[Account] = []
        self.spare: list[Account] = []  # unpaid, for the callback scenario
        #: upload id -> expected word count, for every 202 the API gave.
        self.uploads: dict[int, int] = {}
        #: uploads accepted through the dashboard form (303 ?notice=uploaded): no id seen.
        self.dashboard_uploads = 0
        self.paid_transactions: list[str] = []
        self.rng = random.Random(7)  # noqa: S311 - test data
        self._file_index = 0
        self.engine: AsyncEngine | None = None

    # --- helpers -----------------------------------------------------------------------

    def conns(self, n: int) -> list[Connection]:
        return [
            Connection(self.host, self.port, timeout=self.plan.request_timeout) for _ in range(n)
        ]

    def next_file(self) -> tuple[str, bytes, int]:
        self._file_index += 1
        return text_file(self.rng, self._file_index)

    def meter(self) -> CpuMeter:
        groups: dict[str, list[int]] = {
            "api": self.stack.pids("api"),
            "worker": self.stack.pids("worker"),
        }
        if self.engine is not None and self.engine.url.get_backend_name() == "mysql":
            groups["mariadb"] = pids_named("mariadbd") or pids_named("mysqld")
        if self.stack.config.broker_url or self.stack.config.redis_url:
            groups["redis"] = pids_named("redis-server")
        import os

        groups["generator"] = [os.getpid()]
        return CpuMeter(groups, per_process=["api", "worker"])

    async def measure(
        self,
        conns: Sequence[Connection],
        body: Callable[[int, Connection, Recorder], Awaitable[None]],
        *,
        seconds: float,
        warmup: float | None = None,
        max_iterations: int | None = None,
    ) -> tuple[Recorder, float, dict[str, float]]:
        await open_all(conns)
        if warmup is None:
            warmup = self.plan.warmup_seconds
        if warmup > 0:
            await closed_loop(conns, warmup, body)
        meter = self.meter()
        meter.start()
        rec, elapsed = await closed_loop(conns, seconds, body, max_iterations=max_iterations)
        cpu = meter.stop()
        return rec, elapsed, cpu

    async def upload(
        self, rec: Recorder, kind: str, conn: Connection, token: str
    ) -> tuple[int, float] | None:
        """POST /api/upload/: (upload id, wall-clock time the request was sent)."""
        name, content, words = self.next_file()
        content_type, body = multipart("file", name, content, "text/plain")
        sent = time.time()
        resp = await timed(
            rec,
            kind,
            conn,
            "POST",
            "/api/upload/",
            expect=(202,),
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
            body=body,
        )
        if resp is None or resp.status != 202:
            return None
        upload_id = int(json.loads(resp.body)["id"])
        self.uploads[upload_id] = words
        return upload_id, sent

    def section(self, title: str) -> Section:
        section = Section(title)
        self.results.sections.append(section)
        return section

    def ratio(self, section: Section, what: str, fig: Figures, health: Figures) -> None:
        """The load's throughput as a share of /healthz's under the same load."""
        value = fig.rps / health.rps if health.rps else math.nan
        line = f"  {'':34} {what}/healthz throughput: {value:.2f}"
        section.lines.append(line)
        self.out(line)

    def add(self, section: Section, label: str, fig: Figures) -> None:
        from bench.load.stats import cpu_line, row

        section.rows.append((label, fig))
        self.out(row(fig, label))
        line = cpu_line(fig)
        if line:
            self.out(line)
        if fig.errors or fig.status_5xx:
            self.out(f"  {'':34} ! {fig.errors} errors: {fig.note or fig.statuses}")

    # --- database ----------------------------------------------------------------------

    async def open_db(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.stack.database_url.startswith("mysql"):
            kwargs = {"pool_size": 3, "isolation_level": "READ COMMITTED"}
        self.engine = create_async_engine(self.stack.database_url, **kwargs)

    async def close_db(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()

    async def upload_rows(self, ids: Sequence[int]) -> dict[int, tuple[str, datetime | None]]:
        from app.models import FileUpload

        assert self.engine is not None
        found: dict[int, tuple[str, datetime | None]] = {}
        ids = list(ids)
        async with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                result = await conn.execute(
                    select(FileUpload.id, FileUpload.status, FileUpload.completed_at).where(
                        FileUpload.id.in_(chunk)
                    )
                )
                for upload_id, status, completed_at in result:
                    found[upload_id] = (
                        str(status.value if hasattr(status, "value") else status),
                        completed_at,
                    )
            await conn.rollback()
        return found

    async def wait_settled(
        self, ids: Sequence[int], timeout: float
    ) -> dict[int, tuple[str, datetime | None]]:
        """Poll until none of `ids` is `processing` (bounded); their final rows."""
        deadline = time.monotonic() + timeout
        pending = set(ids)
        done: dict[int, tuple[str, datetime | None]] = {}
        while pending and time.monotonic() < deadline:
            rows = await self.upload_rows(sorted(pending))
            for upload_id, (status, completed_at) in rows.items():
                if status != "processing":
                    done[upload_id] = (status, completed_at)
                    pending.discard(upload_id)
            if pending:
                await asyncio.sleep(0.1)
        if pending:
            self.results.problems.append(
                f"{len(pending)} uploads still processing after {timeout:.0f}s"
            )
        return done

    # --- setup -------------------------------------------------------------------------

    async def setup(self) -> None:
        plan = self.plan
        started = time.monotonic()
        n_total = plan.users + plan.callback_rounds
        self.out(
            f"setup: {plan.users} paid users with {plan.files_per_user} files each, "
            f"{plan.callback_rounds} unpaid users for the callback scenario"
        )
        rec = Recorder()
        conns = self.conns(plan.setup_parallel)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n_total):
            queue.put_nowait(i)
        accounts: dict[int, Account] = {}
        prefix = f"load{int(time.time()) % 100000}"

        async def make_user(conn: Connection) -> None:
            while not queue.empty():
                i = queue.get_nowait()
                username = f"{prefix}u{i}"
                resp = await timed(
                    rec,
                    "register",
                    conn,
                    "POST",
                    "/api/auth/register/",
                    expect=(201,),
                    headers={"Content-Type": "application/json"},
                    body=json.dumps({"username": username, "password": PASSWORD}).encode(),
                )
                if resp is None or resp.status != 201:
                    continue
                user_id = int(json.loads(resp.body)["id"])
                resp = await timed(
                    rec,
                    "token",
                    conn,
                    "POST",
                    "/api/auth/token/",
                    form={"username": username, "password": PASSWORD},
                )
                if resp is None or resp.status != 200:
                    continue
                accounts[i] = Account(username, user_id, json.loads(resp.body)["access_token"])

        await asyncio.gather(*(make_user(c) for c in conns))
        ordered = [accounts[i] for i in sorted(accounts)]
        self.accounts = ordered[: plan.users]
        self.spare = ordered[plan.users :]

        sim = Connection("127.0.0.1", urlsplit(self.stack.sim_url).port or 80, timeout=30)
        pay_queue: asyncio.Queue[Account] = asyncio.Queue()
        for account in self.accounts:
            pay_queue.put_nowait(account)

        async def pay(conn: Connection, sim_conn: Connection) -> None:
            while not pay_queue.empty():
                account = pay_queue.get_nowait()
                tran_id = await self.pay_for(rec, conn, sim_conn, account)
                if tran_id is None:
                    continue
                fields, method, path = tran_id
                resp = await self.send_callback(rec, "payment callback", conn, method, path, fields)
                if resp is not None and resp.status == 200:
                    account.paid = True
                    self.paid_transactions.append(fields.get("mer_txnid", ""))

        sims = [Connection(sim.host, sim.port, timeout=30) for _ in conns]
        await asyncio.gather(*(pay(c, s) for c, s in zip(conns, sims, strict=True)))
        await close_all(sims)

        # Seed: each paid user's list gets `files_per_user` rows, through the real upload.
        seed_conns = self.conns(plan.seed_parallel)
        jobs: asyncio.Queue[Account] = asyncio.Queue()
        for _ in range(plan.files_per_user):
            for account in self.accounts:
                jobs.put_nowait(account)
        seeded: list[int] = []

        async def seed(conn: Connection) -> None:
            while not jobs.empty():
                account = jobs.get_nowait()
                got = await self.upload(rec, "seed upload", conn, account.token)
                if got:
                    seeded.append(got[0])

        await asyncio.gather(*(seed(c) for c in seed_conns))
        await close_all([*conns, *seed_conns])
        await self.wait_settled(seeded, plan.drain_timeout)
        bad = {k: n for k, n in rec.errors.items() if n}
        if bad or len(self.accounts) < plan.users or not all(a.paid for a in self.accounts):
            samples = {k: rec.samples.get(k) for k in bad}
            raise RuntimeError(f"setup failed: errors {bad} {samples}")
        self.out(
            f"setup done in {time.monotonic() - started:.1f}s: {len(self.accounts)} users paid "
            f"through the simulator, {len(seeded)} files uploaded and counted"
        )

    async def pay_for(
        self, rec: Recorder, conn: Connection, sim: Connection, account: Account
    ) -> tuple[dict[str, str], str, str] | None:
        """Initiate at the API, pay at the simulator: (callback fields, method, path)."""
        resp = await timed(
            rec,
            "initiate payment",
            conn,
            "POST",
            "/api/initiate-payment/",
            expect=(201,),
            headers={"Authorization": f"Bearer {account.token}"},
        )
        if resp is None or resp.status != 201:
            return None
        tran_id = json.loads(resp.body)["transaction_id"]
        resp = await timed(
            rec,
            "simulator pay",
            sim,
            "POST",
            f"/_sim/pay/{tran_id}",
            headers={"Content-Type": "application/json"},
            body=json.dumps({"outcome": "success", "method": "bkash"}).encode(),
        )
        if resp is None or resp.status != 200:
            return None
        data = json.loads(resp.body)
        fields = {k: "" if v is None else str(v) for k, v in data["fields"].items()}
        return (
            fields,
            str(data.get("http_method", "POST")).upper(),
            urlsplit(data["callback_url"]).path,
        )

    async def send_callback(
        self,
        rec: Recorder,
        kind: str,
        conn: Connection,
        method: str,
        path: str,
        fields: dict[str, str],
    ) -> Response | None:
        headers = {"Accept": "application/json"}
        if method == "GET":
            return await timed(
                rec, kind, conn, "GET", f"{path}?{urlencode(fields)}", headers=headers
            )
        return await timed(rec, kind, conn, "POST", path, headers=headers, form=fields)

    # --- scenario 1: GET /api/files/ ---------------------------------------------------

    async def scenario_files(self) -> None:
        plan = self.plan
        section = self.section("1. GET /api/files/ (20 rows, authenticated)")
        gen = "wrk" if self.use_wrk else "python asyncio client"
        self.out(f"\n{section.title}  [generator: {gen}, {plan.list_seconds:g}s per run]")
        from bench.load.stats import HEADER

        self.out(HEADER)
        tokens = [a.token for a in self.accounts]
        for clients in plan.list_clients:
            health = await self.get_load("/healthz", clients, [])
            files = await self.get_load("/api/files/", clients, tokens)
            self.add(section, f"GET /api/files/ @{clients}", files)
            self.add(section, f"GET /healthz @{clients} (same load)", health)
            self.ratio(section, "files", files, health)

    async def get_load(self, path: str, clients: int, tokens: list[str]) -> Figures:
        plan = self.plan
        if self.use_wrk:
            meter = None
            if plan.warmup_seconds > 0:
                await asyncio.to_thread(
                    wrk.run,
                    self.stack.api_url,
                    path,
                    clients=clients,
                    seconds=max(1.0, plan.warmup_seconds),
                    tokens=tokens,
                )
            meter = self.meter()
            meter.start()
            fig = await asyncio.to_thread(
                wrk.run,
                self.stack.api_url,
                path,
                clients=clients,
                seconds=plan.list_seconds,
                tokens=tokens,
            )
            fig.cpu = meter.stop()
            fig.cpu.pop("generator", None)
            fig.cpu["wrk"] = fig.gen_cpu
            return fig

        headers = [{"Authorization": f"Bearer {t}"} for t in tokens] or [{}]

        async def body(i: int, conn: Connection, rec: Recorder) -> None:
            await timed(rec, path, conn, "GET", path, headers=headers[i % len(headers)])

        conns = self.conns(clients)
        try:
            rec, elapsed, cpu = await self.measure(conns, body, seconds=plan.list_seconds)
        finally:
            await close_all(conns)
        fig = rec.figures(path, clients, elapsed)
        fig.cpu = cpu
        fig.gen_cpu = cpu.get("generator", math.nan)
        return fig

    async def healthz_closed_loop(self, clients: int, seconds: float) -> Figures:
        async def body(i: int, conn: Connection, rec: Recorder) -> None:
            await timed(rec, "/healthz", conn, "GET", "/healthz")

        conns = self.conns(clients)
        try:
            rec, elapsed, cpu = await self.measure(conns, body, seconds=seconds)
        finally:
            await close_all(conns)
        fig = rec.figures("/healthz", clients, elapsed)
        fig.cpu = cpu
        return fig

    # --- scenario 2: uploads -----------------------------------------------------------

    async def scenario_uploads(self) -> None:
        plan = self.plan
        clients = plan.upload_clients
        section = self.section(f"2. small .txt uploads, {clients} clients")
        lo, hi = plan.think_seconds
        self.out(
            f"\n{section.title}  [burst: {plan.upload_burst} uploads back to back, then "
            f"drained; paced: each client uploads, waits for `completed`, pauses "
            f"{lo:g}-{hi:g}s, for {plan.upload_paced_seconds:g}s]"
        )
        from bench.load.stats import HEADER

        self.out(HEADER)
        bursts: list[tuple[str, Figures]] = []
        for workers in plan.worker_counts:
            await asyncio.to_thread(self.stack.start_worker, workers)
            await self.warm_worker(workers)
            label = f"{workers} worker process{'es' if workers > 1 else ''}"
            burst, completed = await self.upload_burst(clients)
            self.add(section, f"POST /api/upload/ burst ({label})", burst)
            self.add(section, f"  -> completed, files/s ({label})", completed)
            paced = await self.upload_paced(clients)
            self.add(section, f"upload->completed paced ({label})", paced)
            bursts.append((label, burst))
        health = await self.healthz_closed_loop(clients, plan.upload_paced_seconds)
        self.add(section, f"GET /healthz @{clients} (same load)", health)
        for label, burst in bursts:
            self.ratio(section, f"uploads ({label})", burst, health)

    async def warm_worker(self, workers: int) -> None:
        """A few uploads so that every pool process has its engine and loop."""
        rec = Recorder()
        conns = self.conns(workers * 2)
        got = await asyncio.gather(
            *(
                self.upload(rec, "warm-up", c, self.accounts[i % len(self.accounts)].token)
                for i, c in enumerate(conns)
            )
        )
        await close_all(conns)
        await self.wait_settled([g[0] for g in got if g], self.plan.drain_timeout)

    async def upload_burst(self, clients: int) -> tuple[Figures, Figures]:
        plan = self.plan
        sent: dict[int, float] = {}

        async def body(i: int, conn: Connection, rec: Recorder) -> None:
            account = self.accounts[i % len(self.accounts)]
            got = await self.upload(rec, "upload", conn, account.token)
            if got:
                sent[got[0]] = got[1]

        conns = self.conns(clients)
        try:
            rec, elapsed, cpu = await self.measure(
                conns,
                body,
                seconds=plan.max_scenario_seconds,
                warmup=0,
                max_iterations=plan.upload_burst,
            )
        finally:
            await close_all(conns)
        meter = self.meter()
        meter.start()
        done = await self.wait_settled(list(sent), plan.drain_timeout)
        drain_cpu = meter.stop()
        fig = rec.figures("upload", clients, elapsed)
        fig.cpu = cpu
        latencies = sorted(
            finished.timestamp() - t
            for k, t in sent.items()
            if (finished := done.get(k, ("", None))[1]) is not None
        )
        completed = self.latency_figures("completed", clients, latencies)
        if sent and done:
            first = min(sent.values())
            last = max(c.timestamp() for _, c in done.values() if c)
            completed.seconds = max(last - first, 1e-6)
        completed.errors = sum(1 for k in sent if done.get(k, ("", None))[0] != "completed")
        completed.cpu = drain_cpu
        return fig, completed

    def latency_figures(self, name: str, clients: int, latencies: list[float]) -> Figures:
        from bench.load.stats import percentile

        return Figures(
            name=name,
            clients=clients,
            requests=len(latencies),
            p50_ms=percentile(latencies, 50) * 1000,
            p95_ms=percentile(latencies, 95) * 1000,
            p99_ms=percentile(latencies, 99) * 1000,
            max_ms=(latencies[-1] * 1000) if latencies else math.nan,
        )

    async def upload_paced(self, clients: int) -> Figures:
        plan = self.plan
        lo, hi = plan.think_seconds
        latencies: list[float] = []
        failures: list[str] = []
        poller = CompletionPoller(self)
        poll_task = asyncio.create_task(poller.run())

        async def body(i: int, conn: Connection, rec: Recorder) -> None:
            account = self.accounts[i % len(self.accounts)]
            got = await self.upload(rec, "upload", conn, account.token)
            if got:
                try:
                    status, completed_at = await asyncio.wait_for(
                        poller.wait(got[0]), plan.drain_timeout
                    )
                except TimeoutError:
                    failures.append(f"upload {got[0]} not settled")
                    return
                if status != "completed" or completed_at is None:
                    failures.append(f"upload {got[0]} {status}")
                else:
                    latencies.append(completed_at.timestamp() - got[1])
            await asyncio.sleep(self.rng.uniform(lo, hi))

        conns = self.conns(clients)
        try:
            rec, elapsed, cpu = await self.measure(
                conns, body, seconds=plan.upload_paced_seconds, warmup=0
            )
        finally:
            await close_all(conns)
            poller.stop()
            await poll_task
        fig = self.latency_figures("upload->completed", clients, sorted(latencies))
        fig.seconds = elapsed
        upload_fig = rec.figures("upload", clients, elapsed)
        fig.errors = upload_fig.errors + len(failures)
        fig.status_5xx = upload_fig.status_5xx
        fig.statuses = upload_fig.statuses
        fig.note = "; ".join([upload_fig.note, *failures[:3]]).strip("; ")
        fig.cpu = cpu
        return fig

    # --- scenario 5: uploads as plain clients send them --------------------------------

    async def scenario_uploads_plain(self) -> None:
        """`plain_uploads` small .txt uploads, `plain_clients` at a time, each on a NEW
        connection (as curl, requests or a browser form without keep-alive do), through to
        `completed`; the API's and the worker's CPU seconds per accepted upload."""
        plan = self.plan
        clients, total = plan.plain_clients, plan.plain_uploads
        section = self.section(f"5. plain uploads, {clients} clients, a new connection each")
        self.out(
            f"\n{section.title}  [{total} small .txt uploads back to back, each on a new "
            f"connection, then drained to `completed`; CPU from /proc of the process trees]"
        )
        from bench.load.stats import HEADER

        self.out(HEADER)
        await asyncio.to_thread(self.stack.start_worker, self.stack.config.worker_concurrency)
        await self.warm_worker(self.stack.config.worker_concurrency)
        sent: dict[int, float] = {}

        async def body(i: int, _unused: Connection, rec: Recorder) -> None:
            account = self.accounts[i % len(self.accounts)]
            conn = self.conns(1)[0]
            try:
                got = await self.upload(rec, "upload", conn, account.token)
            finally:
                await conn.close()
            if got:
                sent[got[0]] = got[1]

        meter = self.meter()
        meter.start()
        rec, elapsed = await closed_loop(
            self.conns(clients), plan.max_scenario_seconds, body, max_iterations=total
        )
        done = await self.wait_settled(list(sent), plan.drain_timeout)
        cpu = meter.stop()
        fig = rec.figures("upload", clients, elapsed)
        fig.cpu = {k: v for k, v in cpu.items() if ":" not in k}
        self.add(section, "POST /api/upload/ (new connection)", fig)
        latencies = sorted(
            finished.timestamp() - t
            for k, t in sent.items()
            if (finished := done.get(k, ("", None))[1]) is not None
        )
        completed = self.latency_figures("completed", clients, latencies)
        completed.seconds = elapsed
        completed.errors = sum(1 for k in sent if done.get(k, ("", None))[0] != "completed")
        self.add(section, "  upload -> completed", completed)
        accepted = max(len(sent), 1)
        per_upload = {k: v / accepted * 1000 for k, v in meter.seconds.items()}
        line = (
            f"  {'':34} CPU ms per accepted upload: "
            + " ".join(f"{k} {v:.1f}" for k, v in per_upload.items())
            + f" (api+worker {per_upload['api'] + per_upload['worker']:.1f})"
        )
        section.lines.append(line)
        self.out(line)
        self.results.metrics.update(
            {
                "uploads/s": fig.rps,
                "upload p50 ms": fig.p50_ms,
                "upload p99 ms": fig.p99_ms,
                "completed p50 ms": completed.p50_ms,
                "completed p99 ms": completed.p99_ms,
                "api cpu ms/upload": per_upload["api"],
                "worker cpu ms/upload": per_upload["worker"],
                "api+worker cpu ms/upload": per_upload["api"] + per_upload["worker"],
                **{
                    f"{k} cpu ms/upload": v
                    for k, v in per_upload.items()
                    if k not in ("api", "worker")
                },
            }
        )

    # --- scenario 3: dashboard session -------------------------------------------------

    async def scenario_dashboard(self) -> None:
        plan = self.plan
        clients = plan.dashboard_clients
        section = self.section(f"3. dashboard session, {clients} users")
        self.out(
            f"\n{section.title}  [each: sign in once, then login page, dashboard, upload "
            f"form post (303), dashboard again; {plan.dashboard_seconds:g}s]"
        )
        from bench.load.stats import HEADER

        self.out(HEADER)
        conns = self.conns(clients)
        await open_all(conns)
        sign_in = Recorder()

        async def login(i: int, conn: Connection) -> None:
            account = self.accounts[i % len(self.accounts)]
            await timed(sign_in, "sign-in", conn, "GET", "/login")
            token = conn.cookies.get("csrftoken", "")
            await timed(
                sign_in,
                "sign-in",
                conn,
                "POST",
                "/login",
                expect=(303,),
                form={"username": account.username, "password": PASSWORD, "csrf_token": token},
            )

        meter = self.meter()
        meter.start()
        started = time.monotonic()
        await asyncio.gather(*(login(i, c) for i, c in enumerate(conns)))
        fig = sign_in.figures("sign-in", clients, time.monotonic() - started)
        fig.cpu = meter.stop()
        self.add(section, "GET+POST /login (argon2) once", fig)

        uploaded = [0]

        async def body(i: int, conn: Connection, rec: Recorder) -> None:
            await timed(rec, "GET /login", conn, "GET", "/login")
            await timed(rec, "GET /dashboard/", conn, "GET", "/dashboard/")
            name, content, _ = self.next_file()
            content_type, payload = multipart("file", name, content, "text/plain")
            token = conn.cookies.get("csrftoken", "")
            resp = await timed(
                rec,
                "POST /dashboard/upload",
                conn,
                "POST",
                "/dashboard/upload",
                expect=(303,),
                # The token never goes in a URL; a script sends it as this header.
                headers={"Content-Type": content_type, "X-CSRF-Token": token},
                body=payload,
            )
            if resp is None or resp.status != 303:
                return
            location = resp.header("location") or ""
            if location.endswith("notice=uploaded"):
                uploaded[0] += 1
            else:
                rec.record("POST /dashboard/upload", 0.0, 303, False, f"to {location}")
            await timed(rec, "GET /dashboard/", conn, "GET", location or "/dashboard/")

        try:
            rec, elapsed, cpu = await self.measure(
                conns, body, seconds=plan.dashboard_seconds, warmup=0
            )
        finally:
            await close_all(conns)
        self.dashboard_uploads += uploaded[0]
        total = Recorder()
        for kind in rec.kinds():
            for latency in rec.latencies[kind]:
                total.latencies.setdefault("all", []).append(latency)
            for status, n in rec.statuses[kind].items():
                total.statuses.setdefault("all", {})
                total.statuses["all"][status] = total.statuses["all"].get(status, 0) + n
            total.errors["all"] = total.errors.get("all", 0) + rec.errors.get(kind, 0)
        all_fig = total.figures("all", clients, elapsed)
        all_fig.cpu = cpu
        self.add(section, "all session requests", all_fig)
        for kind in rec.kinds():
            self.add(section, f"  {kind}", rec.figures(kind, clients, elapsed))
        health = await self.healthz_closed_loop(clients, plan.dashboard_seconds)
        self.add(section, f"GET /healthz @{clients} (same load)", health)
        self.ratio(section, "session", all_fig, health)

    # --- scenario 4: duplicate payment callbacks ---------------------------------------

    async def scenario_callbacks(self) -> None:
        plan = self.plan
        clients = plan.callback_clients
        section = self.section(f"4. {clients} concurrent duplicate payment callbacks")
        self.out(
            f"\n{section.title}  [{plan.callback_rounds} payments, each confirmed by "
            f"{clients} identical success callbacks sent at once]"
        )
        from bench.load.stats import HEADER

        self.out(HEADER)
        rec = Recorder()
        health = Recorder()
        elapsed = 0.0
        health_elapsed = 0.0
        cpu_sum: dict[str, float] = {}
        setup_rec = Recorder()
        setup_conn = self.conns(1)[0]
        sim = Connection("127.0.0.1", urlsplit(self.stack.sim_url).port or 80, timeout=30)
        for account in self.spare[: plan.callback_rounds]:
            paid = await self.pay_for(setup_rec, setup_conn, sim, account)
            if paid is None:
                self.results.problems.append(f"could not start a payment for {account.username}")
                continue
            fields, method, path = paid
            self.paid_transactions.append(fields.get("mer_txnid", ""))
            account.paid = True

            async def callback(
                i: int,
                conn: Connection,
                r: Recorder,
                method: str = method,
                path: str = path,
                fields: dict[str, str] = fields,
            ) -> None:
                await self.send_callback(r, "callback", conn, method, path, fields)

            took, cpu = await self.burst(clients, callback, rec)
            elapsed += took
            for k, v in cpu.items():
                cpu_sum[k] = cpu_sum.get(k, 0.0) + v * took

            async def healthz(i: int, conn: Connection, r: Recorder) -> None:
                await timed(r, "healthz", conn, "GET", "/healthz")

            took, _ = await self.burst(clients, healthz, health)
            health_elapsed += took
        await close_all([setup_conn, sim])
        if setup_rec.errors:
            self.results.problems.append(f"callback setup errors: {setup_rec.samples}")
        fig = rec.figures("callback", clients, elapsed)
        fig.cpu = {k: v / elapsed for k, v in cpu_sum.items()} if elapsed else {}
        self.add(section, "GET|POST /api/payment/success/", fig)
        health_fig = health.figures("healthz", clients, health_elapsed)
        self.add(section, f"GET /healthz @{clients} (same load)", health_fig)
        self.ratio(section, "callbacks", fig, health_fig)

    async def burst(
        self,
        clients: int,
        body: Callable[[int, Connection, Recorder], Awaitable[None]],
        rec: Recorder,
    ) -> tuple[float, dict[str, float]]:
        """`clients` connections, opened first, each sending one request at the same moment."""
        conns = self.conns(clients)
        try:
            await open_all(conns)
            gate = asyncio.Event()

            async def one(i: int, conn: Connection) -> None:
                await gate.wait()
                await body(i, conn, rec)

            tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(conns)]
            await asyncio.sleep(0.05)
            meter = self.meter()
            meter.start()
            started = time.monotonic()
            gate.set()
            await asyncio.gather(*tasks)
            return time.monotonic() - started, meter.stop()
        finally:
            await close_all(conns)

    # --- end check ---------------------------------------------------------------------

    async def end_check(self) -> None:
        from app.models import (
            Action,
            ActivityLog,
            FileUpload,
            PaymentStatus,
            PaymentTransaction,
        )

        assert self.engine is not None
        # Let the last dashboard uploads finish.
        async with self.engine.connect() as conn:
            ids = list((await conn.execute(select(FileUpload.id))).scalars())
            await conn.rollback()
        await self.wait_settled(ids, self.plan.drain_timeout)
        async with self.engine.connect() as conn:
            uploads = (
                await conn.execute(
                    select(
                        FileUpload.id,
                        FileUpload.status,
                        FileUpload.word_count,
                        FileUpload.filename,
                        FileUpload.attempts,
                    )
                )
            ).all()
            activity = (
                await conn.execute(
                    select(ActivityLog.action, ActivityLog.metadata_).where(
                        ActivityLog.action.in_(
                            [
                                Action.FILE_PROCESSED.value,
                                Action.FILE_PROCESSING_FAILED.value,
                                Action.PAYMENT_SUCCEEDED.value,
                            ]
                        )
                    )
                )
            ).all()
            payments = (
                await conn.execute(
                    select(PaymentTransaction.transaction_id, PaymentTransaction.status)
                )
            ).all()
            users_paid = await conn.scalar(
                select(func.count(func.distinct(PaymentTransaction.user_id))).where(
                    PaymentTransaction.status == PaymentStatus.SUCCESS
                )
            )
            await conn.rollback()

        processed: dict[int, int] = {}
        failed_logs = 0
        succeeded: dict[str, int] = {}
        for action, meta in activity:
            meta = meta if isinstance(meta, dict) else json.loads(meta)
            if action == Action.FILE_PROCESSED.value:
                fid = int(meta["file_id"])
                processed[fid] = processed.get(fid, 0) + 1
            elif action == Action.FILE_PROCESSING_FAILED.value:
                failed_logs += 1
            else:
                tid = str(meta.get("transaction_id"))
                succeeded[tid] = succeeded.get(tid, 0) + 1

        made = len(self.uploads) + self.dashboard_uploads
        rows = {row.id: row for row in uploads}
        status = {
            s: sum(1 for r in uploads if str(getattr(r.status, "value", r.status)) == s)
            for s in ("processing", "completed", "failed")
        }
        once = sum(1 for r in uploads if processed.get(r.id) == 1)
        duplicated = sum(1 for n in processed.values() if n > 1)
        orphans = sum(1 for fid in processed if fid not in rows)
        missing_rows = sum(1 for fid in self.uploads if fid not in rows)
        wrong = 0
        for r in uploads:
            m = FILENAME.match(r.filename)
            if m is None or r.word_count != int(m.group(1)):
                wrong += 1
        reruns = sum(1 for r in uploads if (r.attempts or 0) > 1)
        tx_success = {t for t, s in payments if str(getattr(s, "value", s)) == "success"}
        expected_tx = {t for t in self.paid_transactions if t}
        check = {
            "uploads_made": made,
            "rows": len(rows),
            "completed": status["completed"],
            "processing": status["processing"],
            "failed": status["failed"],
            "completed_exactly_once": once,
            "duplicated": duplicated,
            "lost": made - once if made >= once else 0,
            "missing_rows": missing_rows,
            "orphan_activity": orphans,
            "failed_activity": failed_logs,
            "wrong_word_count": wrong,
            "jobs_started_more_than_once": reruns,
            "payments_expected": len(expected_tx),
            "payments_success": len(tx_success),
            "payment_succeeded_logs": sum(succeeded.values()),
            "payments_logged_more_than_once": sum(1 for n in succeeded.values() if n > 1),
            "users_paid": int(users_paid or 0),
        }
        self.results.check = check
        problems = self.results.problems
        if len(rows) != made:
            problems.append(f"{made} uploads accepted but {len(rows)} rows in the database")
        if once != len(rows) or status["completed"] != len(rows):
            problems.append(
                f"{len(rows)} uploads, {status['completed']} completed, {once} logged exactly once"
            )
        if duplicated or orphans or failed_logs or missing_rows or wrong:
            problems.append(
                f"duplicated {duplicated}, orphan logs {orphans}, failed logs {failed_logs}, "
                f"missing rows {missing_rows}, wrong word counts {wrong}"
            )
        if not expected_tx <= tx_success or len(tx_success) != len(expected_tx):
            problems.append(
                f"payments: expected {len(expected_tx)} successes, got {len(tx_success)}"
            )
        if any(n != 1 for n in succeeded.values()) or set(succeeded) != tx_success:
            problems.append("payments: not exactly one payment_succeeded row per success")
        self.out(
            f"\nend check (database): {made} uploads accepted, {len(rows)} rows, "
            f"{status['completed']} completed, {once} with exactly one file_processed row; "
            f"lost {check['lost']}, duplicated {duplicated}, wrong word counts {wrong} "
            f"(jobs started twice: {reruns}); payments: {len(tx_success)} success of "
            f"{len(expected_tx)} expected, {check['payment_succeeded_logs']} payment_succeeded "
            f"rows -> {'OK' if not problems else 'PROBLEMS: ' + ' | '.join(problems)}"
        )


class CompletionPoller:
    """Tells waiting clients when their upload left `processing`: one query for everyone
    every 10 ms (the latency itself comes from the row's `completed_at`, not from here)."""

    def __init__(self, run: LoadRun) -> None:
        self.run_ = run
        self.waiting: dict[int, asyncio.Future[tuple[str, datetime | None]]] = {}
        self._stop = False

    def wait(self, upload_id: int) -> asyncio.Future[tuple[str, datetime | None]]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[upload_id] = future
        return future

    def stop(self) -> None:
        self._stop = True

    async def run(self) -> None:
        while not self._stop or self.waiting:
            if self._stop and all(f.done() for f in self.waiting.values()):
                break
            ids = [k for k, f in self.waiting.items() if not f.done()]
            if ids:
                rows = await self.run_.upload_rows(ids)
                for upload_id, (status, completed_at) in rows.items():
                    if status != "processing":
                        future = self.waiting.pop(upload_id)
                        if not future.done():
                            future.set_result((status, completed_at))
            await asyncio.sleep(0.01)
