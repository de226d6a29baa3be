"""The `deescalwild` command: assembles each package's command group; nothing heavy at import.

Errors in the input reach the user as one line (`error: FILE:LINE: what was expected`);
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import click

from deescalwild import __version__
from deescalwild.acquire.cli import acquire_group
from deescalwild.bench.cli import bench_cmd, cases_cmd, compare_cmd, eval_cmd
from deescalwild.bench.metrics_cli import score_cmd
from deescalwild.corpus.cli import corpus
from deescalwild.curate.cli import curate_cmd, release_cmd, split_cmd
from deescalwild.errors import DeescalwildError
from deescalwild.responders.cli import responders
from deescalwild.sim.cli import cards_group, serve_cmd, simulate_cmd
from deescalwild.train.cli import export_group, sft_cmd, train_cmd
from deescalwild.train.model_cli import model


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deescalwild")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """deescalwild: police-civilian de-escalation dialogue from in-the-wild video.

    For training humans only: never for predictive policing, profiling or automated decisions
    about people (see docs/intended-use.md).
    """
    ctx.obj = {"debug": debug}


cli.add_command(acquire_group)
cli.add_command(corpus)
cli.add_command(curate_cmd)
cli.add_command(split_cmd)
cli.add_command(release_cmd)
cli.add_command(bench_cmd)
cli.add_command(cases_cmd)
cli.add_command(eval_cmd)
cli.add_command(score_cmd)
cli.add_command(compare_cmd)
cli.add_command(responders)
cli.add_command(sft_cmd)
cli.add_command(train_cmd)
cli.add_command(export_group)
cli.add_command(model)
cli.add_command(cards_group)
cli.add_command(simulate_cmd)
cli.add_command(serve_cmd)


def _quiet_libraries(debug: bool) -> None:
    """Our own progress bars and one-line messages are what the user reads. Libraries log
    through the root logger (rouge-score's absl configures it on first use, bm25s logs at
    DEBUG, bitsandbytes warns about GPU kernels on CPU) and draw weight-loading bars; keep
    warnings and errors only, unless --debug."""
    level = logging.DEBUG if debug else logging.WARNING
    if not logging.root.handlers:  # a host that configured logging keeps its own setup
        handler = logging.StreamHandler()
        handler.setLevel(level)  # filters loggers that set their own lower level (bm25s)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.root.addHandler(handler)
        logging.root.setLevel(level)
    if not debug:
        # deprecation notices inside transformers/trl/peft are for us, not for the user
        warnings.filterwarnings("ignore", category=FutureWarning)
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    _quiet_libraries(debug)
    try:
        cli.main(args=args, prog_name="deescalwild", standalone_mode=False)
    except click.exceptions.Abort:  # Ctrl-C; outputs are written atomically, so none is half
        click.echo("interrupted; no output was left half-written", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except DeescalwildError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        return 1
    except OSError as e:  # an output path that cannot be written, a full disk, ...
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"error: {where}{e.strerror or e}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
