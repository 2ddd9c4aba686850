"""Word counts of .docx files built in the tests, one structure at a time, with exact counts.

Documents are made with python-docx where it can, and with raw WordprocessingML injected into
the body (or extra parts added to the package) for what it cannot make.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import docx
import pytest
from docx.enum.text import WD_BREAK
from docx.oxml import parse_xml
from docx.oxml.ns import qn

from app.services import wordcount
from app.services.wordcount import (
    CorruptFileError,
    DocumentTooLargeError,
    count_docx_words,
    count_words,
)

NS = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "wp": "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
    "wp14": "http://schemas.microsoft.com/office/word/2010/wordprocessingDrawing",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "wps": "http://schemas.microsoft.com/office/word/2010/wordprocessingShape",
    "w14": "http://schemas.microsoft.com/office/word/2010/wordml",
    "v": "urn:schemas-microsoft-com:vml",
    "o": "urn:schemas-microsoft-com:office:office",
    "m": "http://schemas.openxmlformats.org/officeDocument/2006/math",
}
DECLS = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NS.items())

Doc = docx.document.Document


def append_xml(document: Doc, fragment: str) -> None:
    """Append body-level WordprocessingML (paragraphs, tables...) before the sectPr."""
    wrapper = parse_xml(f"<w:body {DECLS}>{fragment}</w:body>")
    body = document.element.body
    section = body.find(qn("w:sectPr"))
    for child in list(wrapper):
        section.addprevious(child)


def save(document: Doc, tmp_path: Path, name: str = "doc.docx") -> Path:
    path = tmp_path / name
    document.save(str(path))
    return path


def count_of(tmp_path: Path, build: Callable[[Doc], None]) -> int:
    document = docx.Document()
    build(document)
    return count_docx_words(save(document, tmp_path))


def r(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


def p(*runs: str) -> str:
    return f"<w:p>{''.join(runs)}</w:p>"


def naive_count(path: Path) -> int:
    """The naive count: body paragraphs only (misses tables, text boxes, controls...)."""
    return sum(len(par.text.split()) for par in docx.Document(str(path)).paragraphs)


# -- paragraphs and runs -------------------------------------------------------------------------


def test_plain_paragraphs(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        d.add_paragraph("one two three")
        d.add_paragraph("")
        d.add_paragraph("  four  ")
        d.add_heading("A heading here", level=1)

    assert count_of(tmp_path, build) == 7


def test_empty_document(tmp_path: Path) -> None:
    assert count_of(tmp_path, lambda d: None) == 0


def test_adjacent_paragraphs_never_join(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        d.add_paragraph("alpha")
        d.add_paragraph("beta")
        d.add_paragraph("গামা")

    assert count_of(tmp_path, build) == 3


def test_word_split_across_runs_counts_once(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        par = d.add_paragraph()
        par.add_run("hel").bold = True
        par.add_run("lo")
        par.add_run(" wor").italic = True
        par.add_run("ld")
        append_xml(d, p(r("বাং"), "<w:proofErr w:type='spellStart'/>", r("লা"), r(" end")))

    assert count_of(tmp_path, build) == 4


def test_tabs_and_breaks_separate_words(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        run = d.add_paragraph().add_run("a")
        run.add_tab()
        run.add_text("b")
        run.add_break()  # line
        run.add_text("c")
        run.add_break(WD_BREAK.PAGE)
        run.add_text("d")
        run.add_break(WD_BREAK.COLUMN)
        run.add_text("e")
        append_xml(
            d,
            p(
                "<w:r><w:t>f</w:t><w:cr/><w:t>g</w:t>"
                '<w:ptab w:relativeTo="margin" w:alignment="right" w:leader="none"/>'
                "<w:t>h</w:t></w:r>"
            ),
        )

    assert count_of(tmp_path, build) == 8


def test_rendered_page_break_marker_does_not_split(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(d, p("<w:r><w:t>hel</w:t><w:lastRenderedPageBreak/><w:t>lo</w:t></w:r>"))

    assert count_of(tmp_path, build) == 1


def test_special_characters(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p("<w:r><w:t>well</w:t><w:noBreakHyphen/><w:t>known</w:t></w:r>")  # 1
            + p("<w:r><w:t>hy</w:t><w:softHyphen/><w:t>phen</w:t></w:r>")  # 1
            + p(r("a "), '<w:r><w:sym w:font="Wingdings" w:char="F04A"/></w:r>', r(" b"))  # 3
            + p(r("x"), '<w:r><w:sym w:font="Symbol" w:char="F0B7"/></w:r>', r("y")),  # 1
        )

    assert count_of(tmp_path, build) == 6


def test_only_a_symbol_or_hyphen_is_a_word(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p('<w:r><w:sym w:font="Wingdings" w:char="F04A"/></w:r>')
            + p("<w:r><w:noBreakHyphen/></w:r>")
            + p("<w:r><w:softHyphen/></w:r>"),
        )

    assert count_of(tmp_path, build) == 2


# -- tables --------------------------------------------------------------------------------------


def test_table_words_count_and_cells_never_join(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        d.add_paragraph("intro words")
        table = d.add_table(rows=2, cols=3)
        for i, cell in enumerate(table._cells):
            cell.text = f"ab{i} cd"
        join = d.add_table(rows=1, cols=2)
        join.cell(0, 0).text = "ab"
        join.cell(0, 1).text = "cd"
        d.add_paragraph("outro")

    path = tmp_path / "t.docx"
    document = docx.Document()
    build(document)
    document.save(str(path))
    assert count_docx_words(path) == 2 + 12 + 2 + 1
    assert naive_count(path) == 3  # what the paragraphs-only loop sees


def test_nested_table(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        outer = d.add_table(rows=1, cols=2)
        outer.cell(0, 0).text = "outer cell"
        inner = outer.cell(0, 1).add_table(rows=2, cols=2)
        for cell in inner._cells:
            cell.text = "in"
        deepest = inner.cell(1, 1).add_table(rows=1, cols=1)
        deepest.cell(0, 0).text = "deep down"

    assert count_of(tmp_path, build) == 2 + 4 + 2


def test_merged_cells_count_once(tmp_path: Path) -> None:
    document = docx.Document()
    table = document.add_table(rows=3, cols=3)
    horizontal = table.cell(0, 0).merge(table.cell(0, 1))  # w:gridSpan
    vertical = table.cell(1, 2).merge(table.cell(2, 2))  # w:vMerge
    horizontal.text = "horizontal merge words"
    vertical.text = "vertical merge"
    for (row, col), text in {
        (0, 2): "a",
        (1, 0): "b",
        (1, 1): "c",
        (2, 0): "d",
        (2, 1): "e",
    }.items():
        table.cell(row, col).text = text
    path = save(document, tmp_path)

    xml = zipfile.ZipFile(path).read("word/document.xml")
    assert b"w:gridSpan" in xml
    assert b"w:vMerge" in xml
    assert count_docx_words(path) == 3 + 2 + 5
    # python-docx's row.cells repeats merged cells: walking it would count them twice.
    reopened = docx.Document(str(path)).tables[0]
    by_row_cells = sum(len(c.text.split()) for row in reopened.rows for c in row.cells)
    assert by_row_cells == 3 * 2 + 2 * 2 + 5


def test_table_cell_inside_content_control(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            "<w:tbl><w:tblGrid><w:gridCol/><w:gridCol/></w:tblGrid><w:tr>"
            f"<w:tc>{p(r('plain cell'))}</w:tc>"
            f"<w:sdt><w:sdtPr><w:alias w:val='Cell control'/></w:sdtPr><w:sdtContent>"
            f"<w:tc>{p(r('controlled cell'))}</w:tc></w:sdtContent></w:sdt>"
            "</w:tr></w:tbl>",
        )

    assert count_of(tmp_path, build) == 4


# -- text boxes and alternate content ------------------------------------------------------------

TEXT_BOX = (
    "<w:r><mc:AlternateContent><mc:Choice Requires='wps'><w:drawing>"
    "<wp:anchor distT='0' distB='0' distL='114300' distR='114300' simplePos='0' "
    "relativeHeight='251659264' behindDoc='0' locked='0' layoutInCell='1' allowOverlap='1'>"
    "<wp:simplePos x='0' y='0'/>"
    "<wp:positionH relativeFrom='column'><wp:posOffset>1905000</wp:posOffset></wp:positionH>"
    "<wp:positionV relativeFrom='paragraph'><wp:align>top</wp:align></wp:positionV>"
    "<wp:extent cx='1828800' cy='457200'/><wp:wrapSquare wrapText='bothSides'/>"
    "<wp:docPr id='1' name='Text Box 1' descr='alt text is not counted'/>"
    "<a:graphic><a:graphicData uri='http://schemas.microsoft.com/office/word/2010/"
    "wordprocessingShape'><wps:wsp><wps:cNvSpPr txBox='1'/><wps:spPr/>"
    "<wps:txbx><w:txbxContent>{content}</w:txbxContent></wps:txbx><wps:bodyPr/>"
    "</wps:wsp></a:graphicData></a:graphic>"
    "<wp14:sizeRelH relativeFrom='margin'><wp14:pctWidth>0</wp14:pctWidth></wp14:sizeRelH>"
    "</wp:anchor></w:drawing></mc:Choice>"
    "<mc:Fallback><w:pict><v:shape id='Text Box 1' o:spid='_x0000_s1026' type='#_x0000_t202'>"
    "<v:textbox><w:txbxContent>{content}</w:txbxContent></v:textbox></v:shape></w:pict>"
    "</mc:Fallback></mc:AlternateContent></w:r>"
)


def test_text_box_counts_once(tmp_path: Path) -> None:
    box = TEXT_BOX.format(content=p(r("boxed words")) + p(r("second line")))

    def build(d: Doc) -> None:
        append_xml(d, p(r("before "), box, r(" after")))

    assert count_of(tmp_path, build) == 2 + 4


def test_text_box_is_its_own_story(tmp_path: Path) -> None:
    # The box's text never joins the text around its anchor, which runs on unbroken.
    box = TEXT_BOX.format(content=p(r("inside")))

    def build(d: Doc) -> None:
        append_xml(d, p(r("be"), box, r("fore")))

    assert count_of(tmp_path, build) == 2


def test_text_box_with_table(tmp_path: Path) -> None:
    content = (
        "<w:tbl><w:tblGrid><w:gridCol/><w:gridCol/></w:tblGrid><w:tr>"
        f"<w:tc>{p(r('one'))}</w:tc><w:tc>{p(r('two'))}</w:tc></w:tr></w:tbl>{p()}"
    )

    def build(d: Doc) -> None:
        append_xml(d, p(TEXT_BOX.format(content=content)))

    assert count_of(tmp_path, build) == 2


def test_legacy_vml_text_box(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p(
                r("anchor text "),
                "<w:r><w:pict><v:shape id='b' type='#_x0000_t202'><v:textbox><w:txbxContent>"
                f"{p(r('legacy box words'))}</w:txbxContent></v:textbox></v:shape></w:pict></w:r>",
            ),
        )

    assert count_of(tmp_path, build) == 2 + 3


def test_alternate_content_counts_the_choice(tmp_path: Path) -> None:
    def ac(*branches: str) -> str:
        return f"<w:r><mc:AlternateContent>{''.join(branches)}</mc:AlternateContent></w:r>"

    choice = "<mc:Choice Requires='w14'>{}</mc:Choice>"
    fallback = "<mc:Fallback>{}</mc:Fallback>"

    def build(d: Doc) -> None:
        append_xml(
            d,
            # One choice and a fallback: the choice only.
            "<w:p>"
            + ac(choice.format(r("choice text")), fallback.format(r("fallback text here")))
            + "</w:p>"
            # Two choices: the first one only.
            + "<w:p>"
            + ac(
                choice.format(r("first")),
                choice.format(r("second choice")),
                fallback.format(r("x")),
            )
            + "</w:p>"
            # No choice at all: the fallback.
            + "<w:p>"
            + ac(fallback.format(r("only fallback")))
            + "</w:p>",
        )

    assert count_of(tmp_path, build) == 2 + 1 + 2


def test_alternate_content_at_block_level(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            "<mc:AlternateContent><mc:Choice Requires='w14'>"
            + p(r("block choice"))
            + "</mc:Choice><mc:Fallback>"
            + p(r("block fallback words"))
            + "</mc:Fallback></mc:AlternateContent>"
            + p(r("after")),
        )

    assert count_of(tmp_path, build) == 3


# -- content controls, hyperlinks, wrappers ------------------------------------------------------

SDT_PR = (
    "<w:sdtPr><w:alias w:val='Client name'/><w:tag w:val='client'/><w:id w:val='1'/>"
    "<w:placeholder><w:docPart w:val='DefaultPlaceholder_1'/></w:placeholder></w:sdtPr>"
)


def test_content_controls(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            # Block-level control with two paragraphs.
            f"<w:sdt>{SDT_PR}<w:sdtContent>{p(r('first control'))}{p(r('second'))}"
            "</w:sdtContent></w:sdt>"
            # Inline controls: between spaces, and inside a word.
            + p(
                r("one "),
                f"<w:sdt>{SDT_PR}<w:sdtContent>{r('two three')}</w:sdtContent></w:sdt>",
                r(" four"),
            )
            + p(
                r("pre"),
                f"<w:sdt>{SDT_PR}<w:sdtContent>{r('mid')}</w:sdtContent></w:sdt>",
                r("post"),
            ),
        )

    assert count_of(tmp_path, build) == 3 + 4 + 1


def test_hyperlinks(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p(
                r("see "),
                f"<w:hyperlink w:anchor='_Toc1' w:history='1'>{r('the docs')}</w:hyperlink>",
                r(" now"),
            )
            + p(r("www."), f"<w:hyperlink w:anchor='x'>{r('example')}</w:hyperlink>", r(".com")),
        )

    assert count_of(tmp_path, build) == 4 + 1


def test_smart_tags_and_custom_xml(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p(
                r("in "),
                f"<w:smartTag w:uri='urn:schemas' w:element='place'>{r('Dhaka')}</w:smartTag>",
                r(" and "),
                f"<w:customXml w:element='city'>{r('Chattogram')}</w:customXml>",
            )
            + f"<w:customXml w:element='block'>{p(r('custom block'))}</w:customXml>",
        )

    assert count_of(tmp_path, build) == 4 + 2


# -- tracked changes -----------------------------------------------------------------------------

REV = "w:id='{id}' w:author='Reviewer' w:date='2024-01-01T00:00:00Z'"


def test_tracked_insertions_count_deletions_do_not(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p(
                r("kept "),
                f"<w:ins {REV.format(id=1)}>{r('inserted words ')}</w:ins>",
                f"<w:del {REV.format(id=2)}><w:r><w:delText xml:space='preserve'>deleted words "
                "</w:delText></w:r></w:del>",
                r("end"),
            )  # kept inserted words end: 4
            + p(
                f"<w:moveFrom {REV.format(id=3)}>{r('moved away')}</w:moveFrom>",
                f"<w:moveTo {REV.format(id=4)}>{r('moved here')}</w:moveTo>",
            )  # 2
            + p(r("com"), f"<w:del {REV.format(id=5)}>{r('xx yy')}</w:del>", r("plete"))  # 1
            + p(r("foo"), f"<w:del {REV.format(id=6)}><w:r><w:tab/></w:r></w:del>", r("bar"))  # 1
            + p(r("a"), f"<w:ins {REV.format(id=7)}><w:r><w:tab/></w:r></w:ins>", r("b")),  # 2
        )

    assert count_of(tmp_path, build) == 4 + 2 + 1 + 1 + 2


def test_deleted_paragraphs_and_table_rows(tmp_path: Path) -> None:
    deleted = f"<w:del {REV.format(id=9)}>{r('gone')}</w:del>"

    def build(d: Doc) -> None:
        append_xml(
            d,
            p(r("stays"))
            + p(deleted)
            + "<w:tbl><w:tblGrid><w:gridCol/></w:tblGrid>"
            + f"<w:tr><w:trPr><w:del {REV.format(id=10)}/></w:trPr><w:tc>{p(deleted)}</w:tc></w:tr>"
            + f"<w:tr><w:tc>{p(r('row'))}</w:tc></w:tr></w:tbl>",
        )

    assert count_of(tmp_path, build) == 2


# -- fields --------------------------------------------------------------------------------------


def fld(kind: str) -> str:
    return f"<w:r><w:fldChar w:fldCharType='{kind}'/></w:r>"


def instr(code: str) -> str:
    return f"<w:r><w:instrText xml:space='preserve'>{code}</w:instrText></w:r>"


def test_field_result_counts_code_does_not(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p(
                r("Date: "),
                fld("begin"),
                instr(' DATE \\@ "d MMMM yyyy" '),
                fld("separate"),
                r("1 January 2024"),
                fld("end"),
            )  # 4
            + p(
                fld("begin"),
                instr(' HYPERLINK "https://example.com/a b" '),
                fld("separate"),
                r("click here"),
                fld("end"),
            )  # 2
            + p(r("term"), fld("begin"), instr(' XE "index entry" '), fld("end"), r("s"))  # 1
            + p(
                "<w:fldSimple w:instr=' PAGE '>" + r("7") + "</w:fldSimple>",
                "<w:fldSimple w:instr=' NUMPAGES '>" + r(" of 9") + "</w:fldSimple>",
            ),  # 3
        )

    assert count_of(tmp_path, build) == 4 + 2 + 1 + 3


def test_nested_field_in_code_is_code(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p(
                fld("begin"),
                instr(" IF "),
                fld("begin"),
                instr(" MERGEFIELD Gender "),
                fld("separate"),
                r("hidden nested result"),
                fld("end"),
                instr(' = "F" "Ms" "Mr" '),
                fld("separate"),
                r("shown result"),
                fld("end"),
                r(" tail"),
            ),
        )

    assert count_of(tmp_path, build) == 3


def test_nested_field_in_result_is_shown(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p(
                fld("begin"),
                instr(" QUOTE "),
                fld("separate"),
                r("outer "),
                fld("begin"),
                instr(" PAGE "),
                fld("separate"),
                r("12"),
                fld("end"),
                fld("end"),
            ),
        )

    assert count_of(tmp_path, build) == 2


def test_field_spanning_paragraphs(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(
            d,
            p(fld("begin"), instr(' TOC \\o "1-3" \\h '), fld("separate"), r("Chapter one"))
            + p(r("Chapter two"))
            + p(r("Chapter three"), fld("end"))
            + p(r("body")),
        )

    assert count_of(tmp_path, build) == 7


def test_field_inside_text_box_is_separate(tmp_path: Path) -> None:
    box = TEXT_BOX.format(
        content=p(fld("begin"), instr(" PAGE "), fld("separate"), r("3"), fld("end"))
    )

    def build(d: Doc) -> None:
        append_xml(d, p(r("page "), box, r("end")))

    assert count_of(tmp_path, build) == 3


# -- other parts ---------------------------------------------------------------------------------

FOOTNOTES = (
    f"<w:footnotes {DECLS}>"
    "<w:footnote w:type='separator' w:id='-1'><w:p><w:r><w:separator/></w:r></w:p></w:footnote>"
    "<w:footnote w:id='1'><w:p><w:r><w:t>footnote words never counted</w:t></w:r></w:p>"
    "</w:footnote></w:footnotes>"
)
ENDNOTES = FOOTNOTES.replace("footnote", "endnote")
CT = "application/vnd.openxmlformats-officedocument.wordprocessingml.{}+xml"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/{}"


def add_parts(path: Path, parts: dict[str, tuple[str, str, str]]) -> None:
    """Add XML parts to the package, each with its relationship and content type."""
    with zipfile.ZipFile(path) as zin:
        members = {name: zin.read(name) for name in zin.namelist()}
    rels = members["word/_rels/document.xml.rels"].decode()
    types = members["[Content_Types].xml"].decode()
    for i, (name, (xml, rel_type, content_type)) in enumerate(parts.items()):
        members[f"word/{name}"] = xml.encode()
        rels = rels.replace(
            "</Relationships>",
            f'<Relationship Id="rIdTest{i}" Type="{REL.format(rel_type)}" Target="{name}"/>'
            "</Relationships>",
        )
        types = types.replace(
            "</Types>",
            f'<Override PartName="/word/{name}" ContentType="{CT.format(content_type)}"/></Types>',
        )
    members["word/_rels/document.xml.rels"] = rels.encode()
    members["[Content_Types].xml"] = types.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in members.items():
            zout.writestr(name, data)


def test_headers_footers_notes_and_comments_are_not_counted(tmp_path: Path) -> None:
    document = docx.Document()
    section = document.sections[0]
    section.header.paragraphs[0].text = "header words not counted"
    section.footer.paragraphs[0].text = "footer words not counted"
    section.different_first_page_header_footer = True
    section.first_page_header.paragraphs[0].text = "first page header"
    body = document.add_paragraph("body text")
    document.add_comment(body.runs, text="comment words never counted", author="Reviewer")
    append_xml(
        document,
        p(
            r("noted"),
            "<w:r><w:rPr><w:rStyle w:val='FootnoteReference'/></w:rPr>"
            "<w:footnoteReference w:id='1'/></w:r>",
            r(" and ended"),
            "<w:r><w:endnoteReference w:id='1'/></w:r>",
        ),
    )
    path = save(document, tmp_path)
    add_parts(
        path,
        {
            "footnotes.xml": (FOOTNOTES, "footnotes", "footnotes"),
            "endnotes.xml": (ENDNOTES, "endnotes", "endnotes"),
        },
    )
    names = set(zipfile.ZipFile(path).namelist())
    assert {"word/footnotes.xml", "word/endnotes.xml", "word/comments.xml"} <= names
    assert any(name.startswith("word/header") for name in names)
    assert count_docx_words(path) == 2 + 3


def test_math_is_not_counted(tmp_path: Path) -> None:
    def build(d: Doc) -> None:
        append_xml(d, p(r("area "), "<m:oMath><m:r><m:t>πr²</m:t></m:r></m:oMath>", r(" done")))

    assert count_of(tmp_path, build) == 2


# -- everything at once, and a larger document ---------------------------------------------------


def test_larger_generated_document(tmp_path: Path) -> None:
    document = docx.Document()
    expected = 0
    for i in range(300):
        par = document.add_paragraph(f"para {i} has")
        par.add_run(" five words").bold = True
        expected += 5
        if i % 50 == 0:
            table = document.add_table(rows=2, cols=2)
            for cell in table._cells:
                cell.text = "cell text"
                expected += 2
    path = save(document, tmp_path)
    assert count_docx_words(path) == expected
    assert count_words(path, "docx") == expected
    assert naive_count(path) == 300 * 5


def test_tag_comparison_path_gives_the_same_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk compares element classes for w:t and w:p; without them it compares tags."""
    document = docx.Document()
    document.add_paragraph("plain words here")
    document.add_table(rows=1, cols=2).cell(0, 1).text = "cell words"
    append_xml(
        document,
        p(r("a"), TEXT_BOX.format(content=p(r("box text"))), r("b"))
        + p(fld("begin"), instr(" PAGE "), fld("separate"), r("4"), fld("end")),
    )
    path = save(document, tmp_path)
    assert count_docx_words(path) == 3 + 2 + 1 + 2 + 1
    monkeypatch.setattr(wordcount, "_TEXT_CLASS", wordcount._NeverMatches)
    monkeypatch.setattr(wordcount, "_PARAGRAPH_CLASS", wordcount._NeverMatches)
    assert count_docx_words(path) == 3 + 2 + 1 + 2 + 1


# -- corrupt files -------------------------------------------------------------------------------


def plain_docx_bytes() -> bytes:
    document = docx.Document()
    document.add_paragraph("some words in a document " * 50)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def without(data: bytes, member: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            if name != member:
                zout.writestr(name, zin.read(name))
    return out.getvalue()


def replaced(data: bytes, member: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, content if name == member else zin.read(name))
    return out.getvalue()


def corrupt_cases() -> dict[str, bytes]:
    good = plain_docx_bytes()
    template_types = (
        zipfile.ZipFile(io.BytesIO(good))
        .read("[Content_Types].xml")
        .replace(b"wordprocessingml.document.main", b"wordprocessingml.template.main")
    )
    # Flip bytes in the middle of the compressed document.xml.
    info = zipfile.ZipFile(io.BytesIO(good)).getinfo("word/document.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    damaged = bytearray(good)
    for offset in range(start + 10, start + min(info.compress_size, 60)):
        damaged[offset] ^= 0x5A
    return {
        "empty file": b"",
        "text file": b"just some text, not a zip\n" * 10,
        "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "truncated": good[: len(good) // 2],
        "no document.xml": without(good, "word/document.xml"),
        "no content types": without(good, "[Content_Types].xml"),
        "malformed xml": replaced(good, "word/document.xml", b"<w:document><w:body><w:p>"),
        "not xml": replaced(good, "word/document.xml", b"\x00\x01binary"),
        "no body": replaced(
            good, "word/document.xml", f'<w:document xmlns:w="{NS["w"]}"/>'.encode()
        ),
        "template content type": replaced(good, "[Content_Types].xml", template_types),
        "damaged deflate stream": bytes(damaged),
        "empty zip": _empty_zip(),
    }


def _empty_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w"):
        pass
    return out.getvalue()


CORRUPT = corrupt_cases()


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_files_raise_corrupt_file_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "bad.docx"
    path.write_bytes(CORRUPT[case])
    with pytest.raises(CorruptFileError) as info:
        count_docx_words(path)
    assert str(info.value).startswith("not a readable Word document")
    assert isinstance(info.value, ValueError)


def test_the_good_original_of_the_corrupt_cases_counts(tmp_path: Path) -> None:
    path = tmp_path / "good.docx"
    path.write_bytes(plain_docx_bytes())
    assert count_docx_words(path) == 250


def test_missing_file_is_an_os_error_not_corrupt(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        count_docx_words(tmp_path / "missing.docx")


def test_count_words_dispatch_docx(tmp_path: Path) -> None:
    path = tmp_path / "bad.docx"
    path.write_bytes(b"not a zip")
    with pytest.raises(CorruptFileError):
        count_words(path, "docx")


def test_a_main_part_over_the_parse_budget_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "heavy.docx"
    path.write_bytes(plain_docx_bytes())
    assert count_docx_words(path) == 250
    with pytest.raises(DocumentTooLargeError, match="too large to count"):
        count_docx_words(path, parse_budget=10_000)


def test_parts_other_than_the_main_one_are_not_loaded(tmp_path: Path) -> None:
    """A header python-docx could not parse does not matter: it is never given to it."""
    good = plain_docx_bytes()
    with zipfile.ZipFile(io.BytesIO(good)) as src:
        rels = src.read("word/_rels/document.xml.rels").replace(
            b"</Relationships>",
            b'<Relationship Id="rIdH" Target="header9.xml" Type="http://schemas.openxmlformats'
            b'.org/officeDocument/2006/relationships/header"/></Relationships>',
        )
    data = replaced(good, "word/_rels/document.xml.rels", rels)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name))
        zout.writestr("word/header9.xml", b"<not xml")
    path = tmp_path / "odd-header.docx"
    path.write_bytes(out.getvalue())
    assert count_docx_words(path) == 250
