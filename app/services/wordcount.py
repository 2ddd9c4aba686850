"""Word counting for uploaded ``.txt`` and ``.docx`` files.

Pure functions: no web framework, database or task queue in here, so the worker, scripts and
tests can all call them directly.

What a word is
--------------
A word is a maximal run of non-whitespace characters, whitespace being exactly what Python's
``str.split()`` splits on: ASCII TAB, LF, VT, FF, CR and SPACE, the separators U+001C-U+001F,
and the Unicode spaces U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F
and U+3000. For any text, ``count == len(text.split())`` (with a leading byte order mark
removed: a BOM is not text).

GNU ``wc -w`` in a UTF-8 locale gives the same number for ordinary text. It differs only on
characters that ``str.split()`` treats as separators but ``wc`` does not (U+001C-U+001F, U+0085,
U+2028, U+2029), on U+2060 WORD JOINER (a separator for ``wc``, a letter for ``str.split()``),
and on runs made only of non-printable characters (controls, unassigned code points), which
``wc`` does not count as words. In all those cases ``str.split()`` decides.

Decoding order for ``.txt``
---------------------------
1. A byte order mark picks the encoding and is skipped: UTF-32 LE ``FF FE 00 00`` and UTF-32 BE
   ``00 00 FE FF`` are checked before UTF-8 ``EF BB BF``, UTF-16 LE ``FF FE`` and UTF-16 BE
   ``FE FF`` (the UTF-32 LE mark starts with the UTF-16 LE one). Text after a BOM is decoded
   leniently: a malformed sequence becomes U+FFFD, which is part of a word.
2. Without a BOM the file is read as UTF-8 (strict).
3. If it is not valid UTF-8 anywhere in the file (checked while counting; the count restarts
   from the beginning), it is read with the single-byte fallback: Windows-1252, the usual
   encoding of "ANSI" text files, with the five bytes Windows-1252 leaves undefined (0x81,
   0x8D, 0x8F, 0x90, 0x9D) taken as their Latin-1 code points, so every byte sequence decodes.
   In that fallback the whitespace bytes are the ASCII ones plus 0xA0 (NO-BREAK SPACE).

Files are read in fixed-size chunks, so memory stays constant whatever the file size; a word
or a multi-byte character that spans a chunk boundary is counted once. Valid UTF-8 is counted
at the byte level (the C codec validates each chunk, the multi-byte encodings of the Unicode
spaces are blanked out, the remaining bytes are classified with ``bytes.translate`` and word
starts counted with ``bytes.count``), which is faster than ``wc -w`` on mixed-script text.

What counts in a ``.docx``
--------------------------
The main document story as python-docx loads it (``document.element.body``): paragraphs of the
body, tables (nested too; each ``w:tc`` once, so a merged cell counts once), text boxes
(``w:txbxContent``, DrawingML or VML), content controls, hyperlinks, smart tags, custom XML and
tracked insertions/moves-to. Runs of a paragraph join; paragraphs and cells never do; tabs and
breaks separate words. Tracked deletions (``w:del``, ``w:moveFrom``), field codes (between the
``begin`` and ``separate`` field characters, and ``w:instrText``) and ``mc:Fallback`` copies do
not count; only the first ``mc:Choice`` of an ``mc:AlternateContent`` does (its
``mc:Fallback`` if it has no choice). A text box is a story of its own: its words are counted
apart, and the text around its anchor runs on as if the box were not there. Headers, footers,
footnotes, endnotes and comments live in other parts and are not counted; neither are
equations (``m:oMath``). ``w:noBreakHyphen`` and ``w:sym`` are one character each,
``w:softHyphen`` is nothing.

python-docx is given a copy of the package that holds only ``word/document.xml`` (with the
content types and a package relationship to it): it would otherwise load and parse every
header, footer, note and comment part, none of which is counted. It parses that part into an
lxml tree, roughly ten (ordinary text) to forty-five (nothing but empty elements and
attributes) times the size of the XML; a part whose estimated tree (``XmlParseCost``) passes
``DOCX_PARSE_BUDGET_BYTES`` is refused with DocumentTooLargeError before python-docx sees
it. The tree is released before returning. The walk uses ``iter()`` with a tag set and
compares element classes rather than tag strings, so most of the time goes into python-docx's parse.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from itertools import islice
from typing import IO, Any, BinaryIO, Final

import docx
from docx.opc.exceptions import OpcError
from docx.oxml.parser import oxml_parser

from app.services.filetypes import DOCX_PARSE_BUDGET_BYTES, XmlParseCost, detect_bom

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "UNICODE_SPACES",
    "CorruptFileError",
    "DocumentTooLargeError",
    "count_docx_words",
    "count_text_words",
    "count_txt_words",
    "count_words",
]

DEFAULT_CHUNK_SIZE: Final = 1 << 20

StrPath = str | os.PathLike[str]


class CorruptFileError(ValueError):
    """The file cannot be read as the type it claims to be."""


class DocumentTooLargeError(CorruptFileError):
    """The document is too large to count within the worker's memory bound."""


# ---------------------------------------------------------------------------------------------
# Byte-level classification

_SPACE: Final = 0x20  # ord(" ")
_WORD: Final = 0x78  # ord("x")
_WORD_START: Final = b" x"

#: Every non-ASCII character ``str.split()`` treats as whitespace.
UNICODE_SPACES: Final = (
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# Windows-1252 with its five undefined bytes decoded as Latin-1.
_SINGLE_BYTE_TABLE: Final = "".join(
    bytes([b]).decode("cp1252", errors="strict") if b not in b"\x81\x8d\x8f\x90\x9d" else chr(b)
    for b in range(256)
)


def _class_table(is_space: Callable[[int], bool]) -> bytes:
    return bytes(_SPACE if is_space(b) else _WORD for b in range(256))


# For UTF-8: ASCII whitespace bytes; every byte >= 0x80 belongs to a multi-byte character, and
# the multi-byte spaces are blanked out before the table is applied.
_UTF8_CLASSES: Final = _class_table(lambda b: b < 0x80 and chr(b).isspace())
_SINGLE_BYTE_CLASSES: Final = _class_table(lambda b: _SINGLE_BYTE_TABLE[b].isspace())


# The UTF-8 encodings of the UNICODE_SPACES, grouped by lead byte (all of a group have the same
# length, so they are blanked with that many ASCII spaces).
_C2_SPACES: Final = re.compile(rb"\xc2[\x85\xa0]")  # U+0085, U+00A0
_E1_SPACE: Final = b"\xe1\x9a\x80"  # U+1680
_E2_SPACES: Final = re.compile(rb"\xe2(?:\x80[\x80-\x8a\xa8\xa9\xaf]|\x81\x9f)")  # U+2000-U+205F
_E3_SPACE: Final = b"\xe3\x80\x80"  # U+3000


def _blank_unicode_spaces(data: bytes) -> bytes:
    """Replace the UTF-8 encodings of the Unicode spaces by as many ASCII spaces.

    Each group is looked for only if its lead byte occurs (a memchr), so text without, say,
    U+2000-U+205F punctuation pays nothing for that group.
    """
    if b"\xc2" in data:
        data = _C2_SPACES.sub(b"  ", data)
    if b"\xe1" in data and _E1_SPACE in data:
        data = data.replace(_E1_SPACE, b"   ")
    if b"\xe2" in data:
        data = _E2_SPACES.sub(b"   ", data)
    if b"\xe3" in data and _E3_SPACE in data:
        data = data.replace(_E3_SPACE, b"   ")
    return data


def _count_classified(classes: bytes, in_word: bool) -> tuple[int, bool]:
    """Count word starts in a chunk mapped to b" "/b"x", given the state before the chunk."""
    words = classes.count(_WORD_START)
    if classes[0] == _WORD and not in_word:
        words += 1
    return words, classes[-1] == _WORD


def _count_utf8_chunk(data: bytes, in_word: bool) -> tuple[int, bool]:
    """Count words in complete, valid UTF-8; return (word starts, ends inside a word)."""
    if not data:
        return 0, in_word
    if not data.isascii():
        data = _blank_unicode_spaces(data)
    return _count_classified(data.translate(_UTF8_CLASSES), in_word)


def count_text_words(text: str) -> int:
    """Words in an in-memory string: ``len(text.split())``, computed at the byte level."""
    return _count_utf8_chunk(text.encode("utf-8", "surrogatepass"), False)[0]


# ---------------------------------------------------------------------------------------------
# .txt


def _count_utf8_strict(stream: BinaryIO, chunk_size: int) -> int | None:
    """Count words in the rest of ``stream`` as strict UTF-8; None if it is not valid UTF-8."""
    decode = codecs.utf_8_decode
    read = stream.read
    words = 0
    in_word = False
    pending = b""  # an incomplete multi-byte sequence carried over to the next chunk
    while True:
        block = read(chunk_size)
        if not block:
            return None if pending else words
        data = pending + block if pending else block
        if data.isascii():
            pending = b""
        else:
            try:
                consumed = decode(data, "strict", False)[1]
            except UnicodeDecodeError:
                return None
            if consumed != len(data):
                pending = data[consumed:]
                data = data[:consumed]
            else:
                pending = b""
            if not data:
                continue
            data = _blank_unicode_spaces(data)
        n, in_word = _count_classified(data.translate(_UTF8_CLASSES), in_word)
        words += n


def _count_decoded(stream: BinaryIO, codec: str, chunk_size: int) -> int:
    """Count words in the rest of ``stream`` through an incremental decoder (lenient)."""
    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    read = stream.read
    words = 0
    in_word = False
    while True:
        block = read(chunk_size)
        final = not block
        text = decoder.decode(block, final)
        if text:
            n, in_word = _count_utf8_chunk(text.encode("utf-8"), in_word)
            words += n
        if final:
            return words


def _count_single_byte(stream: BinaryIO, chunk_size: int) -> int:
    read = stream.read
    words = 0
    in_word = False
    while block := read(chunk_size):
        n, in_word = _count_classified(block.translate(_SINGLE_BYTE_CLASSES), in_word)
        words += n
    return words


def count_txt_words(path: StrPath, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Count the words of a text file (see the module docstring for the decoding rules).

    Memory use is bounded by a few times ``chunk_size`` whatever the size of the file.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    with open(path, "rb", buffering=0) as stream:
        bom = detect_bom(stream.read(4))
        start = bom.length if bom else 0
        stream.seek(start)
        if bom is not None and bom.codec != "utf-8":
            return _count_decoded(stream, bom.codec, chunk_size)
        words = _count_utf8_strict(stream, chunk_size)
        if words is not None:
            return words
        stream.seek(start)
        if bom is not None:  # declared UTF-8 but malformed: keep UTF-8, replace the bad bytes
            return _count_decoded(stream, "utf-8", chunk_size)
        return _count_single_byte(stream, chunk_size)


class TxtWordCounter:
    """The same count as `count_txt_words`, for bytes that arrive in pieces (an object read
    from S3): `feed` each piece in order, then `result()`. Memory stays bounded by the piece.

    The decoding rules need the whole text a second time when it turns out not to be UTF-8
    (the single-byte fallback counts from the start): `feed` or `result` then answers False /
    None, and the same bytes go again, from the beginning, to `TxtWordCounter(second_pass=True)`.
    """

    def __init__(self, *, second_pass: bool = False) -> None:
        self._second_pass = second_pass
        self._head = b""
        self._mode: str | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._pending = b""
        self._words = 0
        self._in_word = False

    def _start(self, data: bytes) -> bytes:
        bom = detect_bom(data)
        if bom is not None and bom.codec != "utf-8":
            self._mode, codec = "decoded", bom.codec
        elif not self._second_pass:
            self._mode, codec = "strict", ""
        elif bom is not None:  # declared UTF-8 but malformed: keep UTF-8, replace the bad bytes
            self._mode, codec = "decoded", "utf-8"
        else:
            self._mode, codec = "single", ""
        if codec:
            self._decoder = codecs.getincrementaldecoder(codec)(errors="replace")
        return data[bom.length :] if bom else data

    def _add(self, data: bytes, table: bytes) -> None:
        if data:
            n, self._in_word = _count_classified(data.translate(table), self._in_word)
            self._words += n

    def feed(self, block: bytes) -> bool:
        """Count the next piece; False when the text must be read again (see the class)."""
        if self._mode is None:
            self._head += block
            if len(self._head) < 4:
                return True
            block, self._head = self._start(self._head), b""
        if self._mode == "strict":
            data = self._pending + block if self._pending else block
            self._pending = b""
            if not data.isascii():
                try:
                    consumed = codecs.utf_8_decode(data, "strict", False)[1]
                except UnicodeDecodeError:
                    return False
                if consumed != len(data):
                    self._pending, data = data[consumed:], data[:consumed]
                data = _blank_unicode_spaces(data)
            self._add(data, _UTF8_CLASSES)
        elif self._decoder is not None:
            n, self._in_word = _count_utf8_chunk(
                self._decoder.decode(block, False).encode("utf-8"), self._in_word
            )
            self._words += n
        else:
            self._add(block, _SINGLE_BYTE_CLASSES)
        return True

    def result(self) -> int | None:
        """The count once every piece was fed; None when a second pass is needed."""
        if self._mode is None:  # fewer than 4 bytes in all
            if not self._head:
                return 0
            head, self._head = self._head, b""
            if not self.feed(self._start(head)):
                return None
        if self._mode == "strict":
            return None if self._pending else self._words
        if self._decoder is not None:
            n, self._in_word = _count_utf8_chunk(
                self._decoder.decode(b"", True).encode("utf-8"), self._in_word
            )
            self._words += n
        return self._words


# ---------------------------------------------------------------------------------------------
# .docx

_W: Final = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC: Final = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"

_W_T: Final = _W + "t"
_W_P: Final = _W + "p"
_W_TC: Final = _W + "tc"
_W_TAB: Final = _W + "tab"
_W_PTAB: Final = _W + "ptab"
_W_BR: Final = _W + "br"
_W_CR: Final = _W + "cr"
_W_NO_BREAK_HYPHEN: Final = _W + "noBreakHyphen"
_W_SYM: Final = _W + "sym"
_W_FLD_CHAR: Final = _W + "fldChar"
_W_FLD_CHAR_TYPE: Final = _W + "fldCharType"
_W_TXBX_CONTENT: Final = _W + "txbxContent"
_W_DEL: Final = _W + "del"
_W_MOVE_FROM: Final = _W + "moveFrom"
_MC_ALTERNATE_CONTENT: Final = _MC + "AlternateContent"
_MC_CHOICE: Final = _MC + "Choice"
_MC_FALLBACK: Final = _MC + "Fallback"

# Everything else (runs, hyperlinks, content controls, insertions, fldSimple...) is transparent:
# the walk goes through it. Elements not listed and holding no w:t (instrText, delText,
# softHyphen, properties) contribute nothing.
_TAGS: Final = (
    _W_T,
    _W_P,
    _W_TC,
    _W_TAB,
    _W_PTAB,
    _W_BR,
    _W_CR,
    _W_NO_BREAK_HYPHEN,
    _W_SYM,
    _W_FLD_CHAR,
    _W_TXBX_CONTENT,
    _W_DEL,
    _W_MOVE_FROM,
    _MC_ALTERNATE_CONTENT,
)
_SEPARATOR_TAGS: Final = frozenset({_W_TAB, _W_PTAB, _W_BR, _W_CR})
_SKIPPED_TAGS: Final = frozenset({_W_DEL, _W_MOVE_FROM})
_SYMBOL_CHAR: Final = "\ufffd"  # stands for the symbol: any non-space character counts the same


class _NeverMatches:
    pass


def _fast_classes() -> tuple[type, type]:
    """The element classes python-docx's parser gives w:t and w:p, for identity checks.

    The hot loop compares ``element.__class__`` instead of building ``element.tag`` strings.
    That is only sound if no other tag the walk visits shares the class (an unregistered tag
    gets a generic one); otherwise the check never matches and the tag is compared instead.
    """
    classes = [type(oxml_parser.makeelement(tag)) for tag in _TAGS]

    def unique(tag: str) -> type:
        cls = classes[_TAGS.index(tag)]
        return cls if classes.count(cls) == 1 else _NeverMatches

    return unique(_W_T), unique(_W_P)


_TEXT_CLASS, _PARAGRAPH_CLASS = _fast_classes()


def _skip_descendants(element: Any, walker: Iterator[Any]) -> None:
    """Advance ``walker`` past the listed descendants of ``element`` (it yields them next)."""
    inner = element.iter(*_TAGS)
    next(inner)  # the element itself
    count = sum(1 for _ in inner)
    if count:
        next(islice(walker, count - 1, count), None)


def _chosen_branch(alternate: Any) -> Any:
    choice = alternate.find(_MC_CHOICE)
    return choice if choice is not None else alternate.find(_MC_FALLBACK)


def _collect(
    walker: Iterator[Any], parts: list[str], fields: list[bool], boxes: list[list[str]]
) -> None:
    """Append the visible text of the elements ``walker`` yields to ``parts``.

    ``fields`` is the stack of open complex fields of the current story, True once a field has
    passed its ``separate`` character (its result is shown), False while in its code. Text
    boxes are stories of their own: their text goes to a new list appended to ``boxes``, and
    the text around their anchor runs on as if they were not there.
    """
    append = parts.append
    shown = all(fields)
    text_class = _TEXT_CLASS
    paragraph_class = _PARAGRAPH_CLASS
    for element in walker:
        cls = element.__class__
        if cls is text_class:
            if shown:
                text = element.text
                if text:
                    append(text)
            continue
        if cls is paragraph_class:
            append(" ")
            continue
        tag = element.tag
        if tag in _SEPARATOR_TAGS:
            if shown:
                append(" ")
        elif tag == _W_T:  # only reached if python-docx has no class of its own for w:t
            if shown and element.text:
                append(element.text)
        elif tag in (_W_P, _W_TC):
            append(" ")
        elif tag == _W_FLD_CHAR:
            kind = element.get(_W_FLD_CHAR_TYPE)
            if kind == "begin":
                fields.append(False)
            elif kind == "separate" and fields:
                fields[-1] = True
            elif kind == "end" and fields:
                fields.pop()
            shown = all(fields)
        elif tag == _W_NO_BREAK_HYPHEN:
            if shown:
                append("-")
        elif tag == _W_SYM:
            if shown:
                append(_SYMBOL_CHAR)
        elif tag in _SKIPPED_TAGS:
            _skip_descendants(element, walker)
        elif tag == _MC_ALTERNATE_CONTENT:
            _skip_descendants(element, walker)
            branch = _chosen_branch(element)
            if branch is not None:
                _collect(branch.iter(*_TAGS), parts, fields, boxes)
                shown = all(fields)
        elif tag == _W_TXBX_CONTENT:
            _skip_descendants(element, walker)
            inner = element.iter(*_TAGS)
            next(inner)  # the element itself
            box: list[str] = []
            boxes.append(box)
            _collect(inner, box, [], boxes)


def _story_text(body: Any) -> str:
    """The text of the main story, text boxes after it, all separated by spaces."""
    parts: list[str] = []
    boxes: list[list[str]] = []
    _collect(body.iter(*_TAGS), parts, [], boxes)
    return " ".join(["".join(parts), *("".join(box) for box in boxes)])


_CORRUPT_ERRORS: Final = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    KeyError,
    ValueError,  # python-docx: not a Word content type; UnicodeDecodeError
    SyntaxError,  # lxml's XMLSyntaxError
    OpcError,  # python-docx: package not found / unreadable
    NotImplementedError,  # zipfile: unsupported compression
    AttributeError,
    IndexError,
    TypeError,  # python-docx on structurally odd packages
)


_DOCUMENT_PART: Final = "word/document.xml"
_CONTENT_TYPES_PART: Final = "[Content_Types].xml"
_PACKAGE_RELS_PART: Final = "_rels/.rels"
_MAX_SMALL_PART_BYTES: Final = 1 << 20
_OFFICE_DOCUMENT_REL: Final = (
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
)
_MAIN_STORY_RELS: Final = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_OFFICE_DOCUMENT_REL}" Target="{_DOCUMENT_PART}"/>'
    "</Relationships>"
).encode()
_OFFICE_DOCUMENT_TARGET_RE: Final = re.compile(
    rb"<(?:[\w.-]+:)?Relationship\b[^>]*?\bType\s*=\s*([\"'])"
    rb"[^\"']*/relationships/officeDocument\1[^>]*>"
)
_TARGET_RE: Final = re.compile(rb"\bTarget\s*=\s*([\"'])(.*?)\1")


def _read_small_part(archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > _MAX_SMALL_PART_BYTES:
        raise CorruptFileError(f"not a readable Word document (oversized {name})")
    with archive.open(info) as member:
        return member.read(_MAX_SMALL_PART_BYTES + 1)


def _main_story_package(stream: BinaryIO, parse_budget: int) -> IO[bytes]:
    """A copy of the package holding only what the count reads, in an anonymous temporary
    file: the content types, a package relationship to the main part, and the main part
    itself (``word/document.xml``, copied in blocks). Headers, footers, notes, comments,
    media and the rest are left out: python-docx loads every part it can reach, parsing each
    XML one, and none of them is counted. DocumentTooLargeError when parsing the main part
    would take more than ``parse_budget`` bytes (see filetypes.XmlParseCost)."""
    with zipfile.ZipFile(stream) as archive:
        package_rels = _read_small_part(archive, _PACKAGE_RELS_PART)
        main = _OFFICE_DOCUMENT_TARGET_RE.search(package_rels)
        target = main and _TARGET_RE.search(main.group(0))
        if not target or target.group(2).lstrip(b"/") != _DOCUMENT_PART.encode():
            raise CorruptFileError(
                "not a readable Word document (its main part is not word/document.xml)"
            )
        content_types = _read_small_part(archive, _CONTENT_TYPES_PART)
        info = archive.getinfo(_DOCUMENT_PART)
        copy = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
        try:
            cost = XmlParseCost()
            with zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as out:
                out.writestr(_CONTENT_TYPES_PART, content_types)
                out.writestr(_PACKAGE_RELS_PART, _MAIN_STORY_RELS)
                with archive.open(info) as part, out.open(_DOCUMENT_PART, "w") as target_part:
                    while block := part.read(1 << 16):  # never more than the declared size
                        cost.feed(block)
                        if cost.estimate > parse_budget:
                            raise DocumentTooLargeError(cost.too_large_message(parse_budget))
                        target_part.write(block)
            copy.seek(0)
        except BaseException:
            copy.close()
            raise
    return copy


def _open_document(stream: BinaryIO, parse_budget: int) -> Any:
    try:
        with _main_story_package(stream, parse_budget) as bounded:
            return docx.Document(bounded)
    except CorruptFileError:
        raise
    except OSError as exc:
        # A corrupt zip makes zipfile seek to nonsense offsets (EINVAL); real I/O errors
        # (storage away) propagate so the caller can retry.
        if exc.errno in (None, errno.EINVAL):
            raise CorruptFileError(f"not a readable Word document ({exc})") from exc
        raise
    except _CORRUPT_ERRORS as exc:
        raise CorruptFileError(f"not a readable Word document ({_describe(exc)})") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, zipfile.BadZipFile):
        return f"bad zip archive: {exc}"
    if isinstance(exc, KeyError):
        return f"missing part: {exc.args[0] if exc.args else exc}"
    if isinstance(exc, SyntaxError):
        return f"malformed XML: {exc}"
    return f"{type(exc).__name__}: {exc}"


def count_docx_words(path: StrPath, *, parse_budget: int = DOCX_PARSE_BUDGET_BYTES) -> int:
    """Count the words of the main document story of a ``.docx`` file.

    Raises CorruptFileError if the file is not a readable Word document, and its subclass
    DocumentTooLargeError if reading its main part would take more than ``parse_budget``
    bytes of memory; errors opening or reading the file itself (missing file, I/O) propagate
    as OSError.
    """
    with open(path, "rb") as stream:
        document = _open_document(stream, parse_budget)
    body = getattr(document.element, "body", None)
    if body is None:
        raise CorruptFileError("not a readable Word document (no document body)")
    words = count_text_words(_story_text(body))
    # python-docx's package and parts reference each other, so the parsed tree (many times
    # the size of the file) would otherwise live until the next cyclic garbage collection.
    body.clear()
    return words


# ---------------------------------------------------------------------------------------------


def count_words(path: StrPath, kind: str) -> int:
    """Count the words of ``path`` read as ``kind`` ("txt" or "docx", any case, dot allowed)."""
    normalized = kind.lower().lstrip(".")
    if normalized == "txt":
        return count_txt_words(path)
    if normalized == "docx":
        return count_docx_words(path)
    raise ValueError(f"unsupported file kind: {kind!r}")
