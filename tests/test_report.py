"""leaderboard.md, the terminal leaderboard and report.html, from fabricated results."""

from __future__ import annotations

import copy
import re
import sys

import pytest
from test_bench_stats import fabricate

from deescalwild.bench.report import (
    calibration_warnings,
    example_case_ids,
    fmt_seconds,
    leaderboard_markdown,
    report_html,
    rich_leaderboard,
    write_results_views,
)
from deescalwild.bench.significance import compare_runs, load_run

CONST = "const:I don't know."
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def _base(tmp_path_factory):
    res = tmp_path_factory.mktemp("report") / "res"
    results, samples = fabricate(
        res, {"retrieval": 20.0, "hf:tiny": 12.0, CONST: 4.0, "random": 8.0},
        baselines=(CONST, "random"), errors={"hf:tiny": 2},
        predictions={"hf:tiny": f"I said {XSS} & left"})
    return res, results, samples


@pytest.fixture
def run(_base):
    """retrieval (good), hf:tiny (middling, its first 2 cases errored), and two baselines; the
    constant one is handed the best BLEU-4 so that the calibration warning must fire."""
    _, results, samples = copy.deepcopy(_base)
    results["responders"][CONST]["metrics"]["bleu4"]["mean"] = 30.0
    return results, samples


@pytest.fixture
def no_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError


def _table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][1:]


def test_leaderboard_markdown(run):
    results, _ = run
    md = leaderboard_markdown(results)
    rows = _table_rows(md)
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "retrieval", "hf:tiny", "random †", "const:I don't know. †"]  # by ROUGE-L, best first
    rl = results["responders"]["retrieval"]["metrics"]["rouge_l"]
    assert f"{rl['mean']:.1f} [{rl['ci_low']:.1f}, {rl['ci_high']:.1f}]" in rows[0]
    bs = results["responders"]["retrieval"]["metrics"]["bertscore_f1"]
    assert f"{bs['mean']:.3f} [{bs['ci_low']:.3f}, {bs['ci_high']:.3f}]" in rows[0]
    header = md.splitlines()[0]
    for col in ("ROUGE-L", "BLEU-4", "METEOR", "BERTScore F1", "SacreBLEU", "chrF", "distinct-2",
                "errors", "p50 latency", "p95 latency"):
        assert col in header
    assert " | 2 | " in rows[1]  # hf:tiny's two errors
    assert re.search(r"\d ms", rows[0])
    assert not any(line.startswith("[") for line in md.splitlines())  # a link definition
    assert "only 8 scenarios: the intervals are rough" in md
    for needle in ("32 cases from 8 scenarios", "split test", "c0ffeec0ffee", "seed 0",
                   "0123456789ab+dirty", "roberta-large (layer 17)"):
        assert needle in md
    assert (f"calibration: {CONST} outscores retrieval on bleu4 — see docs/metrics.md" in md)
    assert f"{CONST} outscores hf:tiny on bleu4" in md


def test_calibration_warning_only_when_a_baseline_wins(run):
    results, _ = run
    assert len(calibration_warnings(results)) == 2
    results["responders"][CONST]["metrics"]["bleu4"]["mean"] = 1.0
    assert calibration_warnings(results) == []
    assert "calibration:" not in leaderboard_markdown(results)


def test_markdown_escapes_table_breaking_names(run):
    results, _ = run
    results["responders"]["const:a|b"] = results["responders"].pop(CONST)
    rows = _table_rows(leaderboard_markdown(results))
    assert any(r.startswith("| const:a\\|b †") for r in rows)
    assert {r.count(" | ") for r in rows} == {len(rows[0].split(" | ")) - 1}


def test_rich_leaderboard(run):
    from rich.console import Console

    results, _ = run
    results["responders"]["[bold]x[/bold]"] = results["responders"].pop("random")
    console = Console(record=True, width=300)
    console.print(rich_leaderboard(results, width=console.width))
    text = console.export_text()
    for spec in ("retrieval", "hf:tiny", CONST, "[bold]x[/bold]"):
        assert spec in text
    assert "calibration:" in text and "c0ffeec0ffee" in text
    rl = results["responders"]["retrieval"]["metrics"]["rouge_l"]
    interval = f"[{rl['ci_low']:.1f}, {rl['ci_high']:.1f}]"
    assert interval in text and "intervals left out" not in text
    narrow = Console(record=True, width=100)
    narrow.print(rich_leaderboard(results, width=narrow.width))
    text = narrow.export_text()
    assert interval not in text and "intervals left out" in text
    assert f"{rl['mean']:.1f}" in text


def test_report_html_is_self_contained_and_escaped(run):
    results, samples = run
    results["responders"]["<b>evil</b>"] = results["responders"].pop("random")
    for s in samples:
        if s["responder"] == "random":
            s["responder"] = "<b>evil</b>"
    page = report_html(results, iter(samples))
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<svg" in page and page.count("<svg") == 2  # metric bars and latency ECDF
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    assert "<b>evil" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    assert "I said &lt;script&gt;alert(1)&lt;/script&gt; &amp; left" in page
    assert "<!--" not in page and "<?xml" not in page
    assert "calibration: const:I don&#x27;t know. outscores retrieval on bleu4" in page
    assert "docs/metrics.md" in page and "scenario" in page
    shown = example_case_ids(samples, list(results["responders"]))
    assert len(shown) == 8 and all(f">{c} <" in page for c in shown)


def test_report_html_without_matplotlib_and_errored_examples(run, no_matplotlib):
    results, samples = run
    errored = [s for s in samples if s["case_id"] == "s00-t0"]  # hf:tiny failed this case
    page = report_html(results, errored)
    assert "<svg" not in page and "matplotlib is not installed" in page
    assert "Leaderboard" in page and ">s00-t0 <" in page
    assert '<span class="err">error: backend timed out</span>' in page


def test_report_html_with_comparison(_base, run, no_matplotlib):
    results, samples = run
    comp = compare_runs([load_run(_base[0])], metrics=["rouge_l"], n_perm=500)
    page = report_html(results, samples, comparison=comp)
    assert "Which differences hold" in page and f"of {len(comp.rows)} paired" in page


def test_example_cases_are_stable_and_spread_over_scenarios(run):
    _, samples = run
    order = ["retrieval", "hf:tiny", CONST, "random"]
    ids = example_case_ids(samples, order)
    assert ids == example_case_ids(list(reversed(samples)), order)
    scen = {s["case_id"]: s["scenario_id"] for s in samples}
    assert len({scen[c] for c in ids}) == 8  # 8 scenarios: one case from each


def test_write_results_views(run, tmp_path, no_matplotlib):
    results, samples = run
    paths = write_results_views(tmp_path / "views", results, samples)
    assert set(paths) == {"leaderboard", "report"}
    assert paths["leaderboard"].read_text(encoding="utf-8") == leaderboard_markdown(results)
    assert paths["report"].read_text(encoding="utf-8") == report_html(results, samples)
    assert sorted(p.name for p in (tmp_path / "views").iterdir()) == ["leaderboard.md",
                                                                      "report.html"]


def test_fmt_seconds():
    assert fmt_seconds(0.0034) == "3.4 ms"
    assert fmt_seconds(0.45) == "450 ms"
    assert fmt_seconds(0.000105) == "105 µs"
    assert fmt_seconds(6e-6) == "6 µs"
    assert fmt_seconds(2.345) == "2.3 s"
    assert fmt_seconds(125.0) == "125 s"
    assert fmt_seconds(0.0) == "0 ms"
    assert fmt_seconds(None) == "–"


def test_metric_names_agree_with_the_scorer():
    from deescalwild.bench import metrics
    from deescalwild.bench.significance import DESCRIPTIVE, HIGHER_IS_BETTER, PAPER_METRICS

    assert PAPER_METRICS == metrics.PAPER_METRICS
    assert set(HIGHER_IS_BETTER) | set(DESCRIPTIVE) == set(metrics.ALL_METRICS)
