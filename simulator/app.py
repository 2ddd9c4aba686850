"""aamarPay sandbox simulator: a small FastAPI app speaking the gateway's merchant protocol.

Protocol endpoints (what the real sandbox offers):

* ``POST /jsonpost.php`` - initiate; the raw body is read as JSON whatever the Content-Type.
* ``GET /paynow.php?track=AAM...`` - hosted checkout page (bKash / VISA / Fail / Cancel).
* ``POST /paynow.php/complete`` - the checkout page's buttons post here (form fields ``track``
  and ``action`` = ``bkash`` | ``visa`` | ``fail`` | ``cancel``).
* ``GET|POST /api/v1/trxcheck/request.php`` - Search Transaction.

Choices for behaviour the protocol notes leave open (section 11 of the notes):

* A body that is not a JSON object is treated as an empty order, so it is answered
  ``"Invalid Store ID"`` (the first check that fails).
* Validation order on jsonpost: store_id, signature_key, the ``reject_initiate`` switch, required
  fields (in the order tran_id, amount, currency, success_url, fail_url, cancel_url, desc, cus_name,
  cus_email, cus_phone, type), ``type == "json"``, tran_id length (<= 32), amount (decimal string or
  JSON number, > 0, at most two decimals), currency (BDT or USD), URLs (absolute http(s), printable
  ASCII), and only then the duplicate tran_id check. Field errors are ``{"<field>": "<message>"}``
  (the ``missing_field_format`` switch changes the shape). Every answer is HTTP 200.
* trxcheck answers per state (pay_status / status_code / status_title):

  ==========  ============  ===========  =========================
  state       pay_status    status_code  status_title
  ==========  ============  ===========  =========================
  initiated   Pending       0            Pending Transaction
  successful  Successful    2            Successful Transaction
  failed      Failed        7            Failed Transaction
  cancelled   Cancelled     7            Cancelled Transaction
  expired     Expired       7            Expired Transaction
  ==========  ============  ===========  =========================

  ``expired`` is reachable only through an override (the simulator never expires a checkout).
  Unpaid states report ``rec_amount``/``store_amount``/``processing_charge`` ``"0.00"``,
  ``processing_ratio`` ``"0.00"``, ``date_processed``/``ip`` ``null`` and payment details
  ``"Not-Available"``; failure states report ``error_code`` ``"Yes"``.
* Unknown or missing ``request_id`` (with valid credentials): the bare JSON string
  ``"Invalid Request ID"`` (switch ``unknown_request_format="object"`` answers
  ``{"error": "Invalid Request ID"}`` instead). Bad credentials: the same strings as jsonpost.
* Completing a finished checkout again with the same outcome replays the same callback form
  (browser refresh / back button); any other change answers HTTP 409. Cancelling is allowed only
  while unpaid (and is idempotent).
* The delay switches delay only the answer: the request is processed (and its effects kept) on
  arrival, so a client that times out on jsonpost leaves an initiated transaction behind, as a
  lost answer from the real gateway would; a later reset is never undone by a late request.
* Times are Bangladesh time (UTC+6) in ``YYYY-MM-DD HH:MM:SS``. USD orders are converted to BDT
  at the rate in force when the order was initiated.

The test-control API under ``/_sim/`` is never affected by the fault switches; see the README.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, ConfigDict

from simulator.gateway import (
    METHODS,
    Conflict,
    FaultEndpoint,
    Gateway,
    Method,
    SimConfig,
    SimulatorSettings,
    State,
    Transaction,
    TransactionOverrides,
    money,
)
from simulator.ipn import IpnSender

TEMPLATES = Path(__file__).resolve().parent / "templates"

DOWN_HTML = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
ERROR_HTML = (
    "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1><p>The server encountered an internal error or "
    "misconfiguration and was unable to complete your request.</p></body></html>\n"
)
GARBAGE_BODY = (
    "<br />\n<b>Warning</b>:  mysqli_connect(): (HY000/2002): Connection refused in "
    "<b>/var/www/html/config.php</b> on line <b>12</b><br />\n"
    '{"result":"tr'
)


class ConfigUpdate(BaseModel):
    """Partial update of :class:`SimConfig`; only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    down: bool | None = None
    html_errors: bool | None = None
    garbage_body: bool | None = None
    fault_endpoints: list[FaultEndpoint] | None = None
    jsonpost_delay_seconds: float | None = None
    trxcheck_delay_seconds: float | None = None
    reject_initiate: str | dict[str, str] | None = None
    missing_field_format: Literal["object", "string", "result_false"] | None = None
    unknown_request_format: Literal["string", "object"] | None = None
    content_type: str | None = None
    usd_rate: str | float | None = None
    ipn_url: str | None = None
    ipn_mode: Literal["once", "twice", "never"] | None = None
    ipn_delay_seconds: float | None = None
    ipn_format: Literal["json", "form"] | None = None
    ipn_retries: int | None = None


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["success", "fail", "cancel"] = "success"
    method: Method = Method.BKASH


def _decode_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def create_app(settings: SimulatorSettings | None = None) -> FastAPI:
    """Build the simulator app (usable as a uvicorn ``--factory`` target; env configures it)."""
    settings = settings or SimulatorSettings.from_env()
    gateway = Gateway(settings)
    templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    app = FastAPI(
        title="aamarPay sandbox simulator",
        docs_url="/_sim/docs",
        openapi_url="/_sim/openapi.json",
        redoc_url=None,
    )
    app.state.gateway = gateway
    ipn = IpnSender()
    app.state.ipn = ipn

    def notify(tx: Transaction, fields: dict[str, str]) -> None:
        ipn.payment_finished(tx.tran_id, fields, gateway.config, settings.ipn_url)

    def json_answer(data: Any) -> Response:
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        return Response(body, status_code=200, media_type=gateway.config.content_type)

    def html(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        page = templates.get_template(template).render(**context)
        return HTMLResponse(page, status_code=status_code)

    def message_page(status_code: int, title: str, message: str) -> HTMLResponse:
        return html("message.html", status_code, title=title, message=message)

    def fault(endpoint: FaultEndpoint) -> Response | None:
        cfg = gateway.config
        if endpoint not in cfg.fault_endpoints:
            return None
        if cfg.down:
            return HTMLResponse(DOWN_HTML, status_code=503)
        if endpoint != "paynow" and cfg.html_errors:
            return HTMLResponse(ERROR_HTML, status_code=500)
        if endpoint != "paynow" and cfg.garbage_body:
            return HTMLResponse(GARBAGE_BODY, status_code=200)
        return None

    def public_base(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    def client_ip(request: Request) -> str:
        return request.client.host if request.client is not None else "127.0.0.1"

    # -- protocol endpoints ------------------------------------------------------------

    @app.post("/jsonpost.php", include_in_schema=False)
    async def jsonpost(request: Request) -> Response:
        body = _decode_object(await request.body())
        delay = gateway.config.jsonpost_delay_seconds
        failure = fault("jsonpost")
        if failure is not None:
            gateway.log_request("jsonpost", "POST", body, f"HTTP {failure.status_code}")
            response = failure
        else:
            answer = gateway.initiate(body, public_base(request))
            gateway.log_request("jsonpost", "POST", body, answer)
            response = json_answer(answer)
        if delay:  # processed on arrival; only the answer is late
            await asyncio.sleep(delay)
        return response

    @app.api_route("/api/v1/trxcheck/request.php", methods=["GET", "POST"], include_in_schema=False)
    async def trxcheck(request: Request) -> Response:
        params: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.body()
            params.update(_decode_object(raw) or dict(parse_qsl(raw.decode("latin-1"))))
        params.update(request.query_params)
        delay = gateway.config.trxcheck_delay_seconds
        failure = fault("trxcheck")
        if failure is not None:
            gateway.log_request("trxcheck", request.method, params, f"HTTP {failure.status_code}")
            response = failure
        else:
            answer = gateway.trxcheck(params)
            gateway.log_request("trxcheck", request.method, params, answer)
            response = json_answer(answer)
        if delay:  # processed on arrival; only the answer is late
            await asyncio.sleep(delay)
        return response

    @app.get("/paynow.php", include_in_schema=False)
    async def paynow(track: str = "") -> Response:
        failure = fault("paynow")
        if failure is not None:
            return failure
        tx = gateway.find_track(track)
        if tx is None:
            return message_page(404, "Invalid payment link", "No payment matches this link.")
        return html(
            "checkout.html",
            tx=tx,
            amount=money(tx.amount),
            amount_bdt=money(tx.amount_bdt),
            methods=METHODS,
        )

    @app.post("/paynow.php/complete", include_in_schema=False)
    async def complete(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        failure = fault("paynow")
        if failure is not None:
            return failure
        tx = gateway.find_track(form.get("track", ""))
        if tx is None:
            return message_page(404, "Invalid payment link", "No payment matches this link.")
        action = form.get("action", "")
        try:
            if action == "cancel":
                return Response(status_code=302, headers={"location": gateway.cancel(tx)})
            if action == "bkash-close":
                # A person who pays and closes the tab: only the IPN reaches the merchant.
                fields = gateway.complete(tx, State.SUCCESSFUL, Method.BKASH, client_ip(request))
                notify(tx, fields)
                return message_page(
                    200,
                    "Paid, tab closed",
                    "The payment went through, and this browser does not go back to the "
                    "merchant: only the IPN tells the merchant.",
                )
            if action in ("bkash", "visa"):
                fields = gateway.complete(tx, State.SUCCESSFUL, Method(action), client_ip(request))
            elif action == "fail":
                fields = gateway.complete(tx, State.FAILED, Method.BKASH, client_ip(request))
            else:
                return message_page(400, "Unknown action", "Choose one of the buttons.")
        except Conflict as exc:
            return message_page(409, "Payment already finished", str(exc))
        notify(tx, fields)
        return html(
            "callback.html",
            action=gateway.callback_url(tx),
            fields=fields,
            successful=tx.state == State.SUCCESSFUL,
        )

    # -- control API -------------------------------------------------------------------

    def find(tran_id: str) -> Transaction:
        tx = gateway.transactions.get(tran_id)
        if tx is None:
            raise HTTPException(status_code=404, detail=f"unknown tran_id {tran_id!r}")
        return tx

    @app.get("/_sim/config", tags=["control"])
    async def get_config() -> SimConfig:
        return gateway.config

    @app.post("/_sim/config", tags=["control"])
    async def set_config(update: ConfigUpdate) -> SimConfig:
        defaults = SimConfig(usd_rate=settings.usd_rate)
        merged = gateway.config.model_dump()
        for name in update.model_fields_set:  # a field sent as null goes back to its default
            value = getattr(update, name)
            merged[name] = getattr(defaults, name) if value is None else value
        try:
            gateway.config = SimConfig.model_validate(merged)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return gateway.config

    @app.post("/_sim/reset", tags=["control"])
    async def reset() -> dict[str, bool]:
        gateway.reset()
        ipn.reset()
        return {"ok": True}

    @app.get("/_sim/transactions", tags=["control"])
    async def list_transactions() -> list[dict[str, Any]]:
        return [gateway.describe(tx) for tx in gateway.transactions.values()]

    @app.get("/_sim/transactions/{tran_id}", tags=["control"])
    async def get_transaction(tran_id: str) -> dict[str, Any]:
        return gateway.describe(find(tran_id))

    @app.post("/_sim/transactions/{tran_id}", tags=["control"])
    async def override_transaction(tran_id: str, overrides: TransactionOverrides) -> dict[str, Any]:
        tx = find(tran_id)
        gateway.apply_overrides(tx, overrides)
        return gateway.describe(tx)

    @app.get("/_sim/trxcheck/{tran_id}", tags=["control"])
    async def peek_trxcheck(tran_id: str) -> dict[str, str | None]:
        """What trxcheck would answer now (does not count as a trxcheck call)."""
        return gateway.trxcheck_object(find(tran_id))

    @app.post("/_sim/pay/{tran_id}", tags=["control"])
    async def pay(tran_id: str, body: PayRequest, request: Request) -> dict[str, Any]:
        tx = find(tran_id)
        try:
            if body.outcome == "cancel":
                return {"callback_url": gateway.cancel(tx), "http_method": "GET", "fields": {}}
            outcome = State.SUCCESSFUL if body.outcome == "success" else State.FAILED
            fields = gateway.complete(tx, outcome, body.method, client_ip(request))
        except Conflict as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        notify(tx, fields)
        return {"callback_url": gateway.callback_url(tx), "http_method": "POST", "fields": fields}

    @app.get("/_sim/ipn", tags=["control"])
    async def list_ipn_deliveries() -> list[dict[str, Any]]:
        """Every IPN attempt: tran_id, copy, attempt, url, and the status or error."""
        return ipn.deliveries

    @app.get("/_sim/requests", tags=["control"])
    async def list_requests() -> list[dict[str, Any]]:
        return gateway.requests

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return message_page(
            200,
            "aamarPay sandbox simulator",
            "Protocol: /jsonpost.php, /paynow.php, /api/v1/trxcheck/request.php. "
            "Test control: /_sim/ (see /_sim/docs).",
        )

    return app
