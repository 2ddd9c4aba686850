"""In-memory model of the aamarPay sandbox: transactions, validation and the field sets it emits.

Nothing here speaks HTTP; :mod:`simulator.app` maps requests onto :class:`Gateway`.
The choices made where the real gateway's behaviour is unknown are documented in
:mod:`simulator.app` and in the package README.
"""

from __future__ import annotations

import hmac
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_STORE_ID = "aamarpaytest"
DEFAULT_SIGNATURE_KEY = "dbb74894e82415a2f7ff0ec3a97e4183"
DEFAULT_USD_RATE = Decimal("110.00")

INVALID_STORE_ID = "Invalid Store ID"
INVALID_SIGNATURE_KEY = "Invalid Signature Key"
INVALID_REQUEST_ID = "Invalid Request ID"
DUPLICATE_TRAN_ID = "Dublicate Transaction ID Provided By You."  # misspelling is verbatim

#: The gateway runs on Bangladesh time (UTC+6, no daylight saving).
DHAKA = timezone(timedelta(hours=6), "Asia/Dhaka")
CENT = Decimal("0.01")
NOT_AVAILABLE = "Not Available"
NOT_AVAILABLE_DASHED = "Not-Available"
MAX_TRAN_ID_LENGTH = 32

REQUIRED_FIELDS: tuple[str, ...] = (
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
)
URL_FIELDS: tuple[str, ...] = ("success_url", "fail_url", "cancel_url")
CURRENCIES: tuple[str, ...] = ("BDT", "USD")
ADDRESS_FIELDS: tuple[str, ...] = (
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
)
OPT_FIELDS: tuple[str, ...] = ("opt_a", "opt_b", "opt_c", "opt_d")
SANDBOX_CARD_NUMBER = "1234XXXXXXXXX123"

_AMOUNT_RE = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")
# Printable ASCII without space; keeps the cancel redirect and form action byte-exact.
_URL_RE = re.compile(r"^https?://[!-~]+$")


class State(StrEnum):
    """Life cycle of a simulated transaction."""

    INITIATED = "initiated"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Method(StrEnum):
    """Sandbox payment methods offered on the checkout page."""

    BKASH = "bkash"
    VISA = "visa"


@dataclass(frozen=True, slots=True)
class MethodInfo:
    label: str
    card_type: str
    processor: str
    ratio: Decimal  # fee in percent of the BDT amount


METHODS: dict[Method, MethodInfo] = {
    Method.BKASH: MethodInfo("bKash", "bKash-bKash", "bKash", Decimal("2.10")),
    Method.VISA: MethodInfo("VISA", "DBBL-VISA", "DBBL", Decimal("3.25")),
}

#: What trxcheck reports per state: (pay_status, status_code, status_title).
STATUS: dict[State, tuple[str, str, str]] = {
    State.INITIATED: ("Pending", "0", "Pending Transaction"),
    State.SUCCESSFUL: ("Successful", "2", "Successful Transaction"),
    State.FAILED: ("Failed", "7", "Failed Transaction"),
    State.CANCELLED: ("Cancelled", "7", "Cancelled Transaction"),
    State.EXPIRED: ("Expired", "7", "Expired Transaction"),
}

FAILURE_REASON = "Transaction declined by the payment processor (simulated)"

FaultEndpoint = Literal["jsonpost", "trxcheck", "paynow"]
ALL_ENDPOINTS: tuple[FaultEndpoint, ...] = ("jsonpost", "trxcheck", "paynow")


def money(value: Decimal) -> str:
    """Two-decimal string, as the gateway prints amounts."""
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def now_dhaka() -> datetime:
    return datetime.now(DHAKA)


def gateway_time(moment: datetime) -> str:
    return moment.astimezone(DHAKA).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class SimulatorSettings:
    """Start-up settings; the runtime switches live in :class:`SimConfig`."""

    store_id: str = DEFAULT_STORE_ID
    signature_key: str = DEFAULT_SIGNATURE_KEY
    public_url: str | None = None  # None: derive from each request's own base URL
    usd_rate: Decimal = DEFAULT_USD_RATE
    #: The merchant's IPN listener (given to aamarPay once); None: no IPN is sent.
    ipn_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorSettings:
        env = os.environ if environ is None else environ
        rate = env.get("SIMULATOR_USD_RATE")
        return cls(
            store_id=env.get("SIMULATOR_STORE_ID") or DEFAULT_STORE_ID,
            signature_key=env.get("SIMULATOR_SIGNATURE_KEY") or DEFAULT_SIGNATURE_KEY,
            public_url=(env.get("SIMULATOR_PUBLIC_URL") or None),
            usd_rate=Decimal(rate) if rate else DEFAULT_USD_RATE,
            ipn_url=(env.get("SIMULATOR_IPN_URL") or None),
        )


class SimConfig(BaseModel):
    """Global test switches, changed through ``POST /_sim/config``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    down: bool = False
    html_errors: bool = False
    garbage_body: bool = False
    fault_endpoints: list[FaultEndpoint] = Field(default_factory=lambda: list(ALL_ENDPOINTS))
    jsonpost_delay_seconds: float = Field(default=0.0, ge=0, le=120)
    trxcheck_delay_seconds: float = Field(default=0.0, ge=0, le=120)
    reject_initiate: str | dict[str, str] | None = None
    missing_field_format: Literal["object", "string", "result_false"] = "object"
    unknown_request_format: Literal["string", "object"] = "string"
    content_type: str = "application/json"
    usd_rate: Decimal = Field(default=DEFAULT_USD_RATE, gt=0, max_digits=12, decimal_places=4)
    #: Where the IPN goes (overrides the start-up `ipn_url`; "" = none).
    ipn_url: str | None = None
    #: `once` (the default), `twice` (a duplicate), `never`.
    ipn_mode: Literal["once", "twice", "never"] = "once"
    #: Wait this long after the payment before sending it (a late IPN).
    ipn_delay_seconds: float = Field(default=0.0, ge=0, le=600)
    #: `json` (aamarPay's documented sample) or `form`.
    ipn_format: Literal["json", "form"] = "json"
    #: Sends again after a non-2xx answer or no answer, this many times, a second apart.
    ipn_retries: int = Field(default=3, ge=0, le=10)


class TransactionOverrides(BaseModel):
    """Per-transaction changes to what trxcheck reports (``POST /_sim/transactions/{id}``).

    A field sent as ``null`` removes that override.
    """

    model_config = ConfigDict(extra="forbid")

    state: State | None = None
    amount: Decimal | None = Field(default=None, gt=0)
    currency: str | None = None
    currency_merchant: str | None = None
    store_id: str | None = None
    pg_txnid: str | None = None
    risk_level: str | int | None = None
    fields: dict[str, str | None] | None = None


@dataclass(slots=True)
class Payment:
    """What happened on the checkout page (or was declared through an override)."""

    outcome: State
    method: Method
    time: datetime
    bank_txn: str
    ip: str


@dataclass(slots=True)
class Transaction:
    tran_id: str
    track: str
    store_id: str
    request: dict[str, Any]  # the jsonpost body without signature_key
    amount: Decimal  # in the merchant's currency
    currency: str  # the merchant's currency (BDT or USD)
    usd_rate: Decimal  # captured at initiation
    payment_url: str
    created_at: datetime
    state: State = State.INITIATED
    payment: Payment | None = None
    callback_count: int = 0
    trxcheck_count: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    synthetic: dict[State, Payment] = field(default_factory=dict)

    def text(self, name: str) -> str:
        """A request field as the gateway would echo it ("" when not sent)."""
        value = self.request.get(name)
        return "" if value is None else str(value)

    def optional(self, name: str) -> str | None:
        value = self.request.get(name)
        if value is None or (isinstance(value, str) and value == ""):
            return None
        return str(value)

    def bdt(self, amount: Decimal) -> Decimal:
        if self.currency == "USD":
            return (amount * self.usd_rate).quantize(CENT, rounding=ROUND_HALF_UP)
        return amount.quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def amount_bdt(self) -> Decimal:
        return self.bdt(self.amount)

    @property
    def reported_state(self) -> State:
        state = self.overrides.get("state")
        return state if isinstance(state, State) else self.state


class Conflict(Exception):
    """The transaction is already finished in another way."""


def parse_amount(value: object) -> Decimal | None:
    """Amount as the gateway accepts it: decimal string or JSON number, > 0, at most 2 dp."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        # repr() is the shortest round trip: 100.0 -> "100.0", 0.1 + 0.2 -> "0.30000000000000004"
        text = repr(value).removesuffix(".0")
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    if not _AMOUNT_RE.match(text):
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex already guarantees a decimal
        return None
    return amount if amount > 0 else None


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def validate_order(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """First problem with a jsonpost order as ``(field, message)``, or None when valid."""
    for name in REQUIRED_FIELDS:
        value = body.get(name)
        if _is_missing(value):
            return name, f"{name} is required."
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            return name, f"{name} is invalid."
    if str(body["type"]) != "json":
        return "type", "type must be json."
    tran_id = str(body["tran_id"])
    if len(tran_id) > MAX_TRAN_ID_LENGTH:
        return "tran_id", f"tran_id must not exceed {MAX_TRAN_ID_LENGTH} characters."
    if parse_amount(body["amount"]) is None:
        return "amount", "Invalid amount."
    if str(body["currency"]) not in CURRENCIES:
        return "currency", "Invalid currency."
    for name in URL_FIELDS:
        if not _URL_RE.match(str(body[name])):
            return name, f"{name} must be an absolute http(s) URL."
    return None


def fees(amount_bdt: Decimal, method: Method) -> tuple[Decimal, Decimal]:
    """(processing charge, store amount) in BDT for a successful payment."""
    charge = (amount_bdt * METHODS[method].ratio / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    return charge, amount_bdt - charge


class Gateway:
    """All simulator state: one store, its transactions and the switches."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.transactions: dict[str, Transaction] = {}
        self.by_track: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.config = SimConfig(usd_rate=settings.usd_rate)
        self._counter = random.randint(100_000, 400_000)

    def reset(self) -> None:
        self.transactions.clear()
        self.by_track.clear()
        self.requests.clear()
        self.config = SimConfig(usd_rate=self.settings.usd_rate)

    # -- request log -------------------------------------------------------------------

    def log_request(self, endpoint: str, method: str, data: Mapping[str, Any], answer: Any) -> None:
        self.requests.append(
            {
                "time": datetime.now(UTC).isoformat(),
                "endpoint": endpoint,
                "method": method,
                "data": {k: v for k, v in data.items() if k != "signature_key"},
                "answer": answer,
            }
        )
        del self.requests[:-1000]

    # -- credentials -------------------------------------------------------------------

    def check_credentials(self, store_id: object, signature_key: object) -> str | None:
        if not isinstance(store_id, str) or store_id != self.settings.store_id:
            return INVALID_STORE_ID
        if not isinstance(signature_key, str) or not hmac.compare_digest(
            signature_key.encode(), self.settings.signature_key.encode()
        ):
            return INVALID_SIGNATURE_KEY
        return None

    # -- jsonpost ----------------------------------------------------------------------

    def _field_error(self, name: str, message: str) -> Any:
        fmt = self.config.missing_field_format
        if fmt == "string":
            return message
        if fmt == "result_false":
            return {"result": "false", "message": message}
        return {name: message}

    def _new_track(self) -> str:
        while True:
            self._counter = self._counter + 1 if self._counter < 999_999 else 100_000
            track = f"AAM{int(time.time()):010d}{self._counter:06d}"
            if track not in self.by_track:
                return track

    def initiate(self, body: Mapping[str, Any], public_base: str) -> Any:
        """Answer to a jsonpost body (already decoded; non-objects arrive as ``{}``)."""
        problem = self.check_credentials(body.get("store_id"), body.get("signature_key"))
        if problem is not None:
            return problem
        if self.config.reject_initiate is not None:
            return self.config.reject_initiate
        invalid = validate_order(body)
        if invalid is not None:
            return self._field_error(*invalid)
        tran_id = str(body["tran_id"])
        if tran_id in self.transactions:
            return {"tran_id": DUPLICATE_TRAN_ID}
        amount = parse_amount(body["amount"])
        assert amount is not None  # noqa: S101 - validate_order checked it
        track = self._new_track()
        payment_url = f"{public_base.rstrip('/')}/paynow.php?track={track}"
        self.transactions[tran_id] = Transaction(
            tran_id=tran_id,
            track=track,
            store_id=self.settings.store_id,
            request={k: v for k, v in body.items() if k != "signature_key"},
            amount=amount.quantize(CENT),
            currency=str(body["currency"]),
            usd_rate=self.config.usd_rate,
            payment_url=payment_url,
            created_at=now_dhaka(),
        )
        self.by_track[track] = tran_id
        return {"result": "true", "payment_url": payment_url}

    # -- checkout ----------------------------------------------------------------------

    def find_track(self, track: str) -> Transaction | None:
        tran_id = self.by_track.get(track)
        return None if tran_id is None else self.transactions.get(tran_id)

    def complete(self, tx: Transaction, outcome: State, method: Method, ip: str) -> dict[str, str]:
        """Finish a checkout as successful or failed; returns the callback form fields.

        Completing again with the same outcome replays the same fields (browser refresh);
        any other change to a finished transaction raises :class:`Conflict`.
        """
        if outcome not in (State.SUCCESSFUL, State.FAILED):
            raise ValueError(outcome)
        if tx.state == State.INITIATED:
            tx.payment = Payment(
                outcome=outcome,
                method=method,
                time=now_dhaka(),
                bank_txn=f"{random.randint(10**12, 10**13 - 1)}"
                if outcome == State.SUCCESSFUL
                else "",
                ip=ip,
            )
            tx.state = outcome
        elif tx.state != outcome or tx.payment is None:
            raise Conflict(f"transaction is already {tx.state}")
        tx.callback_count += 1
        return self.callback_fields(tx)

    def cancel(self, tx: Transaction) -> str:
        """Cancel an unpaid checkout; returns the cancel_url to send the browser to."""
        if tx.state not in (State.INITIATED, State.CANCELLED):
            raise Conflict(f"transaction is already {tx.state}")
        tx.state = State.CANCELLED
        return tx.text("cancel_url")

    def callback_url(self, tx: Transaction) -> str:
        return tx.text("success_url" if tx.state == State.SUCCESSFUL else "fail_url")

    def callback_fields(self, tx: Transaction) -> dict[str, str]:
        """Every field of the success/fail browser POST (protocol section 5)."""
        payment = tx.payment
        assert payment is not None  # noqa: S101 - only called on finished checkouts
        ok = payment.outcome == State.SUCCESSFUL
        info = METHODS[payment.method]
        amount_bdt = tx.amount_bdt
        charge, store_amount = fees(amount_bdt, payment.method) if ok else (Decimal(0), Decimal(0))
        usd = tx.currency == "USD"
        fields: dict[str, str] = {
            "pay_status": "Successful" if ok else "Failed",
            "status_code": "2" if ok else "7",
            "mer_txnid": tx.tran_id,
            "pg_txnid": tx.track,
            "epw_txnid": tx.track,
            "amount": money(amount_bdt),
            "amount_original": money(tx.amount),
            "other_currency": money(tx.amount),
            "currency": "BDT",
            "currency_merchant": tx.currency,
            "convertion_rate": money(tx.usd_rate) if usd else "",
            "store_amount": money(store_amount),
            "pg_service_charge_bdt": money(charge),
            "pg_service_charge_usd": money(charge / tx.usd_rate) if usd else NOT_AVAILABLE_DASHED,
            "gateway_fee": "",
            "pay_time": gateway_time(payment.time),
            "bank_txn": payment.bank_txn,
            "card_type": info.card_type,
            "card_number": SANDBOX_CARD_NUMBER,
            "card_holder": "",
            "pg_card_bank_name": NOT_AVAILABLE,
            "pg_card_bank_country": NOT_AVAILABLE,
            "pg_card_risklevel": "0",
            "pg_error_code_details": NOT_AVAILABLE if ok else FAILURE_REASON,
            "reason": NOT_AVAILABLE if ok else FAILURE_REASON,
            "cus_name": tx.text("cus_name"),
            "cus_email": tx.text("cus_email"),
            "cus_phone": tx.text("cus_phone"),
            "desc": tx.text("desc"),
            "success_url": tx.text("success_url"),
            "fail_url": tx.text("fail_url"),
            "ip_address": payment.ip,
            "store_id": tx.store_id,
            "merchant_id": tx.store_id,
        }
        for name in OPT_FIELDS:
            fields[name] = tx.text(name)
        return fields

    # -- trxcheck ----------------------------------------------------------------------

    def unknown_request(self) -> Any:
        if self.config.unknown_request_format == "object":
            return {"error": INVALID_REQUEST_ID}
        return INVALID_REQUEST_ID

    def trxcheck(self, params: Mapping[str, Any]) -> Any:
        problem = self.check_credentials(params.get("store_id"), params.get("signature_key"))
        if problem is not None:
            return problem
        request_id = params.get("request_id")
        tx = self.transactions.get(request_id) if isinstance(request_id, str) else None
        if tx is None:
            return self.unknown_request()
        tx.trxcheck_count += 1
        return self.trxcheck_object(tx)

    def _reported_payment(self, tx: Transaction, state: State) -> Payment | None:
        if tx.payment is not None and tx.payment.outcome == state:
            return tx.payment
        if state not in (State.SUCCESSFUL, State.FAILED):
            return None
        if state not in tx.synthetic:  # declared through an override, never paid in a browser
            tx.synthetic[state] = Payment(
                outcome=state,
                method=Method.BKASH,
                time=now_dhaka(),
                bank_txn=f"{random.randint(10**12, 10**13 - 1)}"
                if state == State.SUCCESSFUL
                else "",
                ip="127.0.0.1",
            )
        return tx.synthetic[state]

    def trxcheck_object(self, tx: Transaction) -> dict[str, str | None]:
        """The flat Search Transaction answer (protocol section 6), overrides applied."""
        ov = tx.overrides
        state = tx.reported_state
        payment = self._reported_payment(tx, state)
        paid = state == State.SUCCESSFUL and payment is not None
        pay_status, status_code, status_title = STATUS[state]
        amount = ov.get("amount", tx.amount)
        assert isinstance(amount, Decimal)  # noqa: S101
        currency_merchant = str(ov.get("currency_merchant", ov.get("currency", tx.currency)))
        currency = str(ov.get("currency", "BDT"))
        amount_bdt = (
            (amount * tx.usd_rate).quantize(CENT, rounding=ROUND_HALF_UP)
            if currency_merchant == "USD"
            else amount
        )
        if paid and payment is not None:
            charge, store_amount = fees(amount_bdt, payment.method)
            ratio = money(METHODS[payment.method].ratio)
        else:
            charge, store_amount, ratio = Decimal(0), Decimal(0), money(Decimal(0))
        info = METHODS[payment.method] if payment is not None else None
        risk_level = str(ov.get("risk_level", "0"))
        store_id = str(ov.get("store_id", tx.store_id))
        bank = payment.bank_txn if paid and payment is not None else NOT_AVAILABLE_DASHED
        failed = state in (State.FAILED, State.CANCELLED, State.EXPIRED)

        obj: dict[str, str | None] = {
            "pg_txnid": str(ov.get("pg_txnid", tx.track)),
            "mer_txnid": tx.tran_id,
            "risk_title": "Safe" if risk_level == "0" else "Risky",
            "risk_level": risk_level,
            "cus_name": tx.text("cus_name"),
            "cus_email": tx.text("cus_email"),
            "cus_phone": tx.text("cus_phone"),
            "desc": tx.text("desc"),
        }
        for name in ADDRESS_FIELDS:
            obj[name] = tx.optional(name)
        obj.update(
            {
                "merchant_id": store_id,
                "store_id": store_id,
                "amount": money(amount_bdt),
                "amount_bdt": money(amount_bdt),
                "amount_original": money(amount),
                "pay_status": pay_status,
                "status_code": status_code,
                "status_title": status_title,
                "cardnumber": SANDBOX_CARD_NUMBER if payment is not None else NOT_AVAILABLE_DASHED,
                "approval_code": bank,
                "payment_processor": info.processor if info is not None else NOT_AVAILABLE_DASHED,
                "bank_trxid": bank,
                "payment_type": info.card_type if info is not None else NOT_AVAILABLE_DASHED,
                "error_code": "Yes" if failed else "No",
                "error_title": status_title if failed else NOT_AVAILABLE,
                "bin_country": NOT_AVAILABLE,
                "bin_issuer": NOT_AVAILABLE,
                "bin_cardtype": NOT_AVAILABLE,
                "bin_cardcategory": NOT_AVAILABLE,
                "date": gateway_time(tx.created_at),
                "date_processed": gateway_time(payment.time) if payment is not None else None,
                "amount_currency": money(amount),
                "rec_amount": money(store_amount),
                "store_amount": money(store_amount),
                "processing_ratio": ratio,
                "processing_charge": money(charge),
                "ip": payment.ip if payment is not None else None,
                "currency": currency,
                "currency_merchant": currency_merchant,
                "convertion_rate": (
                    money(tx.usd_rate) if currency_merchant == "USD" else NOT_AVAILABLE_DASHED
                ),
            }
        )
        for name in OPT_FIELDS:
            obj[name] = tx.text(name) or NOT_AVAILABLE_DASHED
        obj.update(
            {
                "verify_status": "PENDING",
                "call_type": "Post-Method",
                "email_send": NOT_AVAILABLE_DASHED,
                "doc_recived": "NO",
                "checkout_status": "Not-Paid-Yet",
            }
        )
        extra = ov.get("fields")
        if isinstance(extra, dict):
            obj.update(extra)
        return obj

    # -- control API -------------------------------------------------------------------

    def apply_overrides(self, tx: Transaction, overrides: TransactionOverrides) -> None:
        for name in overrides.model_fields_set:
            value = getattr(overrides, name)
            if value is None:
                tx.overrides.pop(name, None)
            elif name == "risk_level":
                tx.overrides[name] = str(value)
            elif name == "amount":
                tx.overrides[name] = Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
            else:
                tx.overrides[name] = value

    def describe(self, tx: Transaction) -> dict[str, Any]:
        """JSON view of a transaction for ``GET /_sim/transactions``."""
        payment = tx.payment
        overrides = {
            k: (money(v) if isinstance(v, Decimal) else v) for k, v in tx.overrides.items()
        }
        return {
            "tran_id": tx.tran_id,
            "track": tx.track,
            "store_id": tx.store_id,
            "state": tx.state.value,
            "reported_state": tx.reported_state.value,
            "amount": money(tx.amount),
            "currency": tx.currency,
            "amount_bdt": money(tx.amount_bdt),
            "usd_rate": money(tx.usd_rate),
            "payment_url": tx.payment_url,
            "created_at": tx.created_at.isoformat(),
            "payment": None
            if payment is None
            else {
                "outcome": payment.outcome.value,
                "method": payment.method.value,
                "time": payment.time.isoformat(),
                "bank_txn": payment.bank_txn,
                "ip": payment.ip,
            },
            "callback_url": self.callback_url(tx) if payment is not None else None,
            "callback": self.callback_fields(tx) if payment is not None else None,
            "callback_count": tx.callback_count,
            "trxcheck_count": tx.trxcheck_count,
            "overrides": overrides,
            "request": tx.request,
        }
