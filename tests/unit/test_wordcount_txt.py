"""Word counts of .txt files, checked against GNU ``wc -w`` (UTF-8 locale) and ``str.split()``.

``wc -w`` is run for real as the oracle for text it agrees on with ``str.split()``: printable,
assigned characters and every whitespace except U+001C-U+001F, U+0085, U+2028, U+2029 (which
``str.split()`` separates on and ``wc`` does not) and U+2060 (the reverse). Files in other
encodings are compared with ``wc -w`` of the same text re-encoded as UTF-8.
"""

from __future__ import annotations

import codecs
import os
import random
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from app.services.wordcount import (
    UNICODE_SPACES,
    count_text_words,
    count_txt_words,
    count_words,
)

WC_ENV = {"LC_ALL": "C.UTF-8", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

#: Characters ``str.split()`` treats as whitespace but ``wc -w`` does not.
NOT_FOR_WC = "\x1c\x1d\x1e\x1f\x85\u2028\u2029"


def wc_words(data: bytes) -> int:
    out = subprocess.run(
        ["wc", "-w"], input=data, capture_output=True, check=True, env=WC_ENV
    ).stdout
    return int(out.split()[0])


@pytest.fixture(scope="module")
def wc() -> object:
    """``wc -w`` in a UTF-8 locale; fails loudly if the locale does not behave like one."""
    assert wc_words("a\u00a0b c\u3000d".encode()) == 4, "wc -w is not running in a UTF-8 locale"
    return wc_words


def write(tmp_path: Path, data: bytes, name: str = "f.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


TEXTS = {
    "ascii": "The quick brown fox jumps over the lazy dog.",
    "bengali": "আমার সোনার বাংলা, আমি তোমায় ভালোবাসি। চিরদিন তোমার আকাশ, তোমার বাতাস",
    "cjk": "漢字かなカナ 日本語の文章　全角スペース、句読点。 中文 한국어 문장입니다",
    "arabic": "نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر",
    "cyrillic": "Съешь же ещё этих мягких французских булок, да выпей чаю",
    "emoji": "👍🏽 🇧🇩 👨‍👩‍👧 family ❤️love 🎉🎉 ok",
    "crlf": "first line\r\nsecond  line\r\n\r\nthird\r\n",
    "tabs": "a\tb\t\tc \t d\n\te",
    "nbsp": "prix\u00a0: 10\u00a0€ « bonjour\u00a0»",
    "unicode-spaces": "a\u1680b\u2000c\u2001d\u2002e\u2003f\u2004g\u2005h\u2006i\u2007j\u2008k"
    "\u2009l\u200am\u202fn\u205fo\u3000p",
    "vt-ff": "page\x0cbreak\x0bvertical",
    "mixed": "Hello, ভাষা! 漢字\u3000テスト — “quoted” naïve café\u00a0😀\tend",
    "whitespace-only": " \t\r\n\u3000\u00a0\u2009 \x0b\x0c ",
    "empty": "",
    "no-trailing-newline": "last word",
    "leading-spaces": "   \n\n  leading and trailing   \n",
}

ENCODINGS = {
    "utf-8": b"",
    "utf-8-bom": codecs.BOM_UTF8,
    "utf-16-le-bom": codecs.BOM_UTF16_LE,
    "utf-16-be-bom": codecs.BOM_UTF16_BE,
    "utf-32-le-bom": codecs.BOM_UTF32_LE,
    "utf-32-be-bom": codecs.BOM_UTF32_BE,
}
CODEC = {
    "utf-8": "utf-8",
    "utf-8-bom": "utf-8",
    "utf-16-le-bom": "utf-16-le",
    "utf-16-be-bom": "utf-16-be",
    "utf-32-le-bom": "utf-32-le",
    "utf-32-be-bom": "utf-32-be",
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("name", list(TEXTS))
def test_matches_wc(tmp_path: Path, wc: object, name: str, encoding: str) -> None:
    text = TEXTS[name]
    expected = wc_words(text.encode("utf-8"))
    assert expected == len(text.split())
    path = write(tmp_path, ENCODINGS[encoding] + text.encode(CODEC[encoding]))
    assert count_txt_words(path) == expected
    assert count_txt_words(path, chunk_size=7) == expected
    assert count_txt_words(path, chunk_size=16) == expected


def test_known_counts(tmp_path: Path) -> None:
    assert count_txt_words(write(tmp_path, b"")) == 0
    assert count_txt_words(write(tmp_path, b" \n\t\r\n ")) == 0
    assert count_txt_words(write(tmp_path, codecs.BOM_UTF8)) == 0
    assert count_txt_words(write(tmp_path, codecs.BOM_UTF16_LE)) == 0
    assert count_txt_words(write(tmp_path, b"one")) == 1
    assert count_txt_words(write(tmp_path, "আমার সোনার বাংলা".encode())) == 3
    assert count_txt_words(write(tmp_path, "a\u3000b\u00a0c".encode())) == 3


def test_bom_is_not_text(tmp_path: Path, wc: object) -> None:
    # A BOM right before a word is not part of the word, nor a word of its own.
    assert count_txt_words(write(tmp_path, codecs.BOM_UTF8 + b"word")) == 1
    assert count_txt_words(write(tmp_path, codecs.BOM_UTF8 + b" word")) == 1
    # U+FEFF later in the text is a (zero-width) character like any other.
    assert count_txt_words(write(tmp_path, "a\ufeffb".encode())) == wc_words("a\ufeffb".encode())


def test_utf16_without_bom_is_not_guessed(tmp_path: Path) -> None:
    # Without a BOM the bytes are UTF-8 (NULs are characters): "h\0i\0" is one word.
    assert count_txt_words(write(tmp_path, "hi you".encode("utf-16-le"))) == 2


# -- separators that str.split() has and wc does not -------------------------------------------


@pytest.mark.parametrize("sep", list(NOT_FOR_WC))
def test_split_only_separators(tmp_path: Path, sep: str) -> None:
    text = f"one{sep}two three{sep}{sep}four"
    assert len(text.split()) == 4
    for codec, bom in (("utf-8", b""), ("utf-16-le", codecs.BOM_UTF16_LE)):
        path = write(tmp_path, bom + text.encode(codec))
        assert count_txt_words(path) == 4
        assert count_txt_words(path, chunk_size=3) == 4


def test_every_code_point_classified_like_str_split() -> None:
    """Exhaustive: each code point, between two letters, splits iff str.split() splits."""
    everything = "a".join(
        chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and c not in (0x61,)
    )
    assert count_text_words(everything) == len(everything.split())
    spaces = {chr(c) for c in range(0x80, 0x110000) if chr(c).isspace()}
    assert set(UNICODE_SPACES) == spaces


def test_every_code_point_in_a_file(tmp_path: Path) -> None:
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "x".join(chars)
    expected = len(text.split())
    path = write(tmp_path, text.encode("utf-8"))
    assert count_txt_words(path, chunk_size=4099) == expected
    path = write(tmp_path, codecs.BOM_UTF16_BE + text.encode("utf-16-be"))
    assert count_txt_words(path, chunk_size=4099) == expected


# -- single-byte fallback ------------------------------------------------------------------------


def fallback_decode(data: bytes) -> str:
    """Windows-1252 with the five undefined bytes as Latin-1, as documented."""
    return "".join(
        chr(b) if b in b"\x81\x8d\x8f\x90\x9d" else bytes([b]).decode("cp1252") for b in data
    )


def test_cp1252_file(tmp_path: Path, wc: object) -> None:
    text = (
        "Caf\u00e9 cr\u00e8me \u201cquoted\u201d \u2013 na\u00efve\u00a0r\u00e9sum\u00e9 "
        "\u20ac5 \u2026wait\u2026 fa\u00e7ade\u00a0\u00bbok\u00ab\r\nEnd"
    )
    data = text.encode("cp1252")
    assert all(byte in data for byte in (b"\x93", b"\x94", b"\xa0", b"\xe9", b"\x85"))
    expected = wc_words(text.encode("utf-8"))
    assert expected == len(text.split()) == 11
    path = write(tmp_path, data)
    assert count_txt_words(path) == expected
    assert count_txt_words(path, chunk_size=5) == expected


def test_cp1252_ellipsis_byte_is_not_a_separator(tmp_path: Path) -> None:
    # 0x85 is U+2026 in Windows-1252 (a character), not U+0085 NEXT LINE (a separator).
    assert count_txt_words(write(tmp_path, b"wait\x85what \xe9")) == 2


def test_cp1252_undefined_bytes_as_latin1(tmp_path: Path) -> None:
    data = b"a\x81b \x8dc \x8f \x90\x9d \xe9t\xe9"
    assert count_txt_words(write(tmp_path, data)) == len(fallback_decode(data).split()) == 5


def test_all_bytes_in_fallback(tmp_path: Path) -> None:
    data = b"z".join(bytes([b]) for b in range(256))
    assert count_txt_words(write(tmp_path, data)) == len(fallback_decode(data).split())


def test_invalid_utf8_late_in_file_restarts_as_cp1252(tmp_path: Path) -> None:
    # Valid UTF-8 for many chunks, then a byte that is not: the whole file is single-byte.
    # U+3000 in UTF-8 is E3 80 80, which in Windows-1252 is three letters, not a space.
    data = ("a\u3000b ".encode() * 50) + b"end \xff"
    decoded = fallback_decode(data)
    assert len(decoded.split()) == 52
    assert count_txt_words(write(tmp_path, data), chunk_size=8) == 52
    assert count_txt_words(write(tmp_path, data)) == 52


def test_truncated_utf8_at_end_is_single_byte(tmp_path: Path) -> None:
    data = "na\u00efve \u20ac".encode()[:-1]  # the euro sign loses its last byte
    assert count_txt_words(write(tmp_path, data), chunk_size=3) == len(
        fallback_decode(data).split()
    )


def test_bom_declared_utf8_stays_utf8_when_malformed(tmp_path: Path) -> None:
    # With a UTF-8 BOM the bad byte becomes U+FFFD; U+3000 stays a space.
    data = codecs.BOM_UTF8 + "a\u3000b".encode() + b" c\xffd"
    assert count_txt_words(write(tmp_path, data), chunk_size=4) == 3


def test_malformed_utf16_is_counted_leniently(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + "ab cd".encode("utf-16-le") + b"\x00\xd8" + b" \x00x"  # odd tail
    assert count_txt_words(write(tmp_path, data)) == 3


# -- chunk boundaries ----------------------------------------------------------------------------


def test_word_across_every_chunk_boundary(tmp_path: Path) -> None:
    path = write(tmp_path, b"hello world  again\n")
    for size in range(1, 25):
        assert count_txt_words(path, chunk_size=size) == 3, size


@pytest.mark.parametrize("codec", ["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_multibyte_characters_across_every_boundary(tmp_path: Path, codec: str) -> None:
    text = "বাংলা\u3000ভাষা 😀😀 漢字\u00a0テスト\u2028x\u205fy 🇧🇩"
    expected = len(text.split())
    bom = {
        "utf-8": b"",
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }[codec]
    path = write(tmp_path, bom + text.encode(codec))
    for size in range(1, 40):
        assert count_txt_words(path, chunk_size=size) == expected, size


def test_chunk_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        count_txt_words(write(tmp_path, b"x"), chunk_size=0)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        count_txt_words(tmp_path / "nope.txt")


def test_memory_is_bounded_by_the_chunk_size(tmp_path: Path) -> None:
    line = "বাংলা ভাষা 漢字\u3000テスト naïve café\u00a0😀 end\n".encode()
    data = line * (8_000_000 // len(line))
    path = write(tmp_path, data)
    chunk = 64 * 1024
    tracemalloc.start()
    try:
        words = count_txt_words(path, chunk_size=chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert words == len(line.decode().split()) * (8_000_000 // len(line))
    assert peak < 16 * chunk < len(data) // 4


# -- randomized ----------------------------------------------------------------------------------

LETTERS = (
    list("abcxyzABC019.,;!?-'\"()")
    + list("éüßçñøåœ€£©«»ংবাআমারভষহহজকখগঘ漢字日本語かなカナ한국어русскийΕλληνικάعربيעבריתहिन्दी")
    + ["😀", "👍🏽", "🇧🇩", "❤️", "\u200b", "\u00ad", "\u0301", "\ufeff"]
)
WC_SPACES = [" ", "\t", "\n", "\r\n", "\x0b", "\x0c"] + [
    s for s in UNICODE_SPACES if s not in NOT_FOR_WC
]
ALL_SPACES = [*WC_SPACES, *NOT_FOR_WC]
RANDOM_CODECS = [
    ("utf-8", b""),
    ("utf-8", codecs.BOM_UTF8),
    ("utf-16-le", codecs.BOM_UTF16_LE),
    ("utf-16-be", codecs.BOM_UTF16_BE),
    ("utf-32-le", codecs.BOM_UTF32_LE),
    ("utf-32-be", codecs.BOM_UTF32_BE),
]


def random_text(rng: random.Random, spaces: list[str]) -> str:
    parts = []
    for _ in range(rng.randint(0, 40)):
        if rng.random() < 0.4:
            parts.append("".join(rng.choices(spaces, k=rng.randint(1, 3))))
        else:
            parts.append("".join(rng.choices(LETTERS, k=rng.randint(1, 6))))
    return "".join(parts)


def test_random_texts_match_str_split(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    path = tmp_path / "r.txt"
    for case in range(400):
        text = random_text(rng, ALL_SPACES)
        codec, bom = rng.choice(RANDOM_CODECS)
        path.write_bytes(bom + text.encode(codec))
        size = rng.choice([1, 2, 3, 5, 7, 16, 64, 1 << 20])
        assert count_txt_words(path, chunk_size=size) == len(text.split()), (case, text, codec)


def test_random_texts_match_wc(tmp_path: Path, wc: object) -> None:
    rng = random.Random(7)
    path = tmp_path / "r.txt"
    texts = [random_text(rng, WC_SPACES) for _ in range(120)]
    # One wc run per text would be slow; join the texts with newlines into batches instead and
    # also check each text on its own against str.split(), which wc agrees with here.
    for start in range(0, len(texts), 30):
        batch = "\n".join(texts[start : start + 30])
        expected = wc_words(batch.encode())
        assert expected == len(batch.split())
        for codec, bom in RANDOM_CODECS:
            path.write_bytes(bom + batch.encode(codec))
            assert count_txt_words(path, chunk_size=rng.choice([1, 5, 13, 64])) == expected
    for text in texts:
        assert count_text_words(text) == len(text.split())


# -- dispatch ------------------------------------------------------------------------------------


def test_count_words_dispatch(tmp_path: Path) -> None:
    path = write(tmp_path, b"two words")
    assert count_words(path, "txt") == 2
    assert count_words(path, ".TXT") == 2
    with pytest.raises(ValueError, match="unsupported"):
        count_words(path, "pdf")
