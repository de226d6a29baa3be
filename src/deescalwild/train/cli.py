"""`deescalwild sft | train | export`: from a split corpus to a fine-tuned civilian on the edge."""

from __future__ import annotations

import json
from pathlib import Path

import click

_in_file = click.Path(exists=True, dir_okay=False, path_type=Path)
_out_file = click.Path(dir_okay=False, path_type=Path)


def _console():
    from rich.console import Console

    return Console(stderr=True)


@click.command("sft")
@click.argument("split_file", type=_in_file)
@click.option("-o", "--output", type=_out_file, required=True,
              help="SFT examples to write (JSON Lines, deescalwild.sft/1); replaced atomically.")
@click.option("--max-tokens", type=click.IntRange(min=64), default=2048, show_default=True,
              help="Token budget of one example; longer conversations become overlapping "
                   "windows.")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="Tokens of already-trained exchanges repeated as context at the start of the "
                   "next window (default: a quarter of the budget).")
@click.option("--splits", default="train,dev", show_default=True,
              help="Comma-separated splits to write (never test: that is the benchmark's).")
@click.option("--tokenizer", "tokenizer_ref",
              help="Count tokens with this tokenizer (path or hub id) instead of estimating "
                   "from characters.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def sft_cmd(split_file: Path, output: Path, max_tokens: int, overlap: int | None, splits: str,
            tokenizer_ref: str | None, as_json: bool) -> None:
    """Chat examples for fine-tuning: officer turns `user`, civilian turns `assistant`.

    Every civilian reply is a training target exactly once; long encounters are cut into
    overlapping windows instead of truncated (docs/training.md).
    """
    from deescalwild.train.sft import estimate_tokens, make_sft, tokenizer_counter

    count = estimate_tokens
    if tokenizer_ref:
        from transformers import AutoTokenizer

        count = tokenizer_counter(AutoTokenizer.from_pretrained(tokenizer_ref))
    summary = make_sft(split_file, output, [s.strip() for s in splits.split(",") if s.strip()],
                       max_tokens=max_tokens, count=count, overlap=overlap)
    d = summary.to_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    per = ", ".join(f"{k} {v:,} examples / {d['targets'].get(k, 0):,} replies "
                    f"({d['scenarios'].get(k, 0)} scenarios)" for k, v in d["examples"].items())
    click.echo(f"wrote {output}: {per}")
    click.echo(f"{d['windowed_scenarios']} scenarios cut into windows; {d['oversize']} "
               f"exchanges over the budget alone; left out: {d['excluded']} excluded by "
               f"curation, {d['no_exchange']} without a civilian reply, "
               f"{d['leading_civilian']} opening civilian lines with nothing to answer")


@click.command("train")
@click.option("--preset", help="Model family preset (see --list-presets) or a preset .toml file.")
@click.option("--data", type=_in_file, help="SFT examples from `deescalwild sft`.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (adapter, run.json, loss.png, checkpoints).")
@click.option("--model", help="Model id or path replacing the preset's (its settings are kept).")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option("--epochs", type=float, help="Training epochs (default: the preset's).")
@click.option("--seed", type=int, help="Seed for initialisation, data order and dropout.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Change any preset value, e.g. --set lora.r=8 --set train.learning_rate=1e-4.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last "
              "complete checkpoint (same settings and data required).")
@click.option("--list-presets", is_flag=True, help="List the presets and exit.")
@click.pass_context
def train_cmd(ctx: click.Context, preset: str | None, data: Path | None, output: Path | None,
              model: str | None, max_steps: int | None, epochs: float | None, seed: int | None,
              sets: tuple[str, ...], resume: bool, list_presets: bool) -> None:
    """Fine-tune a chat model with LoRA (QLoRA on CUDA) to play the civilian (TRL SFTTrainer).

    The loss covers the civilian's replies only. Interrupt at any time: --resume continues from
    the last checkpoint with the same result as an uninterrupted run.
    """
    from deescalwild.train.presets import load_preset, parse_set, preset_names

    if list_presets:
        for name in preset_names():
            p = load_preset(name)
            click.echo(f"{name:14} {p.model:40} {p.arch}")
        return
    missing = [f"--{n}" for n, v in (("preset", preset), ("data", data), ("output", output))
               if v is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    overrides = parse_set(list(sets))
    for key, value in (("train.max_steps", max_steps), ("train.epochs", epochs),
                       ("train.seed", seed)):
        if value is not None:
            overrides[key] = value
    chosen = load_preset(preset, model=model, overrides=overrides)

    from deescalwild.train.trainer import train

    console = _console()
    card = train(chosen, data, output, resume=resume, progress=console.is_terminal,
                 echo=lambda s: console.print(s, markup=False, highlight=False))
    ev = card["eval_loss"]
    click.echo(f"{output}: {card['steps']} steps, train loss {card['train_loss']:.4f}"
               + (f", dev loss {ev:.4f}" if ev is not None else "")
               + f", {card['tokens_per_s'] or 0:,.0f} tokens/s, "
               f"{card['wall_time_s']:.1f} s; use it as --responder hf:{output}")


@click.group("export")
def export_group() -> None:
    """A fine-tuning run as a standalone model: merged weights, or a GGUF for llama.cpp."""


@export_group.command("merge")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the merged model (must not exist or be empty).")
@click.option("--dtype", type=click.Choice(["bfloat16", "float16", "float32"]),
              default="bfloat16", show_default=True, help="Weight dtype of the merged model.")
def merge_cmd(run: Path, output: Path, dtype: str) -> None:
    """Merge the run's LoRA adapter into its base model's weights."""
    from deescalwild.train.export import merge

    facts = merge(run, output, dtype=dtype)
    click.echo(f"wrote {output}: {facts['parameters']:,} parameters, {dtype}, "
               f"{facts['seconds']:.1f} s; use it as --responder hf:{output}")


@export_group.command("gguf")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=_out_file, required=True, help="GGUF file to write.")
@click.option("--quant", type=click.Choice(["q4_k_m", "q8_0", "f16", "f32"]),
              default="q4_k_m", show_default=True, help="llama.cpp weight type.")
@click.option("--pre-tokenizer", help="Override llama.cpp's pre-tokenizer detection (for "
              "tokenizers its converter does not know).")
@click.option("--converter", type=click.Path(exists=True, path_type=Path),
              help="llama.cpp's convert_hf_to_gguf.py or a llama.cpp checkout (default: "
                   "$LLAMA_CPP_CONVERT, else the one matching the installed llama-cpp-python, "
                   "fetched once; docs/training.md).")
def gguf_cmd(source: Path, output: Path, quant: str, pre_tokenizer: str | None,
             converter: Path | None) -> None:
    """A GGUF for llama.cpp from a run (merged first) or a model folder."""
    from deescalwild.train.export import export_gguf

    merging = (source / "adapter_config.json").is_file()
    click.echo(f"{'merging the adapter, then ' if merging else ''}converting with llama.cpp "
               f"({quant}) ...", err=True)
    facts = export_gguf(source, output, quant=quant, pre_tokenizer=pre_tokenizer,
                        converter=converter)
    size = facts.get("size_bytes") or output.stat().st_size
    click.echo(f"wrote {output}: {quant}, {size / 2**20:,.1f} MiB; use it as "
               f"--responder gguf:{output}")
