"""The piecewise .txt counter (an object read from S3) agrees with the file counter."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest

from app.services.wordcount import TxtWordCounter, count_txt_words

SAMPLES = [
    b"",
    b"a",
    b"ab c",
    b"one two  three\n",
    "caf\u00e9 na\u00efve\u00a0word\u3000\u6f22\u5b57 end".encode(),
    codecs.BOM_UTF8 + "bom\u2003text here".encode(),
    codecs.BOM_UTF8 + b"bad \xff utf8 but declared",
    codecs.BOM_UTF16_LE + "sixteen bit\u00a0le words".encode("utf-16-le"),
    codecs.BOM_UTF16_BE + "sixteen bit be".encode("utf-16-be"),
    codecs.BOM_UTF32_LE + "thirty two".encode("utf-32-le"),
    b"windows \x93quoted\x94 caf\xe9\xa0nbsp \x81undefined",
    "valid start \u00e9".encode() * 500 + b" then \xe9 latin",
    b"x\xc3",
    b"\xe2\x80",
]


def _count(data: bytes, sizes: list[int]) -> int:
    def pieces() -> list[bytes]:
        out, start, i = [], 0, 0
        while start < len(data):
            size = sizes[i % len(sizes)]
            out.append(data[start : start + size])
            start += size
            i += 1
        return out

    for second in (False, True):
        counter = TxtWordCounter(second_pass=second)
        if all(counter.feed(p) for p in pieces()):
            result = counter.result()
            if result is not None:
                return result
        assert not second, "the second pass always gives a count"
    raise AssertionError("unreachable")


@pytest.mark.parametrize("data", SAMPLES)
@pytest.mark.parametrize("sizes", [[1], [2, 3], [4096], [1, 7, 1000]])
def test_same_count_as_the_file_counter(data: bytes, sizes: list[int], tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(data)
    assert _count(data, sizes) == count_txt_words(path)


def test_random_text_any_split(tmp_path: Path) -> None:
    rng = random.Random(7)
    alphabet = ["a", "b", " ", "\n", "\u00a0", "\u3000", "\u00e9", "\u6f22", "\u2028", "\t"]
    for _ in range(50):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        data = text.encode()
        if rng.random() < 0.3:
            data = data.replace("\u00e9".encode(), b"\xe9")  # no longer UTF-8
        path = tmp_path / "r.txt"
        path.write_bytes(data)
        sizes = [rng.randint(1, 9) for _ in range(5)]
        assert _count(data, sizes) == count_txt_words(path)
