"""Which differences between responders hold: paired, scenario-clustered tests with Holm.

Two responders answered the same cases, so we compare them case by case (a paired design removes
the large case-to-case variation that both share). Cases of one scenario are not independent, so
both the p-value and the interval treat the scenario as the unit: the p-value comes from a
sign-flip randomization test on per-scenario summed differences (under "no difference" each
scenario's difference is as likely to point either way), the interval from the cluster bootstrap
of `bootstrap.py`. Many pairs × metrics are tested at once, so p-values are Holm-adjusted over
the whole comparison before we say a difference holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deescalwild.bench.bootstrap import cluster_sums, clustered_bootstrap_ci
from deescalwild.bench.metrics import DESCRIPTIVE, HIGHER_IS_BETTER
from deescalwild.bench.metrics import PAPER_METRICS as PAPER_METRICS  # re-exported
from deescalwild.errors import DeescalwildError, InputError

SCHEMA = "deescalwild.compare/1"
_CHUNK = 4096  # sign patterns per block: bounds memory for many scenarios
_MAX_EXACT_CLUSTERS = 24


# --- the tests ---------------------------------------------------------------------------------

def sign_flip_test(diffs: Sequence[float], clusters: Sequence[object], *, n_perm: int = 10_000,
                   seed: int = 0, exact: bool | None = None) -> tuple[float, bool]:
    """Two-sided p-value for "mean paired difference is 0", flipping whole scenarios.

    T = sum of all differences; each draw flips the sign of each scenario's summed difference
    independently, p = (1 + #{|T_b| >= |T|}) / (1 + n_perm). When the 2^k sign patterns of k
    scenarios are no more than n_perm (exact=None) or exact=True, all patterns are enumerated
    and p = #{|T_b| >= |T|} / 2^k, which is exact and cheaper. Returns (p, exact_used).
    """
    sums, _, _ = cluster_sums(diffs, clusters)
    k = len(sums)
    if k == 0:
        return math.nan, False
    t = abs(float(sums.sum()))
    tol = 1e-9 * max(1.0, float(np.abs(sums).sum()))  # equal |T_b| up to summation order: ties
    use_exact = (2 ** k <= n_perm) if exact is None else exact
    if use_exact:
        if k > _MAX_EXACT_CLUSTERS:
            raise ValueError(f"exact sign-flip test over {k} scenarios is 2^{k} patterns; "
                             "use the randomization test (exact=None)")
        total, hits = 2 ** k, 0
        bits = np.arange(k)
        for start in range(0, total, _CHUNK):
            idx = np.arange(start, min(total, start + _CHUNK))
            signs = 1.0 - 2.0 * ((idx[:, None] >> bits) & 1)
            hits += int(np.count_nonzero(np.abs(signs @ sums) >= t - tol))
        return hits / total, True
    if n_perm <= 0:
        raise ValueError("n_perm must be positive")
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_perm:
        m = min(_CHUNK, n_perm - done)
        signs = rng.integers(0, 2, size=(m, k)) * 2.0 - 1.0
        hits += int(np.count_nonzero(np.abs(signs @ sums) >= t - tol))
        done += m
    return (1 + hits) / (1 + n_perm), False


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order: controls the chance of any false
    "holds" across the whole family of tests, without assuming the tests are independent."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return [float(x) for x in adjusted]


def paired_difference(a: Sequence[float], b: Sequence[float], clusters: Sequence[object], *,
                      n_perm: int = 10_000, n_boot: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> dict[str, Any]:
    """Paired comparison of aligned per-case scores a and b (same cases, same order): the mean
    difference a - b with its clustered bootstrap interval and sign-flip p-value."""
    av, bv = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(av) & np.isfinite(bv)
    av, bv = av[keep], bv[keep]
    cl = [c for c, k in zip(clusters, keep) if k]
    d = av - bv
    ci = clustered_bootstrap_ci(d, cl, n_boot=n_boot, confidence=confidence, seed=seed)
    p, exact = sign_flip_test(d, cl, n_perm=n_perm, seed=seed)
    return {"mean_a": round(float(av.mean()), 6) if av.size else None,
            "mean_b": round(float(bv.mean()), 6) if bv.size else None,
            "diff": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
            "p": p, "exact": exact, "n_cases": int(d.size), "n_scenarios": len(set(cl))}


# --- reading results ---------------------------------------------------------------------------

@dataclass
class Run:
    """One evaluation run as written by `deescalwild eval`: results.json + samples.jsonl."""

    path: Path
    results: dict[str, Any]
    samples: list[dict[str, Any]]

    @property
    def cases_sha256(self) -> str | None:
        return (self.results.get("cases") or {}).get("sha256")


def load_run(path: str | Path) -> Run:
    """Read a results directory (or its results.json) and the samples.jsonl beside it."""
    path = Path(path)
    results_path = path if path.suffix == ".json" else path / "results.json"
    if not results_path.is_file():
        raise DeescalwildError(f"{results_path}: not found; give a results directory written by "
                               "`deescalwild eval` (or its results.json)")
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(results_path, None, f"not readable JSON ({e})") from e
    if not isinstance(results, dict) or not str(results.get("schema", "")).startswith(
            "deescalwild.results/"):
        raise InputError(results_path, None, "not a deescalwild results file (schema "
                         "deescalwild.results/1 expected)")
    samples_path = results_path.parent / "samples.jsonl"
    if not samples_path.is_file():
        raise DeescalwildError(f"{samples_path}: not found; the paired tests need the per-case "
                               "scores that `deescalwild eval` writes beside results.json")
    samples = []
    with samples_path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(samples_path, lineno, f"not valid JSON ({e.msg})") from e
            if not isinstance(row, dict) or not {"responder", "case_id"} <= row.keys():
                raise InputError(samples_path, lineno, "a sample needs responder and case_id")
            samples.append(row)
    return Run(results_path.parent, results, samples)


def _labels(runs: Sequence[Run]) -> list[dict[str, str]]:
    """Per run, spec -> label: the spec itself when unique across runs, else DIRNAME:SPEC
    (DIRNAME#i:SPEC when the directory names collide as well)."""
    specs = [list((run.results.get("responders") or {}).keys()) for run in runs]
    counts: dict[str, int] = {}
    for run_specs in specs:
        for s in run_specs:
            counts[s] = counts.get(s, 0) + 1
    names = [run.path.resolve().name or str(run.path) for run in runs]
    out = []
    for i, run_specs in enumerate(specs):
        prefix = names[i] if names.count(names[i]) == 1 else f"{names[i]}#{i + 1}"
        out.append({s: s if counts[s] == 1 else f"{prefix}:{s}" for s in run_specs})
    return out


# --- the comparison ----------------------------------------------------------------------------

@dataclass
class Row:
    a: str
    b: str
    metric: str
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p: float
    p_holm: float
    holds: bool
    n_cases: int
    n_scenarios: int
    exact: bool = False

    @property
    def verdict(self) -> str:
        """Who wins, with names ("A > B"), when the difference holds; else "no clear difference"."""
        if not self.holds or not self.diff:
            return "no clear difference"
        return f"{self.a} > {self.b}" if self.diff > 0 else f"{self.b} > {self.a}"


@dataclass
class Comparison:
    rows: list[Row]
    inputs: list[dict[str, Any]]
    alpha: float = 0.05
    n_perm: int = 10_000
    n_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "alpha": self.alpha, "n_perm": self.n_perm,
                "n_boot": self.n_boot, "confidence": self.confidence, "seed": self.seed,
                "method": {
                    "pairing": "cases answered by both responders (no error in either)",
                    "p": "scenario sign-flip randomization test of the mean difference, two-sided "
                         "(exact enumeration when 2^scenarios <= n_perm)",
                    "ci": "percentile bootstrap over scenarios of the mean difference",
                    "adjustment": "Holm-Bonferroni over all rows",
                    "holds": "p_holm < alpha"},
                "inputs": self.inputs, "rows": [asdict(r) for r in self.rows],
                "skipped": self.skipped, "notes": self.notes}

    def table(self):
        """A rich table: every test, what holds first within each metric."""
        from rich.table import Table
        from rich.text import Text

        conf = round(self.confidence * 100)
        caption = Text(f"{len(self.rows)} tests; p from a scenario sign-flip test, Holm-"
                       f"adjusted over all of them; holds when p Holm < {self.alpha}; "
                       f"[low, high] is a {conf}% scenario-clustered bootstrap interval; "
                       "means are over the cases both answered")
        table = Table(title="Paired comparison", title_justify="left", caption=caption,
                      caption_justify="left")
        for name, justify in (("metric", "left"), ("A", "left"), ("B", "left"),
                              ("mean A", "right"), ("mean B", "right"),
                              (f"A−B [{conf}% CI]", "right"),
                              ("p", "right"), ("p Holm", "right"), ("cases", "right"),
                              ("verdict", "left")):
            table.add_column(name, justify=justify, overflow="fold")
        for r in self.rows:
            style = "bold green" if r.holds else "dim"
            table.add_row(Text(r.metric), Text(r.a), Text(r.b), _num(r.mean_a), _num(r.mean_b),
                          f"{_num(r.diff, signed=True)} [{_num(r.ci_low)}, {_num(r.ci_high)}]",
                          _p(r.p), _p(r.p_holm), f"{r.n_cases} ({r.n_scenarios} sc)",
                          Text(r.verdict, style=style))
        return table

    def render(self, console) -> None:
        """Print the table, then what was skipped and why."""
        console.print(self.table())
        for note in self.notes:
            console.print(note, style="yellow", markup=False, highlight=False)
        for s in self.skipped:
            console.print(f"skipped {s['a']} vs {s['b']} on {s['metric']}: {s['reason']}",
                          markup=False, highlight=False)


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def _scores(run: Run, spec: str) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """case_id -> {metric: score} for the cases `spec` answered, and case_id -> scenario_id."""
    scores: dict[str, dict[str, float]] = {}
    scenario: dict[str, str] = {}
    for s in run.samples:
        if s.get("responder") != spec:
            continue
        case = str(s["case_id"])
        if case in scores:
            raise DeescalwildError(f"{run.path}/samples.jsonl: {spec} answered case {case} "
                                   "twice; rerun `deescalwild eval` into a fresh directory")
        scenario[case] = str(s.get("scenario_id", case))
        if s.get("error"):
            continue
        scores[case] = {m: float(v) for m, v in (s.get("scores") or {}).items()
                        if isinstance(v, (int, float)) and math.isfinite(v)}
    return scores, scenario


# what may differ between runs without changing a metric's values
_VOLATILE = {"versions", "device", "batch_size", "model_path", "hash"}


def _metric_setting_mismatches(runs: Sequence[Run], metrics: Sequence[str]) -> dict[str, str]:
    """Metrics whose definition differs between the inputs (e.g. BERTScore with MiniLM in one
    run and roberta-large in another): a difference there would be the metric's, not the
    responders'."""
    out = {}
    for m in metrics:
        seen = {}
        for run in runs:
            st = (run.results.get("metric_settings") or {}).get(m)
            if st is None:
                continue
            key = repr(sorted((k, repr(v)) for k, v in st.items() if k not in _VOLATILE))
            seen.setdefault(key, []).append(str(run.path))
        if len(seen) > 1:
            out[m] = " vs ".join(", ".join(paths) for paths in seen.values())
    return out


def _check_metrics(metrics: Sequence[str] | None) -> tuple[str, ...]:
    if metrics is None:
        return HIGHER_IS_BETTER
    for m in metrics:
        if m in DESCRIPTIVE:
            raise DeescalwildError(f"{m} is descriptive (no direction is better); compare one "
                                   f"of {', '.join(HIGHER_IS_BETTER)}")
        if m not in HIGHER_IS_BETTER:
            raise DeescalwildError(f"unknown metric {m!r}; choose from "
                                   f"{', '.join(HIGHER_IS_BETTER)}")
    return tuple(m for m in HIGHER_IS_BETTER if m in metrics)


def smallest_p(n_scenarios: int, n_perm: int) -> float:
    """The smallest p-value the sign-flip test can give: the observed pattern and its mirror
    image are always as extreme as themselves, so p >= 2 / 2^k (and >= 1 / (1 + n_perm))."""
    return max(2.0 / 2.0 ** n_scenarios if n_scenarios else 1.0, 1.0 / (1 + n_perm))


def _power_note(rows: list[Row], alpha: float, n_perm: int) -> str | None:
    """Say so when no difference could hold whatever the data: too few scenarios for the
    number of tests (Holm's first step compares the smallest p with alpha / tests)."""
    k = max(r.n_scenarios for r in rows)
    floor = smallest_p(k, n_perm)
    if floor * len(rows) < alpha:
        return None
    return (f"no difference can hold here: with {k} scenarios the smallest possible p is "
            f"{floor:.2g}, and Holm over {len(rows)} tests needs p < {alpha / len(rows):.2g}; "
            "evaluate on more scenarios or test fewer metrics (--metrics)")


FEW_SCENARIOS = 10


def _few_note(rows: list[Row]) -> str | None:
    k = min(r.n_scenarios for r in rows)
    if k >= FEW_SCENARIOS:
        return None
    return (f"only {k} scenarios: bootstrap intervals over so few clusters are too narrow; "
            "read the p-values, not whether an interval excludes 0")


def compare_runs(runs: Sequence[Run], *, metrics: Sequence[str] | None = None,
                 alpha: float = 0.05, n_perm: int = 10_000, n_boot: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> Comparison:
    """Test every pair of responders across `runs` (already loaded) on every higher-is-better
    metric both have; see `compare`."""
    if not runs:
        raise DeescalwildError("nothing to compare: give at least one results directory")
    hashes = {str(r.path): r.cases_sha256 for r in runs}
    if len(runs) > 1 and (None in hashes.values() or len(set(hashes.values())) > 1):
        listing = ", ".join(f"{p} {(h or 'no hash')[:12]}" for p, h in hashes.items())
        raise DeescalwildError(f"results were computed on different cases ({listing}); paired "
                               "tests need the same cases file for every input")
    wanted = _check_metrics(metrics)
    mismatched = _metric_setting_mismatches(runs, wanted)
    wanted = tuple(m for m in wanted if m not in mismatched)
    labels = _labels(runs)
    entries = []  # (label, scores, scenario)
    for run, run_labels in zip(runs, labels):
        for spec, label in run_labels.items():
            entries.append((label, *_scores(run, spec)))
    if len(entries) < 2:
        raise DeescalwildError(f"need at least two responders to compare, found "
                               f"{len(entries)}: {', '.join(e[0] for e in entries) or 'none'}")
    tests, skipped = [], []
    for i, (la, sa, sca) in enumerate(entries):
        for lb, sb, scb in entries[i + 1:]:
            common = sorted(sa.keys() & sb.keys())
            for metric in wanted:
                both = [c for c in common if metric in sa[c] and metric in sb[c]]
                if not both:
                    has = any(metric in v for v in sa.values()) and any(
                        metric in v for v in sb.values())
                    if has or metrics is not None:
                        skipped.append({"a": la, "b": lb, "metric": metric,
                                        "reason": "no case scored for both"})
                    continue
                res = paired_difference([sa[c][metric] for c in both],
                                        [sb[c][metric] for c in both],
                                        [sca.get(c, scb.get(c, c)) for c in both],
                                        n_perm=n_perm, n_boot=n_boot, confidence=confidence,
                                        seed=seed)
                tests.append((la, lb, metric, res))
    adjusted = holm([t[3]["p"] for t in tests])
    rows = [Row(a=la, b=lb, metric=metric, mean_a=res["mean_a"], mean_b=res["mean_b"],
                diff=res["diff"], ci_low=res["ci_low"], ci_high=res["ci_high"],
                p=res["p"], p_holm=ph, holds=bool(ph < alpha),
                n_cases=res["n_cases"], n_scenarios=res["n_scenarios"], exact=res["exact"])
            for (la, lb, metric, res), ph in zip(tests, adjusted)]
    notes = [_power_note(rows, alpha, n_perm), _few_note(rows)] if rows else []
    notes += [f"{m} not compared: the inputs scored it differently ({why})"
              for m, why in mismatched.items()]
    order = {m: i for i, m in enumerate(HIGHER_IS_BETTER)}
    rows.sort(key=lambda r: (order[r.metric], -abs(r.diff or 0.0), r.a, r.b))
    inputs = [{"path": str(run.path), "cases_sha256": run.cases_sha256,
               "responders": {label: spec for spec, label in run_labels.items()}}
              for run, run_labels in zip(runs, labels)]
    return Comparison(rows, inputs, alpha=alpha, n_perm=n_perm, n_boot=n_boot,
                      confidence=confidence, seed=seed, skipped=skipped,
                      notes=[n for n in notes if n])


def compare(results_dirs: Sequence[str | Path], *, metrics: Sequence[str] | None = None,
            alpha: float = 0.05, n_perm: int = 10_000, n_boot: int = 1000,
            confidence: float = 0.95, seed: int = 0) -> Comparison:
    """Paired, scenario-clustered tests between every pair of responders in the given results
    directories (one directory with several responders works too).

    Inputs must share the cases file (same sha256). A responder is labelled by its spec when
    that is unique across inputs, else DIRNAME:SPEC. For each pair and each higher-is-better
    metric both have, the cases both answered without error are compared; all p-values are
    Holm-adjusted together and a difference holds when the adjusted p < alpha.
    """
    return compare_runs([load_run(p) for p in results_dirs], metrics=metrics, alpha=alpha,
                        n_perm=n_perm, n_boot=n_boot, confidence=confidence, seed=seed)
