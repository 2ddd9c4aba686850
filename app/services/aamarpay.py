"""Typed async client for the aamarPay merchant API: initiate a payment, search a transaction.

The client only speaks HTTP through the :class:`httpx.AsyncClient` it is given; it reads no
settings and knows nothing about the web framework. Failures are split in two:

* :class:`GatewayRejected` - the gateway answered and refused (bad credentials, duplicate or
  invalid order; for initiation also an HTTP 4xx other than 408/425/429): permanent, retrying
  the same request will not help.
* :class:`GatewayUnavailable` - no usable answer (timeout, connection error, HTTP 5xx/408/429,
  an unexpected redirect, a body that is not JSON): transient, try again later. A Search
  Transaction that gets any non-2xx answer is reported this way too, since nothing can be
  concluded about the payment from it.

Both derive from :class:`GatewayError` and carry ``message``, the redacted ``request`` that was
sent (when there was one) and the ``raw`` answer, so callers can store "what we sent and what
the gateway said". The signature key is never logged, stored or put into an error message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import httpx

from app.errors import GatewayError, GatewayRejected, GatewayUnavailable

__all__ = [
    "AamarPayClient",
    "GatewayError",
    "GatewayRejected",
    "GatewayUnavailable",
    "InitiateResult",
    "SignatureKeyLogFilter",
    "TransactionStatus",
    "format_amount",
    "install_log_redaction",
    "make_http_client",
    "parse_initiate_response",
    "parse_transaction_status",
    "redact",
]

logger = logging.getLogger(__name__)

INITIATE_PATH: Final = "/jsonpost.php"
TRXCHECK_PATH: Final = "/api/v1/trxcheck/request.php"
MAX_TRAN_ID_LENGTH: Final = 32
SECRET_FIELDS: Final = frozenset({"signature_key"})
CREDENTIAL_ERRORS: Final = frozenset({"invalid store id", "invalid signature key"})
FAILED_STATUSES: Final = frozenset({"failed", "expired", "cancelled", "canceled"})
_NOT_AVAILABLE: Final = frozenset({"", "not-available", "not available"})
_TRANSIENT_STATUS: Final = frozenset({408, 425, 429})
_CENT: Final = Decimal("0.01")
_SECRET_IN_TEXT = re.compile(r"(signature_key=)[^&\s\"']*")
_RAW_BODY_LIMIT: Final = 500


@dataclass(frozen=True, slots=True)
class InitiateResult:
    """An order the gateway accepted."""

    payment_url: str
    request: dict[str, Any]  # what was sent, without the signature key
    raw: dict[str, Any]  # the gateway's answer


@dataclass(frozen=True, slots=True)
class TransactionStatus:
    """The gateway's Search Transaction answer, parsed.

    ``amount`` and ``currency`` are in the merchant's currency (``amount_original`` /
    ``currency_merchant``), not the BDT-converted settlement amount.
    """

    tran_id: str  # the id that was asked for
    found: bool
    pay_status: str | None
    status_code: str | None
    status_title: str | None
    mer_txnid: str | None
    amount: Decimal | None
    currency: str | None
    store_id: str | None
    pg_txnid: str | None
    risk_level: str | None
    raw: dict[str, Any]

    @property
    def is_successful(self) -> bool:
        """pay_status is Successful (any case) and status_code, when present, is "2"."""
        if self.pay_status is None or self.pay_status.casefold() != "successful":
            return False
        return self.status_code is None or self.status_code == "2"

    @property
    def is_failed(self) -> bool:
        """A definitive non-payment: Failed, Expired or Cancelled, or status_code "7"."""
        if self.is_successful:
            return False
        status = (self.pay_status or "").casefold()
        return status in FAILED_STATUSES or self.status_code == "7"


# -- helpers ---------------------------------------------------------------------------


def redact(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` without the signature key, safe to store or show."""
    return {key: value for key, value in data.items() if key not in SECRET_FIELDS}


def format_amount(amount: Decimal) -> str:
    """Two-decimal string for the gateway; refuses amounts that would need rounding."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"amount must be a finite Decimal, got {amount!r}")
    if amount <= 0:
        raise ValueError(f"amount must be positive, got {amount}")
    quantized = amount.quantize(_CENT)
    if quantized != amount:
        raise ValueError(f"amount has more than two decimals: {amount}")
    return f"{quantized:f}"


def _scrub_text(text: str, secret: str = "") -> str:
    text = _SECRET_IN_TEXT.sub(r"\1***", text)
    return text.replace(secret, "***") if secret else text


class SignatureKeyLogFilter(logging.Filter):
    """Masks ``signature_key=...`` in log records (httpx logs full request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _scrub_text(str(arg)) if "signature_key=" in str(arg) else arg
                for arg in record.args
            )
        elif isinstance(record.msg, str) and "signature_key=" in record.msg:
            record.msg = _scrub_text(record.msg)
        return True


def install_log_redaction() -> None:
    """Attach :class:`SignatureKeyLogFilter` to the httpx logger (idempotent)."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, SignatureKeyLogFilter) for f in httpx_logger.filters):
        httpx_logger.addFilter(SignatureKeyLogFilter())


def make_http_client(timeout_connect: float = 5.0, timeout_read: float = 15.0) -> httpx.AsyncClient:
    """The HTTP client to share for the app's lifetime, with explicit timeouts."""
    install_log_redaction()
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=timeout_connect, read=timeout_read, write=timeout_read, pool=timeout_connect
        ),
        follow_redirects=False,
        headers={"Accept": "application/json"},
    )


def _text(value: Any) -> str | None:
    """A scalar answer field as a stripped string (None for null, objects and lists)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float | Decimal):
        return str(value)
    return None


def _first_available(body: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = _text(body.get(name))
        if value is not None and value.casefold() not in _NOT_AVAILABLE:
            return value
    return None


def _decimal(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value.replace(",", ""))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _join_values(body: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for key, value in body.items():
        if key == "result" or value is None or value == "":
            continue
        parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return "; ".join(parts)


def _is_http_url(value: str) -> bool:
    url = value.strip()
    return url.startswith(("https://", "http://")) and len(url) > len("https://")


# -- parsing (pure) ----------------------------------------------------------------------


def parse_initiate_response(body: Any, request: dict[str, Any]) -> InitiateResult:
    """Interpret a decoded jsonpost answer; ``request`` must already be redacted."""
    if isinstance(body, dict):
        result = body.get("result")
        accepted = result is True or (isinstance(result, str) and result.strip().lower() == "true")
        payment_url = body.get("payment_url")
        if accepted and isinstance(payment_url, str) and _is_http_url(payment_url):
            url = payment_url.strip()
            return InitiateResult(payment_url=url, request=request, raw=redact(body))
        if accepted:
            message = "gateway accepted the order but sent no usable payment_url"
        else:
            message = _join_values(body) or f"gateway refused the order (result={result!r})"
        raise GatewayRejected(message, request=request, raw=redact(body))
    if isinstance(body, str):
        raise GatewayRejected(body.strip() or "empty answer", request=request, raw=body)
    raise GatewayUnavailable(
        f"unexpected answer of type {type(body).__name__}", request=request, raw=body
    )


def parse_transaction_status(tran_id: str, body: Any) -> TransactionStatus:
    """Interpret a decoded trxcheck answer for ``tran_id``."""
    if isinstance(body, str):
        message = body.strip()
        if message.casefold() in CREDENTIAL_ERRORS:
            raise GatewayRejected(message, raw=body)
        return _not_found(tran_id, {"message": message})
    if not isinstance(body, dict):
        raise GatewayUnavailable(f"unexpected answer of type {type(body).__name__}", raw=body)
    raw = redact(body)
    if body.get("pay_status") is None and body.get("mer_txnid") is None:
        # An error object rather than a transaction, e.g. {"error": "Invalid Request ID"}.
        for value in body.values():
            if isinstance(value, str) and value.strip().casefold() in CREDENTIAL_ERRORS:
                raise GatewayRejected(value.strip(), raw=raw)
        return _not_found(tran_id, raw)
    currency = _first_available(body, "currency_merchant", "currency")
    return TransactionStatus(
        tran_id=tran_id,
        found=True,
        pay_status=_text(body.get("pay_status")),
        status_code=_text(body.get("status_code")),
        status_title=_text(body.get("status_title")),
        mer_txnid=_text(body.get("mer_txnid")),
        amount=_decimal(_first_available(body, "amount_original", "amount_currency", "amount")),
        currency=currency.upper() if currency is not None else None,
        store_id=_text(body.get("store_id")),
        pg_txnid=_first_available(body, "pg_txnid", "epw_txnid"),
        risk_level=_first_available(body, "risk_level", "pg_card_risklevel"),
        raw=raw,
    )


def _not_found(tran_id: str, raw: dict[str, Any]) -> TransactionStatus:
    return TransactionStatus(
        tran_id=tran_id,
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
        raw=raw,
    )


# -- client ------------------------------------------------------------------------------


class AamarPayClient:
    """aamarPay merchant API over a shared :class:`httpx.AsyncClient`."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, store_id: str, signature_key: str
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._store_id = store_id
        self._signature_key = signature_key
        install_log_redaction()

    def __repr__(self) -> str:
        return f"AamarPayClient(base_url={self._base_url!r}, store_id={self._store_id!r})"

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def store_id(self) -> str:
        return self._store_id

    async def initiate(
        self,
        *,
        tran_id: str,
        amount: Decimal,
        currency: str,
        success_url: str,
        fail_url: str,
        cancel_url: str,
        desc: str,
        cus_name: str,
        cus_email: str,
        cus_phone: str,
        opt_a: str | None = None,
        opt_b: str | None = None,
        opt_c: str | None = None,
        opt_d: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> InitiateResult:
        """Create a hosted-checkout order; the customer's browser goes to ``payment_url``.

        ``extra`` carries optional protocol fields such as ``cus_add1`` or ``cus_country``.
        Raises :class:`ValueError` for an invalid ``tran_id`` (1-32 chars) or amount (positive,
        at most two decimals), :class:`GatewayRejected` when the gateway refuses and
        :class:`GatewayUnavailable` when it gives no usable answer.
        """
        if not 0 < len(tran_id) <= MAX_TRAN_ID_LENGTH:
            raise ValueError(f"tran_id must be 1 to {MAX_TRAN_ID_LENGTH} characters")
        payload: dict[str, str] = {
            "store_id": self._store_id,
            "signature_key": self._signature_key,
            "tran_id": tran_id,
            "success_url": success_url,
            "fail_url": fail_url,
            "cancel_url": cancel_url,
            "amount": format_amount(amount),
            "currency": currency,
            "desc": desc,
            "cus_name": cus_name,
            "cus_email": cus_email,
            "cus_phone": cus_phone,
        }
        for name, value in (("opt_a", opt_a), ("opt_b", opt_b), ("opt_c", opt_c), ("opt_d", opt_d)):
            if value is not None:
                payload[name] = value
        for name, value in (extra or {}).items():
            if name in payload or name == "type":
                raise ValueError(f"extra field {name!r} would replace a required field")
            payload[name] = value
        payload["type"] = "json"
        sent = redact(payload)

        body = await self._call("POST", INITIATE_PATH, sent, json_body=payload, permanent_4xx=True)
        try:
            result = parse_initiate_response(body, sent)
        except GatewayError as exc:
            exc.redact(self._scrub)
            logger.warning(
                "aamarpay initiate %s tran_id=%s: %s",
                "rejected" if isinstance(exc, GatewayRejected) else "unusable answer",
                tran_id,
                exc.message,
            )
            raise
        logger.info("aamarpay initiate accepted tran_id=%s", tran_id)
        return result

    async def search_transaction(self, tran_id: str) -> TransactionStatus:
        """Ask the gateway (server to server) what became of ``tran_id``.

        An unknown id gives ``found=False``. Raises :class:`GatewayRejected` only for
        credential errors and :class:`GatewayUnavailable` when there is no usable answer
        (any HTTP status other than 2xx counts as that: nothing can be concluded from it).
        """
        if not tran_id:
            raise ValueError("tran_id must not be empty")
        params = {
            "request_id": tran_id,
            "store_id": self._store_id,
            "signature_key": self._signature_key,
            "type": "json",
        }
        body = await self._call("GET", TRXCHECK_PATH, None, params=params, permanent_4xx=False)
        if isinstance(body, str):  # a message that may be stored: never with the key in it
            body = self._scrub(body)
        try:
            status = parse_transaction_status(tran_id, body)
        except GatewayError as exc:
            exc.redact(self._scrub)
            logger.warning("aamarpay trxcheck failed tran_id=%s: %s", tran_id, exc.message)
            raise
        logger.info(
            "aamarpay trxcheck tran_id=%s found=%s pay_status=%s status_code=%s",
            tran_id,
            status.found,
            status.pay_status,
            status.status_code,
        )
        return status

    # -- transport -----------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return _scrub_text(text, self._signature_key)

    async def _call(
        self,
        method: str,
        path: str,
        sent: dict[str, Any] | None,
        *,
        json_body: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        permanent_4xx: bool,
    ) -> Any:
        """Send one request and return the decoded JSON body, or raise a GatewayError."""
        url = self._base_url + path
        try:
            response = await self._http.request(method, url, json=json_body, params=params)
        except httpx.TimeoutException as exc:
            raise self._unavailable(f"timed out ({type(exc).__name__})", sent, path) from None
        except httpx.HTTPError as exc:
            reason = f"connection failed ({type(exc).__name__}: {exc})"
            raise self._unavailable(reason, sent, path) from None

        status = response.status_code
        if not 200 <= status < 300:
            snippet = self._scrub(response.text[:_RAW_BODY_LIMIT])
            raw = {"status_code": status, "body": snippet}
            reason = f"HTTP {status} from the gateway"
            if permanent_4xx and 400 <= status < 500 and status not in _TRANSIENT_STATUS:
                logger.warning("aamarpay %s rejected: %s", path, reason)
                raise GatewayRejected(reason, request=sent, raw=raw, http_status=status)
            raise self._unavailable(reason, sent, path, raw=raw, status_code=status)
        try:
            return json.loads(response.content.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            raw = {"status_code": status, "body": self._scrub(response.text[:_RAW_BODY_LIMIT])}
            content_type = response.headers.get("content-type", "no content type")
            reason = f"answer is not JSON (HTTP {status}, {content_type})"
            raise self._unavailable(reason, sent, path, raw=raw, status_code=status) from None

    def _unavailable(
        self,
        reason: str,
        sent: dict[str, Any] | None,
        path: str,
        *,
        raw: Any = None,
        status_code: int | None = None,
    ) -> GatewayUnavailable:
        reason = self._scrub(reason)
        logger.warning("aamarpay %s unavailable: %s", path, reason)
        return GatewayUnavailable(reason, request=sent, raw=raw, http_status=status_code)
