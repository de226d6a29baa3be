"""`deescalwild cards`, `simulate` and `serve`: thin wrappers over `sim.cards`, `sim.terminal`
and `sim.web.app`. Nothing heavy is imported until a verb runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

DEFAULT_DB = "deescalwild-sim.db"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

cards_option = click.option(
    "--cards", "cards_dirs", multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Folder (or file) of your own scenario cards, added to the shipped ones; repeatable.")


def _sim_options(f):
    """The options every verb that plays sessions shares."""
    f = click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of sampling responders (turn i uses seed + i).")(f)
    f = click.option("--train", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Corpus JSONL whose kept scenarios `retrieval` answers from "
                          "(default: the shipped sample corpus).")(f)
    f = click.option("--analyser", default="rules", show_default=True,
                     help="Tactics analyser: `rules` (transparent, documented) or "
                          "`judge:SPEC` (an LLM judge through any responder spec).")(f)
    f = click.option("-r", "--responder", default="retrieval", show_default=True,
                     help="Who plays the civilian: any responder spec "
                          "(`deescalwild responders list`).")(f)
    f = cards_option(f)
    return f


@click.group("cards")
def cards_group() -> None:
    """Scenario cards: the calls a trainee can practise (docs/scenario-cards.md)."""


@cards_group.command("list")
@cards_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per card.")
def cards_list(cards_dirs: tuple[Path, ...], as_json: bool) -> None:
    """List the shipped cards and yours."""
    from rich.console import Console
    from rich.table import Table

    from deescalwild.sim.cards import CardLibrary

    library = CardLibrary.load(list(cards_dirs))
    if as_json:
        for card in library:
            click.echo(json.dumps(card.summary()))
        return
    table = Table(box=None)
    table.add_column("id", no_wrap=True)
    table.add_column("call type", no_wrap=True)
    table.add_column("civilian")
    table.add_column("start", justify="right")
    table.add_column("title")
    for card in library:
        p = card.persona
        mark = " (yours, replaces the built-in)" if card.id in library.overrides else ""
        table.add_row(card.id + mark, card.call_type, f"{p.name}, {p.age}",
                      str(card.agitation_start), card.title)
    Console().print(table)


@cards_group.command("show")
@click.argument("card_id")
@cards_option
def cards_show(card_id: str, cards_dirs: tuple[Path, ...]) -> None:
    """Print one card as YAML, and the scene text the civilian's responder receives."""
    import yaml

    from deescalwild.sim.cards import CardLibrary

    card = CardLibrary.load(list(cards_dirs)).get(card_id)
    click.echo(yaml.safe_dump(card.model_dump(mode="json", exclude_none=True),
                              sort_keys=False, allow_unicode=True, width=96).rstrip())
    click.echo("\n# scene text given to the responder:")
    click.echo("\n".join(f"# {line}" for line in card.context().splitlines()))


@cards_group.command("validate")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
def cards_validate(paths: tuple[Path, ...]) -> None:
    """Check card files or folders: every problem with its file, line and field."""
    from deescalwild.sim.cards import validate

    problems = validate(list(paths))
    for p in problems:
        click.echo(f"error: {p}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo("ok")


@click.command("simulate")
@click.option("--card", "card_id", required=True, help="Card id (`deescalwild cards list`).")
@_sim_options
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_DB,
              show_default=True, help="SQLite file the session is kept in (the same one "
              "`serve` shows in its history).")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("sim-reports"), show_default=True,
              help="Where the after-action report is written (a folder per session).")
def simulate_cmd(card_id: str, cards_dirs: tuple[Path, ...], responder: str, analyser: str,
                 train: Path | None, seed: int, db: Path, report_dir: Path) -> None:
    """Play a session in the terminal; /end (or Ctrl-D) ends it and writes the report."""
    from deescalwild.sim.engine import open_simulator
    from deescalwild.sim.terminal import run_terminal

    sim = open_simulator(responder=responder, analyser=analyser, cards=cards_dirs, db=db,
                         train=train, seed=seed)
    try:
        sim.cards.get(card_id)  # an unknown id fails before anything is shown
        run_terminal(sim, card_id, report_dir=report_dir)
    finally:
        sim.close()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@_sim_options
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_DB,
              show_default=True, help="SQLite file sessions, turns and reports are kept in.")
@click.option("--token", envvar="DEESCALWILD_TOKEN", default=None,
              help="Shared secret every request must carry (Authorization: Bearer T, or open "
                   "/?token=T once in the browser). Also read from $DEESCALWILD_TOKEN.")
@click.option("--turns-per-minute", type=click.IntRange(min=1), default=30, show_default=True,
              help="Per-session rate limit.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Threads answering requests; 0: 2 for retrieval (CPU-bound: more threads "
                   "only contend), 40 for other responders.")
def serve_cmd(host: str, port: int, cards_dirs: tuple[Path, ...], responder: str,
              analyser: str, train: Path | None, seed: int, db: Path, token: str | None,
              turns_per_minute: int, workers: int) -> None:
    """The web simulator, its REST API and an OpenAI-compatible endpoint for VR clients."""
    from deescalwild.errors import DeescalwildError
    from deescalwild.sim.engine import open_simulator
    from deescalwild.sim.web.app import Limits, serve

    if host not in LOCAL_HOSTS and not token:
        raise DeescalwildError(f"--host {host} exposes the simulator beyond this machine; "
                               "pass --token (or set DEESCALWILD_TOKEN) so every request must "
                               "carry it")
    sim = open_simulator(responder=responder, analyser=analyser, cards=cards_dirs, db=db,
                         train=train, seed=seed)
    click.echo(f"deescalwild simulator: http://{host}:{port}/  ({len(sim.cards)} cards, "
               f"responder {responder}, sessions in {os.fspath(db)})", err=True)
    try:
        serve(sim, host=host, port=port, token=token,
              limits=Limits(turns_per_minute=turns_per_minute, workers=workers))
    finally:
        sim.close()
