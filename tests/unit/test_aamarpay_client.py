"""The aamarPay client against scripted answers (httpx.MockTransport): every parse path."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.services.aamarpay import (
    AamarPayClient,
    GatewayError,
    GatewayRejected,
    GatewayUnavailable,
    InitiateResult,
    TransactionStatus,
    format_amount,
    make_http_client,
    parse_transaction_status,
    redact,
)

BASE = "https://gateway.test"
STORE = "teststore"
KEY = "k3y-that-must-never-leak-0123456789"

Handler = Callable[[httpx.Request], httpx.Response]

ORDER: dict[str, Any] = {
    "tran_id": "order-0001",
    "amount": Decimal("100.00"),
    "currency": "BDT",
    "success_url": "https://shop.test/api/payment/success/",
    "fail_url": "https://shop.test/api/payment/fail/",
    "cancel_url": "https://shop.test/api/payment/cancel/?tran_id=order-0001",
    "desc": "File upload fee",
    "cus_name": "Rahim",
    "cus_email": "rahim@example.com",
    "cus_phone": "01700000000",
}

SUCCESS_TRXCHECK: dict[str, Any] = {
    "pg_txnid": "AAM1754665952103892",
    "mer_txnid": "order-0001",
    "risk_title": "Safe",
    "risk_level": "0",
    "cus_name": "Rahim",
    "cus_add1": None,
    "merchant_id": STORE,
    "store_id": STORE,
    "amount": "100.00",
    "amount_bdt": "100.00",
    "amount_original": "100.00",
    "pay_status": "Successful",
    "status_code": "2",
    "status_title": "Successful Transaction",
    "amount_currency": "100.00",
    "rec_amount": "96.75",
    "currency": "BDT",
    "currency_merchant": "BDT",
    "opt_a": "Not-Available",
}


class Recorder:
    """A MockTransport handler that records requests and answers with a scripted handler."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def reply(body: Any, status: int = 200, content_type: str = "application/json") -> Handler:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda request: httpx.Response(
        status, content=content, headers={"content-type": content_type}
    )


def raising(exc_type: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return handler


ClientFactory = Callable[[Handler], tuple[AamarPayClient, Recorder]]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[httpx.AsyncClient] = []

    def factory(answer: Handler) -> tuple[AamarPayClient, Recorder]:
        recorder = Recorder(answer)
        http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
        clients.append(http)
        return AamarPayClient(http, BASE + "/", STORE, KEY), recorder

    yield factory
    for http in clients:
        await http.aclose()


# -- initiate ------------------------------------------------------------------------------


async def test_initiate_success_sends_the_protocol_fields(make_client: ClientFactory) -> None:
    payment_url = "https://gateway.test/paynow.php?track=AAM1754855900103326"
    client, rec = make_client(reply({"result": "true", "payment_url": payment_url}))

    result = await client.initiate(**ORDER, opt_a="user-7", opt_d="100.00")

    assert len(rec.requests) == 1
    request = rec.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://gateway.test/jsonpost.php"
    assert request.headers["content-type"] == "application/json"
    sent = json.loads(request.content)
    assert sent == {
        "store_id": STORE,
        "signature_key": KEY,
        "tran_id": "order-0001",
        "success_url": "https://shop.test/api/payment/success/",
        "fail_url": "https://shop.test/api/payment/fail/",
        "cancel_url": "https://shop.test/api/payment/cancel/?tran_id=order-0001",
        "amount": "100.00",
        "currency": "BDT",
        "desc": "File upload fee",
        "cus_name": "Rahim",
        "cus_email": "rahim@example.com",
        "cus_phone": "01700000000",
        "opt_a": "user-7",
        "opt_d": "100.00",
        "type": "json",
    }
    assert result == InitiateResult(
        payment_url=payment_url,
        request={k: v for k, v in sent.items() if k != "signature_key"},
        raw={"result": "true", "payment_url": payment_url},
    )


async def test_initiate_sends_extra_fields_and_refuses_to_overwrite(
    make_client: ClientFactory,
) -> None:
    url = "https://gateway.test/paynow.php?track=AAM1754855900103327"
    client, rec = make_client(reply({"result": "true", "payment_url": url}))

    await client.initiate(**ORDER, extra={"cus_country": "Bangladesh"})
    assert json.loads(rec.requests[0].content)["cus_country"] == "Bangladesh"

    with pytest.raises(ValueError, match="store_id"):
        await client.initiate(**ORDER, extra={"store_id": "other"})
    assert len(rec.requests) == 1


async def test_initiate_accepts_boolean_true_result(make_client: ClientFactory) -> None:
    url = "https://gateway.test/paynow.php?track=AAM1754855900103328"
    client, _ = make_client(reply({"result": True, "payment_url": url}))
    assert (await client.initiate(**ORDER)).payment_url == url


@pytest.mark.parametrize(
    ("amount", "sent"),
    [
        (Decimal("100"), "100.00"),
        (Decimal("99.5"), "99.50"),
        (Decimal("0.01"), "0.01"),
        (Decimal("100.000"), "100.00"),
        (Decimal("1234567.89"), "1234567.89"),
        (Decimal("1E+2"), "100.00"),
    ],
)
async def test_initiate_formats_amount_with_two_decimals(
    make_client: ClientFactory, amount: Decimal, sent: str
) -> None:
    url = "https://gateway.test/paynow.php?track=AAM1754855900103329"
    client, rec = make_client(reply({"result": "true", "payment_url": url}))
    await client.initiate(**(ORDER | {"amount": amount}))
    assert json.loads(rec.requests[0].content)["amount"] == sent
    assert format_amount(amount) == sent


@pytest.mark.parametrize(
    "amount",
    [Decimal("10.005"), Decimal("0"), Decimal("-1.00"), Decimal("NaN"), Decimal("Infinity")],
)
async def test_initiate_refuses_bad_amounts_without_calling(
    make_client: ClientFactory, amount: Decimal
) -> None:
    client, rec = make_client(reply({"result": "true"}))
    with pytest.raises(ValueError, match="amount"):
        await client.initiate(**(ORDER | {"amount": amount}))
    assert rec.requests == []


@pytest.mark.parametrize("tran_id", ["", "x" * 33])
async def test_initiate_refuses_bad_tran_id(make_client: ClientFactory, tran_id: str) -> None:
    client, rec = make_client(reply({"result": "true"}))
    with pytest.raises(ValueError, match="tran_id"):
        await client.initiate(**(ORDER | {"tran_id": tran_id}))
    assert rec.requests == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("Invalid Store ID", "Invalid Store ID"),
        ("Invalid Signature Key", "Invalid Signature Key"),
        (
            {"tran_id": "Dublicate Transaction ID Provided By You."},
            "Dublicate Transaction ID Provided By You.",
        ),
        (
            {"amount": "Invalid amount.", "currency": "Invalid currency."},
            "Invalid amount.; Invalid currency.",
        ),
        ({"result": "false", "message": "Store is inactive"}, "Store is inactive"),
        ({"result": "false"}, "gateway refused the order (result='false')"),
        ({"result": "true"}, "gateway accepted the order but sent no usable payment_url"),
        (
            {"result": "true", "payment_url": "javascript:alert(1)"},
            "gateway accepted the order but sent no usable payment_url",
        ),
        (
            {"result": "TRUE", "payment_url": 17},
            "gateway accepted the order but sent no usable payment_url",
        ),
    ],
)
async def test_initiate_rejections(make_client: ClientFactory, body: Any, message: str) -> None:
    client, _ = make_client(reply(body))
    with pytest.raises(GatewayRejected) as caught:
        await client.initiate(**ORDER)
    error = caught.value
    assert error.message == message
    assert str(error) == message
    assert error.raw == body
    assert error.request is not None
    assert "signature_key" not in error.request
    assert error.request["tran_id"] == "order-0001"


@pytest.mark.parametrize(
    ("answer", "message", "status_code"),
    [
        (reply(b"<html>500</html>", 500, "text/html"), "HTTP 500 from the gateway", 500),
        (reply(b"<html>down</html>", 503, "text/html"), "HTTP 503 from the gateway", 503),
        (reply(b"slow down", 429, "text/plain"), "HTTP 429 from the gateway", 429),
        (
            reply(b"<br><b>Warning</b>: mysqli", 200, "text/html"),
            "answer is not JSON (HTTP 200, text/html)",
            200,
        ),
        (
            reply(b"", 200, "application/json"),
            "answer is not JSON (HTTP 200, application/json)",
            200,
        ),
        (
            reply(b"\xff\xfe\x00", 200, "application/json"),
            "answer is not JSON (HTTP 200, application/json)",
            200,
        ),
        (reply(None), "unexpected answer of type NoneType", None),
        (reply([1, 2]), "unexpected answer of type list", None),
        (reply(b"", 302, "text/html"), "HTTP 302 from the gateway", 302),
        (raising(httpx.ReadTimeout), "timed out (ReadTimeout)", None),
        (raising(httpx.ConnectTimeout), "timed out (ConnectTimeout)", None),
        (raising(httpx.ConnectError), "connection failed (ConnectError: simulated)", None),
        (
            raising(httpx.RemoteProtocolError),
            "connection failed (RemoteProtocolError: simulated)",
            None,
        ),
    ],
)
async def test_initiate_unavailable(
    make_client: ClientFactory, answer: Handler, message: str, status_code: int | None
) -> None:
    client, _ = make_client(answer)
    with pytest.raises(GatewayUnavailable) as caught:
        await client.initiate(**ORDER)
    assert caught.value.message == message
    assert caught.value.http_status == status_code
    assert caught.value.request is not None
    assert "signature_key" not in caught.value.request


async def test_initiate_http_4xx_is_permanent(make_client: ClientFactory) -> None:
    client, _ = make_client(reply(b"<h1>Not Found</h1>", 404, "text/html"))
    with pytest.raises(GatewayRejected) as caught:
        await client.initiate(**ORDER)
    assert caught.value.message == "HTTP 404 from the gateway"
    assert caught.value.raw == {"status_code": 404, "body": "<h1>Not Found</h1>"}


async def test_initiate_parses_json_whatever_the_content_type(make_client: ClientFactory) -> None:
    url = "https://gateway.test/paynow.php?track=AAM1754855900103330"
    body = b'\xef\xbb\xbf{"result":"true","payment_url":"' + url.encode() + b'"}'
    client, _ = make_client(reply(body, 200, "text/html; charset=UTF-8"))
    assert (await client.initiate(**ORDER)).payment_url == url


def test_gateway_errors_share_a_base() -> None:
    assert issubclass(GatewayRejected, GatewayError)
    assert issubclass(GatewayUnavailable, GatewayError)
    assert issubclass(GatewayError, Exception)


# -- search transaction ----------------------------------------------------------------------


async def test_search_successful(make_client: ClientFactory) -> None:
    client, rec = make_client(reply(SUCCESS_TRXCHECK))

    status = await client.search_transaction("order-0001")

    request = rec.requests[0]
    assert request.method == "GET"
    assert request.url.path == "/api/v1/trxcheck/request.php"
    assert dict(request.url.params) == {
        "request_id": "order-0001",
        "store_id": STORE,
        "signature_key": KEY,
        "type": "json",
    }
    assert status == TransactionStatus(
        tran_id="order-0001",
        found=True,
        pay_status="Successful",
        status_code="2",
        status_title="Successful Transaction",
        mer_txnid="order-0001",
        amount=Decimal("100.00"),
        currency="BDT",
        store_id=STORE,
        pg_txnid="AAM1754665952103892",
        risk_level="0",
        raw=SUCCESS_TRXCHECK,
    )
    assert status.is_successful is True
    assert status.is_failed is False


@pytest.mark.parametrize(
    ("pay_status", "status_code", "successful", "failed"),
    [
        ("Successful", "2", True, False),
        ("successful", "2", True, False),
        ("SUCCESSFUL", None, True, False),
        ("Successful", "7", False, True),
        ("Successful", "0", False, False),
        ("Failed", "7", False, True),
        ("failed", None, False, True),
        ("Expired", None, False, True),
        ("Cancelled", "7", False, True),
        ("Canceled", "0", False, True),
        ("Pending", "0", False, False),
        ("Incomplete", None, False, False),
        (None, "7", False, True),
    ],
)
def test_status_flags(
    pay_status: str | None, status_code: str | None, successful: bool, failed: bool
) -> None:
    body = SUCCESS_TRXCHECK | {"pay_status": pay_status, "status_code": status_code}
    status = parse_transaction_status("order-0001", body)
    assert status.found is True
    assert status.pay_status == pay_status
    assert status.status_code == status_code
    assert (status.is_successful, status.is_failed) == (successful, failed)


async def test_search_failed(make_client: ClientFactory) -> None:
    body = SUCCESS_TRXCHECK | {
        "pay_status": "Failed",
        "status_code": "7",
        "status_title": "Failed Transaction",
    }
    client, _ = make_client(reply(body))
    status = await client.search_transaction("order-0001")
    assert (status.found, status.is_successful, status.is_failed) == (True, False, True)
    assert status.status_title == "Failed Transaction"


async def test_search_unknown_id_bare_string(make_client: ClientFactory) -> None:
    client, _ = make_client(reply("Invalid Request ID"))
    status = await client.search_transaction("nope")
    assert status == TransactionStatus(
        tran_id="nope",
        found=False,
        pay_status=None,
        status_code=None,
        status_title=None,
        mer_txnid=None,
        amount=None,
        currency=None,
        store_id=None,
        pg_txnid=None,
        risk_level=None,
        raw={"message": "Invalid Request ID"},
    )
    assert (status.is_successful, status.is_failed) == (False, False)


async def test_search_unknown_id_error_object(make_client: ClientFactory) -> None:
    client, _ = make_client(reply({"error": "Invalid Request ID"}))
    status = await client.search_transaction("nope")
    assert status.found is False
    assert status.raw == {"error": "Invalid Request ID"}


@pytest.mark.parametrize(
    "body",
    [
        "Invalid Store ID",
        "Invalid Signature Key",
        " invalid signature key ",
        {"error": "Invalid Store ID"},
    ],
)
async def test_search_credential_errors_are_rejections(
    make_client: ClientFactory, body: Any
) -> None:
    client, _ = make_client(reply(body))
    with pytest.raises(GatewayRejected) as caught:
        await client.search_transaction("order-0001")
    assert caught.value.message.casefold() in {"invalid store id", "invalid signature key"}


async def test_search_customer_text_never_reads_as_a_credential_error(
    make_client: ClientFactory,
) -> None:
    client, _ = make_client(reply(SUCCESS_TRXCHECK | {"cus_name": "Invalid Store ID"}))
    assert (await client.search_transaction("order-0001")).is_successful is True


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (reply(b"<html>oops</html>", 500, "text/html"), "HTTP 500 from the gateway"),
        (reply(b"<html>down</html>", 503, "text/html"), "HTTP 503 from the gateway"),
        (reply(b"<h1>Not Found</h1>", 404, "text/html"), "HTTP 404 from the gateway"),
        (
            reply(b'<br />{"pay_status":"Succ', 200, "text/html"),
            "answer is not JSON (HTTP 200, text/html)",
        ),
        (reply(["Successful"]), "unexpected answer of type list"),
        (reply(2), "unexpected answer of type int"),
        (raising(httpx.ReadTimeout), "timed out (ReadTimeout)"),
        (raising(httpx.ConnectError), "connection failed (ConnectError: simulated)"),
    ],
)
async def test_search_unavailable(
    make_client: ClientFactory, answer: Handler, message: str
) -> None:
    client, _ = make_client(answer)
    with pytest.raises(GatewayUnavailable) as caught:
        await client.search_transaction("order-0001")
    assert caught.value.message == message


def test_search_usd_reports_the_merchant_currency_amount() -> None:
    body = SUCCESS_TRXCHECK | {
        "amount": "110.00",
        "amount_bdt": "110.00",
        "amount_original": "1.00",
        "amount_currency": "1.00",
        "currency": "BDT",
        "currency_merchant": "USD",
    }
    status = parse_transaction_status("order-0001", body)
    assert (status.amount, status.currency) == (Decimal("1.00"), "USD")


@pytest.mark.parametrize(
    ("fields", "amount", "currency"),
    [
        ({"amount_original": None}, Decimal("100.00"), "BDT"),
        ({"amount_original": "Not-Available", "amount_currency": "55.50"}, Decimal("55.50"), "BDT"),
        (
            {"amount_original": None, "amount_currency": None, "amount": "42"},
            Decimal("42"),
            "BDT",
        ),
        ({"amount_original": "abc"}, None, "BDT"),
        ({"amount_original": "1,000.00"}, Decimal("1000.00"), "BDT"),
        ({"currency_merchant": None, "currency": "usd"}, Decimal("100.00"), "USD"),
        ({"currency_merchant": "", "currency": None}, Decimal("100.00"), None),
    ],
)
def test_search_amount_and_currency_fallbacks(
    fields: dict[str, Any], amount: Decimal | None, currency: str | None
) -> None:
    body = {k: v for k, v in (SUCCESS_TRXCHECK | fields).items() if v is not None}
    status = parse_transaction_status("order-0001", body)
    assert status.amount == amount
    assert status.currency == currency


def test_search_coerces_numbers_and_falls_back_for_ids() -> None:
    body = {
        "mer_txnid": "order-0001",
        "pay_status": "Successful",
        "status_code": 2,
        "epw_txnid": "AAM1",
        "pg_card_risklevel": 0,
        "amount": 100,
    }
    status = parse_transaction_status("order-0001", body)
    assert (status.status_code, status.pg_txnid, status.risk_level) == ("2", "AAM1", "0")
    assert status.amount == Decimal("100")
    assert status.is_successful is True


async def test_search_refuses_empty_id(make_client: ClientFactory) -> None:
    client, rec = make_client(reply(SUCCESS_TRXCHECK))
    with pytest.raises(ValueError, match="tran_id"):
        await client.search_transaction("")
    assert rec.requests == []


# -- secrets ---------------------------------------------------------------------------------


def test_redact_removes_the_signature_key_only() -> None:
    data = {"store_id": STORE, "signature_key": KEY, "amount": "100.00"}
    assert redact(data) == {"store_id": STORE, "amount": "100.00"}
    assert data["signature_key"] == KEY  # the input is not modified


async def test_raw_answers_are_redacted(make_client: ClientFactory) -> None:
    client, _ = make_client(reply(SUCCESS_TRXCHECK | {"signature_key": KEY}))
    status = await client.search_transaction("order-0001")
    assert "signature_key" not in status.raw


async def test_signature_key_never_reaches_logs_or_errors(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _ = make_client(reply(SUCCESS_TRXCHECK))
    await client.search_transaction("order-0001")

    echo, _ = make_client(
        reply(f"<p>bad request signature_key={KEY}</p>".encode(), 500, "text/html")
    )
    with pytest.raises(GatewayUnavailable) as caught:
        await echo.search_transaction("order-0001")
    echo_string, _ = make_client(reply(f"Unknown key {KEY}"))
    unknown = await echo_string.search_transaction("order-0001")

    assert "signature_key=***" in caplog.text  # httpx's request log line, masked
    assert KEY not in caplog.text
    assert KEY not in repr(caught.value.raw)
    assert KEY not in caught.value.message
    assert unknown.raw == {"message": "Unknown key ***"}
    assert KEY not in repr(client)


async def test_make_http_client_has_explicit_timeouts() -> None:
    http = make_http_client(timeout_connect=2.5, timeout_read=7.0)
    try:
        assert (http.timeout.connect, http.timeout.read, http.timeout.pool) == (2.5, 7.0, 2.5)
        assert http.follow_redirects is False
    finally:
        await http.aclose()
