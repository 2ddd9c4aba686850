"""Sending e-mail: one `deliver()` for every message the service sends.

`SMTP_URL` picks the way: `smtp://[user:pass@]host:port` (plain, `?starttls=true` to upgrade)
or `smtps://...` (TLS from the start), sent with aiosmtplib. Without it, development and tests
write each message as an `.eml` file under `mail_dir` (open it in any mail program), and
production sends nothing and logs that it did not.

Failures are split the way a retrying caller needs them: `MailTemporarilyUnavailable` (server
away, timeout, a 4xx answer: try again later) and `MailRejected` (a 5xx answer: the same
message will never go through).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from anyio import to_thread

from app.config import Settings

logger = logging.getLogger("app.mail")

SMTP_TIMEOUT_SECONDS = 20.0


class MailTemporarilyUnavailable(Exception):
    """The message may go through later."""


class MailRejected(Exception):
    """The server refused the message for good."""


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("SMTP_URL must look like smtp://[user:pass@]host:port or smtps://...")
    options = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
    use_tls = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if use_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=use_tls,
        start_tls=not use_tls and options.get("starttls") in ("true", "1", "yes"),
    )


async def deliver(message: EmailMessage, settings: Settings) -> str:
    """Send `message`; answers how: `smtp`, `file` or `skipped`."""
    if settings.smtp_url:
        await _send_smtp(message, parse_smtp_url(settings.smtp_url))
        return "smtp"
    if settings.environment == "production":
        logger.warning("mail_not_sent_no_smtp_url", extra={"subject": message["Subject"]})
        return "skipped"
    path = await to_thread.run_sync(_write_eml, message, settings.mail_dir)
    logger.info("mail_written", extra={"path": str(path)})
    return "file"


async def _send_smtp(message: EmailMessage, target: SmtpTarget) -> None:
    try:
        await aiosmtplib.send(
            message,
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.use_tls,
            start_tls=target.start_tls,
            timeout=SMTP_TIMEOUT_SECONDS,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [error.code for error in exc.recipients]
        if all(code >= 500 for code in codes):
            raise MailRejected(f"recipient refused: {codes}") from exc
        raise MailTemporarilyUnavailable(f"recipient deferred: {codes}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code >= 500:
            raise MailRejected(f"{exc.code} {exc.message}") from exc
        raise MailTemporarilyUnavailable(f"{exc.code} {exc.message}") from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise MailTemporarilyUnavailable(str(exc) or type(exc).__name__) from exc


def _write_eml(message: EmailMessage, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # Written whole, then renamed: a reader never sees half a message.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".eml.tmp")
    with os.fdopen(fd, "wb") as out:
        out.write(message.as_bytes())
    final = Path(tmp).with_name(Path(tmp).name[1:].removesuffix(".tmp"))
    os.replace(tmp, final)
    return final
