"""One error envelope everywhere, and the request id round trip."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from tests.support import assert_error


async def test_unknown_path_is_404_envelope(client: AsyncClient) -> None:
    body = assert_error(await client.get("/no/such/page"), 404, "not_found")
    assert body["detail"] == "Not Found"


async def test_wrong_method_is_405_envelope(client: AsyncClient) -> None:
    resp = await client.delete("/api/auth/me/")
    assert_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["allow"]


async def test_validation_error_lists_fields(client: AsyncClient) -> None:
    resp = await client.post("/api/auth/register/", json={"username": 5})
    body = assert_error(resp, 422, "validation_error")
    locs = [item["loc"] for item in body["detail"]]
    assert ["body", "username"] in locs
    assert ["body", "password"] in locs
    assert all({"loc", "msg", "type"} == set(item) for item in body["detail"])


async def test_malformed_json_is_422_envelope(client: AsyncClient) -> None:
    resp = await client.post(
        "/api/auth/register/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(resp, 422, "validation_error")


@pytest.fixture
async def boom_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom: secret internals")

    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_unhandled_error_is_500_envelope_without_internals(
    boom_client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        resp = await boom_client.get("/boom", headers={"X-Request-ID": "trace-500"})
    body = assert_error(resp, 500, "internal_error")
    assert body["request_id"] == "trace-500"
    assert "kaboom" not in resp.text
    # The log line for the failure carries the same request id, and the traceback.
    records = [r for r in caplog.records if r.getMessage() == "unhandled_error"]
    assert records
    assert records[0].request_id == "trace-500"  # type: ignore[attr-defined]
    assert records[0].exc_info is not None


async def test_request_id_is_echoed(client: AsyncClient) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": "abc-123.def:9"})
    assert resp.headers["x-request-id"] == "abc-123.def:9"


async def test_request_id_is_generated_when_absent(client: AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("bad", ["x" * 200, "has space", "new\\nline", "semi;colon"])
async def test_unsafe_request_ids_are_replaced(client: AsyncClient, bad: str) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": bad})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])


async def test_error_body_carries_the_request_id(client: AsyncClient) -> None:
    resp = await client.get("/nowhere", headers={"X-Request-ID": "req-42"})
    assert resp.json()["request_id"] == "req-42"
    assert resp.headers["x-request-id"] == "req-42"


async def test_openapi_documents_the_error_envelope(client: AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    token_responses = spec["paths"]["/api/auth/token/"]["post"]["responses"]
    assert {"200", "401", "429"} <= set(token_responses)
    assert "ErrorBody" in json.dumps(token_responses["401"])
    # The OAuth2 password flow is declared, so Swagger's Authorize button works.
    schemes = spec["components"]["securitySchemes"]
    flow = next(iter(schemes.values()))
    assert flow["type"] == "oauth2"
    assert flow["flows"]["password"]["tokenUrl"] == "/api/auth/token/"


async def test_docs_page_is_served_from_local_assets(client: AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert "/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js" in html
    assert "cdn." not in html
    asset = await client.get("/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.content) > 100_000
