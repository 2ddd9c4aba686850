"""Payments against the aamarPay simulator over real HTTP (SPEC §5, gateway notes).

The app talks to the simulator only through AAMARPAY_BASE_URL; callbacks are replayed with the
exact fields the simulator's auto-submitting form would post from the browser.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import SANDBOX_SIGNATURE_KEY, Settings
from app.models import ActivityLog, PaymentStatus, PaymentTransaction, User
from app.services import entitlement
from app.services.aamarpay import make_http_client
from app.services.payments import CHECK_INTERVAL
from app.tasks.payments import reconcile_payments
from app.tasks.runtime import WorkerRuntime
from tests.plugins.simulator import SimulatorControl
from tests.support import Account, SettingsOverride, UserFactory, assert_error

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(autouse=True)
def _gateway(override_settings: SettingsOverride, simulator_url: str) -> None:
    override_settings(aamarpay_base_url=simulator_url)


async def initiate(client: AsyncClient, user: Account) -> dict[str, Any]:
    resp = await client.post("/api/initiate-payment/", headers=user.headers)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def pay(
    client: AsyncClient, simulator: SimulatorControl, user: Account, method: str = "bkash"
) -> dict[str, Any]:
    """Initiate, pay at the gateway, and post the browser's success form back to us."""
    tran_id = (await initiate(client, user))["transaction_id"]
    callback = simulator.pay(tran_id, "success", method)
    resp = await client.post("/api/payment/success/", data=callback["fields"])
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def me(client: AsyncClient, user: Account) -> dict[str, Any]:
    resp = await client.get("/api/auth/me/", headers=user.headers)
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json()
    return body


async def actions(db: Sessions, user_id: int) -> list[str]:
    async with db() as session:
        rows = await session.scalars(
            select(ActivityLog.action)
            .where(ActivityLog.user_id == user_id)
            .order_by(ActivityLog.id)
        )
        return list(rows)


async def stored(db: Sessions, transaction_id: str) -> PaymentTransaction:
    async with db() as session:
        tx = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.transaction_id == transaction_id)
        )
    assert tx is not None
    return tx


# --- initiate -------------------------------------------------------------------------------


async def test_initiate_sends_the_right_order_and_stores_it(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    simulator_url: str,
    db: Sessions,
) -> None:
    body = await initiate(client, user)
    tran_id = body["transaction_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", tran_id)
    assert body["amount"] == "100.00"
    assert body["currency"] == "BDT"
    assert body["status"] == "pending"
    assert body["payment_url"].startswith(f"{simulator_url}/paynow.php?track=AAM")

    sent = simulator.transaction(tran_id)["request"]
    assert sent["store_id"] == "aamarpaytest"
    assert sent["tran_id"] == tran_id
    assert sent["amount"] == "100.00"
    assert sent["currency"] == "BDT"
    assert sent["type"] == "json"
    assert sent["success_url"] == "http://testserver/api/payment/success/"
    assert sent["fail_url"] == "http://testserver/api/payment/fail/"
    assert sent["cancel_url"] == f"http://testserver/api/payment/cancel/?tran_id={tran_id}"
    assert sent["cus_name"] == user.username
    assert sent["cus_email"]
    assert sent["cus_phone"]
    assert sent["desc"]

    tx = await stored(db, tran_id)
    assert tx.status == PaymentStatus.PENDING
    assert tx.amount == Decimal("100.00")
    assert tx.gateway_response["initiate"]["payment_url"] == body["payment_url"]
    assert SANDBOX_SIGNATURE_KEY not in json.dumps(tx.gateway_response)
    assert await actions(db, user.id) == ["registered", "login", "payment_initiated"]


async def test_amount_and_currency_come_from_settings_only(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    override_settings: SettingsOverride,
) -> None:
    override_settings(payment_amount=Decimal("250.50"), payment_currency="USD")
    resp = await client.post(
        "/api/initiate-payment/?amount=1", headers=user.headers, json={"amount": "1.00"}
    )
    assert resp.status_code == 201
    assert resp.json()["amount"] == "250.50"
    sent = simulator.transaction(resp.json()["transaction_id"])["request"]
    assert (sent["amount"], sent["currency"]) == ("250.50", "USD")


async def test_initiate_requires_authentication(client: AsyncClient) -> None:
    assert_error(await client.post("/api/initiate-payment/"), 401, "not_authenticated")


async def test_gateway_rejection_is_502_and_a_failed_row(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    simulator.config(reject_initiate="Invalid Store ID")
    resp = await client.post("/api/initiate-payment/", headers=user.headers)
    body = assert_error(resp, 502, "gateway_error")
    assert "Invalid Store ID" in body["detail"]
    async with db() as session:
        tx = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.user_id == user.id)
        )
    assert tx is not None
    assert tx.status == PaymentStatus.FAILED
    assert tx.gateway_response["initiate"]["error"] == "rejected"
    assert await actions(db, user.id) == [
        "registered",
        "login",
        "payment_initiated",
        "payment_failed",
    ]


async def test_wrong_credentials_are_reported_as_the_gateway_says(
    client: AsyncClient, user: Account, override_settings: SettingsOverride
) -> None:
    override_settings(aamarpay_signature_key="not-the-key")
    body = assert_error(
        await client.post("/api/initiate-payment/", headers=user.headers), 502, "gateway_error"
    )
    assert body["detail"] == "Invalid Signature Key"


async def test_gateway_down_at_initiation_is_502_and_failed(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    simulator.config(down=True)
    assert_error(
        await client.post("/api/initiate-payment/", headers=user.headers), 502, "gateway_error"
    )
    async with db() as session:
        statuses = list(
            await session.scalars(
                select(PaymentTransaction.status).where(PaymentTransaction.user_id == user.id)
            )
        )
    assert statuses == [PaymentStatus.FAILED]


# --- success --------------------------------------------------------------------------------


async def test_success_by_form_post_unlocks_uploads(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    assert (await me(client, user))["can_upload"] is False
    body = await pay(client, simulator, user)
    assert body == {"transaction_id": body["transaction_id"], "status": "success"}
    info = await me(client, user)
    assert (info["can_upload"], info["uploads_remaining"]) == (True, None)
    assert (await actions(db, user.id))[-1] == "payment_succeeded"
    tx = await stored(db, body["transaction_id"])
    assert tx.amount == Decimal("100.00")
    assert tx.pg_txnid is not None
    assert tx.pg_txnid.startswith("AAM")
    verification = tx.gateway_response["verifications"][-1]
    assert verification["decision"] == "success"
    assert verification["response"]["pay_status"] == "Successful"


async def test_success_by_get_unlocks_uploads(
    client: AsyncClient, user: Account, simulator: SimulatorControl
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    simulator.pay(tran_id, "success", "visa")
    resp = await client.get("/api/payment/success/", params={"mer_txnid": tran_id})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "success"
    assert (await me(client, user))["can_upload"] is True


async def test_browser_is_redirected_to_the_dashboard(
    client: AsyncClient, user: Account, simulator: SimulatorControl
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    fields = simulator.pay(tran_id)["fields"]
    resp = await client.post(
        "/api/payment/success/", data=fields, headers={"Accept": "text/html,*/*"}
    )
    assert resp.status_code == 303
    assert resp.headers["location"] == "/dashboard/?payment=success"


async def test_forged_success_before_paying_does_not_unlock(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    """The browser's fields claim success, the gateway says the order is not paid."""
    tran_id = (await initiate(client, user))["transaction_id"]
    forged = {
        "mer_txnid": tran_id,
        "pay_status": "Successful",
        "status_code": "2",
        "amount": "100.00",
        "currency": "BDT",
        "pg_txnid": "AAM1700000000123456",
        "store_id": "aamarpaytest",
    }
    body = assert_error(
        await client.post("/api/payment/success/", data=forged), 402, "payment_not_verified"
    )
    assert "not paid" in body["detail"]
    assert (await me(client, user))["can_upload"] is False
    # Still payable: the genuine payment that follows is not lost.
    assert (await stored(db, tran_id)).status == PaymentStatus.PENDING
    fields = simulator.pay(tran_id)["fields"]
    await _age(db, tran_id, CHECK_INTERVAL)  # the gateway is asked again after the interval
    resp = await client.post("/api/payment/success/", data=fields)
    assert resp.json()["status"] == "success"
    assert (await me(client, user))["can_upload"] is True


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"state": "failed"}, "gateway says Failed"),
        ({"amount": "10.00"}, "amount 10.00 instead of 100.00"),
        ({"currency_merchant": "USD", "currency": "USD"}, "currency 'USD' instead of 'BDT'"),
        ({"store_id": "someoneelse"}, "paid to store 'someoneelse'"),
        ({"risk_level": "1"}, "flagged by the gateway"),
    ],
)
async def test_unverified_payments_are_402_and_failed(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    db: Sessions,
    override: dict[str, str],
    reason: str,
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    fields = simulator.pay(tran_id)["fields"]
    simulator.override(tran_id, **override)
    body = assert_error(
        await client.post("/api/payment/success/", data=fields), 402, "payment_not_verified"
    )
    assert reason in body["detail"]
    tx = await stored(db, tran_id)
    assert tx.status == PaymentStatus.FAILED
    assert tx.pg_txnid is None
    assert (await me(client, user))["can_upload"] is False
    assert (await actions(db, user.id))[-1] == "payment_failed"


async def test_transaction_unknown_to_the_gateway_is_402_and_failed(
    client: AsyncClient, user: Account, db: Sessions
) -> None:
    async with db() as session:
        session.add(
            PaymentTransaction(
                user_id=user.id,
                transaction_id="f" * 32,
                amount=Decimal("100.00"),
                currency="BDT",
                status=PaymentStatus.PENDING,
                gateway_response={},
            )
        )
        await session.commit()
    body = assert_error(
        await client.get("/api/payment/success/", params={"mer_txnid": "f" * 32}),
        402,
        "payment_not_verified",
    )
    assert "no such transaction" in body["detail"]
    assert (await stored(db, "f" * 32)).status == PaymentStatus.FAILED


async def test_unknown_mer_txnid_is_404(client: AsyncClient) -> None:
    assert_error(
        await client.post("/api/payment/success/", data={"mer_txnid": "nope"}), 404, "not_found"
    )
    redirect = await client.get(
        "/api/payment/success/", params={"mer_txnid": "nope"}, headers={"Accept": "text/html"}
    )
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/dashboard/?payment=unknown"


async def test_missing_mer_txnid_is_422(client: AsyncClient) -> None:
    assert_error(await client.post("/api/payment/success/", data={}), 422, "validation_error")


async def test_gateway_id_of_another_users_payment_cannot_be_reused(
    client: AsyncClient, user_factory: UserFactory, simulator: SimulatorControl, db: Sessions
) -> None:
    alice = await user_factory.create()
    bob = await user_factory.create()
    paid = await stored(db, (await pay(client, simulator, alice))["transaction_id"])
    bob_tran = (await initiate(client, bob))["transaction_id"]
    # The gateway (or a replayed answer) claims bob's order was paid with alice's payment.
    simulator.override(bob_tran, state="successful", pg_txnid=paid.pg_txnid)
    body = assert_error(
        await client.get("/api/payment/success/", params={"mer_txnid": bob_tran}),
        402,
        "payment_not_verified",
    )
    assert "already paid for another order" in body["detail"]
    assert (await stored(db, bob_tran)).status == PaymentStatus.FAILED
    assert (await me(client, bob))["can_upload"] is False
    assert (await me(client, alice))["can_upload"] is True


@pytest.mark.committed
async def test_twenty_concurrent_callbacks_make_one_success_and_one_log(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    fields = simulator.pay(tran_id)["fields"]
    responses = await asyncio.gather(
        *(client.post("/api/payment/success/", data=fields) for _ in range(20))
    )
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert {r.json()["status"] for r in responses} == {"success"}
    assert (await actions(db, user.id)).count("payment_succeeded") == 1
    async with db() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(PaymentTransaction)
            .where(PaymentTransaction.status == PaymentStatus.SUCCESS)
        )
    assert count == 1


@pytest.mark.committed
async def test_concurrent_callbacks_grant_credits_once(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    override_settings: SettingsOverride,
) -> None:
    override_settings(uploads_per_payment=3)
    tran_id = (await initiate(client, user))["transaction_id"]
    fields = simulator.pay(tran_id)["fields"]
    await asyncio.gather(*(client.post("/api/payment/success/", data=fields) for _ in range(10)))
    assert (await me(client, user))["uploads_remaining"] == 3


async def success_return_during_outage(
    client: AsyncClient,
    simulator: SimulatorControl,
    db: Sessions,
    user: Account,
    fields: dict[str, str],
) -> None:
    """Send the success return (JSON, then as the browser) while the gateway is down: 503,
    the browser told to wait, the order `pending`, nothing unlocked; then bring it back."""
    simulator.config(down=True)
    assert_error(
        await client.post("/api/payment/success/", data=fields), 503, "gateway_unavailable"
    )
    browser = await client.post(
        "/api/payment/success/", data=fields, headers={"Accept": "text/html"}
    )
    assert browser.headers["location"] == "/dashboard/?payment=pending"
    assert (await stored(db, fields["mer_txnid"])).status == PaymentStatus.PENDING
    assert (await me(client, user))["can_upload"] is False
    simulator.config(down=False)


async def test_gateway_down_then_a_later_callback_settles_it(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    fields = simulator.pay(tran_id)["fields"]
    await success_return_during_outage(client, simulator, db, user, fields)
    # Within the interval the last answer (the outage) stands, without asking again.
    assert_error(
        await client.post("/api/payment/success/", data=fields), 503, "gateway_unavailable"
    )
    await _age(db, tran_id, CHECK_INTERVAL)
    resp = await client.post("/api/payment/success/", data=fields)
    assert resp.json()["status"] == "success"


async def test_garbage_from_the_gateway_is_503_and_pending(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    fields = simulator.pay(tran_id)["fields"]
    simulator.config(html_errors=True)
    assert_error(
        await client.post("/api/payment/success/", data=fields), 503, "gateway_unavailable"
    )
    assert (await stored(db, tran_id)).status == PaymentStatus.PENDING


@pytest.fixture
async def worker_runtime(db: Sessions, settings: Settings, simulator_url: str) -> Any:
    http = make_http_client(2, 5)
    runtime = WorkerRuntime(
        pid=0,
        loop=asyncio.get_running_loop(),
        settings=settings.model_copy(
            update={"aamarpay_base_url": simulator_url, "stuck_after_seconds": 1}
        ),
        engine=None,  # type: ignore[arg-type]
        sessionmaker=db,
        http=http,
    )
    yield runtime
    await http.aclose()


async def _age(db: Sessions, transaction_id: str, by: timedelta) -> None:
    """Let `by` pass for one transaction: its creation, its last gateway question and its
    next reconcile check all move that far into the past."""
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


async def test_reconcile_job_settles_a_payment_whose_browser_never_came_back(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    db: Sessions,
    worker_runtime: WorkerRuntime,
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    simulator.pay(tran_id)  # paid, but the browser never returns
    fresh = (await initiate(client, await _other(client)))["transaction_id"]
    await _age(db, tran_id, timedelta(minutes=10))
    counts = await reconcile_payments(worker_runtime)
    assert counts == {"checked": 1, "success": 1}
    assert (await stored(db, tran_id)).status == PaymentStatus.SUCCESS
    assert (await stored(db, fresh)).status == PaymentStatus.PENDING  # not stuck yet
    assert (await me(client, user))["can_upload"] is True
    assert (await actions(db, user.id)).count("payment_succeeded") == 1
    # Running it again changes nothing.
    assert await reconcile_payments(worker_runtime) == {"checked": 0}


async def _other(client: AsyncClient) -> Account:
    return await UserFactory(client).create()


async def test_reconcile_after_gateway_outage(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    db: Sessions,
    worker_runtime: WorkerRuntime,
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    fields = simulator.pay(tran_id)["fields"]
    simulator.config(down=True)
    assert (await client.post("/api/payment/success/", data=fields)).status_code == 503
    await _age(db, tran_id, timedelta(minutes=10))
    assert await reconcile_payments(worker_runtime) == {"checked": 1, "pending": 1}
    simulator.config(down=False)
    assert await reconcile_payments(worker_runtime) == {"checked": 0}  # asked just now
    await _age(db, tran_id, timedelta(minutes=1))
    assert await reconcile_payments(worker_runtime) == {"checked": 1, "success": 1}
    assert (await me(client, user))["can_upload"] is True


async def test_reconcile_closes_long_unpaid_orders_and_failed_ones(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    db: Sessions,
    worker_runtime: WorkerRuntime,
) -> None:
    abandoned = (await initiate(client, user))["transaction_id"]
    failed = (await initiate(client, user))["transaction_id"]
    young = (await initiate(client, user))["transaction_id"]
    simulator.override(failed, state="failed")
    await _age(db, abandoned, timedelta(days=2))
    await _age(db, failed, timedelta(minutes=10))
    await _age(db, young, timedelta(minutes=10))
    counts = await reconcile_payments(worker_runtime)
    assert counts == {"checked": 3, "failed": 2, "pending": 1}
    assert (await stored(db, abandoned)).status == PaymentStatus.FAILED
    assert (await stored(db, failed)).status == PaymentStatus.FAILED
    assert (await stored(db, young)).status == PaymentStatus.PENDING


# --- fail and cancel ------------------------------------------------------------------------


async def test_fail_callback_marks_pending_failed(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    callback = simulator.pay(tran_id, "fail")
    assert callback["callback_url"].endswith("/api/payment/fail/")
    resp = await client.post("/api/payment/fail/", data=callback["fields"])
    assert resp.status_code == 200
    assert resp.json()["status"] == "failed"
    assert (await actions(db, user.id))[-1] == "payment_failed"
    browser = await client.post(
        "/api/payment/fail/", data=callback["fields"], headers={"Accept": "text/html"}
    )
    assert browser.headers["location"] == "/dashboard/?payment=failed"
    assert (await actions(db, user.id)).count("payment_failed") == 1


async def test_cancel_marks_pending_cancelled(
    client: AsyncClient, user: Account, db: Sessions
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    resp = await client.get(
        "/api/payment/cancel/", params={"tran_id": tran_id}, headers={"Accept": "text/html"}
    )
    assert resp.status_code == 303
    assert resp.headers["location"] == "/dashboard/?payment=cancelled"
    assert (await stored(db, tran_id)).status == PaymentStatus.CANCELLED
    assert (await actions(db, user.id))[-1] == "payment_cancelled"
    json_resp = await client.get("/api/payment/cancel/", params={"tran_id": tran_id})
    assert json_resp.json()["status"] == "cancelled"


async def test_fail_and_cancel_after_success_change_nothing(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    paid = await pay(client, simulator, user)
    tran_id = paid["transaction_id"]
    before = await actions(db, user.id)
    fail = await client.post("/api/payment/fail/", data={"mer_txnid": tran_id})
    cancel = await client.get("/api/payment/cancel/", params={"tran_id": tran_id})
    assert fail.json()["status"] == cancel.json()["status"] == "success"
    assert (await stored(db, tran_id)).status == PaymentStatus.SUCCESS
    assert await actions(db, user.id) == before
    assert (await me(client, user))["can_upload"] is True


async def test_success_after_cancel_does_not_revive_an_unpaid_order(
    client: AsyncClient, user: Account, simulator: SimulatorControl, db: Sessions
) -> None:
    tran_id = (await initiate(client, user))["transaction_id"]
    await client.get("/api/payment/cancel/", params={"tran_id": tran_id})
    resp = await client.get("/api/payment/success/", params={"mer_txnid": tran_id})
    assert_error(resp, 402, "payment_not_verified")
    assert (await stored(db, tran_id)).status == PaymentStatus.CANCELLED
    assert (await me(client, user))["can_upload"] is False


@pytest.mark.parametrize("returned", ["cancel", "fail"])
@pytest.mark.committed
async def test_an_unsigned_cancel_or_fail_cannot_block_a_paid_order(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    db: Sessions,
    override_settings: SettingsOverride,
    returned: str,
) -> None:
    """Anyone holding the order id can send the browser's cancel or fail return; when the
    gateway then confirms the payment, the order becomes `success` once, however many
    success callbacks arrive together, and the payment's uploads are granted once."""
    override_settings(uploads_per_payment=2)
    tran_id = (await initiate(client, user))["transaction_id"]
    if returned == "cancel":
        await client.get("/api/payment/cancel/", params={"tran_id": tran_id})
    else:
        await client.post("/api/payment/fail/", data={"mer_txnid": tran_id})
    marked = PaymentStatus.CANCELLED if returned == "cancel" else PaymentStatus.FAILED
    assert (await stored(db, tran_id)).status == marked
    fields = simulator.pay(tran_id)["fields"]
    answers = await asyncio.gather(
        *(client.post("/api/payment/success/", data=fields) for _ in range(10))
    )
    assert [r.status_code for r in answers] == [200] * 10, [r.text for r in answers]
    tx = await stored(db, tran_id)
    assert (tx.status, tx.pg_txnid) == (PaymentStatus.SUCCESS, fields["pg_txnid"])
    history = await actions(db, user.id)
    assert history.count("payment_succeeded") == 1
    assert history.index(f"payment_{marked.value}") < history.index("payment_succeeded")
    assert (await me(client, user))["uploads_remaining"] == 2


async def test_a_paid_order_after_a_cancel_survives_a_gateway_outage(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    db: Sessions,
    worker_runtime: WorkerRuntime,
) -> None:
    """The success return of a cancelled order arrives while the gateway cannot be asked:
    the order goes back to `pending` (503, the browser told we keep checking), grants nothing
    yet, and the reconcile job settles it once the gateway answers."""
    tran_id = (await initiate(client, user))["transaction_id"]
    await client.get("/api/payment/cancel/", params={"tran_id": tran_id})
    fields = simulator.pay(tran_id)["fields"]
    await success_return_during_outage(client, simulator, db, user, fields)
    await _age(db, tran_id, timedelta(minutes=10))
    assert await reconcile_payments(worker_runtime) == {"checked": 1, "success": 1}
    assert (await stored(db, tran_id)).status == PaymentStatus.SUCCESS
    assert (await me(client, user))["can_upload"] is True
    assert (await actions(db, user.id)).count("payment_succeeded") == 1


# --- entitlement ----------------------------------------------------------------------------


async def test_already_paid_is_409_when_one_payment_unlocks_for_good(
    client: AsyncClient, user: Account, simulator: SimulatorControl
) -> None:
    await pay(client, simulator, user)
    assert_error(
        await client.post("/api/initiate-payment/", headers=user.headers), 409, "already_paid"
    )


async def test_each_payment_buys_n_uploads(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    override_settings: SettingsOverride,
) -> None:
    override_settings(uploads_per_payment=2)
    assert (await me(client, user))["uploads_remaining"] == 0
    await pay(client, simulator, user)
    await pay(client, simulator, user)  # no already_paid in this mode
    info = await me(client, user)
    assert (info["can_upload"], info["uploads_remaining"]) == (True, 4)


@pytest.mark.committed
async def test_two_parallel_consumers_cannot_spend_one_credit(
    client: AsyncClient,
    user: Account,
    simulator: SimulatorControl,
    db: Sessions,
    override_settings: SettingsOverride,
) -> None:
    settings = override_settings(uploads_per_payment=1)
    await pay(client, simulator, user)
    both_checked = asyncio.Barrier(2)

    async def consume() -> bool:
        async with db() as session:
            # Both pass the check made before the body is read; only one may spend the credit.
            right = await entitlement.check_upload_right(session, user.id, settings)
            await both_checked.wait()
            try:
                await entitlement.consume_upload(session, right, settings)
            except Exception:  # noqa: BLE001
                await session.rollback()
                return False
            await asyncio.sleep(0)  # let the other consumer run while this one holds the row
            await session.commit()
            return True

    results = await asyncio.gather(consume(), consume())
    assert sorted(results) == [False, True]
    async with db() as session:
        credits = await session.scalar(select(User.upload_credits).where(User.id == user.id))
    assert credits == 0
    assert (await me(client, user))["can_upload"] is False


# --- history --------------------------------------------------------------------------------


async def test_transactions_are_own_newest_first_and_paginated(
    client: AsyncClient,
    user_factory: UserFactory,
    simulator: SimulatorControl,
    override_settings: SettingsOverride,
) -> None:
    override_settings(uploads_per_payment=1)
    alice = await user_factory.create()
    bob = await user_factory.create()
    ids = [(await initiate(client, alice))["transaction_id"] for _ in range(3)]
    await initiate(client, bob)
    resp = await client.get("/api/transactions/", headers=alice.headers)
    page = resp.json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 20, 0)
    assert [t["transaction_id"] for t in page["items"]] == ids[::-1]
    assert all(t["user"] == alice.id for t in page["items"])
    assert page["items"][0]["amount"] == "100.00"
    assert datetime.fromisoformat(page["items"][0]["timestamp"]).utcoffset() == timedelta(0)
    second = (
        await client.get(
            "/api/transactions/", params={"limit": 2, "offset": 2}, headers=alice.headers
        )
    ).json()
    assert [t["transaction_id"] for t in second["items"]] == [ids[0]]
    assert SANDBOX_SIGNATURE_KEY not in resp.text

    async def listing(**params: int) -> tuple[list[str], int]:
        got = await client.get("/api/transactions/", params=params, headers=alice.headers)
        body = got.json()
        return [t["transaction_id"] for t in body["items"]], body["total"]

    # The total on a full page, a short one, past the end, and for someone with none.
    assert await listing(limit=2) == (ids[:0:-1], 3)
    assert await listing(limit=2, offset=2) == ([ids[0]], 3)
    assert await listing(limit=2, offset=10) == ([], 3)
    carol = await user_factory.create()
    empty = await client.get("/api/transactions/", headers=carol.headers)
    assert (empty.json()["items"], empty.json()["total"]) == ([], 0)


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "x"}])
async def test_transactions_pagination_bounds(
    client: AsyncClient, user: Account, params: dict[str, Any]
) -> None:
    resp = await client.get("/api/transactions/", params=params, headers=user.headers)
    assert_error(resp, 422, "validation_error")
