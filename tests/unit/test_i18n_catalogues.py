"""The message catalogues: every string the pages and e-mails use is in both catalogues, the
Bengali one translates all of them (nothing empty, nothing fuzzy, the same placeholders), and
both compile. A template or Python string added without a translation fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from app import i18n
from tests.support import PROJECT_DIR


def extracted(root: Path = PROJECT_DIR) -> set[str]:
    """The msgids `make messages` extracts (babel.cfg, the same keywords)."""
    with (PROJECT_DIR / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    keywords = {
        "_": None,
        "gettext": None,
        "ngettext": (1, 2),
        **i18n.EXTRACT_KEYWORDS,
    }
    found = set()
    for _, _, message, _, _ in extract_from_dir(
        str(root), method_map, options_map, keywords=keywords
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def catalogue(lang: str) -> Catalog:
    with i18n.catalogue_path(lang).open("rb") as fh:
        return read_po(fh, locale=lang)


def problems(messages: set[str], cat: Catalog) -> list[str]:
    found = []
    for msgid in sorted(messages):
        entry = cat.get(msgid)
        if entry is None:
            found.append(f"missing: {msgid!r}")
            continue
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if entry.fuzzy or not all(strings):
            found.append(f"untranslated or fuzzy: {msgid!r}")
    found.extend(f"{msg.id!r}: {error}" for msg, errors in cat.check() for error in errors)
    return found


def test_extraction_finds_the_pages_and_the_receipts() -> None:
    messages = extracted()
    for msgid in (
        "Sign in",  # a template
        "Receipt for your payment %(id)s",  # the e-mail subject
        "Payment received. You can upload files now.",  # a Python N_() string
        "Counted %(count)s words in %(name)s",  # a Python tr() call
    ):
        assert msgid in messages


@pytest.mark.parametrize("lang", ["en", "bn"])
def test_every_message_is_in_the_catalogue(lang: str) -> None:
    cat = catalogue(lang)
    messages = extracted()
    if lang == "bn":
        assert problems(messages, cat) == []
    else:
        assert sorted(m for m in messages if m not in cat) == []
    # Nothing stale either: the catalogue holds what the code uses.
    assert (
        sorted(
            str(m.id)
            for m in cat
            if m.id
            and m.id not in messages
            and (m.id[0] if isinstance(m.id, tuple) else m.id) not in messages
        )
        == []
    )


@pytest.mark.parametrize("lang", ["en", "bn"])
def test_catalogues_compile_and_translate(lang: str) -> None:
    mo = i18n.compile_catalogue(i18n.catalogue_path(lang))
    assert mo[:4] in (b"\xde\x12\x04\x95", b"\x95\x04\x12\xde")  # GNU .mo magic
    expected = "সাইন ইন" if lang == "bn" else "Sign in"
    assert i18n.tr(lang, "Sign in") == expected


def test_a_new_untranslated_template_string_is_caught(tmp_path: Path) -> None:
    """The check is not vacuous: a template with a string the catalogue lacks fails it."""
    templates = tmp_path / "app" / "templates"
    templates.mkdir(parents=True)
    (templates / "new.html").write_text('<p>{{ _("A brand-new sentence") }}</p>\n')
    new = extracted(tmp_path)
    assert new == {"A brand-new sentence"}
    assert problems(new, catalogue("bn")) == ["missing: 'A brand-new sentence'"]


def test_a_fuzzy_or_empty_bengali_entry_is_caught() -> None:
    cat = catalogue("bn")
    cat.get("Sign in").flags.add("fuzzy")
    cat.get("Sign out").string = ""
    assert problems({"Sign in", "Sign out"}, cat) == [
        "untranslated or fuzzy: 'Sign in'",
        "untranslated or fuzzy: 'Sign out'",
    ]
