"""Languages of the pages and e-mails (SPEC §12): English and Bengali.

- Message catalogues: `app/locales/<lang>/LC_MESSAGES/messages.po`, extracted with Babel
  (`babel.cfg`; see the README's "Translations") from the Jinja templates and from the Python
  strings marked with `N_()` / `tr()` / `ntr()`. They are compiled in memory when first used (no
  build step, no .mo file to keep in step with its .po), fuzzy entries left out.
- Templates use Jinja's `i18n` extension (`{% trans %}`, `_()`): the callables installed by
  `install()` translate into the language the render context names (`lang`).
- Numbers, sizes, amounts and dates follow CLDR (babel.numbers, babel.dates, babel.units);
  Bengali is written with Bengali digits, `৳` before the amount and CLDR `bn` month names.
- Which language: `?lang=` (also stored in the `lang` cookie by `LanguageCookieMiddleware`),
  then the `lang` cookie, then Accept-Language, then DEFAULT_LANGUAGE. The JSON API stays
  English whatever the request says.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from babel.units import format_unit
from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from starlette.datastructures import URL
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LANGUAGES: Final = ("en", "bn")
LANGUAGE_NAMES: Final = {"en": "English", "bn": "বাংলা"}
COOKIE: Final = "lang"
QUERY: Final = "lang"
COOKIE_MAX_AGE: Final = 365 * 24 * 3600
LOCALES_DIR: Final = Path(__file__).resolve().parent / "locales"
DOMAIN: Final = "messages"
#: At most this many Accept-Language entries are looked at (the header is the client's).
MAX_ACCEPT_ENTRIES: Final = 32

_BENGALI_DIGITS: Final = str.maketrans("0123456789", "০১২৩৪৫৬৭৮৯")


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker
    """Marks a string for extraction; it is translated where it is shown."""
    return message


def is_language(value: object) -> bool:
    return isinstance(value, str) and value in LANGUAGES


# --- catalogues -----------------------------------------------------------------------------


def catalogue_path(lang: str) -> Path:
    return LOCALES_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def compile_catalogue(po_path: Path) -> bytes:
    """The .mo bytes of a .po file (fuzzy entries left out, as msgfmt does)."""
    with po_path.open("rb") as fh:
        catalogue = read_po(fh, locale=po_path.parent.parent.name)
    buffer = io.BytesIO()
    write_mo(buffer, catalogue, use_fuzzy=False)
    return buffer.getvalue()


@cache
def translations(lang: str) -> Translations:
    """The compiled catalogue of `lang` (compiled once per process)."""
    if lang not in LANGUAGES:
        lang = LANGUAGES[0]
    return Translations(io.BytesIO(compile_catalogue(catalogue_path(lang))), domain=DOMAIN)


#: Python's translation calls, for extraction (`pybabel extract -k ...`, see the Makefile's
#: `messages` target): `N_(message)`, `tr(lang, message)`, `ntr(lang, singular, plural, n)`.
EXTRACT_KEYWORDS: Final = {"N_": None, "tr": (2,), "ntr": (2, 3)}


def tr(lang: str, message: str, **values: Any) -> str:
    """`message` in `lang`, %-formatted with `values` (placeholders as `%(name)s`)."""
    text = translations(lang).gettext(message)
    return text % values if values else text


def ntr(lang: str, singular: str, plural: str, n: int, **values: Any) -> str:
    """The plural form for `n` (available as `%(num)s`)."""
    text = translations(lang).ngettext(singular, plural, n)
    return text % {"num": n, **values}


@pass_context
def _template_gettext(context: Context, message: str) -> str:
    return translations(context.get("lang", LANGUAGES[0])).gettext(message)


@pass_context
def _template_ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return translations(context.get("lang", LANGUAGES[0])).ngettext(singular, plural, n)


def install(env: Environment) -> None:
    """Jinja's i18n extension, translating into the context's `lang`, with the formatting
    filters (`number`, `size`, `amount`, `datetime`) in the same language."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _template_gettext, _template_ngettext, newstyle=True
    )
    env.filters["number"] = _number_filter
    env.filters["size"] = _size_filter
    env.filters["amount"] = _amount_filter
    env.filters["datetime"] = _datetime_filter


# --- CLDR formatting ------------------------------------------------------------------------


def digits(text: str, lang: str) -> str:
    """ASCII digits written in the language's own (Bengali digits for `bn`)."""
    return text.translate(_BENGALI_DIGITS) if lang == "bn" else text


def format_number(value: int | float | Decimal, lang: str) -> str:
    """A count (words, uploads): CLDR grouping of the language (bn: 12,34,567)."""
    return digits(format_decimal(value, locale=lang), lang)


_SIZE_UNITS: Final = (
    ("digital-byte", "bytes"),
    ("digital-kilobyte", "KiB"),
    ("digital-megabyte", "MiB"),
    ("digital-gigabyte", "GiB"),
)


def format_size(size: int, lang: str) -> str:
    """A file size in powers of 1024: English keeps `55 bytes`, `1.5 KiB`; Bengali uses
    CLDR's unit names (বাইট, কিলোবাইট, মেগাবাইট, গিগাবাইট) with Bengali digits."""
    value = float(size)
    index = 0
    while value >= 1024 and index < len(_SIZE_UNITS) - 1:
        value /= 1024
        index += 1
    cldr_unit, english = _SIZE_UNITS[index]
    if lang != "bn":
        return f"{size} bytes" if index == 0 else f"{value:.1f} {english}"
    shown: int | float = size if index == 0 else round(value, 1)
    pattern = "#,##,##0" if index == 0 else "#,##,##0.#"
    return digits(format_unit(shown, cldr_unit, length="long", format=pattern, locale="bn"), "bn")


def format_amount(
    amount: Decimal | float | str, currency: str, lang: str, *, short: bool = False
) -> str:
    """Money with two decimals; taka as `৳` before the amount in both languages (৳১০০.০০,
    ৳100.00); another currency as its code before the amount. `short`: a whole amount
    without its decimals (the Pay button's ৳100)."""
    value = Decimal(str(amount))
    pattern = "#,##,##0" if lang == "bn" else "#,##0"
    if not (short and value == value.to_integral_value()):
        pattern += ".00"
    number = digits(format_decimal(value, format=pattern, locale=lang), lang)
    return f"৳{number}" if currency.upper() == "BDT" else f"{currency.upper()} {number}"


def format_datetime(value: datetime | None, lang: str, *, seconds: bool = False) -> str:
    """A time in UTC with the language's month names and digits (1 December 2026, 14:05)."""
    if value is None:
        return ""
    from babel.dates import format_datetime as cldr_datetime

    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    pattern = "d MMMM y, HH:mm:ss" if seconds else "d MMMM y, HH:mm"
    text = cldr_datetime(value, pattern, tzinfo=UTC, locale=lang)
    return digits(text, lang) + " " + tr(lang, "UTC")


@pass_context
def _number_filter(context: Context, value: int | float | Decimal) -> str:
    return format_number(value, context.get("lang", LANGUAGES[0]))


@pass_context
def _size_filter(context: Context, value: int) -> str:
    return format_size(int(value), context.get("lang", LANGUAGES[0]))


@pass_context
def _amount_filter(
    context: Context, value: Decimal | float | str, currency: str = "BDT", short: bool = False
) -> str:
    return format_amount(value, currency, context.get("lang", LANGUAGES[0]), short=short)


@pass_context
def _datetime_filter(context: Context, value: datetime | None) -> str:
    return format_datetime(value, context.get("lang", LANGUAGES[0]))


# --- choosing the language ------------------------------------------------------------------


def from_accept_language(header: str) -> str | None:
    """The first of our languages in the browser's order of preference (q-values honoured;
    `bn-BD` counts as `bn`, `en-GB` as `en`); None if it names neither."""
    ranked: list[tuple[float, int, str]] = []
    for index, entry in enumerate(header.split(",")[:MAX_ACCEPT_ENTRIES]):
        tag, _, params = entry.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else None


def negotiate(
    query: Mapping[str, str], cookies: Mapping[str, str], accept_language: str, default: str
) -> str:
    """SPEC §12's order: `?lang=`, the `lang` cookie, Accept-Language, DEFAULT_LANGUAGE."""
    for candidate in (query.get(QUERY), cookies.get(COOKIE)):
        if is_language(candidate):
            return str(candidate)
    return from_accept_language(accept_language) or (
        default if is_language(default) else LANGUAGES[0]
    )


def request_language(connection: HTTPConnection, default: str) -> str:
    return negotiate(
        connection.query_params,
        connection.cookies,
        connection.headers.get("accept-language", ""),
        default,
    )


def switch_url(url: URL, lang: str) -> str:
    """This page (path and query) in another language: a relative URL for the switch."""
    target = url.include_query_params(**{QUERY: lang})
    return f"{target.path}?{target.query}"


class LanguageCookieMiddleware:
    """A page asked for with a valid `?lang=` (a redirect included) stores the choice in the
    `lang` cookie, so it sticks. The JSON API under /api is left alone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith("/api/"):
            await self.app(scope, receive, send)
            return
        chosen = HTTPConnection(scope).query_params.get(QUERY)
        if not is_language(chosen):
            await self.app(scope, receive, send)
            return
        text = f"{COOKIE}={chosen}; Max-Age={COOKIE_MAX_AGE}; Path=/; SameSite=Lax"
        settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
        if getattr(settings, "environment", None) == "production":
            text += "; Secure"
        cookie = text.encode("latin-1")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", cookie))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
