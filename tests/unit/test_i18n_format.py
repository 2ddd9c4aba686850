"""CLDR formatting in each language, language negotiation, and the receipt in Bengali."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app import i18n
from app.config import get_settings
from app.services.receipts import Receipt, compose

BENGALI_DIGITS = set("০১২৩৪৫৬৭৮৯")


def test_numbers_amounts_sizes_and_dates_in_bengali() -> None:
    assert i18n.format_number(1234567, "bn") == "১২,৩৪,৫৬৭"
    assert i18n.format_number(1234567, "en") == "1,234,567"
    assert i18n.format_amount(Decimal("100.00"), "BDT", "bn") == "৳১০০.০০"
    assert i18n.format_amount(Decimal("100.00"), "BDT", "bn", short=True) == "৳১০০"
    assert i18n.format_amount(Decimal("123456.5"), "BDT", "bn") == "৳১,২৩,৪৫৬.৫০"
    assert i18n.format_amount(Decimal("100.00"), "BDT", "en") == "৳100.00"
    assert i18n.format_amount(Decimal("5"), "USD", "en") == "USD 5.00"
    assert i18n.format_size(55, "bn") == "৫৫ বাইট"
    assert i18n.format_size(10 * 1024 * 1024, "bn") == "১০ মেগাবাইট"
    assert i18n.format_size(1536, "bn") == "১.৫ কিলোবাইট"
    assert i18n.format_size(55, "en") == "55 bytes"
    assert i18n.format_size(10 * 1024 * 1024, "en") == "10.0 MiB"
    when = datetime(2026, 12, 1, 14, 5, 7, tzinfo=UTC)
    assert i18n.format_datetime(when, "bn") == "১ ডিসেম্বর ২০২৬, ১৪:০৫ UTC"
    assert i18n.format_datetime(when, "en") == "1 December 2026, 14:05 UTC"
    # Every CLDR `bn` month name, none in Latin letters.
    for month in range(1, 13):
        text = i18n.format_datetime(datetime(2026, month, 9, tzinfo=UTC), "bn")
        assert not any("a" <= c.lower() <= "z" for c in text.removesuffix(" UTC")), text


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "default", "expected"),
    [
        ({"lang": "bn"}, {"lang": "en"}, "en", "en", "bn"),  # ?lang= first
        ({"lang": "xx"}, {"lang": "bn"}, "en", "en", "bn"),  # an unknown ?lang= is ignored
        ({}, {"lang": "bn"}, "en-US,en;q=0.9", "en", "bn"),  # then the cookie
        ({}, {"lang": "fr"}, "bn-BD,bn;q=0.9", "en", "bn"),  # then Accept-Language
        ({}, {}, "fr-FR, en;q=0.5, bn;q=0.8", "en", "bn"),  # q-values honoured
        ({}, {}, "bn;q=0, en;q=0.1", "bn", "en"),  # q=0 means "not this one"
        ({}, {}, "fr, de", "bn", "bn"),  # then DEFAULT_LANGUAGE
        ({}, {}, "", "en", "en"),
    ],
)
def test_negotiation_order(
    query: dict[str, str], cookie: dict[str, str], accept: str, default: str, expected: str
) -> None:
    assert i18n.negotiate(query, cookie, accept, default) == expected


def receipt(language: str | None) -> Receipt:
    return Receipt(
        payment_id=1,
        user_id=1,
        transaction_id="tx0001",
        email="rahim@example.com",
        username="rahim",
        amount="100.00",
        currency="BDT",
        pg_txnid="AAM0001",
        paid_at=datetime(2026, 12, 1, 14, 5, 7, tzinfo=UTC),
        language=language,
    )


def bodies(message: object) -> list[str]:
    return [
        part.get_content()  # type: ignore[attr-defined]
        for part in message.walk()  # type: ignore[attr-defined]
        if part.get_content_maintype() == "text"
    ]


def test_the_receipt_follows_the_persons_language() -> None:
    settings = get_settings()
    message = compose(receipt("bn"), settings)
    assert message["Subject"] == "আপনার পেমেন্ট tx0001-এর রসিদ"
    assert message["Content-Language"] == "bn"
    plain, html = bodies(message)
    for body in (plain, html):
        assert "৳১০০.০০" in body
        assert "১ ডিসেম্বর ২০২৬, ১৪:০৫:০৭ UTC" in body
        assert "AAM0001" in body
        assert "ধন্যবাদ" in body
    assert '<html lang="bn">' in html
    english = compose(receipt("bn"), settings, language="en")
    assert english["Subject"] == "Receipt for your payment tx0001"
    assert "100.00 BDT" in bodies(english)[0]


def test_the_receipt_without_a_stored_language_uses_the_default() -> None:
    settings = get_settings()
    assert compose(receipt(None), settings)["Content-Language"] == settings.default_language
    bengali = settings.model_copy(update={"default_language": "bn"})
    assert compose(receipt(None), bengali)["Content-Language"] == "bn"
    assert "ধন্যবাদ" in bodies(compose(receipt(None), bengali))[0]
