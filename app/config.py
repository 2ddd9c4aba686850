"""Settings: the one place that reads the environment (and `.env`).

Every variable of SPEC §3 is here, with the embedded defaults that make `make run` work on a
machine with nothing but Python: SQLite and media under `var/`, a filesystem Celery broker.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Signing keys that anyone can read (they were once in this repository): refused in every
#: environment, so nothing they sign is ever accepted.
PUBLISHED_SECRET_KEYS = frozenset({"dev-only-insecure-secret-key-change-me"})
MIN_SECRET_KEY_LENGTH = 32

#: The public aamarPay sandbox (published by aamarPay; not a secret). Outside development
#: these are refused unless AAMARPAY_ALLOW_SANDBOX=true.
SANDBOX_STORE_ID = "aamarpaytest"
SANDBOX_SIGNATURE_KEY = "dbb74894e82415a2f7ff0ec3a97e4183"  # noqa: S105
SANDBOX_HOST = "sandbox.aamarpay.com"

#: Local state of the embedded default (database, media, broker), relative to the working directory.
VAR_DIR = Path("var")
#: Development without SECRET_KEY: the key made on first start and reused afterwards.
DEV_SECRET_KEY_FILE = VAR_DIR / "secret_key"


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
    #: Where stored uploads live (SPEC §10): `local` (under MEDIA_ROOT, a volume shared by the
    #: api and the workers) or `s3` (a bucket; MEDIA_ROOT then only holds temporary files).
    storage_backend: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    #: Prepended to every object key (e.g. `uploads/`); the service touches nothing else.
    s3_prefix: str = Field(default="", max_length=100)
    #: Empty: AWS itself; else an S3-compatible server (SeaweedFS, MinIO, R2 ...).
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    #: Folder of the embedded filesystem broker (only used when CELERY_BROKER_URL is empty).
    embedded_broker_dir: Path = VAR_DIR / "broker"

    #: Required outside development. Development without one: read from (or first made in)
    #: DEV_SECRET_KEY_FILE.
    secret_key: str = ""
    access_token_expire_minutes: int = Field(default=60, ge=1)

    public_base_url: str = "http://127.0.0.1:8000"

    aamarpay_base_url: str = "https://sandbox.aamarpay.com"
    aamarpay_store_id: str = SANDBOX_STORE_ID
    aamarpay_signature_key: str = SANDBOX_SIGNATURE_KEY
    #: Outside development, the sandbox gateway and its public credentials are refused at
    #: start-up unless this is true (a staging deployment).
    aamarpay_allow_sandbox: bool = False
    aamarpay_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    aamarpay_read_timeout_seconds: float = Field(default=20.0, gt=0)

    payment_amount: Decimal = Field(default=Decimal("100.00"), gt=0, decimal_places=2)
    payment_currency: str = "BDT"
    uploads_per_payment: int = Field(default=0, ge=0)

    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    #: An upload whose body sends nothing for this long is dropped (408 upload_timeout).
    upload_idle_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Uploads of one person being received at the same moment (one more: 429).
    max_concurrent_uploads_per_user: int = Field(default=3, ge=1)
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

    #: `smtp://[user:pass@]host:port[?starttls=true]` or `smtps://...`; unset: development
    #: writes each mail as an .eml file under `mail_dir`, production sends none (and logs it).
    smtp_url: str | None = None
    email_from: str = "Word-count service <no-reply@localhost>"
    #: Templates here override `app/templates/email/` (same file names).
    email_templates_dir: Path | None = None
    #: The pages' and e-mails' language for a browser that prefers neither `en` nor `bn`
    #: (SPEC §12: `?lang=`, then the `lang` cookie, then Accept-Language, then this).
    default_language: Literal["en", "bn"] = "en"
    mail_dir: Path = VAR_DIR / "mail"

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator(
        "celery_result_backend",
        "redis_url",
        "smtp_url",
        "email_templates_dir",
        "s3_bucket",
        "s3_endpoint_url",
        "aws_access_key_id",
        "aws_secret_access_key",
        mode="before",
    )
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

    @field_validator("media_root", "embedded_broker_dir", "mail_dir")
    @classmethod
    def _absolute_path(cls, value: Path) -> Path:
        return value.resolve()

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        """Refuse to start on any of `start_up_refusals()`; in development without a
        SECRET_KEY, use the generated one."""
        refusals = self.start_up_refusals()
        if refusals:
            raise ValueError("\n".join(refusals))
        if not self.secret_key:
            self.secret_key = development_secret_key(DEV_SECRET_KEY_FILE)
        return self

    def start_up_refusals(self) -> list[str]:
        """Why this configuration may not start (SPEC §3, §9 start-up), one line each."""
        out: list[str] = []
        if self.secret_key in PUBLISHED_SECRET_KEYS:
            out.append(
                "SECRET_KEY is a published placeholder, which anyone could sign with: set a "
                f"real one{_MAKE_KEY}, or leave it unset in development to use a generated one"
            )
        if self.storage_backend == "s3" and not self.s3_bucket:
            out.append("S3_BUCKET is not set: STORAGE_BACKEND=s3 needs an existing bucket")
        if self.environment == "development":
            return out
        where = f"outside development (ENVIRONMENT={self.environment})"
        if not self.secret_key:
            out.append(f"SECRET_KEY is not set: it is required {where}{_MAKE_KEY}")
        elif len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
            out.append(
                f"SECRET_KEY is too short: at least {MIN_SECRET_KEY_LENGTH} characters "
                f"{where}{_MAKE_KEY}"
            )
        if not self.aamarpay_allow_sandbox:
            allow = "set your merchant account's, or AAMARPAY_ALLOW_SANDBOX=true for staging"
            if urlsplit(self.aamarpay_base_url).hostname == SANDBOX_HOST:
                out.append(
                    f"AAMARPAY_BASE_URL is the aamarPay sandbox, refused {where}: use the "
                    f"live gateway, or AAMARPAY_ALLOW_SANDBOX=true for staging"
                )
            if self.aamarpay_store_id == SANDBOX_STORE_ID:
                out.append(
                    f"AAMARPAY_STORE_ID is the public sandbox store, refused {where}: {allow}"
                )
            if self.aamarpay_signature_key == SANDBOX_SIGNATURE_KEY:
                out.append(
                    f"AAMARPAY_SIGNATURE_KEY is the public sandbox key, refused {where}: {allow}"
                )
        return out

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


_MAKE_KEY = " (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)"


def development_secret_key(path: Path) -> str:
    """The key in `path`, made there first (random, file mode 0600) if there is none.

    Processes starting together agree on one key: each writes its candidate to a private
    file and hard-links it into place, which only the first can do; all then read the file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ValueError(
            f"{path} holds no usable key (under {MIN_SECRET_KEY_LENGTH} characters): "
            "delete it and a new one is made"
        )
    return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
