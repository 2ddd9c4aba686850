"""Word counting benchmark: ``python -m bench.wordcount [--quick] [--json]``.

Everything is generated into a temporary directory and measured in the same run:

* ``.txt``: a ~100 MB mixed-script UTF-8 file (Latin with typographic punctuation, Cyrillic,
  Greek, Arabic, Hebrew, Devanagari, Bengali, Thai, CJK, Hangul, emoji; spaces, tabs, CRLF,
  NO-BREAK SPACE, IDEOGRAPHIC SPACE, thin spaces). ``count_txt_words`` against GNU ``wc -w``
  (``LC_ALL=C.UTF-8``): the counts must be identical; throughput of both in MB/s (best of a
  few runs), and the peak resident memory of a separate process that only counts the file,
  against the 64 MiB target.
* ``.docx``: two generated ~1M-word documents with tables, one shaped like python-docx's own
  output (one run per paragraph) and one like Word's (several formatted runs per paragraph,
  revision ids, proofing marks, tabs). ``count_docx_words`` against the naive
  ``sum(len(p.text.split()) for p in Document(path).paragraphs)``, which sees body paragraphs
  only: our count must exceed it by exactly the words in tables. Both timings include
  ``Document()`` loading the package, the same work for both and a floor for our time; the
  load is also timed alone, and the speedup of the counting after it is shown too.

``run(quick=True)`` uses small sizes (a smoke test); timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docx

from app.services.wordcount import count_docx_words, count_txt_words

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
MEMORY_TARGET_MIB = 64
WC_ENV = {"LC_ALL": "C.UTF-8", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

# -- text generation -----------------------------------------------------------------------------

LANGUAGES = {
    "en": "The quick brown fox jumps over the lazy dog while “careful” readers — and "
    "editors — count every word; it’s 5 o’clock © 2024 (really).",
    "fr": "Le cœur a ses raisons que la raison ne connaît point\u00a0: « déjà » vu, très "
    "élevé, façade naïve\u00a0!",
    "de": "Größere Übungen für Schüler während der Straßenbahnfahrt äußerst schön.",
    "ru": "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "el": "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία της γλώσσας μας.",
    "ar": "نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق.",
    "he": "דג סקרן שט בים מאוכזב ולפתע מצא חברה.",
    "hi": "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले।",
    "bn": "আমার সোনার বাংলা, আমি তোমায় ভালোবাসি। চিরদিন তোমার আকাশ, তোমার বাতাস।",
    "th": "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    "zh": "我能吞下玻璃而不伤身体。 天地玄黄， 宇宙洪荒、 日月盈昃， 辰宿列张。",
    "ja": "いろはにほへと ちりぬるを\u3000わかよたれそ つねならむ。 うゐのおくやま",
    "ko": "다람쥐 헌 쳇바퀴에 타고파. 키스의 고유조건은 입술끼리 만나야 하고",
    "emoji": "🙂 👍🏽 great 🎉party 🇧🇩 ❤️ love 👨‍👩‍👧 family",
}
SEPARATORS = (
    [" "] * 200
    + ["\n"] * 12
    + ["\r\n"] * 4
    + ["\t"] * 3
    + ["  "] * 3
    + ["\u00a0", "\u3000", "\u2009", "\u202f"]
)


def _text_block(rng: random.Random, size: int) -> bytes:
    vocab = {lang: text.split() for lang, text in LANGUAGES.items()}
    langs = list(vocab)
    lines: list[str] = []
    total = 0
    while total < size:
        words = vocab[rng.choice(langs)]
        parts: list[str] = []
        for _ in range(rng.randint(5, 25)):
            parts.append(rng.choice(words))
            parts.append(rng.choice(SEPARATORS))
        parts.append("\n")
        line = "".join(parts)
        lines.append(line)
        total += len(line.encode())
    return "".join(lines).encode()


def make_text_file(path: Path, size: int, seed: int = 1) -> int:
    """Write ~size bytes of mixed-script UTF-8 text (blocks of generated lines, shuffled)."""
    rng = random.Random(seed)
    blocks = [_text_block(rng, min(size // 4, 1_500_000)) for _ in range(8)]
    written = 0
    with path.open("wb") as out:
        while written < size:
            block = rng.choice(blocks)
            out.write(block)
            written += len(block)
    return written


# -- docx generation -----------------------------------------------------------------------------

VOCAB = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "word",
    "count",
    "service",
    "upload",
    "paid",
    "file",
    "text",
    "invoice",
    "ফাইল",
    "বাংলা",
    "ভাষা",
    "শব্দ",
    "গণনা",
    "漢字",
    "日本語",
    "мир",
    "привет",
    "naïve",
    "café",
    "Ελληνικά",
    "हिन्दी",
]


def _rsid(rng: random.Random) -> str:
    return f"{rng.getrandbits(32):08X}"


Paragraph = Callable[[random.Random, int], tuple[str, int]]


def _simple_paragraph(rng: random.Random, words: int) -> tuple[str, int]:
    """A paragraph as python-docx writes it: one run."""
    return f"<w:p><w:r><w:t>{' '.join(rng.choices(VOCAB, k=words))}</w:t></w:r></w:p>", words


def _wordlike_paragraph(rng: random.Random, words: int) -> tuple[str, int]:
    """A paragraph as Word writes it: revision ids, properties, several runs, proofing marks."""
    chosen = rng.choices(VOCAB, k=words)
    out = [
        f'<w:p w:rsidR="{_rsid(rng)}" w:rsidRDefault="{_rsid(rng)}">'
        '<w:pPr><w:spacing w:after="120"/><w:rPr><w:lang w:val="en-GB"/></w:rPr></w:pPr>'
    ]
    i = 0
    while i < words:
        k = rng.randint(1, 4)
        text = " ".join(chosen[i : i + k]) + (" " if i + k < words else "")
        props = ("<w:b/>" if rng.random() < 0.2 else "") + ("<w:i/>" if rng.random() < 0.1 else "")
        out.append(
            f'<w:r w:rsidRPr="{_rsid(rng)}"><w:rPr>{props}<w:lang w:val="en-GB"/></w:rPr>'
            f'<w:t xml:space="preserve">{text}</w:t></w:r>'
        )
        if rng.random() < 0.05:
            out.append('<w:proofErr w:type="spellStart"/>')
        i += k
    if rng.random() < 0.1:  # a tab then one more word (p.text renders the tab as "\t")
        out.append('<w:r><w:tab/></w:r><w:r><w:t xml:space="preserve">tabbed</w:t></w:r>')
        words += 1
    out.append("</w:p>")
    return "".join(out), words


def _table(rng: random.Random, paragraph: Paragraph) -> tuple[str, int]:
    words = 0
    rows = []
    for _ in range(rng.randint(2, 4)):
        cells = []
        for _ in range(3):
            xml, n = paragraph(rng, rng.randint(1, 6))
            words += n
            cells.append(f'<w:tc><w:tcPr><w:tcW w:w="2880" w:type="dxa"/></w:tcPr>{xml}</w:tc>')
        rows.append(f"<w:tr>{''.join(cells)}</w:tr>")
    grid = '<w:gridCol w:w="2880"/>' * 3
    xml = (
        '<w:tbl><w:tblPr><w:tblStyle w:val="TableGrid"/><w:tblW w:w="0" w:type="auto"/>'
        f"</w:tblPr><w:tblGrid>{grid}</w:tblGrid>{''.join(rows)}</w:tbl>"
    )
    return xml, words


def make_docx(path: Path, target_words: int, *, wordlike: bool, seed: int = 2) -> dict[str, int]:
    """Write a document of about ``target_words`` words; return its body and table words."""
    rng = random.Random(seed)
    paragraph: Paragraph = _wordlike_paragraph if wordlike else _simple_paragraph
    parts: list[str] = []
    body_words = table_words = 0
    while body_words + table_words < target_words:
        if rng.random() < 0.03:
            xml, words = _table(rng, paragraph)
            table_words += words
        else:
            xml, words = paragraph(rng, rng.randint(5, 25))
            body_words += words
        parts.append(xml)
    template = io.BytesIO()
    docx.Document().save(template)
    with zipfile.ZipFile(template) as source:
        xml = source.read("word/document.xml").decode()
        start = xml.index("<w:body>") + len("<w:body>")
        document_xml = xml[:start] + "".join(parts) + xml[xml.index("<w:sectPr") :]
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
            for info in source.infolist():
                data = source.read(info.filename)
                if info.filename == "word/document.xml":
                    data = document_xml.encode()
                out.writestr(info.filename, data)
    return {"body_words": body_words, "table_words": table_words}


# -- measurement ---------------------------------------------------------------------------------


def _best_of(runs: int, fn: Callable[[], int]) -> tuple[int, float]:
    best = float("inf")
    result = 0
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def _wc_words(path: Path) -> int:
    out = subprocess.run(
        ["wc", "-w", str(path)], capture_output=True, check=True, env=WC_ENV
    ).stdout
    return int(out.split()[0])


# Linux quirk: a child's ru_maxrss starts from the parent's high-water mark (fork/exec), so the
# probe reads the peak of its own address space, VmHWM, from /proc (ru_maxrss as a fallback).
_MEMORY_PROBE = """
import json, resource, sys, time

def peak_kib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

from app.services.wordcount import count_txt_words
baseline = peak_kib()
start = time.perf_counter()
words = count_txt_words(sys.argv[1])
seconds = time.perf_counter() - start
result = {"words": words, "seconds": seconds, "baseline_kib": baseline, "peak_kib": peak_kib()}
print(json.dumps(result))
"""


def _memory_probe(path: Path) -> dict[str, Any]:
    """Count ``path`` in a fresh interpreter and report its peak resident memory."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(path)],
        capture_output=True,
        check=True,
        cwd=ROOT,
        env=env,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def bench_txt(workdir: Path, size: int, runs: int) -> dict[str, Any]:
    path = workdir / "mixed.txt"
    written = make_text_file(path, size)
    mb = written / 1e6
    _wc_words(path)  # warm the page cache for both
    wc_words, wc_seconds = _best_of(runs, lambda: _wc_words(path))
    words, seconds = _best_of(runs, lambda: count_txt_words(path))
    memory = _memory_probe(path)
    return {
        "case": "txt",
        "bytes": written,
        "words": words,
        "wc_words": wc_words,
        "counts_match": words == wc_words == memory["words"],
        "wc_seconds": wc_seconds,
        "seconds": seconds,
        "wc_mb_per_s": mb / wc_seconds,
        "mb_per_s": mb / seconds,
        "ratio_vs_wc": wc_seconds / seconds,
        "peak_rss_mib": memory["peak_kib"] / 1024,
        "baseline_rss_mib": memory["baseline_kib"] / 1024,
        "memory_target_mib": MEMORY_TARGET_MIB,
        "memory_ok": memory["peak_kib"] / 1024 < MEMORY_TARGET_MIB,
    }


def _naive_docx_count(path: Path) -> int:
    return sum(len(p.text.split()) for p in docx.Document(str(path)).paragraphs)


def bench_docx(workdir: Path, words: int, *, wordlike: bool, runs: int) -> dict[str, Any]:
    name = "docx-wordlike" if wordlike else "docx-simple"
    path = workdir / f"{name}.docx"
    made = make_docx(path, words, wordlike=wordlike)
    count_docx_words(path)  # warm-up: page cache, allocator
    naive, naive_seconds = _best_of(max(1, runs - 1), lambda: _naive_docx_count(path))
    ours, seconds = _best_of(runs, lambda: count_docx_words(path))
    _, load_seconds = _best_of(runs, lambda: len(docx.Document(str(path)).paragraphs))
    gc.collect()
    return {
        "case": name,
        "bytes": path.stat().st_size,
        "words": ours,
        "naive_words": naive,
        "table_words": made["table_words"],
        "counts_match": naive == made["body_words"]
        and ours == made["body_words"] + made["table_words"],
        "naive_seconds": naive_seconds,
        "seconds": seconds,
        "speedup": naive_seconds / seconds,
        "load_seconds": load_seconds,
        "speedup_after_load": (naive_seconds - load_seconds) / max(seconds - load_seconds, 1e-9),
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the benchmark; ``quick`` uses small inputs (a smoke test of the whole harness)."""
    txt_size = 1_000_000 if quick else 100_000_000
    docx_words = 10_000 if quick else 1_000_000
    runs = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-wordcount-") as tmp:
        workdir = Path(tmp)
        return [
            bench_txt(workdir, txt_size, runs),
            bench_docx(workdir, docx_words, wordlike=False, runs=runs),
            bench_docx(workdir, docx_words, wordlike=True, runs=runs),
        ]


def format_results(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        if r["case"] == "txt":
            agreement = "= wc -w" if r["counts_match"] else f"MISMATCH, wc -w: {r['wc_words']:,}"
            lines += [
                f"txt  {r['bytes'] / 1e6:.1f} MB mixed-script UTF-8, {r['words']:,} words "
                f"({agreement})",
                f"  {'':<24}{'seconds':>9}{'MB/s':>9}",
                f"  {'wc -w (C.UTF-8)':<24}{r['wc_seconds']:>9.3f}{r['wc_mb_per_s']:>9.1f}",
                f"  {'count_txt_words':<24}{r['seconds']:>9.3f}{r['mb_per_s']:>9.1f}",
                f"  throughput ours/wc: {r['ratio_vs_wc']:.2f}x",
                f"  peak RSS of a counting process: {r['peak_rss_mib']:.1f} MiB "
                f"(interpreter + imports {r['baseline_rss_mib']:.1f} MiB), target < "
                f"{r['memory_target_mib']} MiB: {'ok' if r['memory_ok'] else 'OVER'}",
            ]
        else:
            verdict = "ok" if r["counts_match"] else "MISMATCH"
            lines += [
                f"{r['case']}  {r['bytes'] / 1e6:.1f} MB, {r['words']:,} words "
                f"(naive {r['naive_words']:,} + {r['table_words']:,} in tables: {verdict})",
                f"  {'':<24}{'seconds':>9}{'words':>11}",
                f"  {'naive paragraphs loop':<24}{r['naive_seconds']:>9.3f}{r['naive_words']:>11,}",
                f"  {'count_docx_words':<24}{r['seconds']:>9.3f}{r['words']:>11,}",
                f"  {'Document() load alone':<24}{r['load_seconds']:>9.3f}",
                f"  speedup: {r['speedup']:.1f}x end to end; {r['speedup_after_load']:.1f}x for "
                "the counting once both have loaded the document",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small inputs, one run each")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    return 0 if all(r["counts_match"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
