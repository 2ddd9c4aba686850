"""`python -m bench.scale`: the service at a million rows (SPEC §13).

Two commands:

* `seed --database-url URL`: fills an (already migrated) database with the shape of data the
  SPEC names: 20,000 people, 1,050,000 uploads, 3,150,000 activity rows and 100,200 payments,
  one person (`heavy`) holding 50,000 uploads and 150,000 activity rows, and one staff
  account (`staff`). On MariaDB/MySQL the rows are made by the server itself (multi-row
  `INSERT ... SELECT` from its sequence tables, in batches); on other databases (SQLite) by
  `executemany` in large batches. `--scale 0.02` seeds a proportionally smaller variant (the
  tests use one).
* `run --database-url URL`: starts one API process on that database and times the requests
  of the issue against the SPEC's targets: the lists and the dashboard at page 1 and at the
  deepest offset, the admin's list pages (first and last), its searches, a detail page, a page
  number past the end, and the CSV export (time and the API process's memory growth).

Every seeded account's password is `PASSWORD` below.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.processes import ChildProcess
from app.usernames import canonical_username

PROJECT_DIR = Path(__file__).resolve().parent.parent
PASSWORD = "scale-bench-password"  # noqa: S105 - the seeded accounts' published password
HEAVY = "heavy"
STAFF = "staff"
#: Seeded times run back from here, one row every few seconds.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
ACTIONS = (
    "login",
    "file_uploaded",
    "file_processed",
    "payment_initiated",
    "payment_succeeded",
)
NAMES = ("report", "notes", "essay", "draft", "letter", "thesis", "minutes", "invoice")


@dataclass(frozen=True)
class Shape:
    users: int = 20_000
    uploads: int = 1_050_000
    activity: int = 3_150_000
    payments: int = 100_200
    heavy_uploads: int = 50_000
    heavy_activity: int = 150_000
    heavy_payments: int = 200

    def scaled(self, factor: float) -> Shape:
        def part(n: int) -> int:
            return max(1, int(n * factor))

        return Shape(*(part(getattr(self, f)) for f in self.__dataclass_fields__))


# --- seeding ---------------------------------------------------------------------------------


def _password_hash() -> str:
    from app.security import hash_password_sync

    return hash_password_sync(PASSWORD)


async def _is_mysql(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "mysql"


async def _user_ids(conn: AsyncConnection) -> tuple[int, int, int]:
    """(heavy user's id, first and last id of the ordinary users)."""
    heavy = (
        await conn.execute(text("SELECT id FROM user WHERE username = :u"), {"u": HEAVY})
    ).one()
    low, high = (
        await conn.execute(text("SELECT MIN(id), MAX(id) FROM user WHERE username LIKE 'user%'"))
    ).one()
    return int(heavy[0]), int(low), int(high)


def _batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    start = 1
    while start <= total:
        end = min(total, start + size - 1)
        yield start, end
        start = end + 1


async def _seed_mysql(
    conn: AsyncConnection, shape: Shape, hashed: str, say: Callable[[str], None]
) -> None:
    """Rows made by the server: `seq_A_to_B` (MariaDB's SEQUENCE engine) numbers them.

    The statements are built from integers and constants of this module only (S608)."""
    epoch = EPOCH.replace(tzinfo=None)
    people = shape.users - 1  # ordinary users; `heavy` and `staff` come on top
    await conn.execute(
        text(
            "INSERT INTO user (username, username_canonical, email, hashed_password, is_active,"
            " is_staff, is_superuser, date_joined, upload_credits) VALUES"
            " (:heavy, :heavy_c, 'heavy@example.com', :h, 1, 0, 0, :t0, 0),"
            " (:staff, :staff_c, 'staff@example.com', :h, 1, 1, 0, :t0, 0)"
        ),
        {
            "heavy": HEAVY,
            "heavy_c": canonical_username(HEAVY),
            "staff": STAFF,
            "staff_c": canonical_username(STAFF),
            "h": hashed,
            "t0": epoch - timedelta(days=800),
        },
    )
    await conn.execute(
        text(
            "INSERT INTO user (username, username_canonical, email, hashed_password,"  # noqa: S608
            " is_active, is_staff, is_superuser, date_joined, upload_credits)"
            " SELECT CONCAT('user', LPAD(seq, 6, '0')), CONCAT('user', LPAD(seq, 6, '0')),"
            " CONCAT('user', seq, '@example.com'),"
            f" :h, 1, 0, 0, :t0 + INTERVAL seq * 2000 SECOND, 0 FROM seq_1_to_{people}"
        ),
        {"h": hashed, "t0": epoch - timedelta(days=700)},
    )
    heavy, low, high = await _user_ids(conn)
    span = high - low + 1
    say(f"users: {shape.users + 1}")
    names = ",".join(f"'{n}'" for n in NAMES)
    actions = ",".join(f"'{a}'" for a in ACTIONS)
    # The heavy person's rows first, then everyone else's, spread round-robin.
    plan = [
        ("uploads", shape.heavy_uploads, shape.uploads - shape.heavy_uploads),
        ("activity", shape.heavy_activity, shape.activity - shape.heavy_activity),
        ("payments", shape.heavy_payments, shape.payments - shape.heavy_payments),
    ]
    for kind, heavy_rows, other_rows in plan:
        total = heavy_rows + other_rows
        seconds = max(1, int(600 * 24 * 3600 / total))  # spread over about 600 days
        for start, end in _batches(total, 100_000):
            owner = f"IF(seq <= {heavy_rows}, {heavy}, {low} + (seq % {span}))"
            when = f"(:t0 + INTERVAL seq * {seconds} SECOND)"
            if kind == "uploads":
                sql = (
                    "INSERT INTO file_upload (user_id, file, filename, upload_time, status,"  # noqa: S608
                    " word_count, size, sha256, content_type, error, completed_at, queued_at,"
                    " attempts)"
                    f" SELECT {owner}, CONCAT('seed/', seq, '.txt'),"
                    f" CONCAT(ELT(1 + seq % {len(NAMES)}, {names}), '-', seq, '.txt'), {when},"
                    " IF(seq % 100 = 0, 'failed', 'completed'),"
                    " IF(seq % 100 = 0, NULL, seq % 5000),"
                    " 1000 + seq % 9000, SHA2(seq, 256), 'text/plain; charset=utf-8',"
                    " IF(seq % 100 = 0, 'seeded failure', NULL),"
                    f" {when} + INTERVAL 2 SECOND, {when}, 1"
                    f" FROM seq_{start}_to_{end}"
                )
            elif kind == "activity":
                sql = (
                    "INSERT INTO activity_log (user_id, action, metadata, timestamp)"  # noqa: S608
                    f" SELECT {owner}, ELT(1 + seq % {len(ACTIONS)}, {actions}),"
                    f" CONCAT('{{\"seq\": ', seq, '}}'), {when} FROM seq_{start}_to_{end}"
                )
            else:
                sql = (
                    "INSERT INTO payment_transaction (user_id, transaction_id, amount, currency,"  # noqa: S608
                    " status, gateway_response, pg_txnid, timestamp, updated_at)"
                    f" SELECT {owner}, CONCAT('TX', LPAD(seq, 10, '0'), LEFT(MD5(seq), 12)),"
                    " 100.00, 'BDT', IF(seq % 10 = 0, 'failed', 'success'), '{}',"
                    f" IF(seq % 10 = 0, NULL, CONCAT('PG', seq)), {when}, {when}"
                    f" FROM seq_{start}_to_{end}"
                )
            await conn.execute(text(sql), {"t0": epoch - timedelta(days=600)})
            await conn.commit()
            say(f"{kind}: {end:,} / {total:,}")
    for table in ("user", "file_upload", "activity_log", "payment_transaction"):
        await conn.execute(text(f"ANALYZE TABLE `{table}`"))


async def _seed_generic(
    conn: AsyncConnection, shape: Shape, hashed: str, say: Callable[[str], None]
) -> None:
    """Rows made here, inserted with executemany in large batches (SQLite and the rest)."""
    from app.models import ActivityLog, FileUpload, PaymentTransaction, User

    t0 = EPOCH - timedelta(days=600)
    await conn.execute(
        User.__table__.insert(),
        [
            {
                "username": name,
                "email": f"{name}@example.com",
                "hashed_password": hashed,
                "is_active": True,
                "is_staff": name == STAFF,
                "is_superuser": False,
                "date_joined": EPOCH - timedelta(days=800),
                "upload_credits": 0,
            }
            for name in (HEAVY, STAFF)
        ],
    )
    for start, end in _batches(shape.users - 1, 20_000):
        await conn.execute(
            User.__table__.insert(),
            [
                {
                    "username": f"user{seq:06d}",
                    "email": f"user{seq}@example.com",
                    "hashed_password": hashed,
                    "is_active": True,
                    "is_staff": False,
                    "is_superuser": False,
                    "date_joined": EPOCH - timedelta(days=700, seconds=-seq * 2000),
                    "upload_credits": 0,
                }
                for seq in range(start, end + 1)
            ],
        )
    heavy, low, high = await _user_ids(conn)
    span = high - low + 1

    def owner(seq: int, heavy_rows: int) -> int:
        return heavy if seq <= heavy_rows else low + seq % span

    def upload(seq: int, seconds: int) -> dict[str, Any]:
        when = t0 + timedelta(seconds=seq * seconds)
        failed = seq % 100 == 0
        return {
            "user_id": owner(seq, shape.heavy_uploads),
            "file": f"seed/{seq}.txt",
            "filename": f"{NAMES[seq % len(NAMES)]}-{seq}.txt",
            "upload_time": when,
            "status": "failed" if failed else "completed",
            "word_count": None if failed else seq % 5000,
            "size": 1000 + seq % 9000,
            "sha256": f"{seq:064x}",
            "content_type": "text/plain; charset=utf-8",
            "error": "seeded failure" if failed else None,
            "completed_at": when + timedelta(seconds=2),
            "queued_at": when,
            "attempts": 1,
        }

    def event(seq: int, seconds: int) -> dict[str, Any]:
        return {
            "user_id": owner(seq, shape.heavy_activity),
            "action": ACTIONS[seq % len(ACTIONS)],
            "metadata": {"seq": seq},
            "timestamp": t0 + timedelta(seconds=seq * seconds),
        }

    def payment(seq: int, seconds: int) -> dict[str, Any]:
        when = t0 + timedelta(seconds=seq * seconds)
        failed = seq % 10 == 0
        return {
            "user_id": owner(seq, shape.heavy_payments),
            "transaction_id": f"TX{seq:010d}{secrets.token_hex(6)}",
            "amount": "100.00",
            "currency": "BDT",
            "status": "failed" if failed else "success",
            "gateway_response": {},
            "pg_txnid": None if failed else f"PG{seq}",
            "timestamp": when,
            "updated_at": when,
        }

    for table, total, make in (
        (FileUpload.__table__, shape.uploads, upload),
        (ActivityLog.__table__, shape.activity, event),
        (PaymentTransaction.__table__, shape.payments, payment),
    ):
        seconds = max(1, int(600 * 24 * 3600 / total))
        for start, end in _batches(total, 20_000):
            await conn.execute(
                table.insert(), [make(seq, seconds) for seq in range(start, end + 1)]
            )
            await conn.commit()
            say(f"{table.name}: {end:,} / {total:,}")


async def seed(database_url: str, shape: Shape, say: Callable[[str], None] = print) -> None:
    """Fill an empty, migrated database (refuses one that already has users)."""
    hashed = _password_hash()
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            if (await conn.execute(text("SELECT COUNT(*) FROM user"))).scalar_one():
                raise SystemExit("the database already has users: seed an empty one")
            if await _is_mysql(conn):
                await _seed_mysql(conn, shape, hashed, say)
            else:
                await _seed_generic(conn, shape, hashed, say)
            await conn.commit()
    finally:
        await engine.dispose()


# --- the benchmark ---------------------------------------------------------------------------

#: SPEC §13 targets, in seconds (and MiB for the export's memory).
LIST_TARGET = 0.100
ADMIN_TARGET = 1.0
EXPORT_MEMORY_TARGET_MIB = 64


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def api_process(database_url: str, project: Path) -> Iterator[tuple[str, ChildProcess]]:
    """One uvicorn process of the app in `project` on `database_url` (no Redis: the file
    list's per-process cache is off, so every request reaches the database)."""
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(workdir / "media"),
        "EMBEDDED_BROKER_DIR": str(workdir / "broker"),
        "CELERY_BROKER_URL": "",
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
        "LOGIN_ADDRESS_FAILURE_LIMIT": "1000",
    }
    for key in ("TEST_DATABASE_URL", "TEST_REDIS_URL"):
        env.pop(key, None)
    api = ChildProcess(
        "api",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=project,
        env=env,
        log_path=workdir / "api.log",
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        return False

    try:
        api.start().wait_until(up, timeout=60, interval=0.2, what="to answer")
        yield url, api
    finally:
        api.stop(grace=20)


@dataclass
class Result:
    name: str
    seconds: float | None  # None: timed out
    target: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.seconds is not None and self.seconds < self.target


def _timed(
    client: httpx.Client, name: str, url: str, target: float, *, repeat: int, timeout: float
) -> Result:
    times = []
    note = ""
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            response = client.get(url, timeout=timeout)
        except httpx.TimeoutException:
            return Result(name, None, target, f"no answer in {timeout:.0f} s")
        times.append(time.perf_counter() - started)
        if response.status_code >= 400:
            note = f"HTTP {response.status_code}"
            break
        if response.status_code in (301, 302, 303):
            note = f"redirect to {response.headers.get('location', '?')}"
    return Result(name, statistics.median(times), target, note)


def _admin_last_page(client: httpx.Client, path: str, timeout: float) -> str:
    """The highest page number the admin's page 1 links to or states."""
    body = client.get(path, timeout=timeout).text
    match = re.search(r"of (?:about )?([\d,]+) items", body)
    if not match:
        return f"{path}?page=999999"
    count = int(match.group(1).replace(",", ""))
    return f"{path}?page={max(1, -(-count // 50))}"


def _probe(api: httpx.Client, path: str, stop: threading.Event, seen: list[float]) -> None:
    """Another person's list, asked again and again while the export runs."""
    while not stop.is_set():
        started = time.perf_counter()
        api.get(path, timeout=60)
        seen.append(time.perf_counter() - started)


def _export(
    client: httpx.Client, url: str, pid: int, timeout: float, api: httpx.Client
) -> list[Result]:
    before = _rss_mib(pid)
    peak = before
    started = time.perf_counter()
    rows = 0
    others: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=_probe, args=(api, "/api/files/", stop, others))
    try:
        with client.stream("GET", url, timeout=timeout) as response:
            probe.start()
            for chunk in response.iter_bytes():
                rows += chunk.count(b"\n")
                peak = max(peak, _rss_mib(pid))
    except httpx.TimeoutException:
        return [Result("admin uploads CSV export", None, ADMIN_TARGET * 600, "timed out")]
    finally:
        stop.set()
        if probe.is_alive():
            probe.join()
    elapsed = time.perf_counter() - started
    peak = max(peak, _hwm_mib(pid) if _hwm_mib(pid) > before else peak)
    growth = peak - before
    exported = Result(
        "admin uploads CSV export (memory growth, MiB)",
        growth,
        EXPORT_MEMORY_TARGET_MIB,
        f"{rows - 1:,} rows in {elapsed:.1f} s; RSS {before:.0f} -> {peak:.0f} MiB",
    )
    if not others:
        return [exported]
    others.sort()
    worst = Result(
        "GET /api/files/ while the export runs (slowest)",
        others[-1],
        LIST_TARGET,
        f"{len(others)} requests, median {statistics.median(others) * 1000:.1f} ms,"
        f" p95 {others[int(len(others) * 0.95)] * 1000:.1f} ms",
    )
    return [exported, worst]


def run(database_url: str, *, project: Path, repeat: int, timeout: float) -> list[Result]:
    results: list[Result] = []
    with api_process(database_url, project) as (url, proc), httpx.Client(base_url=url) as client:
        token = client.post(
            "/api/auth/token/", data={"username": HEAVY, "password": PASSWORD}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        api = httpx.Client(base_url=url, headers=auth)
        totals = {
            path: api.get(path, params={"limit": 1}).json()["total"]
            for path in ("/api/files/", "/api/activity/", "/api/transactions/")
        }

        def timed(name: str, path: str, target: float, on: httpx.Client = api) -> None:
            result = _timed(on, name, path, target, repeat=repeat, timeout=timeout)
            results.append(result)
            print(_line(result), flush=True)

        for path, total in totals.items():
            deepest = max(0, total - 20)
            timed(f"GET {path} page 1", path, LIST_TARGET)
            timed(f"GET {path}?offset={deepest}", f"{path}?offset={deepest}", LIST_TARGET)
        board = httpx.Client(base_url=url, cookies={"session": token})
        timed("/dashboard/", "/dashboard/", LIST_TARGET, board)
        deepest_activity = max(1, -(-totals["/api/activity/"] // 10))
        timed(
            f"/dashboard/ activity page {deepest_activity}",
            f"/dashboard/?activity_page={deepest_activity}",
            LIST_TARGET,
            board,
        )
        staff = httpx.Client(base_url=url)
        login = staff.post("/admin/login", data={"username": STAFF, "password": PASSWORD})
        if login.status_code >= 400:
            raise SystemExit(f"admin sign-in refused: {login.status_code}")
        for view in ("file-upload", "activity-log", "payment-transaction", "user"):
            path = f"/admin/{view}/list"
            timed(f"admin {view} list page 1", path, ADMIN_TARGET, staff)
            last = _admin_last_page(staff, path, timeout)
            pages = int(last.split("=")[-1])
            timed(f"admin {view} list last page ({pages})", last, ADMIN_TARGET, staff)
            if pages > 2:
                # The worst page: as far from both ends of the index as a page can be.
                middle = f"{path}?page={pages // 2}"
                timed(f"admin {view} list middle page ({pages // 2})", middle, ADMIN_TARGET, staff)
        timed(
            "admin file-upload page past the end",
            "/admin/file-upload/list?page=99999999",
            ADMIN_TARGET,
            staff,
        )
        some_user = f"user{random.randint(1, 19_000):06d}"
        searches = [
            ("file-upload", HEAVY, "by username"),
            ("file-upload", HEAVY[:4], "by username prefix"),
            ("file-upload", some_user, "by username"),
            ("file-upload", "report-4242", "by file name"),
            ("activity-log", HEAVY, "by username"),
            ("activity-log", some_user, "by username"),
            ("payment-transaction", "TX0000004242", "by transaction id"),
            ("payment-transaction", HEAVY, "by username"),
            ("user", "user0042", "by username"),
        ]
        for view, term, how in searches:
            timed(
                f"admin {view} search {how} ({term})",
                f"/admin/{view}/list?search={term}",
                ADMIN_TARGET,
                staff,
            )
        some_id = api.get("/api/files/", params={"limit": 1, "offset": 777}).json()["items"][0][
            "id"
        ]
        timed(
            "admin file-upload detail", f"/admin/file-upload/details/{some_id}", ADMIN_TARGET, staff
        )
        for result in _export(staff, "/admin/file-upload/export/csv", proc.pid, timeout * 20, api):
            results.append(result)
            print(_line(result), flush=True)
    return results


def _line(result: Result) -> str:
    if result.name.endswith("MiB)"):
        shown = "-" if result.seconds is None else f"{result.seconds:8.1f} MiB"
        target = f"< {result.target:.0f} MiB"
    else:
        shown = "timeout" if result.seconds is None else f"{result.seconds * 1000:8.1f} ms"
        target = f"< {result.target * 1000:.0f} ms"
    mark = "ok" if result.ok else "OVER"
    return f"{result.name:<62} {shown:>12}  {target:>10}  {mark:<4} {result.note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    seeding = sub.add_parser("seed", help="fill a migrated, empty database")
    seeding.add_argument("--database-url", required=True)
    seeding.add_argument("--scale", type=float, default=1.0, help="fraction of the full shape")
    running = sub.add_parser("run", help="time the requests against the SPEC's targets")
    running.add_argument("--database-url", required=True)
    running.add_argument("--project", type=Path, default=PROJECT_DIR, help="the app to run")
    running.add_argument("--repeat", type=int, default=3, help="median of this many tries")
    running.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    args = parser.parse_args(argv)
    if args.command == "seed":
        started = time.perf_counter()
        asyncio.run(seed(args.database_url, Shape().scaled(args.scale)))
        print(f"seeded in {time.perf_counter() - started:.0f} s")
        return 0
    results = run(args.database_url, project=args.project, repeat=args.repeat, timeout=args.timeout)
    over = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(over)} of {len(results)} within target")
    return 0 if not over else 1


if __name__ == "__main__":
    raise SystemExit(main())
