"""`deescalwild score`: the benchmark's metrics for one pair or a JSON Lines file of pairs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from deescalwild.errors import DeescalwildError, InputError

_EXPECTED = 'expected {"reference": str, "prediction": str}'


def _choose_metrics(metrics: str | None) -> list[str]:
    from deescalwild.bench.metrics import choose_metrics

    return choose_metrics(metrics, warn=lambda s: click.echo(f"warning: {s}", err=True))


def read_pairs(path: Path) -> tuple[list[str], list[str]]:
    """References and predictions from JSON Lines `{"reference": str, "prediction": str}`
    (other keys ignored, blank lines skipped); InputError naming the first bad line."""
    import orjson

    references: list[str] = []
    predictions: list[str] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise InputError(path, lineno, f"not JSON; {_EXPECTED}") from None
            if not (isinstance(obj, dict) and isinstance(obj.get("reference"), str)
                    and isinstance(obj.get("prediction"), str)):
                raise InputError(path, lineno, _EXPECTED)
            references.append(obj["reference"])
            predictions.append(obj["prediction"])
    return references, predictions


def _format(name: str, value: float) -> str:
    from deescalwild.bench.metrics import SCALES

    return f"{value:.2f}" if SCALES[name] == "0-100" else f"{value:.4f}"


@click.command("score")
@click.option("-r", "--reference", help="Reference text (with --prediction).")
@click.option("-p", "--prediction", help="Predicted reply (with --reference).")
@click.option("--pairs", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON Lines of {"reference": ..., "prediction": ...}; one score line each.')
@click.option("-m", "--metrics", help="Comma-separated metric keys, 'paper' or 'all' "
                                      "(default: all; see docs/metrics.md).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="With --pairs: write the score lines here (atomically) instead of stdout.")
@click.option("--json", "as_json", is_flag=True, help="One pair: print a JSON object.")
@click.option("--bertscore-model", help="BERTScore model: hub name in the local cache, a local "
                                        "folder, or 'minilm' (default: roberta-large if cached, "
                                        "else MiniLM).")
@click.option("--bertscore-layer", type=click.IntRange(min=0),
              help="BERTScore layer (default: 17 for roberta-large, 6 for MiniLM).")
@click.option("--device", help="Device for BERTScore (default: cuda if available, else cpu).")
def score_cmd(reference: str | None, prediction: str | None, pairs: Path | None,
              metrics: str | None, output: Path | None, as_json: bool,
              bertscore_model: str | None, bertscore_layer: int | None,
              device: str | None) -> None:
    """Score replies against references with the benchmark's metrics (ROUGE-L, BLEU-4, METEOR,
    BERTScore F1 as in the paper, plus sacreBLEU, chrF, length ratio, distinct-n, empty)."""
    single = reference is not None or prediction is not None
    if single == (pairs is not None):
        raise click.UsageError("give either --reference and --prediction, or --pairs FILE")
    if single and (reference is None or prediction is None):
        raise click.UsageError("--reference and --prediction go together")
    if output is not None and pairs is None:
        raise click.UsageError("-o/--output writes score lines for --pairs")
    from deescalwild.bench.metrics import Scorer

    scorer = Scorer(_choose_metrics(metrics), bertscore_model=bertscore_model,
                    bertscore_layer=bertscore_layer, device=device)
    if single:
        row = scorer.score_pairs([reference], [prediction])[0]
        if as_json:
            click.echo(json.dumps(row))
            return
        _print_table(row)
        return
    references, predictions = read_pairs(pairs)
    if not references:
        raise DeescalwildError(f"{pairs}: no pairs; {_EXPECTED} per line")
    from rich.console import Console

    from deescalwild.progress import ProgressBar

    with ProgressBar(Console(stderr=True), "scoring") as progress:
        rows = scorer.score_pairs(references, predictions, progress=progress)
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    if output is None:
        click.echo(lines, nl=False)
        return
    from deescalwild.atomic import atomic_write

    with atomic_write(output) as fh:
        fh.write(lines)
    click.echo(f"{len(rows):,} score lines -> {output}", err=True)


def _print_table(row: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    from deescalwild.bench.metrics import SCALES

    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("scale")
    for name, value in row.items():
        table.add_row(name, _format(name, value), SCALES[name])
    Console().print(table)
