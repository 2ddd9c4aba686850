"""The real aamarPay client against the simulator over HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from app.services.aamarpay import (
    AamarPayClient,
    GatewayRejected,
    GatewayUnavailable,
    make_http_client,
)
from tests.plugins.simulator import SIM_SIGNATURE_KEY, SIM_STORE_ID, SimulatorControl

SHOP = "http://shop.test"


def order(tran_id: str = "order-0001", **changes: Any) -> dict[str, Any]:
    return {
        "tran_id": tran_id,
        "amount": Decimal("100.00"),
        "currency": "BDT",
        "success_url": f"{SHOP}/api/payment/success/",
        "fail_url": f"{SHOP}/api/payment/fail/",
        "cancel_url": f"{SHOP}/api/payment/cancel/?tran_id={tran_id}",
        "desc": "File upload fee",
        "cus_name": "Rahim",
        "cus_email": "rahim@example.com",
        "cus_phone": "01700000000",
    } | changes


@pytest.fixture
async def client(simulator: SimulatorControl) -> AsyncIterator[AamarPayClient]:
    http = make_http_client(timeout_connect=2.0, timeout_read=5.0)
    try:
        yield AamarPayClient(http, simulator.url, SIM_STORE_ID, SIM_SIGNATURE_KEY)
    finally:
        await http.aclose()


async def test_initiate_pay_and_search(client: AamarPayClient, simulator: SimulatorControl) -> None:
    result = await client.initiate(**order(), opt_a="user-7")

    record = simulator.transaction("order-0001")
    assert result.payment_url == f"{simulator.url}/paynow.php?track={record['track']}"
    assert result.raw == {"result": "true", "payment_url": result.payment_url}
    assert record["request"] == result.request
    assert result.request == {
        "store_id": SIM_STORE_ID,
        "tran_id": "order-0001",
        "success_url": f"{SHOP}/api/payment/success/",
        "fail_url": f"{SHOP}/api/payment/fail/",
        "cancel_url": f"{SHOP}/api/payment/cancel/?tran_id=order-0001",
        "amount": "100.00",
        "currency": "BDT",
        "desc": "File upload fee",
        "cus_name": "Rahim",
        "cus_email": "rahim@example.com",
        "cus_phone": "01700000000",
        "opt_a": "user-7",
        "type": "json",
    }

    pending = await client.search_transaction("order-0001")
    assert (pending.found, pending.pay_status, pending.status_code) == (True, "Pending", "0")
    assert (pending.is_successful, pending.is_failed) == (False, False)

    simulator.pay("order-0001", outcome="success", method="visa")
    paid = await client.search_transaction("order-0001")
    assert paid.found is True
    assert paid.is_successful is True
    assert paid.is_failed is False
    assert (paid.pay_status, paid.status_code, paid.status_title) == (
        "Successful",
        "2",
        "Successful Transaction",
    )
    assert (paid.mer_txnid, paid.amount, paid.currency) == ("order-0001", Decimal("100.00"), "BDT")
    assert (paid.store_id, paid.pg_txnid, paid.risk_level) == (SIM_STORE_ID, record["track"], "0")
    assert paid.raw["payment_type"] == "DBBL-VISA"
    assert simulator.transaction("order-0001")["trxcheck_count"] == 2


async def test_failed_and_cancelled_are_definitive(
    client: AamarPayClient, simulator: SimulatorControl
) -> None:
    await client.initiate(**order("order-0001"))
    await client.initiate(**order("order-0002"))
    simulator.pay("order-0001", outcome="fail")
    simulator.pay("order-0002", outcome="cancel")
    for tran_id, pay_status in (("order-0001", "Failed"), ("order-0002", "Cancelled")):
        status = await client.search_transaction(tran_id)
        assert (status.pay_status, status.is_failed, status.is_successful) == (
            pay_status,
            True,
            False,
        )


async def test_unknown_transaction_is_not_found(client: AamarPayClient) -> None:
    status = await client.search_transaction("never-made")
    assert (status.found, status.is_successful, status.is_failed) == (False, False, False)
    assert status.raw == {"message": "Invalid Request ID"}


async def test_overrides_reach_the_parsed_status(
    client: AamarPayClient, simulator: SimulatorControl
) -> None:
    await client.initiate(**order())
    simulator.pay("order-0001")
    simulator.override("order-0001", amount="1.00", pg_txnid="AAM1700000000000001", risk_level=1)
    status = await client.search_transaction("order-0001")
    assert (status.amount, status.pg_txnid, status.risk_level) == (
        Decimal("1.00"),
        "AAM1700000000000001",
        "1",
    )
    assert status.is_successful is True  # judging amount and risk is the caller's job


async def test_usd_amount_is_the_merchant_currency_amount(
    client: AamarPayClient, simulator: SimulatorControl
) -> None:
    await client.initiate(**order(amount=Decimal("1.50"), currency="USD"))
    simulator.pay("order-0001")
    status = await client.search_transaction("order-0001")
    assert (status.amount, status.currency) == (Decimal("1.50"), "USD")
    assert (status.raw["amount"], status.raw["currency"]) == ("165.00", "BDT")


async def test_duplicate_tran_id_is_rejected(client: AamarPayClient) -> None:
    await client.initiate(**order())
    with pytest.raises(GatewayRejected) as caught:
        await client.initiate(**order())
    assert caught.value.message == "Dublicate Transaction ID Provided By You."
    assert caught.value.raw == {"tran_id": "Dublicate Transaction ID Provided By You."}


@pytest.mark.parametrize(
    ("store_id", "signature_key", "message"),
    [
        ("someone-else", SIM_SIGNATURE_KEY, "Invalid Store ID"),
        (SIM_STORE_ID, "wrong-key", "Invalid Signature Key"),
    ],
)
async def test_credential_errors_are_rejections(
    client: AamarPayClient,
    simulator: SimulatorControl,
    store_id: str,
    signature_key: str,
    message: str,
) -> None:
    await client.initiate(**order())
    http = make_http_client()
    try:
        bad = AamarPayClient(http, simulator.url, store_id, signature_key)
        with pytest.raises(GatewayRejected) as initiated:
            await bad.initiate(**order("order-0002"))
        assert initiated.value.message == message
        with pytest.raises(GatewayRejected) as searched:
            await bad.search_transaction("order-0001")
        assert searched.value.message == message
    finally:
        await http.aclose()


async def test_gateway_rejection_switch(
    client: AamarPayClient, simulator: SimulatorControl
) -> None:
    simulator.config(reject_initiate="Store is suspended")
    with pytest.raises(GatewayRejected) as caught:
        await client.initiate(**order())
    assert caught.value.message == "Store is suspended"


async def test_down_gateway_is_unavailable(
    client: AamarPayClient, simulator: SimulatorControl
) -> None:
    await client.initiate(**order())
    simulator.config(down=True)
    with pytest.raises(GatewayUnavailable) as initiated:
        await client.initiate(**order("order-0002"))
    assert (initiated.value.message, initiated.value.status_code) == (
        "HTTP 503 from the gateway",
        503,
    )
    with pytest.raises(GatewayUnavailable) as searched:
        await client.search_transaction("order-0001")
    assert searched.value.status_code == 503


@pytest.mark.parametrize(
    ("switch", "message"),
    [
        ("html_errors", "HTTP 500 from the gateway"),
        ("garbage_body", "answer is not JSON (HTTP 200, text/html; charset=utf-8)"),
    ],
)
async def test_broken_answers_are_unavailable(
    client: AamarPayClient, simulator: SimulatorControl, switch: str, message: str
) -> None:
    await client.initiate(**order())
    simulator.config(**{switch: True})
    with pytest.raises(GatewayUnavailable) as initiated:
        await client.initiate(**order("order-0002"))
    assert initiated.value.message == message
    with pytest.raises(GatewayUnavailable) as searched:
        await client.search_transaction("order-0001")
    assert searched.value.message == message


async def test_json_with_an_html_content_type_still_parses(
    client: AamarPayClient, simulator: SimulatorControl
) -> None:
    simulator.config(content_type="text/html; charset=UTF-8")
    result = await client.initiate(**order())
    assert result.raw["result"] == "true"


async def test_slow_gateway_beyond_the_read_timeout_is_unavailable(
    simulator: SimulatorControl,
) -> None:
    http = make_http_client(timeout_connect=2.0, timeout_read=0.5)
    try:
        fast = AamarPayClient(http, simulator.url, SIM_STORE_ID, SIM_SIGNATURE_KEY)
        await fast.initiate(**order())
        simulator.config(trxcheck_delay_seconds=2, jsonpost_delay_seconds=2)
        with pytest.raises(GatewayUnavailable) as searched:
            await fast.search_transaction("order-0001")
        assert searched.value.message == "timed out (ReadTimeout)"
        with pytest.raises(GatewayUnavailable) as initiated:
            await fast.initiate(**order("order-0002"))
        assert initiated.value.message == "timed out (ReadTimeout)"
        # the order reached the gateway; only its answer was lost
        assert simulator.transaction("order-0002")["state"] == "initiated"
    finally:
        await http.aclose()


async def test_unreachable_gateway_is_unavailable() -> None:
    http = make_http_client(timeout_connect=1.0, timeout_read=1.0)
    try:
        with socket.socket() as sock:  # a port that was free a moment ago; nothing listens on it
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        nowhere = AamarPayClient(http, f"http://127.0.0.1:{port}", SIM_STORE_ID, SIM_SIGNATURE_KEY)
        with pytest.raises(GatewayUnavailable) as caught:
            await nowhere.search_transaction("order-0001")
        assert caught.value.message.startswith("connection failed (ConnectError")
    finally:
        await http.aclose()
