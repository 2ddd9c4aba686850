"""The word counting benchmark runs end to end on small inputs (counts checked, not timings)."""

from __future__ import annotations

from bench.wordcount import format_results, run


def test_quick_benchmark_counts_match() -> None:
    results = run(quick=True)
    assert [r["case"] for r in results] == ["txt", "docx-simple", "docx-wordlike"]
    txt, *documents = results
    assert txt["words"] == txt["wc_words"] > 0
    assert txt["counts_match"]
    assert txt["peak_rss_mib"] >= txt["baseline_rss_mib"] > 0
    for result in documents:
        assert result["table_words"] > 0
        assert result["words"] == result["naive_words"] + result["table_words"]
        assert result["counts_match"]
    assert "MISMATCH" not in format_results(results)
