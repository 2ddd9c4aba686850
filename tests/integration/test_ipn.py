"""aamarPay's IPN (SPEC §5): a server-to-server notice that only names a transaction, verified
like the success return; and, end to end with the simulator sending it, a person who closed the
tab after paying is unlocked and gets one receipt by e-mail (SPEC §11)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import ActivityLog, PaymentStatus, PaymentTransaction
from app.tasks.celery_app import celery_app
from tests.plugins.simulator import SimulatorControl
from tests.plugins.smtp import SmtpServer
from tests.support import (
    Account,
    SettingsOverride,
    UserFactory,
    assert_error,
    async_wait_until,
)
from tests.workers import ApiServer, CeleryWorker

Sessions = async_sessionmaker[AsyncSession]
IPN = "/api/payment/ipn/"


@pytest.fixture(autouse=True)
def _gateway(override_settings: SettingsOverride, simulator_url: str) -> None:
    override_settings(aamarpay_base_url=simulator_url)


async def initiate(client: AsyncClient, user: Account) -> str:
    resp = await client.post("/api/initiate-payment/", headers=user.headers)
    assert resp.status_code == 201, resp.text
    tran_id: str = resp.json()["transaction_id"]
    return tran_id


async def stored(db: Sessions, tran_id: str) -> PaymentTransaction:
    async with db() as session:
        tx = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.transaction_id == tran_id)
        )
    assert tx is not None
    return tx


async def count_actions(db: Sessions, user_id: int, action: str) -> int:
    async with db() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(ActivityLog)
                .where(ActivityLog.user_id == user_id, ActivityLog.action == action)
            )
            or 0
        )


@pytest.mark.parametrize("encoding", ["json", "form"])
async def test_an_ipn_confirms_a_payment_whose_browser_never_came_back(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions, encoding: str
) -> None:
    tran_id = await initiate(client, user)
    fields = simulator.pay(tran_id)["fields"]  # paid; the browser never returns
    sent = {"json": fields} if encoding == "json" else {"data": fields}
    resp = await client.post(IPN, **sent)  # type: ignore[arg-type]
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"transaction_id": tran_id, "status": "success"}
    assert (await stored(db, tran_id)).status == PaymentStatus.SUCCESS
    me = (await client.get("/api/auth/me/", headers=user.headers)).json()
    assert me["can_upload"] is True
    # The same notice again (aamarPay may repeat it): the same answer, one success.
    assert (await client.post(IPN, json=fields)).json()["status"] == "success"
    assert await count_actions(db, user.id, "payment_succeeded") == 1


@pytest.mark.committed
async def test_twenty_parallel_ipns_and_a_browser_return_make_one_transition(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    tran_id = await initiate(client, user)
    fields = simulator.pay(tran_id)["fields"]
    calls = [client.post(IPN, json=fields) for _ in range(20)]
    calls.append(client.post("/api/payment/success/", data=fields))
    answers = await asyncio.gather(*calls)
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert {a.json()["status"] for a in answers} == {"success"}
    assert await count_actions(db, user.id, "payment_succeeded") == 1
    # The gateway was asked once, not 21 times (one question per transaction per 5 s).
    asked = [r for r in simulator.requests() if r["endpoint"] == "trxcheck"]
    assert len(asked) == 1


async def test_the_ipn_body_is_never_trusted(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    tran_id = await initiate(client, user)
    forged = {
        "mer_txnid": tran_id,
        "pay_status": "Successful",
        "status_code": "2",
        "pg_txnid": "AAM_FORGED",
        "amount": "100.00",
        "currency": "BDT",
    }
    resp = await client.post(IPN, json=forged)
    # Known transaction: 200 with what verification concluded (not paid), nothing more.
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"transaction_id", "status"}
    assert resp.json()["status"] != "success"
    assert (await stored(db, tran_id)).status != PaymentStatus.SUCCESS
    me = (await client.get("/api/auth/me/", headers=user.headers)).json()
    assert me["can_upload"] is False


async def test_unknown_unreadable_and_oversized_ipns(client: AsyncClient) -> None:
    assert_error(await client.post(IPN, json={"mer_txnid": "f" * 32}), 404, "not_found")
    assert_error(await client.post(IPN, json={}), 422, "validation_error")
    assert_error(
        await client.post(IPN, content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "validation_error",
    )
    big = json.dumps({"mer_txnid": "x", "pad": "a" * (100 * 1024)})
    resp = await client.post(IPN, content=big, headers={"content-type": "application/json"})
    assert_error(resp, 413, "request_too_large")


async def test_gateway_away_is_503_so_the_sender_tries_again(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    tran_id = await initiate(client, user)
    fields = simulator.pay(tran_id)["fields"]
    simulator.config(down=True)
    assert_error(await client.post(IPN, json=fields), 503, "gateway_unavailable")
    assert (await stored(db, tran_id)).status == PaymentStatus.PENDING


# --- end to end: the simulator sends the IPN to a real API process --------------------------


@pytest.fixture
def stack(
    committed: None, run_dir: Path, simulator_url: str, smtp: SmtpServer, migrated_database: str
) -> Iterator[ApiServer]:
    celery_app.control.purge()
    api = ApiServer(run_dir, env={"AAMARPAY_BASE_URL": simulator_url})
    api.start()
    worker = CeleryWorker(run_dir, env={"SMTP_URL": smtp.url})
    worker.start()
    try:
        worker.wait_ready()
        yield api
    finally:
        worker.stop()
        api.stop()


@pytest.mark.parametrize("mode", ["once", "twice"])
async def test_a_closed_tab_is_unlocked_by_the_ipn_and_gets_one_receipt(
    stack: ApiServer,
    simulator: SimulatorControl,
    smtp: SmtpServer,
    db: Sessions,
    mode: str,
) -> None:
    simulator.config(ipn_url=f"{stack.url}{IPN}", ipn_mode=mode)
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        factory = UserFactory(http)
        person = await factory.create(email="karim@example.com")
        tran_id = await initiate(http, person)
        simulator.pay(tran_id)  # paid at the gateway; the tab is closed

        async def paid() -> bool:
            me: dict[str, Any] = (await http.get("/api/auth/me/", headers=person.headers)).json()
            return bool(me["can_upload"])

        await async_wait_until(paid, timeout=30, interval=0.1, what="the IPN to unlock")

    expected = 2 if mode == "twice" else 1

    async def delivered() -> bool:
        accepted = [d for d in simulator.ipn_deliveries() if d.get("status") == 200]
        return len(accepted) >= expected

    async def received() -> bool:
        return await count_actions(db, person.id, "receipt_sent") == 1

    await async_wait_until(delivered, timeout=30, interval=0.1, what="the IPN deliveries")
    await async_wait_until(received, timeout=60, interval=0.1, what="the receipt")
    # Whatever arrived twice: one success, one receipt.
    assert await count_actions(db, person.id, "payment_succeeded") == 1
    assert len(smtp.mailbox.messages) == 1
    assert tran_id in smtp.mailbox.messages[0]["Subject"]
    assert smtp.mailbox.recipients == [["karim@example.com"]]
