"""What a corpus holds: counts, roles, how roles were resolved, lengths; as JSON, table or plot.

The JSON layout (`deescalwild.stats/1`) is documented in docs/formats.md.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deescalwild.core import Evidence, Role, Scenario

STATS_SCHEMA = "deescalwild.stats/1"


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "mean": 0, "p95": 0, "max": 0}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "mean": round(sum(ordered) / len(ordered), 2),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def compute_stats(scenarios: Iterable[Scenario]) -> dict[str, Any]:
    """Counts over a corpus. "speakers" counts distinct label strings across the corpus;
    "speaker_instances" and "resolution" count (scenario, label) pairs."""
    n_sc = n_turns = n_words = 0
    roles: Counter[str] = Counter()
    role_words: Counter[str] = Counter()
    platforms: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    labels: set[str] = set()
    instance_roles: Counter[str] = Counter()
    resolution: Counter[str] = Counter()
    turns_per_scenario: list[int] = []
    words_per_turn: list[int] = []
    missing_start = backwards = 0
    turn_flags: Counter[str] = Counter()
    turn_flag_words: Counter[str] = Counter()
    scenario_flags: Counter[str] = Counter()
    curated = excluded_sc = excluded_turns = 0
    for sc in scenarios:
        n_sc += 1
        platforms[sc.platform or "unknown"] += 1
        splits[sc.split or "none"] += 1
        turns_per_scenario.append(len(sc.turns))
        scenario_flags.update(sc.flags)
        cur = sc.meta.get("curation")
        if isinstance(cur, dict):
            curated += 1
            excluded_sc += bool(cur.get("excluded"))
            excluded_turns += len(cur.get("excluded_turns") or ())
        backwards += bool(sc.meta.get("timestamps_backwards"))
        for label, sr in sc.speakers.items():
            labels.add(label)
            instance_roles[sr.role.value] += 1
            resolution[sr.evidence.value] += 1
        for t in sc.turns:
            w = len(t.text.split())
            n_turns += 1
            n_words += w
            roles[t.role.value] += 1
            role_words[t.role.value] += w
            words_per_turn.append(w)
            missing_start += t.start is None
            if t.flags:
                turn_flags.update(t.flags)
                for f in t.flags:
                    turn_flag_words[f] += w
    order = [r.value for r in Role]
    return {
        "schema": STATS_SCHEMA,
        "scenarios": n_sc,
        "turns": n_turns,
        "words": n_words,
        "roles": {r: roles[r] for r in order},
        "role_words": {r: role_words[r] for r in order},
        "platforms": dict(platforms.most_common()),
        "splits": dict(splits.most_common()),
        "speakers": len(labels),
        "speaker_instances": sum(instance_roles.values()),
        "speaker_roles": {r: instance_roles[r] for r in order},
        "resolution": {e.value: resolution[e.value] for e in Evidence},
        "turns_per_scenario": _summary(turns_per_scenario),
        "words_per_turn": _summary(words_per_turn),
        "timestamps": {"missing": missing_start, "scenarios_running_backwards": backwards},
        "flags": {"turns": dict(turn_flags.most_common()),
                  "turn_words": dict(turn_flag_words.most_common()),
                  "scenarios": dict(scenario_flags.most_common())},
        "curation": {"curated_scenarios": curated, "excluded_scenarios": excluded_sc,
                     "excluded_turns": excluded_turns},
    }


def stats_tables(stats: dict[str, Any]) -> list:
    """Rich tables for the terminal."""
    from rich.table import Table

    overview = Table(title="Corpus", show_header=False, title_justify="left")
    overview.add_column(style="bold")
    overview.add_column(justify="right")
    for key in ("scenarios", "turns", "words", "speakers", "speaker_instances"):
        overview.add_row(key.replace("_", " "), f"{stats[key]:,}")
    overview.add_row("platforms", ", ".join(f"{k} {v:,}" for k, v in stats["platforms"].items()))
    overview.add_row("splits", ", ".join(f"{k} {v:,}" for k, v in stats["splits"].items()))
    tpt, wpt = stats["turns_per_scenario"], stats["words_per_turn"]
    overview.add_row("turns per scenario", f"median {tpt['median']:g}, max {tpt['max']:,}")
    overview.add_row("words per turn", f"median {wpt['median']:g}, p95 {wpt['p95']:,}, "
                     f"max {wpt['max']:,}")
    overview.add_row("timestamps missing", f"{stats['timestamps']['missing']:,}")

    roles = Table(title="Roles", title_justify="left")
    for col in ("role", "turns", "% turns", "words", "speakers"):
        roles.add_column(col, justify="left" if col == "role" else "right")
    total = max(1, stats["turns"])
    for role, n in stats["roles"].items():
        roles.add_row(role, f"{n:,}", f"{100 * n / total:.1f}", f"{stats['role_words'][role]:,}",
                      f"{stats['speaker_roles'][role]:,}")

    resolution = Table(title="Role evidence", title_justify="left")
    resolution.add_column("evidence")
    resolution.add_column("speakers", justify="right")
    resolution.add_column("%", justify="right")
    n_inst = max(1, stats["speaker_instances"])
    for ev, n in stats["resolution"].items():
        resolution.add_row(ev, f"{n:,}", f"{100 * n / n_inst:.1f}")
    tables = [overview, roles, resolution]
    flags = stats["flags"]
    if flags["turns"] or flags["scenarios"]:
        cur = stats["curation"]
        title = "Quality flags"
        if cur["curated_scenarios"]:
            title += (f" (policy excludes {cur['excluded_scenarios']:,} scenarios and "
                      f"{cur['excluded_turns']:,} turns)")
        ft = Table(title=title, title_justify="left")
        for col in ("flag", "on", "count", "words"):
            ft.add_column(col, justify="right" if col in ("count", "words") else "left")
        for f, n in flags["turns"].items():
            ft.add_row(f, "turns", f"{n:,}", f"{flags['turn_words'].get(f, 0):,}")
        for f, n in flags["scenarios"].items():
            ft.add_row(f, "scenarios", f"{n:,}", "")
        tables.append(ft)
    return tables


def plot_stats(scenarios: list[Scenario], path: str | Path) -> None:
    """PNG: turns per role, and the distributions of turn and scenario lengths by role."""
    try:
        import matplotlib
    except ImportError as e:  # an optional extra
        from deescalwild.errors import DeescalwildError

        raise DeescalwildError("--plot needs matplotlib: pip install 'deescalwild[plot]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from deescalwild.atomic import atomic_write

    order = [r for r in Role]
    counts = Counter(t.role for sc in scenarios for t in sc.turns)
    lengths: dict[Role, list[int]] = {r: [] for r in order}
    for sc in scenarios:
        for t in sc.turns:
            lengths[t.role].append(max(1, len(t.text.split())))
    per_scenario = [len(sc.turns) for sc in scenarios]

    colors = dict(zip(order, ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#7f7f7f"]))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.bar([r.value for r in order], [counts[r] for r in order],
           color=[colors[r] for r in order])
    ax.set_title("Turns per role")
    ax.tick_params(axis="x", rotation=30)
    for i, r in enumerate(order):
        ax.annotate(f"{counts[r]:,}", (i, counts[r]), ha="center", va="bottom", fontsize=8)

    ax = axes[1]
    top = max([max(v) for v in lengths.values() if v] + [2])
    bins = np.logspace(0, np.log10(top + 1), 40)
    for r in order:
        if lengths[r]:
            ax.hist(lengths[r], bins=bins, histtype="step", linewidth=1.5, label=r.value,
                    color=colors[r])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("Words per turn, by role")
    ax.set_xlabel("words (log)")
    ax.legend(fontsize=8)

    ax = axes[2]
    ax.hist(per_scenario, bins=40, color="#555555")
    ax.set_title("Turns per scenario")
    ax.set_xlabel("turns")
    fig.suptitle(f"{len(scenarios):,} scenarios, {sum(per_scenario):,} turns")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
