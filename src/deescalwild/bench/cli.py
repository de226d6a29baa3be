"""`deescalwild cases | eval | compare | bench`: thin wrappers over the bench package."""

from __future__ import annotations

import json
from pathlib import Path

import click

_in_file = click.Path(exists=True, dir_okay=False, path_type=Path)
_out_file = click.Path(dir_okay=False, path_type=Path)
_out_dir = click.Path(file_okay=False, path_type=Path)


def _console():
    """The terminal's width; 160 columns when writing to a log or pipe, where rich would
    otherwise assume 80 and fold the leaderboard."""
    from rich.console import Console

    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, width=160)


def _progress(console):
    from deescalwild.progress import ProgressBar

    return lambda what: ProgressBar(console, what)


def _log(console):
    return lambda s: console.print(s, markup=False, highlight=False, soft_wrap=True)


def _eval_options(metrics, limit, seed, batch_size, n_boot, no_cache, no_baselines,
                  bertscore_model, bertscore_layer):
    from deescalwild.bench.evaluate import EvalOptions

    return EvalOptions(metrics=metrics, limit=limit, seed=seed, batch_size=batch_size,
                       n_boot=n_boot, use_cache=not no_cache, baselines=not no_baselines,
                       bertscore_model=bertscore_model, bertscore_layer=bertscore_layer)


def _eval_flags(f):
    """Options that `eval` and `bench` share."""
    for opt in reversed([
        click.option("--metrics", default=None, help="Comma-separated metric names, or 'all' "
                     "(default: all; BERTScore only when installed). See docs/metrics.md."),
        click.option("--limit", type=click.IntRange(min=1), help="Only the first N cases."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed for sampling, the random baseline and the bootstrap."),
        click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Requests per backend call (hf batches them on the device)."),
        click.option("--bootstrap", "n_boot", type=click.IntRange(min=100), default=1000,
                     show_default=True, help="Bootstrap resamples for the 95% intervals."),
        click.option("--no-cache", is_flag=True,
                     help="Generate everything again instead of reusing cached replies."),
        click.option("--no-baselines", is_flag=True,
                     help="Leave out the calibration baselines (const:I don't know., random), "
                          "which are otherwise always added."),
        click.option("--bertscore-model", default=None,
                     help="BERTScore model (default: roberta-large if available, else MiniLM)."),
        click.option("--bertscore-layer", type=int, default=None, help="BERTScore layer."),
    ]):
        f = opt(f)
    return f


def _print_results(console, results: dict, out: Path) -> None:
    from deescalwild.bench.report import rich_leaderboard

    console.print(rich_leaderboard(results, width=console.width))
    console.print(f"results: {out / 'results.json'}, {out / 'leaderboard.md'}, "
                  f"{out / 'report.html'} ({results['wall_time_s']:.1f} s)", markup=False,
                  highlight=False, soft_wrap=True)


@click.command("cases")
@click.argument("split_file", type=_in_file)
@click.option("-o", "--output", type=_out_file, required=True,
              help="Cases file to write (JSON Lines); replaced atomically.")
@click.option("--split", default="test", show_default=True,
              help="Which split's scenarios become cases ('all' for every scenario).")
@click.option("--history", type=click.IntRange(min=0), default=None,
              help="Messages of history per case (default 12; 0 = the whole conversation).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def cases_cmd(split_file: Path, output: Path, split: str, history: int | None,
              as_json: bool) -> None:
    """Make benchmark cases: one per civilian reply to an officer (teacher-forced next turn).

    Officer speech becomes `user`, the civilian's `assistant`; the rule for other speakers and
    curation exclusions is in docs/benchmark.md.
    """
    from deescalwild.bench.cases import DEFAULT_HISTORY, make_cases

    s = make_cases(split_file, output, split=None if split == "all" else split,
                   history=DEFAULT_HISTORY if history is None else history)
    if as_json:
        click.echo(json.dumps(s.to_dict(), indent=2))
        return
    _console().print(f"{s.cases:,} cases from {s.scenarios:,} scenarios of split {split!r} "
                     f"({s.excluded:,} excluded by curation, {s.no_cases:,} without a civilian "
                     f"reply to an officer) -> {output}", markup=False, highlight=False,
                     soft_wrap=True)


@click.command("eval")
@click.argument("cases_file", type=_in_file)
@click.option("-r", "--responder", "responders", multiple=True, required=True,
              help="Responder spec (repeatable): retrieval, const:TEXT, random, hf:PATH, "
                   "openai:URL#MODEL, gemini:MODEL. See `deescalwild responders list`.")
@click.option("--train", type=_in_file,
              help="Corpus whose train split feeds retrieval and random (usually the split "
                   "file the cases came from).")
@click.option("-o", "--output", type=_out_dir, required=True, help="Results folder.")
@_eval_flags
def eval_cmd(cases_file: Path, responders: tuple[str, ...], train: Path | None, output: Path,
             metrics, limit, seed, batch_size, n_boot, no_cache, no_baselines,
             bertscore_model, bertscore_layer) -> None:
    """Generate (cached), score with CIs, and write results.json, samples.jsonl,
    leaderboard.md and report.html."""
    from deescalwild.bench.evaluate import evaluate

    console = _console()
    results = evaluate(cases_file, responders, output, train=train,
                       options=_eval_options(metrics, limit, seed, batch_size, n_boot, no_cache,
                                             no_baselines, bertscore_model, bertscore_layer),
                       progress=_progress(console), log=_log(console))
    _print_results(console, results, output)


@click.command("compare")
@click.argument("results", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--metrics", default=None,
              help="Comma-separated metrics, 'paper' or 'all' (default: all scored).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.05, show_default=True,
              help="Family-wise error rate (Holm).")
@click.option("--permutations", type=click.IntRange(min=100), default=10000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare_cmd(results: tuple[Path, ...], metrics: str | None, alpha: float,
                permutations: int, seed: int, as_json: bool) -> None:
    """Paired, scenario-clustered significance tests between responders (Holm-corrected).

    RESULTS are results folders (or their results.json) of `eval` on the same cases; one
    folder with several responders works too.
    """
    from deescalwild.bench.metrics import PAPER_METRICS
    from deescalwild.bench.significance import compare

    names = None
    if metrics == "paper":
        names = list(PAPER_METRICS)
    elif metrics and metrics != "all":
        names = [m.strip() for m in metrics.split(",") if m.strip()]
    comp = compare(list(results), metrics=names, alpha=alpha,
                   n_perm=permutations, seed=seed)
    if as_json:
        click.echo(json.dumps(comp.to_dict(), indent=2))
        return
    from rich.console import Console

    console = Console()
    comp.render(console if console.is_terminal else Console(width=200))


@click.command("bench")
@click.option("--data", type=click.Path(exists=True, path_type=Path),
              help="Transcript folder or files (default: the embedded sample corpus).")
@click.option("-o", "--output", type=_out_dir, default=Path("out/bench"), show_default=True,
              help="Folder for every intermediate file and results/.")
@click.option("-r", "--responder", "responders", multiple=True,
              help="Responder spec (repeatable; default: retrieval, \"const:I don't know.\", "
                   "random).")
@click.option("--split", "strategy", type=click.Choice(["clean", "paper"]), default="clean",
              show_default=True, help="clean: leak-free grouped split; paper: the published one.")
@click.option("--test-fraction", type=click.FloatRange(0.01, 0.9), default=None,
              help="Clean split's test share (default 0.1; 0.3 on the small sample).")
@click.option("--history", type=click.IntRange(min=0), default=None,
              help="Messages of history per case (default 12; 0 = all).")
@_eval_flags
def bench_cmd(data: Path | None, output: Path, responders: tuple[str, ...], strategy: str,
              test_fraction: float | None, history: int | None, metrics, limit, seed,
              batch_size, n_boot, no_cache, no_baselines, bertscore_model,
              bertscore_layer) -> None:
    """The main job: import -> curate -> split -> cases -> eval -> leaderboard.

    On the embedded sample by default; `--data DIR` for a real corpus folder.
    """
    from deescalwild.bench.pipeline import DEFAULT_RESPONDERS, BenchConfig, run_bench

    console = _console()
    cfg = BenchConfig(out=output, data=data, responders=responders or DEFAULT_RESPONDERS,
                      strategy=strategy, seed=seed, test_fraction=test_fraction,
                      history=history,
                      eval=_eval_options(metrics, limit, seed, batch_size, n_boot, no_cache,
                                         no_baselines, bertscore_model, bertscore_layer))
    done = run_bench(cfg, progress=_progress(console), log=_log(console))
    _print_results(console, done["results"], output / "results")
