"""The one form a username is matched in (SPEC §9): lookups, the unique index and the
failed-login counters all use `canonical_username`.

The SPEC's canonical form is Unicode NFKC, case-folded, without surrounding whitespace, so
`alice`, `Alice`, `alice ` and the full-width `ａｌｉｃｅ` are one account. Registration must also
refuse a name that differs from an existing one only in "accents the database ignores":
MariaDB's utf8mb4_unicode_ci compares `álice` equal to `alice`, SQLite compares them
different. Rather than let each database decide, the accents are removed here too (the
combining diacritical marks, which that collation weighs only at the accent level), and the
column holding the result compares bytes on both databases (utf8mb4_bin on MariaDB). So
SQLite and MariaDB refuse, find and count exactly the same names, and the throttle's key is
the very string the lookup matches. Marks that are letters' vowel signs in other scripts
(Bengali, for one) are part of the letter and are kept.
"""

from __future__ import annotations

import unicodedata

#: Combining diacritical marks (accents), the blocks a case- and accent-insensitive
#: collation treats as secondary differences.
_ACCENT_BLOCKS = (
    (0x0300, 0x036F),  # Combining Diacritical Marks
    (0x1AB0, 0x1AFF),  # ... Extended
    (0x1DC0, 0x1DFF),  # ... Supplement
    (0x20D0, 0x20FF),  # ... for Symbols
    (0xFE20, 0xFE2F),  # Combining Half Marks
)

#: Longest stored canonical form (the column's length). NFKC can lengthen a name, so a name
#: of at most 150 characters may still be refused when its canonical form is longer.
MAX_CANONICAL_LENGTH = 150


def _is_accent(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _ACCENT_BLOCKS)


def canonical_username(raw: str) -> str:
    """NFKC, case-folded, stripped of surrounding whitespace and of accents."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold()).strip()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not _is_accent(c)))
