"""Clustered bootstrap intervals, the scenario sign-flip test, Holm, and `compare` on results."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from deescalwild.bench.bootstrap import bootstrap_means, clustered_bootstrap_ci, percentiles
from deescalwild.bench.significance import (
    compare,
    holm,
    paired_difference,
    sign_flip_test,
    smallest_p,
)
from deescalwild.errors import DeescalwildError

X100 = ("rouge_l", "bleu4", "meteor", "sacrebleu", "chrf")


def fabricate(out: Path, quality: dict[str, float], *, n_scenarios: int = 8, per_scenario: int = 4,
              baselines: tuple[str, ...] = (), sha: str = "c0ffee" * 10, seed: int = 0,
              errors: dict[str, int] | None = None, predictions: dict[str, str] | None = None,
              scenario_effect: float = 3.0) -> tuple[dict, list[dict]]:
    """A consistent results.json + samples.jsonl in `out`: responder r scores about quality[r]
    (x100 metrics; BERTScore around 0.8 + quality/1000) plus a shared scenario effect and noise;
    the first errors[r] cases of r are errored. Returns (results, samples)."""
    rng = np.random.default_rng(seed)
    cases = [(f"s{s:02d}-t{t}", f"s{s:02d}") for s in range(n_scenarios)
             for t in range(per_scenario)]
    effect = {f"s{s:02d}": rng.normal(0, scenario_effect) for s in range(n_scenarios)}
    samples, responders = [], {}
    for spec, q in quality.items():
        n_err = (errors or {}).get(spec, 0)
        per_metric: dict[str, list[float]] = {}
        clusters, lat = [], []
        for i, (case, scen) in enumerate(cases):
            err = "backend timed out" if i < n_err else None
            scores = {} if err else {
                **{m: float(q + effect[scen] + rng.normal(0, 2)) for m in X100},
                "bertscore_f1": float(0.8 + (q + effect[scen]) / 1000 + rng.normal(0, 0.002)),
                "length_ratio": 1.0, "empty": 0.0}
            latency = float(rng.lognormal(-4, 0.5))
            samples.append({"responder": spec, "case_id": case, "scenario_id": scen,
                            "reference": f"reference for {case}",
                            "prediction": "" if err else (predictions or {}).get(
                                spec, f"{spec} says something about {case}"),
                            "error": err, "scores": scores, "latency_s": latency,
                            "first_token_s": latency, "tokens": 5, "cached": False})
            if not err:
                clusters.append(scen)
                lat.append(latency)
                for m, v in scores.items():
                    per_metric.setdefault(m, []).append(v)
        responders[spec] = {
            "settings": {}, "baseline": spec in baselines, "n_cases": len(cases),
            "errors": n_err, "error_examples": [],
            "metrics": {m: clustered_bootstrap_ci(v, clusters, n_boot=200)
                        for m, v in per_metric.items()},
            "diversity": {"distinct_1": 0.2, "distinct_2": 0.5},
            "latency": {**percentiles(lat), "first_token_p50": 0.001}, "generation_s": 1.0}
    results = {"schema": "deescalwild.results/1", "created": "2026-11-22T10:00:00Z",
               "git_commit": "0123456789abcdef0123+dirty",
               "versions": {"python": "3.11.7", "deescalwild": "0.1.0"}, "seed": 0,
               "cases": {"path": "cases.jsonl", "sha256": sha, "n": len(cases),
                         "scenarios": n_scenarios, "split": "test"},
               "train": {"path": "split.jsonl", "sha256": "feed" * 16},
               "metrics": [*X100, "bertscore_f1", "length_ratio", "distinct_1", "distinct_2",
                           "empty"],
               "metric_settings": {"bertscore_f1": {"model": "roberta-large", "num_layers": 17}},
               "bootstrap": {"n": 200, "cluster": "scenario", "confidence": 0.95, "seed": 0},
               "wall_time_s": 2.5, "responders": responders}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples),
                                       encoding="utf-8")
    return results, samples


# --- bootstrap ---------------------------------------------------------------------------------

def test_two_clusters_by_hand_ratio_of_sums():
    # cluster a = [1, 1], b = [4]: draws aa -> 1, ab -> 6/3 = 2, bb -> 4 with chances 1/4, 1/2, 1/4
    values, clusters = [1.0, 1.0, 4.0], ["a", "a", "b"]
    means = bootstrap_means(np.array([2.0, 4.0]), np.array([2.0, 1.0]), n_boot=4000)
    assert set(np.round(means, 12)) == {1.0, 2.0, 4.0}
    assert abs(np.mean(means == 2.0) - 0.5) < 0.03
    ci = clustered_bootstrap_ci(values, clusters, n_boot=4000, confidence=0.95)
    assert ci == {"mean": 2.0, "ci_low": 1.0, "ci_high": 4.0, "n": 3}
    # the central 40% is the "ab" draw only: 2.0 (a mean of cluster means would say 2.5)
    narrow = clustered_bootstrap_ci(values, clusters, n_boot=4000, confidence=0.4)
    assert narrow["ci_low"] == narrow["ci_high"] == 2.0


def test_bootstrap_seeded_and_independent_of_case_order():
    rng = np.random.default_rng(1)
    values = rng.normal(size=60)
    clusters = [f"s{i % 7}" for i in range(60)]
    a = clustered_bootstrap_ci(values, clusters, seed=3)
    assert a == clustered_bootstrap_ci(values, clusters, seed=3)
    perm = rng.permutation(60)
    assert a == clustered_bootstrap_ci(values[perm], [clusters[i] for i in perm], seed=3)
    assert a != clustered_bootstrap_ci(values, clusters, seed=4)
    assert all(type(a[k]) is float for k in ("mean", "ci_low", "ci_high")) and a["n"] == 60


def test_bootstrap_edge_cases():
    # one scenario: no interval at all, never a zero-width one
    assert clustered_bootstrap_ci([1.0, 3.0], ["x", "x"]) == {
        "mean": 2.0, "ci_low": None, "ci_high": None, "n": 2}
    nan = clustered_bootstrap_ci([1.0, float("nan"), 3.0], ["x", "y", "z"])
    assert nan["mean"] == 2.0 and nan["n"] == 2
    assert clustered_bootstrap_ci([], []) == {"mean": None, "ci_low": None, "ci_high": None,
                                              "n": 0}
    with pytest.raises(ValueError):
        clustered_bootstrap_ci([1.0], ["a", "b"])


def test_clustered_interval_is_wider_than_an_iid_one_when_scenarios_differ():
    rng = np.random.default_rng(0)
    effect = rng.normal(0, 5, size=10)
    values = np.repeat(effect, 20) + rng.normal(0, 1, size=200)
    clusters = np.repeat([f"s{i}" for i in range(10)], 20).tolist()
    clustered = clustered_bootstrap_ci(values, clusters)
    iid = clustered_bootstrap_ci(values, [str(i) for i in range(200)])
    assert (clustered["ci_high"] - clustered["ci_low"]) > 3 * (iid["ci_high"] - iid["ci_low"])


def test_bootstrap_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(42)
    clusters = np.repeat([f"s{i}" for i in range(20)], 5).tolist()
    covered = 0
    for rep in range(200):
        values = 3.0 + np.repeat(rng.normal(0, 1, 20), 5) + rng.normal(0, 1, 100)
        ci = clustered_bootstrap_ci(values, clusters, n_boot=400, seed=rep)
        covered += ci["ci_low"] <= 3.0 <= ci["ci_high"]
    assert 0.87 <= covered / 200 <= 0.99


def test_percentiles():
    p = percentiles([0.1, 0.2, None, float("nan"), 0.3, 0.4])
    assert p == {"mean": 0.25, "p50": 0.25, "p95": 0.385, "max": 0.4, "n": 4}
    assert percentiles([])["p50"] is None


# --- sign-flip test and Holm -------------------------------------------------------------------

def _exact_enumeration(cluster_totals: np.ndarray) -> float:
    t = abs(cluster_totals.sum())
    flips = [abs(np.dot(s, cluster_totals)) >= t - 1e-12
             for s in itertools.product((-1, 1), repeat=len(cluster_totals))]
    return float(np.mean(flips))


def test_sign_flip_matches_scipy_and_enumeration_with_one_case_per_scenario():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    d = rng.normal(0.4, 1.0, size=10)
    clusters = [f"s{i}" for i in range(10)]
    p_exact, exact = sign_flip_test(d, clusters, n_perm=10_000)
    assert exact  # 2^10 patterns <= n_perm: enumerated
    ref = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=10**6)
    assert p_exact == pytest.approx(ref.pvalue, abs=1e-12)
    assert p_exact == pytest.approx(_exact_enumeration(d), abs=1e-12)
    p_mc, exact = sign_flip_test(d, clusters, n_perm=20_000, seed=1, exact=False)
    assert not exact and abs(p_mc - p_exact) < 0.015


def test_sign_flip_flips_whole_scenarios():
    rng = np.random.default_rng(3)
    d = rng.normal(0.5, 1.0, size=24)
    clusters = [f"s{i % 6}" for i in range(24)]
    totals = np.array([d[i::6].sum() for i in range(6)])
    assert sign_flip_test(d, clusters)[0] == pytest.approx(_exact_enumeration(totals))
    # three scenarios all pointing the same way: the smallest possible p is 2/8
    assert sign_flip_test([1.0, 2.0, 3.0], ["a", "b", "c"])[0] == 0.25
    assert sign_flip_test([0.0, 0.0], ["a", "b"])[0] == 1.0


def test_sign_flip_randomization_is_seeded_and_sensitive():
    clusters = [f"s{i}" for i in range(30)]
    d = np.random.default_rng(0).normal(1.0, 1.0, size=30)
    p1 = sign_flip_test(d, clusters, n_perm=2000, seed=5)
    assert p1 == sign_flip_test(d, clusters, n_perm=2000, seed=5)
    assert p1[0] < 0.01 and p1[0] >= 1 / 2001


def test_holm_hand_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []


def test_paired_difference_drops_unpaired_values():
    res = paired_difference([1.0, 2.0, float("nan"), 5.0], [0.0, 1.0, 3.0, 4.0],
                            ["a", "b", "c", "d"])
    assert res["n_cases"] == 3 and res["n_scenarios"] == 3
    assert res["diff"] == 1.0 and res["ci_low"] == res["ci_high"] == 1.0


# --- compare -----------------------------------------------------------------------------------

def test_compare_two_dirs(tmp_path):
    # 16 scenarios: with k scenarios no p can go below 2/2^k, and Holm multiplies by 36 tests
    shape = {"n_scenarios": 16, "per_scenario": 2}
    fabricate(tmp_path / "run1", {"retrieval": 20.0, "const:ok": 5.0}, baselines=("const:ok",),
              errors={"retrieval": 3}, **shape)
    fabricate(tmp_path / "run2", {"retrieval": 20.2, "hf:model": 12.0}, seed=1, **shape)
    comp = compare([tmp_path / "run1", tmp_path / "run2" / "results.json"], n_perm=4000)
    labels = {r.a for r in comp.rows} | {r.b for r in comp.rows}
    assert labels == {"run1:retrieval", "run2:retrieval", "const:ok", "hf:model"}
    assert {r.metric for r in comp.rows} == {"rouge_l", "bleu4", "meteor", "bertscore_f1",
                                             "sacrebleu", "chrf"}
    assert len(comp.rows) == 6 * 6  # 4 responders -> 6 pairs, 6 higher-is-better metrics
    assert [r.p_holm for r in comp.rows] == pytest.approx(
        holm([r.p for r in comp.rows]), abs=1e-6)
    by = {(r.a, r.b, r.metric): r for r in comp.rows}
    strong = by[("run1:retrieval", "const:ok", "rouge_l")]
    assert strong.holds and strong.diff > 10 and strong.verdict == "run1:retrieval > const:ok"
    assert strong.n_cases == 32 - 3 and strong.n_scenarios == 15  # s00 errored throughout
    assert strong.ci_low < strong.diff < strong.ci_high
    assert strong.mean_a - strong.mean_b == pytest.approx(strong.diff, abs=1e-5)
    same = by[("run1:retrieval", "run2:retrieval", "rouge_l")]
    assert not same.holds and same.verdict == "no clear difference"
    reverse = by[("const:ok", "hf:model", "chrf")]
    assert reverse.holds and reverse.diff < 0 and reverse.verdict == "hf:model > const:ok"
    metrics_order = [r.metric for r in comp.rows]
    assert metrics_order == sorted(metrics_order, key=["rouge_l", "bleu4", "meteor",
                                                       "bertscore_f1", "sacrebleu",
                                                       "chrf"].index)
    rouge = [abs(r.diff) for r in comp.rows if r.metric == "rouge_l"]
    assert rouge == sorted(rouge, reverse=True)
    assert comp.notes == []
    data = json.loads(json.dumps(comp.to_dict()))
    assert data["schema"] == "deescalwild.compare/1" and len(data["rows"]) == 36
    assert data["inputs"][0]["responders"]["run1:retrieval"] == "retrieval"


def test_compare_refuses_different_cases(tmp_path):
    fabricate(tmp_path / "a", {"retrieval": 20.0}, sha="a" * 64)
    fabricate(tmp_path / "b", {"other": 20.0}, sha="b" * 64)
    with pytest.raises(DeescalwildError, match="different cases"):
        compare([tmp_path / "a", tmp_path / "b"])


def test_compare_single_dir_metric_choice_and_bad_inputs(tmp_path):
    fabricate(tmp_path / "r", {"x": 10.0, "y": 10.0, "z": 30.0})
    comp = compare([tmp_path / "r"], metrics=["bleu4"], n_perm=500)
    pairs = [(r.a, r.b) for r in comp.rows]
    assert set(pairs[:2]) == {("x", "z"), ("y", "z")} and pairs[2] == ("x", "y")
    assert [r.holds for r in comp.rows] == [True, True, False]
    with pytest.raises(DeescalwildError, match="descriptive"):
        compare([tmp_path / "r"], metrics=["length_ratio"])
    with pytest.raises(DeescalwildError, match="unknown metric"):
        compare([tmp_path / "r"], metrics=["bleu"])
    with pytest.raises(DeescalwildError, match="not found"):
        compare([tmp_path / "missing"])
    fabricate(tmp_path / "one", {"x": 10.0})
    with pytest.raises(DeescalwildError, match="at least two responders"):
        compare([tmp_path / "one"])
    (tmp_path / "r" / "samples.jsonl").write_text('{"responder": "x", "case_id": "1"}\n{oops\n')
    with pytest.raises(DeescalwildError, match=r"samples.jsonl:2"):
        compare([tmp_path / "r"])


def test_compare_render_does_not_read_markup_from_names(tmp_path):
    from rich.console import Console

    fabricate(tmp_path / "r", {"const:[red]hi[/red]": 5.0, "retrieval": 25.0})
    comp = compare([tmp_path / "r"], metrics=["rouge_l"], n_perm=500)
    console = Console(record=True, width=250)
    comp.render(console)
    text = console.export_text()
    assert "const:[red]hi[/red]" in text and "retrieval > const:[red]hi[/red]" in text


def test_compare_says_when_nothing_can_hold(tmp_path):
    fabricate(tmp_path / "r", {"good": 40.0, "bad": 0.0}, n_scenarios=4, per_scenario=10)
    comp = compare([tmp_path / "r"], n_perm=1000)
    assert all(r.p == 0.125 and not r.holds for r in comp.rows)  # 2/2^4, times 6 tests
    assert "smallest possible p is 0.12" in comp.notes[0] and "only 4 scenarios" in comp.notes[1]
    assert smallest_p(4, 10_000) == 0.125 and smallest_p(30, 999) == 0.001
