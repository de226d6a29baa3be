"""The human views of a run: leaderboard.md, a terminal table, and one self-contained report.html.

All three are drawn from the same rows, so they cannot disagree. The HTML carries everything
inline (CSS in a <style> block, plots as inline SVG, no scripts, fonts or links to fetch) so it
can be mailed or archived as one file, and every piece of user or model text in it is escaped.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deescalwild.atomic import atomic_write
from deescalwild.bench.metrics import HIGHER_IS_BETTER, PAPER_METRICS
from deescalwild.bench.significance import FEW_SCENARIOS, Comparison

if TYPE_CHECKING:
    from rich.table import Table

LABELS = {"rouge_l": "ROUGE-L", "bleu4": "BLEU-4", "meteor": "METEOR",
          "bertscore_f1": "BERTScore F1", "sacrebleu": "SacreBLEU", "chrf": "chrF"}
BASELINE_MARK = "†"
METRICS_DOC = "docs/metrics.md"
N_EXAMPLES = 8


def _decimals(metric: str) -> int:
    return 3 if metric == "bertscore_f1" else 1  # the others are on a 0-100 scale


# --- the shared rows ---------------------------------------------------------------------------

def _responders(results: dict) -> dict[str, dict]:
    return results.get("responders") or {}


def _metrics_present(results: dict) -> list[str]:
    return [m for m in HIGHER_IS_BETTER
            if any(m in (r.get("metrics") or {}) for r in _responders(results).values())]


def _mean(entry: dict, metric: str) -> float | None:
    m = (entry.get("metrics") or {}).get(metric) or {}
    mean = m.get("mean")
    return float(mean) if isinstance(mean, (int, float)) and math.isfinite(mean) else None


def ordered_responders(results: dict) -> list[str]:
    """Responder specs, best first by the first paper metric any responder has (rouge_l)."""
    specs = list(_responders(results))
    key_metric = next((m for m in PAPER_METRICS if m in _metrics_present(results)), None)
    if key_metric is None:
        return sorted(specs)

    def key(spec: str) -> tuple[bool, float, str]:
        mean = _mean(_responders(results)[spec], key_metric)
        return (mean is None, -(mean or 0.0), spec)

    return sorted(specs, key=key)


def calibration_warnings(results: dict) -> list[str]:
    """One line per (baseline, responder) pair where a calibration baseline scores a higher mean
    than a real responder on some metric: then that metric cannot tell them apart honestly."""
    resp = _responders(results)
    baselines = [s for s in ordered_responders(results) if resp[s].get("baseline")]
    others = [s for s in ordered_responders(results) if not resp[s].get("baseline")]
    lines = []
    for b in baselines:
        for r in others:
            beaten = [m for m in _metrics_present(results)
                      if (mb := _mean(resp[b], m)) is not None
                      and (mr := _mean(resp[r], m)) is not None and mb > mr]
            if beaten:
                lines.append(f"calibration: {b} outscores {r} on {', '.join(beaten)} — see "
                             f"{METRICS_DOC}")
    return lines


def _fmt_metric(entry: dict, metric: str) -> str:
    m = (entry.get("metrics") or {}).get(metric)
    if not m or m.get("mean") is None:
        return "–"
    d = _decimals(metric)
    text = f"{m['mean']:.{d}f}"
    if m.get("ci_low") is not None and m.get("ci_high") is not None:
        text += f" [{m['ci_low']:.{d}f}, {m['ci_high']:.{d}f}]"
    return text


def fmt_seconds(s: float | None) -> str:
    """A duration with its unit (µs, ms or s) and two significant digits, never an exponent."""
    if s is None or not math.isfinite(s):
        return "–"
    if s == 0:
        return "0 ms"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale or unit == "µs":
            x = s / scale
            return f"{x:.2g} {unit}" if x < 10 else f"{x:.0f} {unit}"
    raise AssertionError  # unreachable


def _headers(results: dict) -> list[str]:
    return ["responder", *(LABELS[m] for m in _metrics_present(results)), "distinct-2",
            "errors", "p50 latency", "p95 latency"]


def _rows(results: dict) -> list[tuple[str, bool, list[str]]]:
    """(spec, is_baseline, cells without the responder column) in leaderboard order."""
    out = []
    resp = _responders(results)
    for spec in ordered_responders(results):
        r = resp[spec]
        d2 = (r.get("diversity") or {}).get("distinct_2")
        lat = r.get("latency") or {}
        cells = [*(_fmt_metric(r, m) for m in _metrics_present(results)),
                 "–" if d2 is None else f"{d2:.3f}", str(r.get("errors", 0)),
                 fmt_seconds(lat.get("p50")), fmt_seconds(lat.get("p95"))]
        out.append((spec, bool(r.get("baseline")), cells))
    return out


def _bertscore_model(settings: dict) -> str | None:
    """The BERTScore model as recorded in metric_settings, whichever way the runner keyed it."""
    for key in ("bertscore_f1", "bertscore"):
        v = settings.get(key)
        if isinstance(v, str):
            return v
        if isinstance(v, dict):
            model = v.get("model") or v.get("model_type")
            if model:
                layers = v.get("num_layers", v.get("layer"))
                return f"{model}" + ("" if layers is None else f" (layer {layers})")
    v = settings.get("bertscore_model")
    return str(v) if v else None


def _commit(results: dict) -> str:
    c = results.get("git_commit")
    if not c:
        return "unknown"
    head, _, dirty = str(c).partition("+")
    return head[:12] + (f"+{dirty}" if dirty else "")


def _split(cases: dict) -> str:
    split = cases.get("split")
    if isinstance(split, (list, tuple)):  # the cases may mix splits: the runner lists them
        return "+".join(str(s) for s in split) or "?"
    return "?" if split is None else str(split)


def footer_lines(results: dict) -> list[str]:
    """Provenance under the table: what was evaluated, with what, from which code."""
    cases = results.get("cases") or {}
    boot = results.get("bootstrap") or {}
    sha = str(cases.get("sha256") or "")[:12] or "unknown"
    first = (f"{cases.get('n', '?')} cases from {cases.get('scenarios', '?')} scenarios, "
             f"split {_split(cases)}; cases sha256 {sha}; seed "
             f"{results.get('seed', '?')}; git commit {_commit(results)}")
    if "bertscore_f1" in _metrics_present(results):
        first += (f"; BERTScore model "
                  f"{_bertscore_model(results.get('metric_settings') or {}) or 'not recorded'}")
    conf = boot.get("confidence", 0.95)
    second = (f"Intervals [low, high]: {round(conf * 100)}% bootstrap over "
              f"{boot.get('cluster', 'scenario')}s ({boot.get('n', '?')} resamples); "
              f"{BASELINE_MARK} calibration baseline; latency is wall time per reply")
    lines = [first, second]
    n_scen = cases.get("scenarios")
    if n_scen == 1:
        lines.append("one scenario: no interval can be computed (nothing to resample)")
    elif isinstance(n_scen, int) and n_scen < FEW_SCENARIOS:
        lines.append(f"only {n_scen} scenarios: the intervals are rough (a bootstrap over so few "
                     "clusters is too narrow)")
    return lines


# --- markdown and terminal ---------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def _md(text: str, *, light: bool = False) -> str:
    """Text safe in a markdown table cell or line: no pipe, emphasis, code, link or HTML.
    `light` escapes only what breaks a table (our own footer text, with its literal brackets)."""
    text = text.replace("|", "\\|") if light else _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def leaderboard_markdown(results: dict) -> str:
    """One markdown table (best first), provenance and any calibration warning below it."""
    headers = _headers(results)
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
    for spec, baseline, cells in _rows(results):
        name = _md(spec) + (f" {BASELINE_MARK}" if baseline else "")
        lines.append("| " + " | ".join([name, *cells]) + " |")
    lines.append("")
    lines.extend(_md(line, light=True) + "  " for line in footer_lines(results))
    warnings = calibration_warnings(results)
    if warnings:
        lines.append("")
        lines.extend(f"> **Warning** {_md(w)}  " for w in warnings)
    return "\n".join(lines).rstrip() + "\n"


def _cell_lines(cell: str, intervals: bool) -> list[str]:
    mean, sep, interval = cell.partition(" [")
    return [mean, "[" + interval] if sep and intervals else [mean]


_TERMINAL_HEADERS = {"BERTScore F1": "BERTScore", "distinct-2": "dist-2",
                     "p50 latency": "p50", "p95 latency": "p95"}


def _short_headers(results: dict) -> list[str]:
    return [_TERMINAL_HEADERS.get(h, h) for h in _headers(results)]


def _column_widths(results: dict, rows: list, intervals: bool) -> list[int]:
    """Each column's narrowest width that folds no number (headers may wrap at spaces)."""
    widths = [min(18, max((len(spec) + 2 for spec, _, _ in rows), default=10))]  # may wrap
    for i, h in enumerate(_short_headers(results)[1:]):
        lines = [line for _, _, cells in rows for line in _cell_lines(cells[i], intervals)]
        widths.append(max([len(w) for w in h.split()] + [len(x) for x in lines]))
    return widths


def rich_leaderboard(results: dict, *, width: int | None = None) -> Table:
    """The leaderboard as a rich Table (no markup is read from responder names). Each metric
    shows its mean over a dim interval; with `width` (the console's) too narrow for that, the
    intervals are left out and the caption says so, rather than folding numbers apart."""
    from rich.table import Table
    from rich.text import Text

    rows = _rows(results)
    widths = _column_widths(results, rows, intervals=True)
    intervals = width is None or sum(widths) + 3 * len(widths) + 1 <= width
    if not intervals:
        widths = _column_widths(results, rows, intervals=False)
    fits = width is None or sum(widths) + 3 * len(widths) + 1 <= width
    caption = Text("\n".join(footer_lines(results)) + "; p50/p95: median and 95th percentile")
    if not intervals:
        caption.append("\nintervals left out to fit the terminal: see leaderboard.md",
                       style="italic")
    for w in calibration_warnings(results):
        caption.append("\n" + w, style="yellow")
    table = Table(title="Leaderboard", title_justify="left", caption=caption,
                  caption_justify="left")
    for i, h in enumerate(_short_headers(results)):
        table.add_column(h, justify="left" if i == 0 else "right", overflow="fold",
                         min_width=widths[i] if fits and i else None)
    for spec, baseline, cells in rows:
        name = Text(spec, style="dim" if baseline else "bold")
        if baseline:
            name.append(f" {BASELINE_MARK}")
        texts = []
        for cell in cells:
            lines = _cell_lines(cell, intervals)
            text = Text(lines[0])
            if len(lines) > 1:
                text.append("\n" + lines[1], style="dim")
            texts.append(text)
        table.add_row(name, *texts)
    return table


# --- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.wrap{overflow-x:auto}table{border-collapse:collapse;font-size:.9rem}
th,td{padding:.3rem .6rem;border-bottom:1px solid #e5e5e5;vertical-align:top}
th{text-align:left;background:#f6f6f6}td.num{text-align:right;white-space:nowrap}
tr.baseline td{color:#666;font-style:italic}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.5rem .8rem;margin:.5rem 0}
.note{color:#555;font-size:.9rem}dl.prov{display:grid;grid-template-columns:max-content 1fr;
gap:.2rem 1rem;font-size:.9rem}dl.prov dt{font-weight:600}dl.prov dd{margin:0;
overflow-wrap:anywhere}.plot svg{max-width:100%;height:auto}
.example{margin:1rem 0}.example td.text{white-space:pre-wrap;overflow-wrap:anywhere;
min-width:20rem}.example tr.ref td{background:#f3f8f3}.err{color:#b00020}
code{font-size:.85rem}pre{font-size:.8rem;overflow-x:auto;background:#f8f8f8;padding:.5rem}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_leaderboard(results: dict) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in _headers(results))
    body = []
    for spec, baseline, cells in _rows(results):
        name = _e(spec) + (f" {BASELINE_MARK}" if baseline else "")
        tds = "".join(f'<td class="num">{_e(c)}</td>' for c in cells)
        body.append(f'<tr{" class=baseline" if baseline else ""}><td>{name}</td>{tds}</tr>')
    return (f'<div class="wrap"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _provenance(results: dict) -> str:
    """What was run, from which code, on which cases: at the top, so no one reads a table
    without knowing what it measured."""
    cases = results.get("cases") or {}
    train = results.get("train") or {}
    items = [("created", results.get("created")), ("git commit", results.get("git_commit")),
             ("seed", results.get("seed")),
             ("cases", f"{cases.get('path')} · sha256 {cases.get('sha256')} · {cases.get('n')} "
                       f"cases · {cases.get('scenarios')} scenarios · split "
                       f"{_split(cases)}"),
             ("training split", f"{train.get('path')} · sha256 {train.get('sha256')}"
              if train else None),
             ("bootstrap", ", ".join(f"{k} {v}" for k, v in
                                     (results.get("bootstrap") or {}).items())),
             ("versions", ", ".join(f"{k} {v}" for k, v in
                                    (results.get("versions") or {}).items() if v)),
             ("wall time", fmt_seconds(results.get("wall_time_s")))]
    rows = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in items
                   if v not in (None, ""))
    return f'<dl class="prov">{rows}</dl>'


def _settings(results: dict) -> str:
    """Every metric's and responder's settings, folded (no script needed to unfold)."""
    resp = {s: r.get("settings") for s, r in _responders(results).items()}
    parts = []
    for name, value in (("metric settings", results.get("metric_settings")),
                        ("responder settings", resp)):
        if value:
            text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
            parts.append(f"<details><summary>{_e(name)}</summary><pre>{_e(text)}</pre>"
                         "</details>")
    return "".join(parts)


def _short(name: str, n: int = 30) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _svg(fig) -> str:
    """The figure as an inline <svg> element: no XML prolog, DOCTYPE or comments (matplotlib
    writes each text as a comment, and that text may come from a responder spec)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.find("<svg"):]
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)


def _metric_svg(results: dict, order: list[str]) -> str:
    import numpy as np
    from matplotlib.figure import Figure

    metrics = _metrics_present(results)
    resp = _responders(results)
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    height = max(1.8, 0.3 * len(order) + 1.0)
    fig = Figure(figsize=(3.6 * ncols + 1.2, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    y = np.arange(len(order))
    colors = ["#9e9e9e" if resp[s].get("baseline") else "#3b6ea8" for s in order]
    for i, (ax, metric) in enumerate(zip(axes.flat, metrics)):
        means, lo, hi = [], [], []
        for s in order:
            m = (resp[s].get("metrics") or {}).get(metric) or {}
            mean = _mean(resp[s], metric)
            means.append(mean or 0.0)
            low, high = m.get("ci_low"), m.get("ci_high")
            lo.append(max(0.0, mean - low) if mean is not None and low is not None else 0.0)
            hi.append(max(0.0, high - mean) if mean is not None and high is not None else 0.0)
        ax.barh(y, means, xerr=[lo, hi], color=colors, capsize=2,
                error_kw={"elinewidth": 1, "ecolor": "#222"})
        ax.set_yticks(y, labels=[_short(s) for s in order] if i % ncols == 0 else [])
        ax.invert_yaxis()
        title = LABELS[metric]
        known = [m for m in means if m]
        if metric == "bertscore_f1" and known:  # all near 0.85: from 0 every bar looks equal
            low = min(m - e for m, e in zip(means, lo) if m)
            high = max(m + e for m, e in zip(means, hi) if m)
            pad = max(0.01, 0.15 * (high - low))
            ax.set_xlim(max(0.0, low - pad), min(1.0, high + pad))
            title += " (axis zoomed)"
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_axis_off()
    return _svg(fig)


def _latency_svg(samples: list[dict], order: list[str]) -> str | None:
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    floor = 1e-6  # a log axis has no 0; a cached or constant reply can take under 1 µs
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    xs_min: list[float] = []
    xs_max: list[float] = []
    for spec in order:
        xs = np.sort([max(floor, float(s["latency_s"])) for s in samples
                      if s.get("responder") == spec and isinstance(s.get("latency_s"),
                                                                   (int, float))
                      and math.isfinite(s["latency_s"])])
        if xs.size == 0:
            continue
        ys = np.arange(1, xs.size + 1) / xs.size
        ax.step(np.concatenate([[xs[0]], xs]), np.concatenate([[0.0], ys]), where="post",
                label=f"{_short(spec)} (n={xs.size})")
        xs_min.append(float(xs[0]))
        xs_max.append(float(xs[-1]))
    if not xs_min:
        return None
    ax.set_xscale("log")
    decades = math.log10(max(xs_max) / min(xs_min))
    subs = (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)  # few decades: label 1-2-5 steps too
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt_seconds(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("time per reply (log scale; below 1 µs drawn at 1 µs)")
    ax.set_ylabel("fraction of replies ≤ x")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _svg(fig)


def _plots(results: dict, samples: list[dict], order: list[str], conf: int) -> str:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return ('<p class="note">Plots are missing: matplotlib is not installed '
                '(pip install "deescalwild[plot]") and the report was written without them.</p>')
    import matplotlib as mpl

    parts = []
    with mpl.rc_context({"svg.hashsalt": "deescalwild", "svg.fonttype": "path"}):
        if _metrics_present(results):
            parts.append(f'<h3>Metrics with {conf}% intervals</h3><div class="plot">'
                         f"{_metric_svg(results, order)}</div>")
        lat = _latency_svg(samples, order)
    if lat:
        parts.append('<h3>Latency per reply (ECDF)</h3><div class="plot">' + lat + "</div>")
    return "".join(parts) or '<p class="note">Nothing to plot.</p>'


def example_case_ids(samples: list[dict], order: Sequence[str], n: int = N_EXAMPLES) -> list[str]:
    """~n case ids shown as examples: chosen by a hash of the id (stable, not cherry-picked),
    one per scenario first, preferring cases every responder has a sample for."""
    by_case: dict[str, set[str]] = {}
    scenario: dict[str, str] = {}
    for s in samples:
        case = str(s.get("case_id"))
        by_case.setdefault(case, set()).add(str(s.get("responder")))
        scenario.setdefault(case, str(s.get("scenario_id", case)))
    wanted = set(order)
    complete = [c for c, rs in by_case.items() if wanted <= rs] or list(by_case)
    complete.sort(key=lambda c: hashlib.sha256(c.encode("utf-8")).hexdigest())
    chosen, seen = [], set()
    for c in complete:
        if len(chosen) < n and scenario[c] not in seen:
            chosen.append(c)
            seen.add(scenario[c])
    chosen += [c for c in complete if c not in chosen][: n - len(chosen)]
    return chosen


def _examples(samples: list[dict], order: list[str], key_metric: str | None) -> str:
    index = {(str(s.get("responder")), str(s.get("case_id"))): s for s in samples}
    out = []
    for case in example_case_ids(samples, order):
        first = next(index[(r, case)] for r in order if (r, case) in index)
        rows = [f'<tr class="ref"><th>reference</th><td class="text">'
                f"{_e(first.get('reference', ''))}</td><td></td></tr>"]
        for spec in order:
            s = index.get((spec, case))
            if s is None:
                continue
            if s.get("error"):
                text = f'<span class="err">error: {_e(s["error"])}</span>'
            elif not s.get("prediction"):
                text = "<em>(empty)</em>"
            else:
                text = _e(s["prediction"])
            score = (s.get("scores") or {}).get(key_metric) if key_metric else None
            cell = ("" if score is None
                    else f"{LABELS[key_metric]} {score:.{_decimals(key_metric)}f}")
            rows.append(f'<tr><th>{_e(spec)}</th><td class="text">{text}</td>'
                        f'<td class="num">{_e(cell)}</td></tr>')
        out.append(f'<div class="example"><h3>{_e(case)} <span class="note">scenario '
                   f"{_e(first.get('scenario_id', '?'))}</span></h3><div class=\"wrap\"><table>"
                   f"{''.join(rows)}</table></div></div>")
    return "".join(out) or '<p class="note">No samples.</p>'


def _comparison_html(comparison: Comparison) -> str:
    held = [r for r in comparison.rows if r.holds]
    head = (f"<p>{len(held)} of {len(comparison.rows)} paired differences hold (scenario "
            f"sign-flip test, Holm-adjusted over all tests, p_holm &lt; {comparison.alpha}).</p>")
    head += "".join(f'<p class="warn">{_e(n)}</p>' for n in comparison.notes)
    if not held:
        return head
    rows = "".join(
        f"<tr><td>{_e(LABELS[r.metric])}</td><td>{_e(r.verdict)}</td>"
        f'<td class="num">{r.diff:+.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]</td>'
        f'<td class="num">{r.p_holm:.2g}</td><td class="num">{r.n_cases}</td></tr>'
        for r in held)
    conf = round(comparison.confidence * 100)
    return (head + '<div class="wrap"><table><thead><tr><th>metric</th><th>holds</th>'
            f"<th>A−B [{conf}% CI]</th><th>p Holm</th><th>cases</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>")


def _how_to_read(conf: int) -> str:
    return f"""<ul>
<li>Each cell is the mean over cases with a {conf}% interval in brackets. The interval is a
bootstrap that resamples whole scenarios (videos), because turns of one scenario are not
independent; overlapping intervals do not prove equality, and the paired comparison
(<code>deescalwild compare</code>) is the test to use.</li>
<li>ROUGE-L, BLEU-4, METEOR, SacreBLEU and chrF are on a 0–100 scale; BERTScore F1 on 0–1.
BLEU-4 is the paper's smoothed sentence BLEU averaged over cases; SacreBLEU is
sacreBLEU's sentence BLEU averaged over cases (exponential smoothing).</li>
<li>{BASELINE_MARK} marks calibration baselines (a constant reply, a random real civilian
line). A real responder should beat them; when a baseline wins on a metric, that metric rewards
something other than a good reply. See <code>{METRICS_DOC}</code> in the repository.</li>
<li>Latency is wall-clock time per reply on the machine that ran the evaluation.</li>
</ul>"""


def report_html(results: dict, samples: Iterable[dict], *,
                comparison: Comparison | None = None) -> str:
    """One self-contained HTML page: provenance, leaderboard, plots, examples, how to read it."""
    samples = list(samples)
    order = ordered_responders(results)
    cases = results.get("cases") or {}
    title = f"DeEscalWild benchmark: {cases.get('n', '?')} cases, split {_split(cases)}"
    key_metric = next((m for m in PAPER_METRICS if m in _metrics_present(results)), None)
    conf = round(float((results.get("bootstrap") or {}).get("confidence", 0.95)) * 100)
    warnings = "".join(f'<p class="warn">{_e(w)}</p>' for w in calibration_warnings(results))
    footer = "".join(f'<p class="note">{_e(line)}</p>' for line in footer_lines(results))
    compare = ("<h2>Which differences hold</h2>" + _comparison_html(comparison)
               if comparison is not None else "")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_e(title)}</h1>
{_provenance(results)}
<h2>Leaderboard</h2>
{_html_leaderboard(results)}
{footer}
{warnings}
{compare}
<h2>Plots</h2>
{_plots(results, samples, order, conf)}
<h2>Examples</h2>
<p class="note">The same cases for every responder, chosen by a hash of the case id (not
cherry-picked). The reference is what the civilian actually said next.</p>
{_examples(samples, order, key_metric)}
<h2>How to read this</h2>
{_how_to_read(conf)}
<h2>Settings</h2>
{_settings(results)}
</body>
</html>
"""


def write_results_views(out_dir: Path, results: dict, samples: list[dict], *,
                        comparison: Comparison | None = None) -> dict[str, Path]:
    """Write leaderboard.md and report.html into out_dir, each atomically; return their paths."""
    out_dir = Path(out_dir)
    paths = {"leaderboard": out_dir / "leaderboard.md", "report": out_dir / "report.html"}
    with atomic_write(paths["leaderboard"]) as fh:
        fh.write(leaderboard_markdown(results))
    with atomic_write(paths["report"]) as fh:
        fh.write(report_html(results, samples, comparison=comparison))
    return paths
