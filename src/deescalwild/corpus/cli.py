"""`deescalwild corpus ...`: import transcripts, describe a corpus, train and check role models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _console():
    from rich.console import Console

    return Console(stderr=True)


@click.group()
def corpus() -> None:
    """Build and inspect corpora (one scenario per JSON line)."""


@corpus.command("import")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Corpus file to write (JSON Lines); replaced atomically.")
@click.option("--sample", is_flag=True, help="Import the sample corpus shipped with deescalwild.")
@click.option("--strict", is_flag=True, help="Stop at the first problem (exit 1, write nothing).")
@click.option("--metadata", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A YouTube video list (raw_youtube_video_list.csv format) to join; lists "
                   "inside imported folders are found automatically.")
@click.option("--role-model", type=click.Path(exists=True, dir_okay=False),
              help="Role model (.npz) from `corpus roles train`; default: the shipped one.")
@click.option("--no-roles", is_flag=True,
              help="Skip role resolution (every role unknown), e.g. to train a new role model.")
@click.option("--json", "as_json", is_flag=True, help="Print the import summary as JSON.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the import summary (JSON) to this file.")
def import_cmd(paths: tuple[Path, ...], output: Path, sample: bool, strict: bool,
               metadata: tuple[str, ...], role_model: str | None, no_roles: bool,
               as_json: bool, report: Path | None) -> None:
    """Import DeEscalWild transcript CSVs and acquired transcripts (`deescalwild.transcript/1`
    JSON from `acquire`; a CSV beside its JSON is counted as a companion), files or folders,
    searched recursively.

    Every row becomes a turn; each speaker label of each scenario gets a role
    (officer, civilian, bystander, dispatcher, narrator, unknown) with its evidence.
    Bad files and rows are skipped and listed with file, line and reason.
    """
    from deescalwild.atomic import atomic_write
    from deescalwild.corpus.importer import IMPORT_SUMMARY_SCHEMA, import_to_file
    from deescalwild.corpus.sample import sample_path
    from deescalwild.progress import ProgressBar

    if not paths and not sample:
        raise click.UsageError("give transcript files or folders, or --sample")
    targets = [*paths, *([sample_path()] if sample else [])]
    console = _console()
    with ProgressBar(console, "importing") as progress:
        summary = import_to_file(targets, output, strict=strict, metadata=metadata,
                                 resolve_roles=not no_roles, role_model=role_model,
                                 progress=progress)
    result = {"schema": IMPORT_SUMMARY_SCHEMA, "output": str(output), **summary.to_dict()}
    if report:
        with atomic_write(report) as fh:
            json.dump(result, fh, indent=2, ensure_ascii=False)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    _print_summary(console, summary, output)


def _print_summary(console, summary, output: Path) -> None:
    console.print(f"[bold]{summary.scenarios:,}[/] scenarios, [bold]{summary.turns:,}[/] turns "
                  f"from {summary.files:,} files -> {output}", soft_wrap=True)
    if summary.metadata_files:
        console.print(f"video metadata joined from {', '.join(summary.metadata_files)}",
                      soft_wrap=True, highlight=False)
    for title, problems in (("skipped files", summary.skipped_files),
                            ("skipped rows", summary.skipped_rows)):
        if problems:
            console.print(f"[yellow]{len(problems)} {title}:[/]")
            for p in problems:
                console.print(f"  {p}", markup=False, highlight=False)
    if summary.warnings:
        console.print(f"[yellow]{len(summary.warnings)} warnings[/] (kept; see --json):")
        for p in summary.warnings[:10]:
            console.print(f"  {p}", markup=False, highlight=False)
        if len(summary.warnings) > 10:
            console.print(f"  ... and {len(summary.warnings) - 10} more")


@corpus.command("stats")
@click.argument("corpus_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw role and length distributions to this PNG.")
def stats_cmd(corpus_file: Path, as_json: bool, plot: Path | None) -> None:
    """Counts, roles, role resolution and lengths of a corpus."""
    from deescalwild.core import read_corpus
    from deescalwild.corpus.stats import compute_stats, plot_stats, stats_tables

    scenarios = list(read_corpus(corpus_file))
    stats = compute_stats(scenarios)
    if plot:
        plot_stats(scenarios, plot)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
    else:
        from rich.console import Console

        out = Console()
        for table in stats_tables(stats):
            out.print(table)
        if plot:
            out.print(f"plot written to {plot}")


@corpus.group("roles")
def roles() -> None:
    """Train, cross-validate and check the speaker-role model."""


@roles.command("train")
@click.argument("corpus_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Role model file to write (.npz).")
@click.option("--cv-folds", type=int, default=5, show_default=True,
              help="Cross-validation folds for the agreement report stored in the model (0: skip).")
def roles_train(corpus_file: Path, output: Path, cv_folds: int) -> None:
    """Fit a role model on a corpus's own role-labelled speakers (the corpus labels itself)."""
    from deescalwild.core import read_corpus
    from deescalwild.corpus.roles.training import train

    model = train(list(read_corpus(corpus_file)), cv_folds=cv_folds)
    model.save(output)
    report = {k: v for k, v in model.meta.items() if k != "versions"}
    click.echo(json.dumps({"output": str(output), **report}, indent=2))


@roles.command("eval")
@click.argument("corpus_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--folds", type=int, default=5, show_default=True)
def roles_eval(corpus_file: Path, folds: int) -> None:
    """Held-out agreement with the role words of labels (cross-validated by scenario)."""
    from deescalwild.core import read_corpus
    from deescalwild.corpus.roles.training import cross_validate

    click.echo(json.dumps(cross_validate(list(read_corpus(corpus_file)), folds=folds), indent=2))


@roles.command("check")
@click.argument("corpus_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gold", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Hand-labelled JSON Lines: scenario, label (or label_sha256), "
                                  "role.")
@click.option("--errors/--no-errors", default=False, help="Include every disagreement.")
def roles_check(corpus_file: Path, gold: Path, errors: bool) -> None:
    """Accuracy of a corpus's resolved roles against hand labels, per label kind."""
    from deescalwild.core import read_corpus
    from deescalwild.corpus.roles.check import check_roles, read_gold

    report = check_roles(list(read_corpus(corpus_file)), read_gold(gold))
    if not errors:
        report.pop("errors")
    json.dump(report, sys.stdout, indent=2)
    click.echo()
