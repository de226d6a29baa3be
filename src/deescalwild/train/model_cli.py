"""`deescalwild model`: build a tiny random chat model (tests, CPU smoke runs), inspect a folder.

Thin: each verb calls one function of `deescalwild.train.tiny` and prints; torch and transformers
are imported only when a verb runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from deescalwild.train.tiny import ARCHS


@click.group()
def model() -> None:
    """Local models: build tiny random ones of real architectures, inspect a model folder."""


@model.command("init-tiny")
@click.option("--arch", type=click.Choice(ARCHS), default="qwen2", show_default=True,
              help="Architecture; tokenizer and chat template follow that family's instruct model.")
@click.option("-o", "--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Weight initialisation seed.")
@click.option("--vocab-size", type=click.IntRange(min=1), default=800, show_default=True,
              help="BPE vocabulary size (trained on the shipped sample corpus).")
def init_tiny(arch: str, out_dir: Path, seed: int, vocab_size: int) -> None:
    """Write a 2-layer, 64-wide random chat model of ARCH to a folder (about a second, offline)."""
    from deescalwild.train.tiny import build_tiny_model, model_info

    path = build_tiny_model(out_dir, arch, seed=seed, vocab_size=vocab_size)
    info = model_info(path)
    click.echo(f"{path}\t{info['parameters']:,} parameters\t{arch}")


@model.command("info")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object.")
def info_cmd(folder: Path, as_json: bool) -> None:
    """Architecture, parameters, vocabulary and chat template of a local model FOLDER."""
    from deescalwild.train.tiny import model_info

    info = model_info(folder)
    if as_json:
        click.echo(json.dumps(info))
        return
    yes = {True: "yes", False: "no"}
    params = "unknown" if info["parameters"] is None else f"{info['parameters']:,}"
    archs = ", ".join(info["architectures"]) or "?"
    click.echo(f"arch: {info['arch']} ({archs})")
    click.echo(f"parameters: {params}")
    click.echo(f"vocab: {info['vocab']:,}")
    click.echo(f"chat template: {yes[info['chat_template']]}")
    click.echo(f"system role: {yes[info['system_role']]}")
    if info["tiny"]:
        t = info["tiny"]
        click.echo(f"tiny: {t.get('family')} (seed {t.get('seed')})")
