"""Settings: the one place that reads the environment (and `.env`).

Every variable of SPEC §3 is here, with the embedded defaults that make `make run` work on a
machine with nothing but Python: SQLite and media under `var/`, a filesystem Celery broker.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The development-only signing key. Refused unless ENVIRONMENT=development.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"  # noqa: S105

#: The public aamarPay sandbox credentials (published by aamarPay; not a secret).
SANDBOX_STORE_ID = "aamarpaytest"
SANDBOX_SIGNATURE_KEY = "dbb74894e82415a2f7ff0ec3a97e4183"  # noqa: S105

#: Local state of the embedded default (database, media, broker), relative to the working directory.
VAR_DIR = Path("var")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    environment: Literal["development", "test", "production"] = "development"

    database_url: str = f"sqlite+aiosqlite:///{VAR_DIR / 'app.db'}"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    db_pool_recycle_seconds: int = Field(default=1800, ge=1)

    #: Empty means the embedded filesystem broker under `var/broker/`.
    celery_broker_url: str = ""
    celery_result_backend: str | None = None
    #: Redis only: how long an unacknowledged job waits before it is delivered again.
    celery_visibility_timeout_seconds: int = Field(default=3600, ge=1)
    #: Redis for shared counters (login throttling). Defaults to the broker when it is Redis.
    redis_url: str | None = None

    media_root: Path = VAR_DIR / "media"
    #: Folder of the embedded filesystem broker (only used when CELERY_BROKER_URL is empty).
    embedded_broker_dir: Path = VAR_DIR / "broker"

    secret_key: str = DEV_SECRET_KEY
    access_token_expire_minutes: int = Field(default=60, ge=1)

    public_base_url: str = "http://127.0.0.1:8000"

    aamarpay_base_url: str = "https://sandbox.aamarpay.com"
    aamarpay_store_id: str = SANDBOX_STORE_ID
    aamarpay_signature_key: str = SANDBOX_SIGNATURE_KEY
    aamarpay_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    aamarpay_read_timeout_seconds: float = Field(default=20.0, gt=0)

    payment_amount: Decimal = Field(default=Decimal("100.00"), gt=0, decimal_places=2)
    payment_currency: str = "BDT"
    uploads_per_payment: int = Field(default=0, ge=0)

    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    #: How long an API process may answer `GET /api/files/` from memory (needs Redis, which
    #: carries the change announcements; 0 turns the cache off). See app/services/filecache.py.
    file_list_cache_seconds: float = Field(default=5.0, ge=0)

    reconcile_interval_seconds: int = Field(default=60, ge=1)
    stuck_after_seconds: int = Field(default=300, ge=1)
    #: A payment the gateway still calls unpaid after this long is closed as failed (expired).
    pending_payment_expiry_seconds: int = Field(default=86400, ge=60)
    #: Unpaid (`pending`) payments one person may hold; one more initiation answers 429.
    max_pending_payments_per_user: int = Field(default=5, ge=1)
    #: Pending payments the reconcile job asks the gateway about per run, at most.
    reconcile_batch_size: int = Field(default=100, ge=1)

    #: Failed logins allowed per username / per client address within the window.
    login_failure_limit: int = Field(default=10, ge=1)
    login_address_failure_limit: int = Field(default=30, ge=1)
    login_failure_window_seconds: int = Field(default=60, ge=1)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("celery_result_backend", "redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("payment_currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.strip().upper()

    @field_validator("public_base_url", "aamarpay_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("media_root", "embedded_broker_dir")
    @classmethod
    def _absolute_path(cls, value: Path) -> Path:
        return value.resolve()

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.environment != "development" and self.secret_key == DEV_SECRET_KEY:
            raise ValueError(
                "SECRET_KEY is the development placeholder; set a real secret "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`) "
                "or ENVIRONMENT=development"
            )
        if self.environment != "development" and len(self.secret_key) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters outside development")
        return self

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or "filesystem://"

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def shared_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
