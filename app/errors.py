"""One error envelope for every 4xx/5xx: {"error": code, "detail": ..., "request_id": id}.

Services raise `AppError` subclasses (never HTTPException) so the worker and the CLI can use
them too; the handlers below turn them, and every framework error, into the envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.logging import REQUEST_ID_HEADER, get_request_id

logger = logging.getLogger("app.errors")


class AppError(Exception):
    status_code = 400
    code = "bad_request"
    default_detail = "Bad request"

    def __init__(
        self,
        detail: Any = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = detail if detail is not None else self.default_detail
        if code is not None:
            self.code = code
        self.headers = headers or {}
        super().__init__(str(self.detail))


class NotAuthenticated(AppError):
    status_code = 401
    code = "not_authenticated"
    default_detail = "Authentication required"

    def __init__(self, detail: Any = None, *, code: str | None = None) -> None:
        super().__init__(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


class InvalidCredentials(NotAuthenticated):
    code = "invalid_credentials"
    default_detail = "Incorrect username or password"


class InvalidToken(NotAuthenticated):
    code = "invalid_token"
    default_detail = "Invalid or expired token"


class PaymentRequired(AppError):
    status_code = 402
    code = "payment_required"
    default_detail = "Pay for upload access first"


class PaymentNotVerified(AppError):
    status_code = 402
    code = "payment_not_verified"
    default_detail = "The gateway did not confirm this payment"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    default_detail = "Not allowed"


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    default_detail = "Not found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    default_detail = "Conflict"


class FileTooLarge(AppError):
    status_code = 413
    code = "file_too_large"
    default_detail = "The file is larger than the upload limit"


class RequestTooLarge(AppError):
    status_code = 413
    code = "request_too_large"
    default_detail = "The request body is larger than this route accepts"


class UnsupportedFileType(AppError):
    status_code = 415
    code = "unsupported_file_type"
    default_detail = "Only .txt and .docx files are accepted"


class InvalidInput(AppError):
    status_code = 422
    code = "validation_error"
    default_detail = "Invalid input"


class UploadTimeout(AppError):
    status_code = 408
    code = "upload_timeout"
    default_detail = "The upload stalled: no data arrived in time"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"
    default_detail = "Too many attempts; try again later"

    def __init__(self, retry_after: int, detail: Any = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after


class TooManyPendingPayments(AppError):
    status_code = 429
    code = "too_many_pending_payments"
    default_detail = "You already have the maximum number of unpaid payments"


class GatewayError(AppError):
    """The payment gateway did not accept or answer a request: the one exception family the
    gateway client (app/services/aamarpay.py) raises and the API answers. What the gateway
    sent (`raw`) and what we sent (`request`, never with the signature key) stay on the
    exception for the record; the answer carries only the message."""

    status_code = 502
    code = "gateway_error"
    default_detail = "The payment gateway refused the request"

    def __init__(
        self,
        message: str | None = None,
        *,
        request: dict[str, Any] | None = None,
        raw: Any = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.request = request
        self.raw = raw
        #: The gateway's own HTTP status, when it answered with one.
        self.http_status = http_status

    @property
    def message(self) -> str:
        return str(self.detail)

    def redact(self, scrub: Callable[[str], str]) -> None:
        """Pass the message through `scrub` (e.g. to remove a credential echoed back)."""
        self.detail = scrub(self.message)
        self.args = (self.detail,)


class GatewayRejected(GatewayError):
    """The gateway answered and refused the request (permanent)."""


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached or gave no usable answer (transient)."""

    status_code = 503
    code = "gateway_unavailable"
    default_detail = "The payment gateway cannot be reached; try again shortly"


class StorageUnavailable(AppError):
    status_code = 503
    code = "storage_unavailable"
    default_detail = "The file storage cannot be reached; try again shortly"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    default_detail = "A dependency is unavailable"


class ErrorBody(BaseModel):
    """The envelope, for the OpenAPI schema."""

    error: str
    detail: Any
    request_id: str


_STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "upload_timeout",
    409: "conflict",
    413: "file_too_large",
    415: "unsupported_file_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    502: "gateway_error",
    503: "service_unavailable",
}


def error_response(
    request: Request,
    status_code: int,
    code: str,
    detail: Any,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": code, "detail": jsonable_encoder(detail), "request_id": get_request_id()}
    return JSONResponse(body, status_code=status_code, headers=headers)


def responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: each error class with the envelope schema."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        entry = out.setdefault(err.status_code, {"model": ErrorBody, "description": ""})
        codes = [c for c in entry["description"].split(", ") if c]
        entry["description"] = ", ".join([*codes, f"`{err.code}`"])
    return out


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)  # noqa: S101
    return error_response(request, exc.status_code, exc.code, exc.detail, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, code, exc.detail, dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    fields = [
        {
            "loc": list(err.get("loc", ())),
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]
    return error_response(request, 422, "validation_error", fields)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Runs outside the request-id middleware (Starlette's outermost layer), which therefore
    # cannot add the header to this answer: add it here.
    request_id = get_request_id()
    logger.exception("unhandled_error", extra={"path": request.url.path, "request_id": request_id})
    response = error_response(request, 500, "internal_error", "Internal server error")
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled)
