"""Confidence intervals that respect the benchmark's structure, and latency summaries.

Cases from one scenario (one video) share a speaker, a situation and a topic, so they are not
independent: a plain per-case bootstrap gives intervals that are too narrow. We resample whole
scenarios instead (the cluster bootstrap) and take the mean over every case of the drawn
scenarios, a ratio of sums, so a scenario counts by its number of cases exactly as in the point
estimate (the mean of scenario means would be a different quantity).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

DECIMALS = 6


def _round(x: float) -> float:
    return round(float(x), DECIMALS)


def cluster_sums(values: Sequence[float], clusters: Sequence[object]
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-cluster sums and counts of the finite values, clusters in sorted order of their labels.

    Sorting makes a seeded result independent of the order the cases arrive in. Non-finite
    values (an errored case scored NaN) are dropped here as well as by callers, to be safe.
    """
    if len(values) != len(clusters):
        raise ValueError(f"values and clusters differ in length ({len(values)} vs "
                         f"{len(clusters)})")
    v = np.asarray(values, dtype=float).reshape(-1)
    labels = np.asarray([str(c) for c in clusters], dtype=object)
    keep = np.isfinite(v)
    v, labels = v[keep], labels[keep]
    if v.size == 0:
        return np.zeros(0), np.zeros(0), []
    names, inverse = np.unique(labels.astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=v, minlength=len(names))
    counts = np.bincount(inverse, minlength=len(names)).astype(float)
    return sums, counts, [str(n) for n in names]


def bootstrap_means(sums: np.ndarray, counts: np.ndarray, *, n_boot: int = 1000,
                    seed: int = 0) -> np.ndarray:
    """`n_boot` cluster-bootstrap replicates of the overall mean: each replicate draws as many
    clusters as there are, with replacement (a multinomial count per cluster), and divides the
    drawn clusters' summed values by their summed case counts."""
    k = len(sums)
    if k == 0 or n_boot <= 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot).astype(float)
    return (draws @ sums) / (draws @ counts)  # every draw has k >= 1 clusters, each count >= 1


def clustered_bootstrap_ci(values: Sequence[float], clusters: Sequence[object], *,
                           n_boot: int = 1000, confidence: float = 0.95,
                           seed: int = 0) -> dict[str, float | int | None]:
    """Mean of `values` with a percentile bootstrap interval that resamples `clusters`.

    Returns plain floats rounded to 6 decimals: {mean, ci_low, ci_high, n} where n counts the
    finite values used. With no finite value, mean and bounds are None (JSON has no NaN). With a
    single cluster there is nothing to resample and no evidence about between-scenario spread,
    so the bounds are None (shown as no interval), never a zero-width "interval".
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    sums, counts, _ = cluster_sums(values, clusters)
    n = int(counts.sum())
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(sums.sum() / n)
    if len(sums) == 1 or n_boot <= 0:
        return {"mean": _round(mean), "ci_low": None, "ci_high": None, "n": n}
    means = bootstrap_means(sums, counts, n_boot=n_boot, seed=seed)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"mean": _round(mean), "ci_low": _round(low), "ci_high": _round(high), "n": n}


def percentiles(latencies: Iterable[float | None]) -> dict[str, float | int | None]:
    """Mean, median, 95th percentile and maximum of the finite latencies (seconds), with n.

    None and NaN (a reply that never came) are skipped; with nothing left every figure is None.
    Percentiles interpolate linearly between order statistics (numpy's default).
    """
    xs = np.asarray([x for x in latencies if x is not None and math.isfinite(x)], dtype=float)
    if xs.size == 0:
        return {"mean": None, "p50": None, "p95": None, "max": None, "n": 0}
    p50, p95 = np.percentile(xs, [50, 95])
    return {"mean": _ns(xs.mean()), "p50": _ns(p50), "p95": _ns(p95), "max": _ns(xs.max()),
            "n": int(xs.size)}


def _ns(seconds: float) -> float:
    """Latencies keep nanoseconds: a constant reply takes about 0.2 µs."""
    return round(float(seconds), 9)
