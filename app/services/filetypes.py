"""Content sniffing for uploads: is a ``.txt`` really text, is a ``.docx`` really a Word file?

Pure functions, called on the stored upload before it is accepted. Both read the file in
bounded chunks (memory does not grow with the file) and raise UnsupportedContentError with a
message fit to show the uploader.

``check_txt`` applies the same decoding order as the word counter (``app.services.wordcount``):
a byte order mark (UTF-32 LE/BE, UTF-8, UTF-16 LE/BE), else UTF-8, else Windows-1252 (with
Latin-1 for its five undefined bytes, so any byte sequence is readable). It rejects what is not
text: known binary signatures (zip, PDF, images, executables...), NUL bytes outside UTF-16/32,
a high share of other control bytes, and files whose byte order mark is contradicted by what
follows. An empty file is accepted as "utf-8"; refusing empty uploads is the caller's job.

``check_docx`` looks at the zip's own bookkeeping, two small parts and one streamed read: the
archive must start like a zip, list ``[Content_Types].xml``, ``_rels/.rels`` and
``word/document.xml``, declare a total uncompressed size under a limit and no member, of any
size, with an absurd compression ratio (zip bomb); ``word/document.xml`` must be the package's
main part, declared as a WordprocessingML document (not a template or macro-enabled file),
inflate to its declared size with a good CRC (read in blocks, never more than declared), be
transitional WordprocessingML (what Word writes by default and python-docx reads), and be
small enough in elements, attributes and bytes that the worker's parse fits
DOCX_PARSE_BUDGET_BYTES.
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import re
import zipfile
import zlib
from typing import BinaryIO, Final, NamedTuple

__all__ = [
    "DOCX_PARSE_BUDGET_BYTES",
    "UnsupportedContentError",
    "XmlParseCost",
    "check_docx",
    "check_txt",
]

StrPath = str | os.PathLike[str]


def _open(source: StrPath | bytes) -> BinaryIO:
    """A file's content to read: the file at a path, or bytes already in memory."""
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115


_CHUNK: Final = 1 << 20


class UnsupportedContentError(ValueError):
    """The content of an upload does not match its declared type."""


# ---------------------------------------------------------------------------------------------
# .txt


_SIGNATURES: Final = (
    (b"PK\x03\x04", "a zip archive (or a zip-based document)"),
    (b"PK\x05\x06", "a zip archive"),
    (b"PK\x07\x08", "a zip archive"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE2 compound file (for example a .doc)"),
    (b"{\\rtf", "an RTF document"),
    (b"\x7fELF", "an executable"),
    (b"\xca\xfe\xba\xbe", "an executable or Java class"),
    (b"\xcf\xfa\xed\xfe", "an executable"),
)

# Control bytes that do not occur in text (TAB, LF, VT, FF, CR, SUB as DOS end-of-file, ESC
# and the information separators U+001C-U+001F do). NUL is checked on its own.
_BINARY_CONTROLS: Final = bytes([*range(0x01, 0x09), *range(0x0E, 0x1A)])
_MAX_CONTROL_SHARE: Final = 0.05


class Bom(NamedTuple):
    #: The charset as the upload check reports it (`utf-8-sig`, `utf-16`, `utf-32`).
    name: str
    #: The codec that decodes what follows the mark.
    codec: str
    length: int


#: UTF-32 LE before UTF-16 LE: its mark starts with the UTF-16 LE one.
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
)


def detect_bom(head: bytes) -> Bom | None:
    """The byte-order mark ``head`` (the first 4+ bytes) starts with, if any: the one place
    both the upload check and the counter decide it."""
    for mark, name, codec in _BOMS:
        if head.startswith(mark):
            return Bom(name, codec, len(mark))
    return None


def _check_decodes(stream: BinaryIO, name: str, codec: str) -> str:
    decoder = codecs.getincrementaldecoder(codec)("strict")
    label = name.removesuffix("-sig").upper()
    while True:
        block = stream.read(_CHUNK)
        try:
            text = decoder.decode(block, not block)
        except UnicodeDecodeError as exc:
            raise UnsupportedContentError(
                f"not a text file: it starts with a {label} byte order mark but is not "
                f"valid {label} ({exc.reason})"
            ) from None
        if "\x00" in text:
            raise UnsupportedContentError("not a text file: it contains NUL characters")
        if not block:
            return name


def check_txt(path: StrPath | bytes) -> str:
    """Return the encoding ``path`` (or these bytes) will be read with, or raise
    UnsupportedContentError.

    The name is one of "utf-8", "utf-8-sig", "utf-16", "utf-32" (the last three with a BOM)
    or "cp1252" (the single-byte fallback).
    """
    with _open(path) as stream:
        head = stream.read(64)
        bom = detect_bom(head)
        if bom is not None:
            name, codec, length = bom
            stream.seek(length)
            return _check_decodes(stream, name, codec)
        for signature, what in _SIGNATURES:
            if head.startswith(signature):
                raise UnsupportedContentError(f"not a text file: the content is {what}")
        stream.seek(0)
        decoder: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder("utf-8")()
        total = controls = 0
        while block := stream.read(_CHUNK):
            if b"\x00" in block:
                raise UnsupportedContentError("not a text file: it contains NUL bytes")
            total += len(block)
            controls += len(block) - len(block.translate(None, _BINARY_CONTROLS))
            if decoder is not None:
                try:
                    decoder.decode(block, False)
                except UnicodeDecodeError:
                    decoder = None  # not UTF-8: every byte is valid in the fallback
        if controls > total * _MAX_CONTROL_SHARE:
            raise UnsupportedContentError("not a text file: too many control characters")
        if decoder is not None:
            try:
                decoder.decode(b"", True)
            except UnicodeDecodeError:  # ends in the middle of a UTF-8 sequence
                decoder = None
        return "utf-8" if decoder is not None else "cp1252"


# ---------------------------------------------------------------------------------------------
# .docx

_DOCUMENT: Final = "word/document.xml"
_CONTENT_TYPES: Final = "[Content_Types].xml"
_PACKAGE_RELS: Final = "_rels/.rels"
_MAX_MEMBERS: Final = 10_000
#: Every member, whatever its size, must unpack to at most `max_ratio` times its compressed
#: size plus this much: small parts of a real document can compress several hundred to one
#: (a page of one repeated word does), a zip bomb's members unpack far beyond it.
_RATIO_SLACK_BYTES: Final = 256 * 1024
_MAX_SMALL_PART_BYTES: Final = 1 << 20
_SUPPORTED_COMPRESSION: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_MAIN_CONTENT_TYPE: Final = (
    b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
)
_TRANSITIONAL_NS: Final = b"http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_OVERRIDE_RE: Final = re.compile(
    rb"<(?:[\w.-]+:)?Override\b[^>]*?\bPartName\s*=\s*([\"'])/word/document\.xml\1[^>]*>",
    re.IGNORECASE,
)
_CONTENT_TYPE_ATTR_RE: Final = re.compile(rb"\bContentType\s*=\s*([\"'])(.*?)\1")
_RELATIONSHIP_RE: Final = re.compile(rb"<(?:[\w.-]+:)?Relationship\b[^>]*>")
_TYPE_ATTR_RE: Final = re.compile(rb"\bType\s*=\s*([\"'])(.*?)\1")
_TARGET_ATTR_RE: Final = re.compile(rb"\bTarget\s*=\s*([\"'])(.*?)\1")
_OFFICE_DOCUMENT_REL: Final = b"/relationships/officeDocument"
_NOT_WORD: Final = "not a Word document"


#: What parsing a document's main part may cost a worker (SPEC §6: no worker above 512 MiB
#: because of one upload; a worker process starts at ~100-150 MiB).
DOCX_PARSE_BUDGET_BYTES: Final = 256 * 1024 * 1024
# lxml's tree, measured on python-docx's parser (CPython 3.11, lxml 5/6, 64-bit): ~140-150
# bytes per element, ~250 per attribute (a node of its own plus one for its value), text
# about its size; add the part's bytes while they are parsed and the text the count
# gathers. `<w:p/>` repeated costs ~25 times its size, `<p a="" b=""…/>` ~45 times.
_COST_PER_ELEMENT: Final = 160
_COST_PER_ATTRIBUTE: Final = 260
_COST_PER_BYTE: Final = 4


class XmlParseCost:
    """An upper estimate of the memory an lxml tree of some XML takes, from one pass over its
    bytes in blocks (constant memory): elements are the ``<`` that do not start an end tag,
    attributes at most the ``=`` signs."""

    def __init__(self) -> None:
        self.size = 0
        self._opens = 0
        self._closes = 0
        self._equals = 0
        self._last = b""

    def feed(self, block: bytes) -> None:
        if not block:
            return
        self.size += len(block)
        self._opens += block.count(b"<")
        self._closes += block.count(b"</") + (self._last == b"<" and block[:1] == b"/")
        self._equals += block.count(b"=")
        self._last = block[-1:]

    @property
    def estimate(self) -> int:
        elements = self._opens - self._closes
        return (
            elements * _COST_PER_ELEMENT
            + self._equals * _COST_PER_ATTRIBUTE
            + self.size * _COST_PER_BYTE
        )

    def too_large_message(self, budget: int) -> str:
        return (
            f"the document is too large to count: its main part would take about "
            f"{self.estimate >> 20} MiB of memory to read (limit {budget >> 20} MiB)"
        )


def _check_members(
    infos: list[zipfile.ZipInfo], max_uncompressed_bytes: int, max_ratio: int
) -> None:
    if len(infos) > _MAX_MEMBERS:
        raise UnsupportedContentError(f"{_NOT_WORD}: the archive has too many members")
    names = {info.filename for info in infos}
    missing = [name for name in (_CONTENT_TYPES, _PACKAGE_RELS, _DOCUMENT) if name not in names]
    if missing:
        raise UnsupportedContentError(f"{_NOT_WORD}: the archive has no {' or '.join(missing)}")
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise UnsupportedContentError(f"{_NOT_WORD}: the archive is encrypted")
        if info.compress_type not in _SUPPORTED_COMPRESSION:
            raise UnsupportedContentError(f"{_NOT_WORD}: unsupported compression method")
        if info.file_size > max_ratio * info.compress_size + _RATIO_SLACK_BYTES:
            raise UnsupportedContentError(
                f"{_NOT_WORD}: {info.filename} has a suspicious compression ratio"
            )
        total += info.file_size
    if total > max_uncompressed_bytes:
        raise UnsupportedContentError(
            f"the document is too large once uncompressed ({total} bytes, limit "
            f"{max_uncompressed_bytes})"
        )


def _read_small_part(archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > _MAX_SMALL_PART_BYTES:
        raise UnsupportedContentError(f"{_NOT_WORD}: oversized {name}")
    with archive.open(info) as member:
        return member.read(_MAX_SMALL_PART_BYTES + 1)


def _check_content_types(archive: zipfile.ZipFile) -> None:
    data = _read_small_part(archive, _CONTENT_TYPES)
    override = _OVERRIDE_RE.search(data)
    content_type = override and _CONTENT_TYPE_ATTR_RE.search(override.group(0))
    if not content_type or content_type.group(2).strip() != _MAIN_CONTENT_TYPE:
        raise UnsupportedContentError(
            f"{_NOT_WORD}: word/document.xml is not declared as a Word document "
            "(templates and macro-enabled files are not accepted)"
        )


def _check_package_relationships(archive: zipfile.ZipFile) -> None:
    """The package's main document (what python-docx opens) must be word/document.xml."""
    for match in _RELATIONSHIP_RE.finditer(_read_small_part(archive, _PACKAGE_RELS)):
        rel_type = _TYPE_ATTR_RE.search(match.group(0))
        target = _TARGET_ATTR_RE.search(match.group(0))
        if rel_type and target and rel_type.group(2).endswith(_OFFICE_DOCUMENT_REL):
            if target.group(2).lstrip(b"/") == _DOCUMENT.encode():
                return
            break
    raise UnsupportedContentError(f"{_NOT_WORD}: its main part is not word/document.xml")


def _check_document_part(archive: zipfile.ZipFile, parse_budget: int) -> None:
    """Inflate word/document.xml in blocks: sizes and CRC must match what the zip declares,
    and reading it into a tree (what the word count does) must fit `parse_budget`."""
    info = archive.getinfo(_DOCUMENT)
    read = 0
    head = b""
    cost = XmlParseCost()
    with archive.open(info) as member:  # never yields more than the declared size
        while block := member.read(1 << 16):
            if len(head) < 4096:
                head += block[:4096]
            read += len(block)
            cost.feed(block)
            if cost.estimate > parse_budget:
                raise UnsupportedContentError(cost.too_large_message(parse_budget))
    if read != info.file_size:
        raise UnsupportedContentError(f"{_NOT_WORD}: word/document.xml is truncated")
    if b"<" not in head or _TRANSITIONAL_NS not in head:
        raise UnsupportedContentError(
            f"{_NOT_WORD}: word/document.xml is not WordprocessingML (Strict Open XML "
            "documents are not supported; save as a regular .docx)"
        )


def check_docx(
    path: StrPath | bytes,
    *,
    max_uncompressed_bytes: int = 200 * 1024 * 1024,
    max_ratio: int = 100,
    parse_budget: int = DOCX_PARSE_BUDGET_BYTES,
) -> None:
    """Raise UnsupportedContentError unless ``path`` (or these bytes) looks like a sane Word
    document whose main part the word count can read within ``parse_budget`` bytes of
    memory."""
    with _open(path) as stream:
        if stream.read(4) != b"PK\x03\x04":
            raise UnsupportedContentError(f"{_NOT_WORD}: the file is not a zip archive")
        stream.seek(0)
        try:
            with zipfile.ZipFile(stream) as archive:
                _check_members(archive.infolist(), max_uncompressed_bytes, max_ratio)
                _check_content_types(archive)
                _check_package_relationships(archive)
                _check_document_part(archive, parse_budget)
        except UnsupportedContentError:
            raise
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            zlib.error,
            EOFError,
            RuntimeError,  # zipfile: encrypted member
            NotImplementedError,
            ValueError,
            KeyError,
        ) as exc:
            raise UnsupportedContentError(f"{_NOT_WORD}: the archive is damaged ({exc})") from None
        except OSError as exc:
            # zipfile seeks to nonsense offsets in a damaged archive (EINVAL); other I/O
            # errors are not the uploader's fault and propagate.
            if exc.errno not in (None, errno.EINVAL):
                raise
            raise UnsupportedContentError(f"{_NOT_WORD}: the archive is damaged ({exc})") from None
