"""`deescalwild curate | split | release`: from an imported corpus to a releasable dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

_corpus_path = click.Path(exists=True, dir_okay=False, path_type=Path)
_out_path = click.Path(dir_okay=False, path_type=Path)


def _write_report(report: dict[str, Any], path: Path | None) -> None:
    if path:
        from deescalwild.atomic import atomic_write

        with atomic_write(path) as fh:
            json.dump(report, fh, indent=2, ensure_ascii=False)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _problems(console, problems: list[str]) -> None:
    if problems:
        console.print(f"[yellow]{len(problems)} bad line(s) skipped[/] (--strict stops instead):")
        for p in problems[:10]:
            console.print(f"  {p}", markup=False, highlight=False)


@click.command("curate")
@click.argument("corpus_file", type=_corpus_path)
@click.option("-o", "--output", type=_out_path, required=True,
              help="Curated corpus to write (JSON Lines); replaced atomically.")
@click.option("--report", type=_out_path, help="Write the curation report (JSON) here.")
@click.option("--policy", type=_corpus_path,
              help="Policy TOML (default: the shipped policy.toml, see docs/curation.md).")
@click.option("--pseudonymize", is_flag=True,
              help="Also replace names and mask contact details (see docs/privacy.md).")
@click.option("--strict", is_flag=True, help="Stop at the first bad line (exit 1, write nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def curate_cmd(corpus_file: Path, output: Path, report: Path | None, policy: Path | None,
               pseudonymize: bool, strict: bool, as_json: bool) -> None:
    """Flag repetition loops, duplicates, ads, narration, off-domain videos and near-duplicates.

    Annotates, never deletes: each flag has a reason, and the policy decides which flags keep a
    turn or a scenario out of later stages.
    """
    from deescalwild.curate.annotate import curate_file
    from deescalwild.progress import ProgressBar

    console = _console()
    with ProgressBar(console, "curating") as progress:
        result = curate_file(corpus_file, output, policy_path=policy, strict=strict,
                             pseudonymize=pseudonymize, progress=progress)
    _write_report(result, report)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    t = result["totals"]
    console.print(f"[bold]{t['scenarios_kept']:,}[/] of {t['scenarios_in']:,} scenarios and "
                  f"[bold]{t['turns_kept']:,}[/] of {t['turns_in']:,} turns kept "
                  f"({t['words_kept']:,} of {t['words_in']:,} words) -> {output}", soft_wrap=True)
    table = Table(title="Flags", title_justify="left")
    for col in ("flag", "on", "turns", "scenarios", "words", "excludes"):
        table.add_column(col, justify="left" if col in ("flag", "on") else "right")
    for on in ("turn_flags", "scenario_flags"):
        for flag, v in result[on].items():
            table.add_row(flag, on.split("_")[0], f"{v['turns']:,}", f"{v['scenarios']:,}",
                          f"{v['words']:,}", "yes" if v["excludes"] else "no")
    console.print(table)
    nd = result["near_duplicates"]
    console.print(f"near-duplicates: {len(nd['clusters'])} clusters "
                  f"({nd['cross_split_clusters']} across the input's splits), "
                  f"{nd['related_groups']} related groups")
    _problems(console, result["problems"])
    if report:
        console.print(f"report: {report}", highlight=False)


@click.command("split")
@click.argument("corpus_file", type=_corpus_path)
@click.option("-o", "--output", type=_out_path, required=True,
              help="Split corpus to write; replaced atomically.")
@click.option("--strategy", type=click.Choice(["clean", "paper"]), default="clean",
              show_default=True, help="clean: leak-free seeded groups; paper: published split.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--test-fraction", type=float, default=0.1, show_default=True,
              help="Share of kept scenarios in test (clean only).")
@click.option("--dev-fraction", type=float, default=0.1, show_default=True,
              help="Share of kept scenarios in dev (for paper: carved out of train).")
@click.option("--policy", type=_corpus_path, help="Policy TOML whose near-duplicate "
                                                  "thresholds group scenarios.")
@click.option("--report", type=_out_path, help="Write the split report (JSON) here.")
@click.option("--strict", is_flag=True, help="Stop at the first bad line (exit 1, write nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def split_cmd(corpus_file: Path, output: Path, strategy: str, seed: int, test_fraction: float,
              dev_fraction: float, policy: Path | None, report: Path | None, strict: bool,
              as_json: bool) -> None:
    """Assign train/dev/test so that no near-duplicate cluster or source spans two splits."""
    from deescalwild.curate.splits import split_file

    result = split_file(corpus_file, output, strategy=strategy, seed=seed,
                        test_fraction=test_fraction, dev_fraction=dev_fraction,
                        policy_path=policy, strict=strict)
    _write_report(result, report)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    console = _console()
    table = Table(title=f"Splits ({strategy}, seed {seed})", title_justify="left")
    for col in ("split", "scenarios", "kept", "turns", "platforms (kept)"):
        table.add_column(col, justify="left" if col in ("split", "platforms (kept)") else "right")
    for name, c in result["counts"].items():
        table.add_row(name, f"{c['scenarios']:,}", f"{c['kept']:,}", f"{c['turns']:,}",
                      ", ".join(f"{k} {v}" for k, v in c["kept_platforms"].items()))
    console.print(table)
    cs = result["cross_split"]
    pair = " / ".join(cs["max_pair"]) if cs["max_pair"] else "-"
    console.print(f"cross-split max Jaccard {cs['max_jaccard']:.3f} ({pair}); "
                  f"{cs['groups_spanning_splits']} groups and "
                  f"{cs['near_duplicate_pairs_across']} near-duplicate pairs span splits",
                  highlight=False, soft_wrap=True)
    _problems(console, result["problems"])


@click.command("release")
@click.argument("corpus_file", type=_corpus_path)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Release directory; replaced as a whole only when the new one is complete.")
@click.option("--pseudonymize/--no-pseudonymize", default=True, show_default=True,
              help="Replace names and mask contact details (docs/privacy.md).")
@click.option("--include-excluded", is_flag=True,
              help="Also release what the curation policy excluded (flags kept).")
@click.option("--json", "as_json", is_flag=True, help="Print the release summary as JSON.")
def release_cmd(corpus_file: Path, output: Path, pseudonymize: bool, include_excluded: bool,
                as_json: bool) -> None:
    """Write a dataset: card (README.md), JSON Lines + Parquet per split, a Hugging Face
    DatasetDict, and a ConvoKit corpus."""
    from deescalwild.curate.release import release

    summary = release(corpus_file, output, pseudonymize=pseudonymize,
                      include_excluded=include_excluded).to_dict()
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    console = _console()
    console.print(f"released to {output}", highlight=False)
    console.print(json.dumps(summary, indent=2, ensure_ascii=False), markup=False,
                  highlight=False)
