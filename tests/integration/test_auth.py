"""Registration, sign-in, `me`, throttling and forged tokens (SPEC §5 Auth)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient
from jose import jwt
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import ActivityLog, User
from tests.support import DEFAULT_PASSWORD, TEST_SECRET_KEY, UserFactory, assert_error


@pytest.fixture
async def user_factory(client: AsyncClient) -> UserFactory:
    """Here accounts are made as people make them: registered and signed in through the API."""
    return UserFactory(client)


async def test_register_returns_the_user_without_secrets(client: AsyncClient) -> None:
    resp = await client.post(
        "/api/auth/register/",
        json={"username": "rahim", "password": DEFAULT_PASSWORD, "email": "rahim@example.com"},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["username"] == "rahim"
    assert body["email"] == "rahim@example.com"
    assert body["is_active"] is True
    assert body["is_staff"] is False
    assert body["is_superuser"] is False
    assert datetime.fromisoformat(body["date_joined"]).utcoffset() == timedelta(0)
    assert "password" not in resp.text
    assert "argon2" not in resp.text


async def test_password_is_stored_as_argon2id(
    client: AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    await client.post(
        "/api/auth/register/", json={"username": "hashcheck", "password": DEFAULT_PASSWORD}
    )
    async with db() as session:
        stored = await session.scalar(
            select(User.hashed_password).where(User.username == "hashcheck")
        )
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert DEFAULT_PASSWORD not in stored


async def test_register_logs_registered(
    client: AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    resp = await client.post(
        "/api/auth/register/", json={"username": "logme", "password": DEFAULT_PASSWORD}
    )
    async with db() as session:
        actions = list(
            await session.scalars(
                select(ActivityLog.action).where(ActivityLog.user_id == resp.json()["id"])
            )
        )
    assert actions == ["registered"]


@pytest.mark.parametrize("second", ["taken", "TAKEN", "Taken"])
async def test_duplicate_username_is_409_regardless_of_case(
    client: AsyncClient, second: str
) -> None:
    first = await client.post(
        "/api/auth/register/", json={"username": "taken", "password": DEFAULT_PASSWORD}
    )
    assert first.status_code == 201
    resp = await client.post(
        "/api/auth/register/", json={"username": second, "password": DEFAULT_PASSWORD}
    )
    assert_error(resp, 409, "username_taken")


@pytest.mark.committed
async def test_concurrent_registrations_of_one_name_create_one_user(
    client: AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    results = await asyncio.gather(
        *(
            client.post(
                "/api/auth/register/", json={"username": "racer", "password": DEFAULT_PASSWORD}
            )
            for _ in range(8)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 7
    async with db() as session:
        users = list(await session.scalars(select(User).where(User.username == "racer")))
    assert len(users) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "ab", "password": DEFAULT_PASSWORD}, "username"),
        ({"username": "bad name", "password": DEFAULT_PASSWORD}, "username"),
        ({"username": "<script>", "password": DEFAULT_PASSWORD}, "username"),
        ({"username": "shortpw", "password": "short"}, "password"),
        ({"username": "digits", "password": "12345678901"}, "password"),
        ({"username": "common", "password": "password1"}, "password"),
        ({"username": "samesame", "password": "samesame"}, "password"),
        ({"username": "mailbad", "password": DEFAULT_PASSWORD, "email": "not-an-email"}, "email"),
        ({"password": DEFAULT_PASSWORD}, "username"),
    ],
)
async def test_invalid_registration_is_422_with_field_list(
    client: AsyncClient, payload: dict[str, str], field: str
) -> None:
    resp = await client.post("/api/auth/register/", json=payload)
    body = assert_error(resp, 422, "validation_error")
    assert isinstance(body["detail"], list)
    assert any(field in str(item["loc"]) or field in item["msg"] for item in body["detail"])


async def test_register_rejects_non_json_body(client: AsyncClient) -> None:
    resp = await client.post(
        "/api/auth/register/",
        content=b"username=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(resp, 422, "validation_error")


async def test_login_returns_a_bearer_token_and_logs_it(
    client: AsyncClient, user_factory: UserFactory, db: async_sessionmaker[AsyncSession]
) -> None:
    await client.post(
        "/api/auth/register/", json={"username": "loginer", "password": DEFAULT_PASSWORD}
    )
    resp = await client.post(
        "/api/auth/token/", data={"username": "loginer", "password": DEFAULT_PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 60 * 60
    claims = jwt.decode(body["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])
    assert {"sub", "iat", "exp"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 3600
    async with db() as session:
        actions = list(
            await session.scalars(
                select(ActivityLog.action)
                .join(User, User.id == ActivityLog.user_id)
                .where(User.username == "loginer")
                .order_by(ActivityLog.id)
            )
        )
    assert actions == ["registered", "login"]


async def test_login_accepts_any_case_of_the_username(client: AsyncClient) -> None:
    await client.post(
        "/api/auth/register/", json={"username": "MixedCase", "password": DEFAULT_PASSWORD}
    )
    resp = await client.post(
        "/api/auth/token/", data={"username": "mixedcase", "password": DEFAULT_PASSWORD}
    )
    assert resp.status_code == 200, resp.text


async def test_wrong_password_and_unknown_user_answer_alike(
    client: AsyncClient, user_factory: UserFactory
) -> None:
    known = await user_factory.create()
    wrong = await client.post(
        "/api/auth/token/", data={"username": known.username, "password": "not the password"}
    )
    unknown = await client.post(
        "/api/auth/token/", data={"username": "nobody-here", "password": "not the password"}
    )
    body_wrong = assert_error(wrong, 401, "invalid_credentials")
    body_unknown = assert_error(unknown, 401, "invalid_credentials")
    assert body_wrong["detail"] == body_unknown["detail"]
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_inactive_user_cannot_sign_in(
    client: AsyncClient, user_factory: UserFactory, db: async_sessionmaker[AsyncSession]
) -> None:
    u = await user_factory.create()
    async with db() as session:
        await session.execute(update(User).where(User.id == u.id).values(is_active=False))
        await session.commit()
    resp = await client.post(
        "/api/auth/token/", data={"username": u.username, "password": u.password}
    )
    assert_error(resp, 401, "invalid_credentials")


async def test_login_form_fields_are_required(client: AsyncClient) -> None:
    resp = await client.post("/api/auth/token/", data={"username": "x"})
    assert_error(resp, 422, "validation_error")


async def test_me_reports_the_user_and_no_upload_right_before_paying(
    client: AsyncClient, user_factory: UserFactory
) -> None:
    u = await user_factory.create(email="me@example.com")
    resp = await client.get("/api/auth/me/", headers=u.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == u.id
    assert body["username"] == u.username
    assert body["email"] == "me@example.com"
    assert body["can_upload"] is False
    assert body["uploads_remaining"] == 0


async def test_me_without_token_is_401(client: AsyncClient) -> None:
    resp = await client.get("/api/auth/me/")
    assert_error(resp, 401, "not_authenticated")
    assert resp.headers["www-authenticate"] == "Bearer"


# --- throttling ---------------------------------------------------------------------------


async def test_failed_logins_are_throttled_per_username(
    client: AsyncClient, user_factory: UserFactory
) -> None:
    u = await user_factory.create()
    for _ in range(10):
        resp = await client.post(
            "/api/auth/token/", data={"username": u.username, "password": "wrong guess"}
        )
        assert_error(resp, 401, "invalid_credentials")
    blocked = await client.post(
        "/api/auth/token/", data={"username": u.username, "password": "wrong guess"}
    )
    assert_error(blocked, 429, "too_many_requests")
    retry_after = int(blocked.headers["retry-after"])
    assert 1 <= retry_after <= 60
    # While throttled even the right password is refused: guessing gains nothing.
    right = await client.post(
        "/api/auth/token/", data={"username": u.username, "password": u.password}
    )
    assert_error(right, 429, "too_many_requests")
    # The lock is per username: other accounts still sign in.
    other = await user_factory.create()
    ok = await client.post(
        "/api/auth/token/", data={"username": other.username, "password": other.password}
    )
    assert ok.status_code == 200


async def test_failed_logins_are_throttled_per_client_address(
    client: AsyncClient, override_settings: object
) -> None:
    override_settings(login_address_failure_limit=5)  # type: ignore[operator]
    for i in range(5):
        resp = await client.post(
            "/api/auth/token/", data={"username": f"spray{i}", "password": "wrong guess"}
        )
        assert_error(resp, 401, "invalid_credentials")
    resp = await client.post(
        "/api/auth/token/", data={"username": "spray-new", "password": "wrong guess"}
    )
    assert_error(resp, 429, "too_many_requests")
    assert int(resp.headers["retry-after"]) >= 1


async def test_successful_login_resets_the_username_counter(
    client: AsyncClient, user_factory: UserFactory
) -> None:
    u = await user_factory.create()
    for _ in range(9):
        await client.post("/api/auth/token/", data={"username": u.username, "password": "nope"})
    ok = await client.post(
        "/api/auth/token/", data={"username": u.username, "password": u.password}
    )
    assert ok.status_code == 200
    for _ in range(9):
        resp = await client.post(
            "/api/auth/token/", data={"username": u.username, "password": "nope"}
        )
        assert resp.status_code == 401


# --- forged tokens ------------------------------------------------------------------------


def _claims(user_id: int, **changes: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "typ": "access",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg_none(user_id: int) -> str:
    import json

    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(user_id)).encode())
    return f"{header}.{payload}."


def _tampered(user_id: int, token: str) -> str:
    import json

    header, _payload, signature = token.split(".")
    forged = _b64(json.dumps(_claims(user_id + 1000)).encode())
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    "forge",
    [
        "alg_none",
        "other_key",
        "tampered",
        "expired",
        "hs512",
        "no_exp",
        "no_sub",
        "sub_not_a_number",
        "unknown_user",
        "garbage",
        "wrong_type",
    ],
)
async def test_forged_tokens_are_401(
    client: AsyncClient, user_factory: UserFactory, forge: str
) -> None:
    u = await user_factory.create()
    past = datetime.now(UTC) - timedelta(hours=2)
    tokens = {
        "alg_none": lambda: _alg_none(u.id),
        "other_key": lambda: jwt.encode(_claims(u.id), "another-key" * 4, algorithm="HS256"),
        "tampered": lambda: _tampered(u.id, u.token),
        "expired": lambda: jwt.encode(
            _claims(
                u.id,
                iat=int(past.timestamp()),
                exp=int((past + timedelta(minutes=60)).timestamp()),
            ),
            TEST_SECRET_KEY,
            algorithm="HS256",
        ),
        "hs512": lambda: jwt.encode(_claims(u.id), TEST_SECRET_KEY, algorithm="HS512"),
        "no_exp": lambda: jwt.encode(_claims(u.id, exp=None), TEST_SECRET_KEY, algorithm="HS256"),
        "no_sub": lambda: jwt.encode(_claims(u.id, sub=None), TEST_SECRET_KEY, algorithm="HS256"),
        "sub_not_a_number": lambda: jwt.encode(
            _claims(u.id, sub="admin"), TEST_SECRET_KEY, algorithm="HS256"
        ),
        "unknown_user": lambda: jwt.encode(
            _claims(u.id + 10_000), TEST_SECRET_KEY, algorithm="HS256"
        ),
        "garbage": lambda: "not-a-jwt",
        "wrong_type": lambda: jwt.encode(
            _claims(u.id, typ="refresh"), TEST_SECRET_KEY, algorithm="HS256"
        ),
    }
    resp = await client.get("/api/auth/me/", headers={"Authorization": f"Bearer {tokens[forge]()}"})
    assert_error(resp, 401, "invalid_token")


async def test_token_of_a_deactivated_user_stops_working(
    client: AsyncClient, user_factory: UserFactory, db: async_sessionmaker[AsyncSession]
) -> None:
    u = await user_factory.create()
    assert (await client.get("/api/auth/me/", headers=u.headers)).status_code == 200
    async with db() as session:
        await session.execute(update(User).where(User.id == u.id).values(is_active=False))
        await session.commit()
    resp = await client.get("/api/auth/me/", headers=u.headers)
    assert_error(resp, 401, "invalid_token")
