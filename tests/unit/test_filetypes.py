"""Content sniffing of uploads: .txt must be text, .docx must be a sane Word package."""

from __future__ import annotations

import codecs
import io
import random
import zipfile
from pathlib import Path

import docx
import pytest

from app.services.filetypes import UnsupportedContentError, check_docx, check_txt


def write(tmp_path: Path, data: bytes, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- .txt ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"", "utf-8"),
        (b"plain ascii\r\n", "utf-8"),
        ("বাংলা ভাষা 漢字 😀".encode(), "utf-8"),
        (codecs.BOM_UTF8 + "naïve".encode(), "utf-8-sig"),
        (codecs.BOM_UTF16_LE + "বাংলা text".encode("utf-16-le"), "utf-16"),
        (codecs.BOM_UTF16_BE + "বাংলা text".encode("utf-16-be"), "utf-16"),
        (codecs.BOM_UTF32_LE + "text 😀".encode("utf-32-le"), "utf-32"),
        (codecs.BOM_UTF32_BE + "text 😀".encode("utf-32-be"), "utf-32"),
        ("Café “quoted” – naïve\u00a0ok".encode("cp1252"), "cp1252"),
        (b"undefined in cp1252: \x81\x8d\x8f\x90\x9d ok", "cp1252"),
        (b"tabs\tform\x0cfeed\x1aDOS end\x1b[0m escape", "utf-8"),
    ],
)
def test_text_is_accepted_with_its_encoding(tmp_path: Path, data: bytes, encoding: str) -> None:
    assert check_txt(write(tmp_path, data, "f.txt")) == encoding


def test_invalid_utf8_after_the_first_chunk_is_cp1252(tmp_path: Path) -> None:
    data = b"ok " * 600_000 + b"caf\xe9"
    assert check_txt(write(tmp_path, data, "f.txt")) == "cp1252"


def test_truncated_utf8_at_the_end_is_cp1252(tmp_path: Path) -> None:
    assert check_txt(write(tmp_path, "prix 5 €".encode()[:-1], "f.txt")) == "cp1252"


def test_multibyte_character_across_chunks_stays_utf8(tmp_path: Path) -> None:
    data = b"x" * ((1 << 20) - 1) + "€ বাংলা".encode()
    assert check_txt(write(tmp_path, data, "f.txt")) == "utf-8"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG image"),
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF"),
        (b"PK\x03\x04\x14\x00\x06\x00", "zip"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"GIF89a\x01\x00", "GIF"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE2"),
        (b"\x7fELF\x02\x01\x01", "executable"),
        (b"{\\rtf1\\ansi hello}", "RTF"),
        (b"text with a NUL\x00 byte", "NUL"),
        ("no BOM: ".encode("utf-16-le"), "NUL"),
        (bytes(range(1, 9)) * 10 + b" mostly control bytes", "control"),
    ],
)
def test_non_text_is_rejected(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(UnsupportedContentError, match=message):
        check_txt(write(tmp_path, data, "f.txt"))


def test_png_renamed_to_txt_is_rejected(tmp_path: Path) -> None:
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
        b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8"
        b"N\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    with pytest.raises(UnsupportedContentError, match="not a text file"):
        check_txt(write(tmp_path, png, "image.txt"))


def test_nul_late_in_a_big_file_is_rejected(tmp_path: Path) -> None:
    data = b"words " * 400_000 + b"\x00"
    with pytest.raises(UnsupportedContentError, match="NUL"):
        check_txt(write(tmp_path, data, "f.txt"))


def test_a_few_control_characters_are_tolerated(tmp_path: Path) -> None:
    # A terminal log: a bell and a backspace now and then (under 5% of the bytes).
    data = b"a terminal log line with a bell\x07 and a typo fixed with a backspac\x08e\n" * 20
    assert check_txt(write(tmp_path, data, "f.txt")) == "utf-8"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (codecs.BOM_UTF16_LE + b"a\x00\x00\xd8b\x00", "UTF-16"),  # lone surrogate
        (codecs.BOM_UTF16_LE + "a".encode("utf-16-le") + b"\x00\x00", "NUL"),
        (codecs.BOM_UTF32_LE + b"\x00\x00\x11\x00", "UTF-32"),  # beyond U+10FFFF
        (codecs.BOM_UTF8 + b"caf\xe9", "UTF-8"),
    ],
)
def test_bom_contradicted_by_the_content_is_rejected(
    tmp_path: Path, data: bytes, message: str
) -> None:
    with pytest.raises(UnsupportedContentError, match=message):
        check_txt(write(tmp_path, data, "f.txt"))


# -- .docx ---------------------------------------------------------------------------------------


def docx_bytes(text: str = "hello world") -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def repack(
    source: bytes,
    *,
    drop: tuple[str, ...] = (),
    replace: dict[str, bytes] | None = None,
    add: dict[str, bytes] | None = None,
) -> bytes:
    replace = replace or {}
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(source)) as zin,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout,
    ):
        for name in zin.namelist():
            if name not in drop:
                zout.writestr(name, replace.get(name, zin.read(name)))
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return out.getvalue()


def test_real_docx_is_accepted(tmp_path: Path) -> None:
    assert check_docx(write(tmp_path, docx_bytes(), "ok.docx")) is None


def test_text_file_named_docx_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedContentError, match="not a zip archive"):
        check_docx(write(tmp_path, b"I am only text.\n", "fake.docx"))


def test_empty_file_named_docx_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedContentError, match="not a zip archive"):
        check_docx(write(tmp_path, b"", "empty.docx"))


def test_zip_without_document_xml_is_rejected(tmp_path: Path) -> None:
    data = repack(docx_bytes(), drop=("word/document.xml",))
    with pytest.raises(UnsupportedContentError, match="word/document.xml"):
        check_docx(write(tmp_path, data, "nodoc.docx"))


def test_zip_without_content_types_is_rejected(tmp_path: Path) -> None:
    data = repack(docx_bytes(), drop=("[Content_Types].xml",))
    with pytest.raises(UnsupportedContentError, match=r"\[Content_Types\]\.xml"):
        check_docx(write(tmp_path, data, "notypes.docx"))


def test_zip_without_package_relationships_is_rejected(tmp_path: Path) -> None:
    data = repack(docx_bytes(), drop=("_rels/.rels",))
    with pytest.raises(UnsupportedContentError, match=r"_rels/\.rels"):
        check_docx(write(tmp_path, data, "norels.docx"))


def test_main_part_elsewhere_is_rejected(tmp_path: Path) -> None:
    good = docx_bytes()
    rels = zipfile.ZipFile(io.BytesIO(good)).read("_rels/.rels")
    assert b'Target="word/document.xml"' in rels
    data = repack(
        good, replace={"_rels/.rels": rels.replace(b"word/document.xml", b"word/other.xml")}
    )
    with pytest.raises(UnsupportedContentError, match="main part"):
        check_docx(write(tmp_path, data, "elsewhere.docx"))


def test_any_other_zip_is_rejected(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(UnsupportedContentError, match="not a Word document"):
        check_docx(write(tmp_path, out.getvalue(), "other.docx"))


def test_zip_bomb_member_is_rejected(tmp_path: Path) -> None:
    # 64 MiB of zeros deflate to about 64 KiB: a ratio near 1000.
    data = repack(docx_bytes(), add={"word/media/bomb.bin": bytes(64 << 20)})
    path = write(tmp_path, data, "bomb.docx")
    assert path.stat().st_size < 200_000
    with pytest.raises(UnsupportedContentError, match="compression ratio"):
        check_docx(path)


def test_total_uncompressed_size_limit(tmp_path: Path) -> None:
    path = write(tmp_path, docx_bytes("word " * 20_000), "big.docx")
    check_docx(path)
    with pytest.raises(UnsupportedContentError, match="too large"):
        check_docx(path, max_uncompressed_bytes=50_000)


def test_ratio_limit_is_configurable(tmp_path: Path) -> None:
    # An ordinary document.xml above the exemption size (1 MiB) compresses well below 100:1.
    rng = random.Random(5)
    vocab = ["alpha", "beta", "গামা", "дельта", "εψιλον", "漢字", "word", "count"]
    text = " ".join(rng.choice(vocab) + str(rng.randrange(1000)) for _ in range(200_000))
    path = write(tmp_path, docx_bytes(text), "ordinary.docx")
    size = zipfile.ZipFile(path).getinfo("word/document.xml").file_size
    assert size > 1 << 20
    check_docx(path)
    with pytest.raises(UnsupportedContentError, match="compression ratio"):
        check_docx(path, max_ratio=2)


def test_lying_size_header_is_rejected(tmp_path: Path) -> None:
    """document.xml inflates to more than its central directory entry declares."""
    good = docx_bytes("some text " * 1000)
    info = zipfile.ZipFile(io.BytesIO(good)).getinfo("word/document.xml")
    # Central directory entry: the name starts at offset 46, the uncompressed size is at 24.
    entry = good.index(b"word/document.xml", good.index(b"PK\x01\x02")) - 46
    assert good[entry : entry + 4] == b"PK\x01\x02"
    size_at = entry + 24
    assert int.from_bytes(good[size_at : size_at + 4], "little") == info.file_size
    patched = good[:size_at] + (info.file_size // 2).to_bytes(4, "little") + good[size_at + 4 :]
    with pytest.raises(UnsupportedContentError, match="damaged"):
        check_docx(write(tmp_path, patched, "liar.docx"))


def test_truncated_docx_is_rejected(tmp_path: Path) -> None:
    good = docx_bytes("words " * 5000)
    with pytest.raises(UnsupportedContentError):
        check_docx(write(tmp_path, good[: len(good) - 200], "cut.docx"))


def test_template_and_macro_documents_are_rejected(tmp_path: Path) -> None:
    good = docx_bytes()
    types = zipfile.ZipFile(io.BytesIO(good)).read("[Content_Types].xml")
    for replacement in (
        b"application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
        b"application/vnd.ms-word.document.macroEnabled.main+xml",
    ):
        patched = types.replace(
            b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            replacement,
        )
        assert patched != types
        data = repack(good, replace={"[Content_Types].xml": patched})
        with pytest.raises(UnsupportedContentError, match="not declared as a Word document"):
            check_docx(write(tmp_path, data, "template.docx"))


def test_strict_open_xml_is_rejected(tmp_path: Path) -> None:
    good = docx_bytes()
    xml = zipfile.ZipFile(io.BytesIO(good)).read("word/document.xml")
    strict = xml.replace(
        b"http://schemas.openxmlformats.org/wordprocessingml/2006/main",
        b"http://purl.oclc.org/ooxml/wordprocessingml/main",
    )
    data = repack(good, replace={"word/document.xml": strict})
    with pytest.raises(UnsupportedContentError, match="Strict"):
        check_docx(write(tmp_path, data, "strict.docx"))


def test_encrypted_member_is_rejected(tmp_path: Path) -> None:
    good = bytearray(docx_bytes())
    # Set the "encrypted" flag bit of every central directory entry.
    start = 0
    while (start := good.find(b"PK\x01\x02", start)) != -1:
        good[start + 8] |= 0x01
        start += 4
    with pytest.raises(UnsupportedContentError, match="encrypted"):
        check_docx(write(tmp_path, bytes(good), "locked.docx"))


def test_a_small_member_with_an_absurd_ratio_is_rejected(tmp_path: Path) -> None:
    # Any member size: 900 KB of zeros (about 1000:1) is under the old 1 MiB exemption.
    data = repack(docx_bytes(), add={"word/header1.xml": bytes(900_000)})
    with pytest.raises(UnsupportedContentError, match="compression ratio"):
        check_docx(write(tmp_path, data, "small-bomb.docx"))


def test_a_small_repetitive_part_is_accepted(tmp_path: Path) -> None:
    # One word repeated compresses several hundred to one and is still a document.
    check_docx(write(tmp_path, docx_bytes("word " * 20_000), "repetitive.docx"))


def test_a_main_part_too_heavy_to_parse_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, docx_bytes("word " * 20_000), "heavy.docx")
    with pytest.raises(UnsupportedContentError, match="too large to count"):
        check_docx(path, parse_budget=100_000)
