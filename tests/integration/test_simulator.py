"""The aamarPay simulator over real HTTP, as a separate process."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from tests.plugins.simulator import SIM_SIGNATURE_KEY, SIM_STORE_ID, SimulatorControl

TRACK_RE = re.compile(r"^AAM(\d{10})(\d{6})$")
PAY_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
TRXCHECK = "/api/v1/trxcheck/request.php"

#: Protocol section 5, in the simulator's order.
CALLBACK_FIELDS = [
    "pay_status",
    "status_code",
    "mer_txnid",
    "pg_txnid",
    "epw_txnid",
    "amount",
    "amount_original",
    "other_currency",
    "currency",
    "currency_merchant",
    "convertion_rate",
    "store_amount",
    "pg_service_charge_bdt",
    "pg_service_charge_usd",
    "gateway_fee",
    "pay_time",
    "bank_txn",
    "card_type",
    "card_number",
    "card_holder",
    "pg_card_bank_name",
    "pg_card_bank_country",
    "pg_card_risklevel",
    "pg_error_code_details",
    "reason",
    "cus_name",
    "cus_email",
    "cus_phone",
    "desc",
    "success_url",
    "fail_url",
    "ip_address",
    "store_id",
    "merchant_id",
    "opt_a",
    "opt_b",
    "opt_c",
    "opt_d",
]

#: The real sandbox trxcheck sample (protocol section 6), ship_* expanded.
TRXCHECK_KEYS = [
    "pg_txnid",
    "mer_txnid",
    "risk_title",
    "risk_level",
    "cus_name",
    "cus_email",
    "cus_phone",
    "desc",
    "cus_add1",
    "cus_add2",
    "cus_city",
    "cus_state",
    "cus_postcode",
    "cus_country",
    "cus_fax",
    "ship_name",
    "ship_add1",
    "ship_add2",
    "ship_city",
    "ship_state",
    "ship_postcode",
    "ship_country",
    "merchant_id",
    "store_id",
    "amount",
    "amount_bdt",
    "amount_original",
    "pay_status",
    "status_code",
    "status_title",
    "cardnumber",
    "approval_code",
    "payment_processor",
    "bank_trxid",
    "payment_type",
    "error_code",
    "error_title",
    "bin_country",
    "bin_issuer",
    "bin_cardtype",
    "bin_cardcategory",
    "date",
    "date_processed",
    "amount_currency",
    "rec_amount",
    "store_amount",
    "processing_ratio",
    "processing_charge",
    "ip",
    "currency",
    "currency_merchant",
    "convertion_rate",
    "opt_a",
    "opt_b",
    "opt_c",
    "opt_d",
    "verify_status",
    "call_type",
    "email_send",
    "doc_recived",
    "checkout_status",
]


class FormParser(HTMLParser):
    """Collects forms (method, action, inputs) and element ids of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.ids: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids[str(attributes["id"])] = attributes | {"tag": tag}
        if tag == "form":
            self.forms.append(
                {
                    "method": attributes.get("method"),
                    "action": attributes.get("action"),
                    "inputs": [],
                }
            )
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(attributes)


def parse(html: str) -> FormParser:
    parser = FormParser()
    parser.feed(html)
    return parser


def hidden_fields(form: dict[str, Any]) -> dict[str, str]:
    return {str(i["name"]): str(i["value"]) for i in form["inputs"] if i.get("type") == "hidden"}


def order(tran_id: str = "order-0001", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "store_id": SIM_STORE_ID,
        "signature_key": SIM_SIGNATURE_KEY,
        "tran_id": tran_id,
        "success_url": "http://shop.test/api/payment/success/",
        "fail_url": "http://shop.test/api/payment/fail/",
        "cancel_url": f"http://shop.test/api/payment/cancel/?tran_id={tran_id}&x=%2F",
        "amount": "100.00",
        "currency": "BDT",
        "desc": "File upload fee",
        "cus_name": "Rahim",
        "cus_email": "rahim@example.com",
        "cus_phone": "01700000000",
        "type": "json",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture(scope="session")
def _http(simulator_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator_url, timeout=10.0) as client:
        yield client


@pytest.fixture
def http(_http: httpx.Client, simulator: SimulatorControl) -> httpx.Client:
    """A plain HTTP client for the simulator (which the simulator fixture has just reset)."""
    return _http


def initiate(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = http.post("/jsonpost.php", json=order(**fields))
    assert response.status_code == 200
    data = response.json()
    assert isinstance(data, dict)
    assert data["result"] == "true", data
    return data


def track_of(payment_url: str) -> str:
    return payment_url.rsplit("track=", 1)[1]


def trxcheck(http: httpx.Client, tran_id: str, **params: str) -> Any:
    query = {
        "request_id": tran_id,
        "store_id": SIM_STORE_ID,
        "signature_key": SIM_SIGNATURE_KEY,
        "type": "json",
    } | params
    response = http.get(TRXCHECK, params=query)
    assert response.status_code == 200
    return response.json()


def complete(http: httpx.Client, payment_url: str, action: str) -> httpx.Response:
    return http.post(
        "/paynow.php/complete", data={"track": track_of(payment_url), "action": action}
    )


# -- jsonpost ------------------------------------------------------------------------------------


def test_jsonpost_happy_path(http: httpx.Client, simulator: SimulatorControl) -> None:
    before = int(time.time())
    response = http.post("/jsonpost.php", json=order(opt_a="user-7"))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert list(data) == ["result", "payment_url"]
    assert data["result"] == "true"
    prefix = f"{simulator.url}/paynow.php?track="
    assert data["payment_url"].startswith(prefix)
    match = TRACK_RE.match(data["payment_url"][len(prefix) :])
    assert match is not None
    assert before <= int(match.group(1)) <= int(time.time())

    record = simulator.transaction("order-0001")
    assert record["state"] == "initiated"
    assert record["track"] == track_of(data["payment_url"])
    assert record["amount"] == "100.00"
    assert record["request"] == {
        k: v for k, v in order(opt_a="user-7").items() if k != "signature_key"
    }
    assert [t["tran_id"] for t in simulator.transactions()] == ["order-0001"]


def test_track_ids_are_unique(http: httpx.Client) -> None:
    urls = {initiate(http, tran_id=f"order-{n}")["payment_url"] for n in range(5)}
    assert len(urls) == 5


def test_jsonpost_reads_raw_json_whatever_the_content_type(
    http: httpx.Client, simulator: SimulatorControl
) -> None:
    body = json.dumps(order(amount=100))
    response = http.post("/jsonpost.php", content=body, headers={"content-type": "text/plain"})
    assert response.json()["result"] == "true"
    form_typed = http.post(
        "/jsonpost.php",
        content=json.dumps(order("order-0002", amount=99.5)),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form_typed.json()["result"] == "true"
    assert simulator.transaction("order-0001")["amount"] == "100.00"
    assert simulator.transaction("order-0002")["amount"] == "99.50"


@pytest.mark.parametrize(
    ("fields", "answer"),
    [
        ({"store_id": "someone-else"}, "Invalid Store ID"),
        ({"store_id": None}, "Invalid Store ID"),
        ({"signature_key": "wrong"}, "Invalid Signature Key"),
        ({"signature_key": None}, "Invalid Signature Key"),
        ({"store_id": "someone-else", "signature_key": "wrong"}, "Invalid Store ID"),
    ],
)
def test_jsonpost_credential_errors(
    http: httpx.Client, simulator: SimulatorControl, fields: dict[str, Any], answer: str
) -> None:
    response = http.post("/jsonpost.php", json=order(**fields))
    assert response.status_code == 200
    assert response.text == json.dumps(answer)
    assert simulator.transactions() == []


@pytest.mark.parametrize("body", [b"", b"not json", b'["a list"]', b'"a string"'])
def test_jsonpost_non_object_body_has_no_store_id(http: httpx.Client, body: bytes) -> None:
    assert http.post("/jsonpost.php", content=body).json() == "Invalid Store ID"


def test_jsonpost_duplicate_tran_id(http: httpx.Client, simulator: SimulatorControl) -> None:
    first = initiate(http)
    again = http.post("/jsonpost.php", json=order(amount="50.00"))
    assert again.status_code == 200
    assert again.json() == {"tran_id": "Dublicate Transaction ID Provided By You."}
    assert [t["payment_url"] for t in simulator.transactions()] == [first["payment_url"]]
    assert simulator.transaction("order-0001")["amount"] == "100.00"


@pytest.mark.parametrize(
    "name",
    [
        "tran_id",
        "amount",
        "currency",
        "success_url",
        "fail_url",
        "cancel_url",
        "desc",
        "cus_name",
        "cus_email",
        "cus_phone",
        "type",
    ],
)
@pytest.mark.parametrize("value", [None, "", "  "])
def test_jsonpost_missing_field(
    http: httpx.Client, simulator: SimulatorControl, name: str, value: str | None
) -> None:
    body = order()
    if value is None:
        del body[name]
    else:
        body[name] = value
    response = http.post("/jsonpost.php", json=body)
    assert response.status_code == 200
    assert response.json() == {name: f"{name} is required."}
    assert simulator.transactions() == []


@pytest.mark.parametrize(
    ("fields", "answer"),
    [
        ({"amount": "abc"}, {"amount": "Invalid amount."}),
        ({"amount": "0"}, {"amount": "Invalid amount."}),
        ({"amount": "0.00"}, {"amount": "Invalid amount."}),
        ({"amount": "-5"}, {"amount": "Invalid amount."}),
        ({"amount": "10.001"}, {"amount": "Invalid amount."}),
        ({"amount": "1,000"}, {"amount": "Invalid amount."}),
        ({"amount": "1e3"}, {"amount": "Invalid amount."}),
        ({"amount": True}, {"amount": "amount is invalid."}),
        ({"currency": "EUR"}, {"currency": "Invalid currency."}),
        ({"currency": "bdt"}, {"currency": "Invalid currency."}),
        ({"tran_id": "x" * 33}, {"tran_id": "tran_id must not exceed 32 characters."}),
        ({"type": "form"}, {"type": "type must be json."}),
        (
            {"success_url": "javascript:alert(1)"},
            {"success_url": "success_url must be an absolute http(s) URL."},
        ),
        ({"fail_url": "/relative"}, {"fail_url": "fail_url must be an absolute http(s) URL."}),
        (
            {"cancel_url": "http://shop.test/a b"},
            {"cancel_url": "cancel_url must be an absolute http(s) URL."},
        ),
        ({"cus_name": {"first": "R"}}, {"cus_name": "cus_name is invalid."}),
    ],
)
def test_jsonpost_invalid_values(
    http: httpx.Client, simulator: SimulatorControl, fields: dict[str, Any], answer: Any
) -> None:
    assert http.post("/jsonpost.php", json=order(**fields)).json() == answer
    assert simulator.transactions() == []


@pytest.mark.parametrize(
    ("amount", "stored"), [("10", "10.00"), ("10.0", "10.00"), (100.0, "100.00"), (7, "7.00")]
)
def test_jsonpost_amount_spellings(
    http: httpx.Client, simulator: SimulatorControl, amount: Any, stored: str
) -> None:
    initiate(http, amount=amount)
    assert simulator.transaction("order-0001")["amount"] == stored


def test_tran_id_of_32_chars_is_fine(http: httpx.Client) -> None:
    initiate(http, tran_id="x" * 32)


@pytest.mark.parametrize(
    ("fmt", "answer"),
    [
        ("object", {"desc": "desc is required."}),
        ("string", "desc is required."),
        ("result_false", {"result": "false", "message": "desc is required."}),
    ],
)
def test_missing_field_format_switch(
    http: httpx.Client, simulator: SimulatorControl, fmt: str, answer: Any
) -> None:
    assert simulator.config(missing_field_format=fmt)["missing_field_format"] == fmt
    assert http.post("/jsonpost.php", json=order(desc=None)).json() == answer


@pytest.mark.parametrize("answer", ["Store is suspended", {"amount": "Amount too low"}])
def test_reject_initiate_switch(
    http: httpx.Client, simulator: SimulatorControl, answer: Any
) -> None:
    simulator.config(reject_initiate=answer)
    assert http.post("/jsonpost.php", json=order()).json() == answer
    # credentials are still checked first
    assert http.post("/jsonpost.php", json=order(store_id="x")).json() == "Invalid Store ID"
    simulator.config(reject_initiate=None)
    assert http.post("/jsonpost.php", json=order()).json()["result"] == "true"


# -- checkout page ---------------------------------------------------------------------------


def test_paynow_page_shows_the_order_and_the_buttons(http: httpx.Client) -> None:
    url = initiate(http, desc='Fee <script>alert("x")</script>', cus_name="A & B")["payment_url"]
    response = http.get(url)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = parse(response.text)
    for button, value, label in [
        ("pay-bkash", "bkash", "Pay with bKash"),
        ("pay-visa", "visa", "Pay with VISA"),
        ("fail", "fail", "Fail"),
        ("cancel", "cancel", "Cancel"),
    ]:
        assert page.ids[button]["tag"] == "button"
        assert page.ids[button]["name"] == "action"
        assert page.ids[button]["value"] == value
        assert f">{label}</button>" in response.text
    assert len(page.forms) == 1
    assert page.forms[0]["method"] == "post"
    assert hidden_fields(page.forms[0]) == {"track": track_of(url)}
    assert '<dd id="merchant">aamarpaytest</dd>' in response.text
    assert '<dd id="amount">100.00</dd>' in response.text
    assert '<dd id="currency">BDT</dd>' in response.text
    assert "Fee &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in response.text
    assert "<script>alert" not in response.text
    assert "A &amp; B" in response.text
    assert "Closing this page abandons the payment" in response.text
    assert "<link" not in response.text  # no external assets
    assert "src=" not in response.text


def test_paynow_unknown_track(http: httpx.Client) -> None:
    response = http.get("/paynow.php", params={"track": "AAM0000000000000000"})
    assert response.status_code == 404
    assert "Invalid payment link" in response.text


def test_paynow_form_action_resolves_to_the_complete_endpoint(http: httpx.Client) -> None:
    url = initiate(http)["payment_url"]
    action = parse(http.get(url).text).forms[0]["action"]
    assert httpx.URL(url).join(action).path == "/paynow.php/complete"


def expected_success_fields(track: str, **changes: str) -> dict[str, str]:
    fields = {
        "pay_status": "Successful",
        "status_code": "2",
        "mer_txnid": "order-0001",
        "pg_txnid": track,
        "epw_txnid": track,
        "amount": "100.00",
        "amount_original": "100.00",
        "other_currency": "100.00",
        "currency": "BDT",
        "currency_merchant": "BDT",
        "convertion_rate": "",
        "store_amount": "97.90",
        "pg_service_charge_bdt": "2.10",
        "pg_service_charge_usd": "Not-Available",
        "gateway_fee": "",
        "card_type": "bKash-bKash",
        "card_number": "1234XXXXXXXXX123",
        "card_holder": "",
        "pg_card_bank_name": "Not Available",
        "pg_card_bank_country": "Not Available",
        "pg_card_risklevel": "0",
        "pg_error_code_details": "Not Available",
        "reason": "Not Available",
        "cus_name": "Rahim",
        "cus_email": "rahim@example.com",
        "cus_phone": "01700000000",
        "desc": "File upload fee",
        "success_url": "http://shop.test/api/payment/success/",
        "fail_url": "http://shop.test/api/payment/fail/",
        "ip_address": "127.0.0.1",
        "store_id": "aamarpaytest",
        "merchant_id": "aamarpaytest",
        "opt_a": "user-7",
        "opt_b": "",
        "opt_c": "",
        "opt_d": "",
    }
    return fields | changes


def test_success_returns_an_auto_submitting_form_to_success_url(
    http: httpx.Client, simulator: SimulatorControl
) -> None:
    url = initiate(http, opt_a="user-7")["payment_url"]
    response = complete(http, url, "bkash")

    assert response.status_code == 200
    page = parse(response.text)
    assert len(page.forms) == 1
    form = page.forms[0]
    assert (form["method"], form["action"]) == ("post", "http://shop.test/api/payment/success/")
    fields = hidden_fields(form)
    assert list(fields) == CALLBACK_FIELDS
    assert PAY_TIME_RE.match(fields.pop("pay_time"))
    assert re.fullmatch(r"\d{13}", fields.pop("bank_txn"))
    assert fields == expected_success_fields(track_of(url))
    assert "document.forms[0].submit()" in response.text
    assert page.ids["return-to-merchant"]["type"] == "submit"  # no-JS fallback

    record = simulator.transaction("order-0001")
    assert record["state"] == "successful"
    assert record["payment"]["method"] == "bkash"
    assert record["callback_url"] == "http://shop.test/api/payment/success/"
    assert record["callback"] == hidden_fields(form)


def test_visa_success_uses_dbbl_and_its_fee(http: httpx.Client) -> None:
    url = initiate(http)["payment_url"]
    fields = hidden_fields(parse(complete(http, url, "visa").text).forms[0])
    assert (fields["card_type"], fields["store_amount"], fields["pg_service_charge_bdt"]) == (
        "DBBL-VISA",
        "96.75",
        "3.25",
    )


def test_fail_posts_to_fail_url(http: httpx.Client, simulator: SimulatorControl) -> None:
    url = initiate(http)["payment_url"]
    response = complete(http, url, "fail")

    form = parse(response.text).forms[0]
    assert (form["method"], form["action"]) == ("post", "http://shop.test/api/payment/fail/")
    fields = hidden_fields(form)
    assert list(fields) == CALLBACK_FIELDS
    assert (fields["pay_status"], fields["status_code"], fields["bank_txn"]) == ("Failed", "7", "")
    assert (fields["pg_txnid"], fields["epw_txnid"]) == (track_of(url), track_of(url))
    assert (fields["amount"], fields["store_amount"]) == ("100.00", "0.00")
    assert fields["reason"] == "Transaction declined by the payment processor (simulated)"
    assert "document.forms[0].submit()" in response.text
    assert simulator.transaction("order-0001")["state"] == "failed"


def test_callback_values_are_escaped(http: httpx.Client) -> None:
    nasty = '"><script>alert(1)</script>'
    url = initiate(http, cus_name=nasty, opt_b="a&b")["payment_url"]
    response = complete(http, url, "bkash")
    assert "<script>alert(1)" not in response.text
    fields = hidden_fields(parse(response.text).forms[0])
    assert (fields["cus_name"], fields["opt_b"]) == (nasty, "a&b")


def test_completing_again_replays_the_same_callback(
    http: httpx.Client, simulator: SimulatorControl
) -> None:
    url = initiate(http)["payment_url"]
    first = hidden_fields(parse(complete(http, url, "bkash").text).forms[0])
    again = hidden_fields(parse(complete(http, url, "bkash").text).forms[0])
    assert again == first
    assert simulator.transaction("order-0001")["callback_count"] == 2

    replayed = hidden_fields(parse(complete(http, url, "visa").text).forms[0])
    assert replayed == first  # a success stays the same success
    for action in ("fail", "cancel"):
        conflict = complete(http, url, action)
        assert conflict.status_code == 409
        assert "already successful" in conflict.text
    assert "This payment is already successful." in http.get(url).text
    assert "pay-bkash" not in parse(http.get(url).text).ids


def test_cancel_redirects_to_cancel_url_unchanged(
    http: httpx.Client, simulator: SimulatorControl
) -> None:
    url = initiate(http)["payment_url"]
    response = complete(http, url, "cancel")

    assert response.status_code == 302
    assert (
        response.headers["location"]
        == "http://shop.test/api/payment/cancel/?tran_id=order-0001&x=%2F"
    )
    assert response.content == b""
    assert simulator.transaction("order-0001")["state"] == "cancelled"
    assert complete(http, url, "cancel").status_code == 302  # idempotent
    assert complete(http, url, "bkash").status_code == 409


def test_unknown_action_and_track(http: httpx.Client) -> None:
    url = initiate(http)["payment_url"]
    assert complete(http, url, "steal").status_code == 400
    missing = http.post("/paynow.php/complete", data={"track": "AAM1", "action": "bkash"})
    assert missing.status_code == 404


# -- trxcheck ------------------------------------------------------------------------------------


def assert_trxcheck_shape(data: Any) -> None:
    assert isinstance(data, dict)
    assert list(data) == TRXCHECK_KEYS
    assert all(value is None or isinstance(value, str) for value in data.values())


def test_trxcheck_initiated(http: httpx.Client, simulator: SimulatorControl) -> None:
    url = initiate(http, cus_city="Dhaka", opt_c="plan-a")["payment_url"]
    data = trxcheck(http, "order-0001")

    assert_trxcheck_shape(data)
    assert (data["pay_status"], data["status_code"], data["status_title"]) == (
        "Pending",
        "0",
        "Pending Transaction",
    )
    assert data["pg_txnid"] == track_of(url)
    assert data["mer_txnid"] == "order-0001"
    assert (
        data["amount"],
        data["amount_bdt"],
        data["amount_original"],
        data["amount_currency"],
    ) == (
        "100.00",
        "100.00",
        "100.00",
        "100.00",
    )
    assert (data["rec_amount"], data["store_amount"], data["processing_charge"]) == (
        "0.00",
        "0.00",
        "0.00",
    )
    assert (data["date_processed"], data["ip"]) == (None, None)
    assert data["cus_city"] == "Dhaka"
    assert data["cus_add1"] is None
    assert data["ship_name"] is None
    assert (data["opt_a"], data["opt_c"]) == ("Not-Available", "plan-a")
    assert (data["store_id"], data["merchant_id"]) == ("aamarpaytest", "aamarpaytest")
    assert (data["currency"], data["currency_merchant"], data["convertion_rate"]) == (
        "BDT",
        "BDT",
        "Not-Available",
    )
    assert (data["verify_status"], data["checkout_status"]) == ("PENDING", "Not-Paid-Yet")
    assert simulator.transaction("order-0001")["trxcheck_count"] == 1


def test_trxcheck_successful(http: httpx.Client, simulator: SimulatorControl) -> None:
    url = initiate(http)["payment_url"]
    callback = hidden_fields(parse(complete(http, url, "visa").text).forms[0])
    data = trxcheck(http, "order-0001")

    assert_trxcheck_shape(data)
    assert (data["pay_status"], data["status_code"], data["status_title"]) == (
        "Successful",
        "2",
        "Successful Transaction",
    )
    assert data["pg_txnid"] == callback["pg_txnid"]
    assert (data["rec_amount"], data["store_amount"]) == ("96.75", "96.75")
    assert (data["processing_ratio"], data["processing_charge"]) == ("3.25", "3.25")
    assert (data["payment_type"], data["payment_processor"]) == ("DBBL-VISA", "DBBL")
    assert data["bank_trxid"] == data["approval_code"] == callback["bank_txn"]
    assert data["date_processed"] == callback["pay_time"]
    assert (data["risk_level"], data["risk_title"], data["error_code"]) == ("0", "Safe", "No")


@pytest.mark.parametrize(
    ("action", "answer"),
    [
        ("fail", ("Failed", "7", "Failed Transaction")),
        ("cancel", ("Cancelled", "7", "Cancelled Transaction")),
    ],
)
def test_trxcheck_failed_and_cancelled(
    http: httpx.Client, action: str, answer: tuple[str, str, str]
) -> None:
    url = initiate(http)["payment_url"]
    complete(http, url, action)
    data = trxcheck(http, "order-0001")
    assert_trxcheck_shape(data)
    assert (data["pay_status"], data["status_code"], data["status_title"]) == answer
    assert (data["store_amount"], data["error_code"]) == ("0.00", "Yes")


def test_trxcheck_post_with_query_params(http: httpx.Client) -> None:
    initiate(http)
    query = {
        "request_id": "order-0001",
        "store_id": SIM_STORE_ID,
        "signature_key": SIM_SIGNATURE_KEY,
    }
    assert http.post(TRXCHECK, params=query).json()["pay_status"] == "Pending"
    assert http.post(TRXCHECK, data=query).json()["pay_status"] == "Pending"


def test_trxcheck_errors(http: httpx.Client, simulator: SimulatorControl) -> None:
    initiate(http)
    assert trxcheck(http, "order-0001", store_id="other") == "Invalid Store ID"
    assert trxcheck(http, "order-0001", signature_key="wrong") == "Invalid Signature Key"
    assert trxcheck(http, "order-0002") == "Invalid Request ID"
    assert (
        http.get(
            TRXCHECK, params={"store_id": SIM_STORE_ID, "signature_key": SIM_SIGNATURE_KEY}
        ).json()
        == "Invalid Request ID"
    )
    simulator.config(unknown_request_format="object")
    assert trxcheck(http, "order-0002") == {"error": "Invalid Request ID"}
    assert simulator.transaction("order-0001")["trxcheck_count"] == 0


# -- overrides -----------------------------------------------------------------------------------


def test_override_marks_paid_without_a_browser(
    http: httpx.Client, simulator: SimulatorControl
) -> None:
    initiate(http)
    record = simulator.override("order-0001", state="successful")
    assert (record["state"], record["reported_state"]) == ("initiated", "successful")
    data = trxcheck(http, "order-0001")
    assert (data["pay_status"], data["status_code"], data["payment_type"]) == (
        "Successful",
        "2",
        "bKash-bKash",
    )
    assert data["store_amount"] == "97.90"


def test_override_declares_a_paid_payment_failed(
    http: httpx.Client, simulator: SimulatorControl
) -> None:
    simulator_pay = initiate(http)
    complete(http, simulator_pay["payment_url"], "bkash")
    simulator.override("order-0001", state="failed")
    assert trxcheck(http, "order-0001")["pay_status"] == "Failed"
    simulator.override("order-0001", state=None)  # null removes the override
    assert trxcheck(http, "order-0001")["pay_status"] == "Successful"


def test_override_expired(http: httpx.Client, simulator: SimulatorControl) -> None:
    initiate(http)
    simulator.override("order-0001", state="expired")
    data = trxcheck(http, "order-0001")
    assert (data["pay_status"], data["status_code"], data["status_title"]) == (
        "Expired",
        "7",
        "Expired Transaction",
    )


def test_override_reported_fields(http: httpx.Client, simulator: SimulatorControl) -> None:
    initiate(http)
    simulator.pay("order-0001")
    record = simulator.override(
        "order-0001",
        amount="10.00",
        store_id="another-store",
        pg_txnid="AAM1700000000123456",
        risk_level=1,
        fields={"status_title": "Custom title", "verify_status": None},
    )
    assert record["overrides"] == {
        "amount": "10.00",
        "store_id": "another-store",
        "pg_txnid": "AAM1700000000123456",
        "risk_level": "1",
        "fields": {"status_title": "Custom title", "verify_status": None},
    }
    data = trxcheck(http, "order-0001")
    assert_trxcheck_shape(data)
    assert (data["amount"], data["amount_original"], data["amount_currency"]) == (
        "10.00",
        "10.00",
        "10.00",
    )
    assert (data["store_id"], data["merchant_id"]) == ("another-store", "another-store")
    assert data["pg_txnid"] == "AAM1700000000123456"
    assert (data["risk_level"], data["risk_title"]) == ("1", "Risky")
    assert (data["status_title"], data["verify_status"]) == ("Custom title", None)
    # the browser callback is not affected
    assert simulator.transaction("order-0001")["callback"]["amount"] == "100.00"


def test_override_currency(http: httpx.Client, simulator: SimulatorControl) -> None:
    initiate(http)
    simulator.override("order-0001", currency_merchant="USD")
    data = trxcheck(http, "order-0001")
    assert (data["currency"], data["currency_merchant"]) == ("BDT", "USD")
    assert (data["amount"], data["amount_original"]) == ("11000.00", "100.00")
    simulator.override("order-0001", currency_merchant=None, currency="USD")
    data = trxcheck(http, "order-0001")
    assert (data["currency"], data["currency_merchant"]) == ("USD", "USD")


def test_override_errors(http: httpx.Client, simulator: SimulatorControl) -> None:
    initiate(http)
    assert http.post("/_sim/transactions/nope", json={"state": "failed"}).status_code == 404
    assert http.post("/_sim/transactions/order-0001", json={"colour": "red"}).status_code == 422
    assert http.post("/_sim/transactions/order-0001", json={"state": "paid"}).status_code == 422
    assert http.post("/_sim/transactions/order-0001", json={"amount": "-1"}).status_code == 422
    assert http.get("/_sim/transactions/nope").status_code == 404


def test_sim_pay_returns_what_the_browser_form_posts(
    http: httpx.Client, simulator: SimulatorControl
) -> None:
    initiate(http, opt_a="user-7")
    paid = simulator.pay("order-0001", outcome="success", method="bkash")
    record = simulator.transaction("order-0001")

    assert paid["callback_url"] == "http://shop.test/api/payment/success/"
    assert paid["http_method"] == "POST"
    assert paid["fields"] == record["callback"]
    assert list(paid["fields"]) == CALLBACK_FIELDS
    expected = expected_success_fields(record["track"])
    assert {
        k: v for k, v in paid["fields"].items() if k not in ("pay_time", "bank_txn")
    } == expected
    # paying again with the same outcome replays, a different one conflicts
    assert simulator.pay("order-0001") == paid
    assert http.post("/_sim/pay/order-0001", json={"outcome": "fail"}).status_code == 409


def test_sim_pay_fail_and_cancel(http: httpx.Client, simulator: SimulatorControl) -> None:
    initiate(http, tran_id="order-0001")
    initiate(http, tran_id="order-0002")
    failed = simulator.pay("order-0001", outcome="fail", method="visa")
    assert failed["callback_url"] == "http://shop.test/api/payment/fail/"
    assert (failed["fields"]["pay_status"], failed["fields"]["card_type"]) == (
        "Failed",
        "DBBL-VISA",
    )
    cancelled = simulator.pay("order-0002", outcome="cancel")
    assert cancelled == {
        "callback_url": "http://shop.test/api/payment/cancel/?tran_id=order-0002&x=%2F",
        "http_method": "GET",
        "fields": {},
    }
    assert simulator.transaction("order-0002")["state"] == "cancelled"


# -- fault switches --------------------------------------------------------------------------------


def test_down_switch(http: httpx.Client, simulator: SimulatorControl) -> None:
    url = initiate(http)["payment_url"]
    assert simulator.config(down=True)["down"] is True

    for response in (
        http.post("/jsonpost.php", json=order("order-0002")),
        http.get(TRXCHECK, params={"request_id": "order-0001"}),
        http.get(url),
        complete(http, url, "bkash"),
    ):
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")
        assert "503 Service Temporarily Unavailable" in response.text
    assert simulator.transaction("order-0001")["state"] == "initiated"  # control API still up

    simulator.config(down=False)
    assert http.get(url).status_code == 200


def test_fault_endpoints_scope_the_switches(
    http: httpx.Client, simulator: SimulatorControl
) -> None:
    simulator.config(down=True, fault_endpoints=["trxcheck"])
    url = initiate(http)["payment_url"]
    assert http.get(url).status_code == 200
    assert http.get(TRXCHECK, params={"request_id": "order-0001"}).status_code == 503


def test_html_errors_switch(http: httpx.Client, simulator: SimulatorControl) -> None:
    initiate(http)
    simulator.config(html_errors=True)
    for response in (
        http.post("/jsonpost.php", json=order("order-0002")),
        http.get(TRXCHECK, params={"request_id": "order-0001"}),
    ):
        assert response.status_code == 500
        assert response.text.startswith("<!DOCTYPE html>")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_garbage_body_switch(http: httpx.Client, simulator: SimulatorControl) -> None:
    simulator.config(garbage_body=True)
    response = http.post("/jsonpost.php", json=order())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert simulator.transactions() == []


def test_content_type_switch(http: httpx.Client, simulator: SimulatorControl) -> None:
    simulator.config(content_type="text/html; charset=UTF-8")
    response = http.post("/jsonpost.php", json=order())
    assert response.headers["content-type"] == "text/html; charset=UTF-8"
    assert response.json()["result"] == "true"


@pytest.mark.parametrize(
    ("switch", "call"),
    [
        ("jsonpost_delay_seconds", lambda http: http.post("/jsonpost.php", json=order("slow-1"))),
        ("trxcheck_delay_seconds", lambda http: http.get(TRXCHECK, params={"request_id": "x"})),
    ],
)
def test_delay_switches(
    http: httpx.Client, simulator: SimulatorControl, switch: str, call: Any
) -> None:
    simulator.config(**{switch: 0.3})
    started = time.monotonic()
    response = call(http)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200


def test_config_validation_and_reset(http: httpx.Client, simulator: SimulatorControl) -> None:
    defaults = simulator.config()
    assert defaults == {
        "down": False,
        "html_errors": False,
        "garbage_body": False,
        "fault_endpoints": ["jsonpost", "trxcheck", "paynow"],
        "jsonpost_delay_seconds": 0.0,
        "trxcheck_delay_seconds": 0.0,
        "reject_initiate": None,
        "missing_field_format": "object",
        "unknown_request_format": "string",
        "content_type": "application/json",
        "usd_rate": "110.00",
        "ipn_url": None,
        "ipn_mode": "once",
        "ipn_delay_seconds": 0.0,
        "ipn_format": "json",
        "ipn_retries": 3,
    }
    assert http.post("/_sim/config", json={"dwon": True}).status_code == 422
    assert http.post("/_sim/config", json={"ipn_mode": "thrice"}).status_code == 422
    assert http.post("/_sim/config", json={"trxcheck_delay_seconds": -1}).status_code == 422
    assert http.post("/_sim/config", json={"missing_field_format": "xml"}).status_code == 422
    simulator.config(down=True, usd_rate="100")
    initiate_response = http.post("/jsonpost.php", json=order())
    assert initiate_response.status_code == 503
    simulator.config(down=False)
    initiate(http)
    simulator.reset()
    assert simulator.config() == defaults
    assert simulator.transactions() == []
    assert simulator.requests() == []


def test_request_log_never_holds_the_signature_key(
    http: httpx.Client, simulator: SimulatorControl
) -> None:
    initiate(http)
    trxcheck(http, "order-0001")
    log = simulator.requests()
    assert [(r["endpoint"], r["method"]) for r in log] == [
        ("jsonpost", "POST"),
        ("trxcheck", "GET"),
    ]
    assert log[0]["data"]["tran_id"] == "order-0001"
    assert log[1]["data"]["request_id"] == "order-0001"
    assert SIM_SIGNATURE_KEY not in json.dumps(log)
    assert SIM_SIGNATURE_KEY not in json.dumps(simulator.transactions())


# -- USD -------------------------------------------------------------------------------------------


def test_usd_is_converted_to_bdt(http: httpx.Client, simulator: SimulatorControl) -> None:
    url = initiate(http, amount="2.00", currency="USD")["payment_url"]
    page = http.get(url).text
    assert '<dd id="currency">USD</dd>' in page
    assert '<dd id="amount-bdt">220.00 BDT</dd>' in page

    fields = simulator.pay("order-0001", method="visa")["fields"]
    assert (fields["amount"], fields["amount_original"], fields["other_currency"]) == (
        "220.00",
        "2.00",
        "2.00",
    )
    assert (fields["currency"], fields["currency_merchant"], fields["convertion_rate"]) == (
        "BDT",
        "USD",
        "110.00",
    )
    assert (
        fields["store_amount"],
        fields["pg_service_charge_bdt"],
        fields["pg_service_charge_usd"],
    ) == (
        "212.85",
        "7.15",
        "0.07",
    )
    data = trxcheck(http, "order-0001")
    assert (data["amount"], data["amount_bdt"]) == ("220.00", "220.00")
    assert (data["amount_original"], data["amount_currency"]) == ("2.00", "2.00")
    assert (data["currency"], data["currency_merchant"], data["convertion_rate"]) == (
        "BDT",
        "USD",
        "110.00",
    )


def test_usd_rate_is_configurable(http: httpx.Client, simulator: SimulatorControl) -> None:
    simulator.config(usd_rate="120.50")
    initiate(http, amount="1.00", currency="USD")
    simulator.config(usd_rate="99")  # the rate is fixed when the order is made
    assert trxcheck(http, "order-0001")["amount"] == "120.50"
