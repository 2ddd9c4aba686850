"""Hostile users against the payment routes (SPEC §5 gateway routes, §9 payments).

Each test plays the attacker against the real stack (the database under test, the simulator
over HTTP, real API processes where it matters) and checks that another person still pays
normally and that nothing unbounded is stored or asked of the gateway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import ActivityLog, PaymentStatus, PaymentTransaction, User
from app.services import payments
from app.services.aamarpay import make_http_client
from app.services.payments import CHECK_INTERVAL, FIELD_BYTES
from app.tasks.payments import reconcile_payments
from app.tasks.runtime import WorkerRuntime
from tests.integration.test_dashboard_http import csrf_from, sign_in
from tests.plugins.simulator import SimulatorControl
from tests.support import Account, SettingsOverride, UserFactory, assert_error
from tests.workers import ApiServer

Sessions = async_sessionmaker[AsyncSession]

KiB = 1024
MiB = 1024 * KiB
#: Generous bound for one transaction's stored gateway_response, whatever was posted.
STORED_ROW_BOUND = 64 * KiB


@pytest.fixture(autouse=True)
def _gateway(override_settings: SettingsOverride, simulator_url: str) -> None:
    override_settings(aamarpay_base_url=simulator_url)


async def initiate(client: AsyncClient, user: Account) -> str:
    resp = await client.post("/api/initiate-payment/", headers=user.headers)
    assert resp.status_code == 201, resp.text
    tran_id: str = resp.json()["transaction_id"]
    return tran_id


async def pays_normally(client: AsyncClient, simulator: SimulatorControl, user: Account) -> None:
    """The other person: initiate, pay at the gateway, come back, may upload."""
    tran_id = await initiate(client, user)
    fields = simulator.pay(tran_id)["fields"]
    resp = await client.post("/api/payment/success/", data=fields)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"transaction_id": tran_id, "status": "success"}
    me = await client.get("/api/auth/me/", headers=user.headers)
    assert me.json()["can_upload"] is True


async def stored(db: Sessions, transaction_id: str) -> PaymentTransaction:
    async with db() as session:
        tx = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.transaction_id == transaction_id)
        )
    assert tx is not None
    return tx


def trxchecks(simulator: SimulatorControl, tran_id: str) -> int:
    """Search Transaction requests the gateway received about one transaction."""
    return sum(
        1
        for r in simulator.requests()
        if r["endpoint"] == "trxcheck" and r["data"].get("request_id") == tran_id
    )


async def time_passes(db: Sessions, transaction_id: str, by: timedelta) -> None:
    """Let `by` pass for one transaction: its creation, its last gateway question and its
    next reconcile check move that far into the past."""
    async with db() as session:
        tx = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.transaction_id == transaction_id)
        )
        assert tx is not None
        tx.timestamp -= by
        if tx.checked_at is not None:
            tx.checked_at -= by
        if tx.next_check_at is not None:
            tx.next_check_at -= by
        await session.commit()


# --- request bodies -------------------------------------------------------------------------


ROUTES = [
    ("POST", "/api/payment/success/"),
    ("GET", "/api/payment/success/"),
    ("POST", "/api/payment/fail/"),
    ("GET", "/api/payment/cancel/"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_oversized_bodies_are_refused_without_reading_them(
    client: AsyncClient,
    user_factory: UserFactory,
    simulator: SimulatorControl,
    db: Sessions,
    method: str,
    path: str,
) -> None:
    attacker = await user_factory.create()
    victim = await user_factory.create()
    tran_id = await initiate(client, attacker)
    before = (await stored(db, tran_id)).gateway_response
    form = {"content-type": "application/x-www-form-urlencoded"}

    # Declared too large: refused before a byte of the body is read.
    declared = await client.request(
        method,
        path,
        params={"mer_txnid": tran_id, "tran_id": tran_id},
        content=b"x" * (10 * MiB),
        headers=form,
    )
    assert_error(declared, 413, "request_too_large")

    # Streamed without a length: reading stops once 64 KiB are passed.
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        prefix = f"mer_txnid={tran_id}&pay_status=".encode()
        sent += len(prefix)
        yield prefix
        for _ in range(160):  # 10 MiB in 64 KiB chunks
            sent += 64 * KiB
            yield b"A" * (64 * KiB)

    streamed = await client.request(
        method, path, params={"tran_id": tran_id}, content=body(), headers=form
    )
    assert_error(streamed, 413, "request_too_large")
    assert sent <= 3 * 64 * KiB, f"{sent} bytes read before refusing"

    # Nothing asked, nothing stored, the order untouched; someone else pays as usual.
    assert trxchecks(simulator, tran_id) == 0
    tx = await stored(db, tran_id)
    assert (tx.status, tx.gateway_response, tx.checked_at) == (PaymentStatus.PENDING, before, None)
    await pays_normally(client, simulator, victim)


async def test_oversized_body_is_refused_by_the_server_before_it_is_sent(
    api_server: ApiServer, simulator: SimulatorControl
) -> None:
    """Over a real socket: the 413 arrives while the client has sent only the headers and
    a few bytes of a declared 10 MiB body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api_server.port)
    try:
        writer.write(
            b"POST /api/payment/success/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {10 * MiB}\r\n\r\nmer_txnid=".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413"), status_line


async def test_many_huge_fields_are_stored_bounded(
    client: AsyncClient,
    user_factory: UserFactory,
    simulator: SimulatorControl,
    db: Sessions,
) -> None:
    """The attack on the old code: many large fields posted again and again for one's own
    pending order. Only documented fields are kept, each cut to 1 KiB, the row stays small,
    and the owner's transaction list with it."""
    attacker = await user_factory.create()
    victim = await user_factory.create()
    tran_id = await initiate(client, attacker)
    documented = ["pay_status", "cus_name", "cus_email", "desc", "card_number", "ip_address"]
    junk = [f"junk{i}" for i in range(6)]
    # 1.3 KiB of UTF-8 (a 3-byte character first: the cut must not split it), 3.7 KiB
    # url-encoded: the whole form stays under the 64 KiB body limit.
    big = "\u09f3" * 400 + "A" * 100
    fields = {"mer_txnid": tran_id, **dict.fromkeys(documented + junk, big)}

    for _ in range(12):
        resp = await client.post("/api/payment/success/", data=fields)
        assert_error(resp, 402, "payment_not_verified")
        await time_passes(db, tran_id, CHECK_INTERVAL)  # each round asks the gateway again

    tx = await stored(db, tran_id)
    size = len(json.dumps(tx.gateway_response, ensure_ascii=False).encode())
    assert size < STORED_ROW_BOUND, f"gateway_response is {size} bytes"
    verifications = tx.gateway_response["verifications"]
    assert len(verifications) <= payments.MAX_VERIFICATIONS_KEPT
    for entry in verifications:
        kept = entry["callback"]
        assert not any(name.startswith("junk") for name in kept)
        for value in kept.values():
            if isinstance(value, str):
                assert len(value.encode()) <= FIELD_BYTES
    assert verifications[-1]["callback"]["mer_txnid"] == tran_id

    listing = await client.get("/api/transactions/", headers=attacker.headers)
    assert listing.status_code == 200
    assert len(listing.content) < STORED_ROW_BOUND + 4 * KiB
    await pays_normally(client, simulator, victim)


# --- one gateway question per transaction per 5 s -----------------------------------------


@pytest.mark.committed
async def test_repeated_callbacks_ask_the_gateway_once_per_interval(
    client: AsyncClient,
    user_factory: UserFactory,
    simulator: SimulatorControl,
    db: Sessions,
    worker_runtime: WorkerRuntime,
) -> None:
    attacker = await user_factory.create()
    victim = await user_factory.create()
    tran_id = await initiate(client, attacker)
    fields = {"mer_txnid": tran_id}

    # Thirty at once, then ten more: one question, every answer the same 402.
    burst = await asyncio.gather(
        *(client.post("/api/payment/success/", data=fields) for _ in range(30))
    )
    burst += [await client.post("/api/payment/success/", data=fields) for _ in range(10)]
    for resp in burst:
        assert_error(resp, 402, "payment_not_verified")
    assert trxchecks(simulator, tran_id) == 1

    # After the interval, one more question; it fails, and the failure is reused (503).
    await time_passes(db, tran_id, CHECK_INTERVAL)
    simulator.config(down=True)
    outage = await asyncio.gather(
        *(client.post("/api/payment/success/", data=fields) for _ in range(10))
    )
    outage.append(await client.get("/api/payment/success/", params=fields))
    for resp in outage:
        assert_error(resp, 503, "gateway_unavailable")
    simulator.config(down=False)
    browser = await client.post(
        "/api/payment/success/", data=fields, headers={"Accept": "text/html"}
    )
    assert browser.headers["location"] == "/dashboard/?payment=pending"
    assert trxchecks(simulator, tran_id) == 2
    assert (await stored(db, tran_id)).status == PaymentStatus.PENDING

    # The reconcile job claims the same way: due by its own schedule but asked about just
    # now, the order is skipped, not asked about a third time.
    async with db() as session:
        await session.execute(
            update(PaymentTransaction)
            .where(PaymentTransaction.transaction_id == tran_id)
            .values(
                timestamp=datetime.now(UTC) - timedelta(hours=1),
                next_check_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
        await session.commit()
    assert await reconcile_payments(worker_runtime) == {"checked": 0, "skipped": 1}
    assert trxchecks(simulator, tran_id) == 2
    await pays_normally(client, simulator, victim)


@pytest.fixture
def api_server(
    committed: None, run_dir: Path, simulator_url: str, migrated_database: str
) -> Iterator[ApiServer]:
    server = ApiServer(run_dir, env={"AAMARPAY_BASE_URL": simulator_url}, workers=2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_concurrent_callbacks_across_api_processes_share_one_question(
    api_server: ApiServer,
    client: AsyncClient,
    user_factory: UserFactory,
    simulator: SimulatorControl,
    db: Sessions,
) -> None:
    """Two API processes, callbacks on many connections at once, a slow gateway: one
    question, and every caller gets its answer."""
    user = await user_factory.create()
    tran_id = await initiate(client, user)
    fields = simulator.pay(tran_id)["fields"]
    simulator.config(trxcheck_delay_seconds=0.5)
    limits = httpx.Limits(max_connections=40, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=api_server.url, limits=limits, timeout=30) as http:
        answers = await asyncio.gather(
            *(http.post("/api/payment/success/", data=fields) for _ in range(24))
        )
    assert [a.status_code for a in answers] == [200] * 24, [a.text for a in answers]
    assert {a.text for a in answers} == {
        json.dumps({"transaction_id": tran_id, "status": "success"}, separators=(",", ":"))
    }
    assert trxchecks(simulator, tran_id) == 1
    async with db() as session:
        succeeded = await session.scalar(
            select(func.count())
            .select_from(ActivityLog)
            .where(ActivityLog.user_id == user.id, ActivityLog.action == "payment_succeeded")
        )
    assert succeeded == 1


# --- answers without personal data --------------------------------------------------------


async def test_gateway_routes_answer_only_the_id_and_status(
    client: AsyncClient, user_factory: UserFactory, simulator: SimulatorControl
) -> None:
    owner = await user_factory.create(email="owner@example.com")
    cancelled = await initiate(client, owner)
    failed = await initiate(client, owner)
    paid = await initiate(client, owner)
    pay_fields = simulator.pay(paid)["fields"]
    fail_fields = simulator.pay(failed, "fail")["fields"]

    answers = {
        "cancel": await client.get("/api/payment/cancel/", params={"tran_id": cancelled}),
        "cancel again": await client.get("/api/payment/cancel/", params={"tran_id": cancelled}),
        "fail": await client.post("/api/payment/fail/", data=fail_fields),
        "success": await client.post("/api/payment/success/", data=pay_fields),
        "success by GET": await client.get("/api/payment/success/", params={"mer_txnid": paid}),
        "fail after success": await client.post("/api/payment/fail/", data={"mer_txnid": paid}),
    }
    expected = {
        "cancel": (cancelled, "cancelled"),
        "cancel again": (cancelled, "cancelled"),
        "fail": (failed, "failed"),
        "success": (paid, "success"),
        "success by GET": (paid, "success"),
        "fail after success": (paid, "success"),
    }
    for name, resp in answers.items():
        assert resp.status_code == 200, (name, resp.text)
        tran_id, status = expected[name]
        assert resp.json() == {"transaction_id": tran_id, "status": status}, name
        for secret in (owner.username, "owner@example.com", "1234XXXX", "pg_txnid"):
            assert secret not in resp.text, (name, secret)
    # Browsers are still sent to the dashboard.
    browser = await client.get(
        "/api/payment/cancel/", params={"tran_id": cancelled}, headers={"Accept": "text/html"}
    )
    assert (browser.status_code, browser.headers["location"]) == (
        303,
        "/dashboard/?payment=cancelled",
    )


# --- pending payments per person ----------------------------------------------------------


async def pending_of(db: Sessions, user_id: int) -> int:
    async with db() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(PaymentTransaction)
            .where(
                PaymentTransaction.user_id == user_id,
                PaymentTransaction.status == PaymentStatus.PENDING,
            )
        )
    return int(count or 0)


async def test_pending_payments_are_capped_per_person(
    client: AsyncClient,
    user_factory: UserFactory,
    simulator: SimulatorControl,
    db: Sessions,
    settings: Settings,
) -> None:
    cap = settings.max_pending_payments_per_user
    attacker = await user_factory.create()
    victim = await user_factory.create()
    ids = [await initiate(client, attacker) for _ in range(cap)]
    refused = await client.post("/api/initiate-payment/", headers=attacker.headers)
    assert_error(refused, 429, "too_many_pending_payments")
    # Nothing left behind by the refusal: no row, no activity, no order at the gateway.
    async with db() as session:
        rows = await session.scalar(
            select(func.count())
            .select_from(PaymentTransaction)
            .where(PaymentTransaction.user_id == attacker.id)
        )
        initiated = await session.scalar(
            select(func.count())
            .select_from(ActivityLog)
            .where(ActivityLog.user_id == attacker.id, ActivityLog.action == "payment_initiated")
        )
    assert (rows, initiated) == (cap, cap)
    assert len(simulator.transactions()) == cap

    # The dashboard's Pay button goes through the same rule.
    await sign_in(client, attacker)
    token = csrf_from((await client.get("/dashboard/")).text)
    pay = await client.post("/dashboard/pay", data={"csrf_token": token})
    assert pay.status_code == 303
    assert pay.headers["location"] == "/dashboard/?notice=too_many_pending_payments"
    assert await pending_of(db, attacker.id) == cap
    client.cookies.clear()

    # Another person is unaffected; a cancelled order frees a place.
    await pays_normally(client, simulator, victim)
    await client.get("/api/payment/cancel/", params={"tran_id": ids[0]})
    await initiate(client, attacker)
    assert await pending_of(db, attacker.id) == cap


@pytest.mark.committed
async def test_parallel_initiations_cannot_pass_the_cap(
    client: AsyncClient,
    user_factory: UserFactory,
    simulator: SimulatorControl,
    db: Sessions,
    settings: Settings,
) -> None:
    cap = settings.max_pending_payments_per_user
    attacker = await user_factory.create()
    victim = await user_factory.create()
    burst = await asyncio.gather(
        *(client.post("/api/initiate-payment/", headers=attacker.headers) for _ in range(16))
    )
    codes = sorted(r.status_code for r in burst)
    assert codes == [201] * cap + [429] * (16 - cap), [r.text for r in burst]
    for resp in burst:
        if resp.status_code == 429:
            assert_error(resp, 429, "too_many_pending_payments")
    assert await pending_of(db, attacker.id) == cap
    await pays_normally(client, simulator, victim)


# --- fair reconcile -----------------------------------------------------------------------


@pytest.fixture
async def worker_runtime(
    db: Sessions, settings: Settings, simulator_url: str
) -> AsyncIterator[WorkerRuntime]:
    http = make_http_client(2, 5)
    runtime = WorkerRuntime(
        pid=0,
        loop=asyncio.get_running_loop(),
        settings=settings.model_copy(update={"aamarpay_base_url": simulator_url}),
        engine=None,  # type: ignore[arg-type]
        sessionmaker=db,
        http=http,
    )
    yield runtime
    await http.aclose()


async def many_unpaid_orders(
    db: Sessions, simulator: SimulatorControl, count: int, age: timedelta
) -> list[str]:
    """`count` pending orders held by accounts of their own (each within the cap), known to
    the gateway as unpaid, all `age` old."""
    created = datetime.now(UTC) - age
    per_account = 5
    ids = [f"{i:032x}" for i in range(1, count + 1)]
    async with db() as session:
        owners = [
            User(username=f"sybil{n}", hashed_password="x")  # noqa: S106 - never signs in
            for n in range((count + per_account - 1) // per_account)
        ]
        session.add_all(owners)
        await session.flush()
        session.add_all(
            PaymentTransaction(
                user_id=owners[i // per_account].id,
                transaction_id=tran_id,
                amount=Decimal("100.00"),
                currency="BDT",
                status=PaymentStatus.PENDING,
                gateway_response={},
                timestamp=created,
            )
            for i, tran_id in enumerate(ids)
        )
        await session.commit()
    with httpx.Client(base_url=simulator.url, timeout=10) as http:
        for tran_id in ids:
            registered = http.post(
                "/jsonpost.php",
                json={
                    "store_id": simulator.store_id,
                    "signature_key": simulator.signature_key,
                    "tran_id": tran_id,
                    "amount": "100.00",
                    "currency": "BDT",
                    "desc": "x",
                    "cus_name": "x",
                    "cus_email": "x@example.com",
                    "cus_phone": "01700000000",
                    "success_url": "http://testserver/api/payment/success/",
                    "fail_url": "http://testserver/api/payment/fail/",
                    "cancel_url": "http://testserver/api/payment/cancel/",
                    "type": "json",
                },
            )
            assert registered.json().get("result") == "true", registered.text
    return ids


async def test_a_payment_whose_browser_never_came_back_is_not_starved(
    client: AsyncClient,
    user_factory: UserFactory,
    simulator: SimulatorControl,
    db: Sessions,
    settings: Settings,
    worker_runtime: WorkerRuntime,
) -> None:
    """Others hold more stuck pending orders than two batches, all older than the victim's;
    the victim paid at the gateway and never came back. Within two runs the victim's payment
    is confirmed, and no run asks about more than a batch."""
    batch = settings.reconcile_batch_size
    others = await many_unpaid_orders(
        db, simulator, 2 * batch + 10, timedelta(seconds=settings.stuck_after_seconds * 3)
    )
    victim = await user_factory.create()
    tran_id = await initiate(client, victim)
    simulator.pay(tran_id)  # paid, but the browser never returns
    await time_passes(db, tran_id, timedelta(seconds=settings.stuck_after_seconds + 1))

    for _ in range(2):
        counts = await reconcile_payments(worker_runtime)
        assert counts["checked"] <= batch, counts
        if (await stored(db, tran_id)).status == PaymentStatus.SUCCESS:
            break
    assert (await stored(db, tran_id)).status == PaymentStatus.SUCCESS
    me = await client.get("/api/auth/me/", headers=victim.headers)
    assert me.json()["can_upload"] is True
    # The others' orders were asked about once each at most and stay pending for later.
    checked = [await stored(db, t) for t in others[:20]]
    assert all(t.status == PaymentStatus.PENDING for t in checked)
    asked: dict[str, int] = {}
    for r in simulator.requests():
        if r["endpoint"] == "trxcheck":
            asked[r["data"]["request_id"]] = asked.get(r["data"]["request_id"], 0) + 1
    assert max(asked.values()) == 1


async def test_old_unpaid_orders_are_asked_less_and_less_often(settings: Settings) -> None:
    now = datetime.now(UTC)

    def interval(age: timedelta) -> timedelta:
        tx = PaymentTransaction(timestamp=now - age)
        return payments.next_check_at(tx, payments.NOT_VERIFIED, settings) - now

    ages = [timedelta(minutes=10), timedelta(hours=1), timedelta(hours=3), timedelta(hours=20)]
    intervals = [interval(age) for age in ages]
    assert intervals == sorted(intervals)
    assert intervals[0] < intervals[-1] <= payments.MAX_RECHECK_INTERVAL + timedelta(seconds=1)
    # After a gateway failure the next run asks again, whatever the age.
    tx = PaymentTransaction(timestamp=now - timedelta(hours=20))
    soon = payments.next_check_at(tx, payments.UNAVAILABLE, settings) - now
    assert soon <= timedelta(seconds=settings.reconcile_interval_seconds)
