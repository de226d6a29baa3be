"""`deescalwild train`: LoRA / QLoRA fine-tuning of a chat model to play the civilian, with TRL.

TRL's `SFTTrainer` does the training (its padding-free packing, PEFT wiring, checkpoints and
resume); this module decides the settings and prepares the data. Examples arrive tokenized with
our own loss mask (`encode.py`: exactly the civilian's replies and their end-of-turn token), so
TRL builds the labels from `assistant_masks` for any family's template. A run folder holds:

    adapter_config.json, adapter_model.safetensors, tokenizer files   (`hf:RUN` loads it)
    run.json      the run card: data hash, preset, settings, versions, commit, speed, memory
    loss.png      train and dev loss curves
    train_config.json, checkpoints/checkpoint-N/   (for `--resume`)

`run.json` is written last: a folder without it is an unfinished run.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deescalwild.atomic import atomic_write
from deescalwild.bench.cases import file_sha256
from deescalwild.errors import DeescalwildError
from deescalwild.provenance import git_commit, versions
from deescalwild.responders.hf import model_ref
from deescalwild.train.encode import encode, probe
from deescalwild.train.presets import Preset
from deescalwild.train.sft import exchanges, read_sft, windowed

log = logging.getLogger(__name__)

RUN_SCHEMA = "deescalwild.run/1"
_CONFIG = "train_config.json"
_BYTES_PER_PARAM = {"4bit": 0.56, "8bit": 1.06, "bf16": 2.0, "fp16": 2.0, "fp32": 4.0}


@dataclass
class Plan:
    """What the settings resolve to on this machine."""

    device: str
    precision: str  # bf16 | fp16 | fp32
    quant: str  # 4bit | 8bit | none
    gradient_checkpointing: bool


def plan(preset: Preset) -> Plan:
    import torch

    t = preset.train
    cuda = torch.cuda.is_available()
    precision = t.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise DeescalwildError("train.precision = fp16 needs a CUDA device; use bf16 or fp32")
    quant = t.quant
    if quant == "auto":
        # QLoRA on CUDA where bitsandbytes runs; on CPU memory is rarely what limits a run, so
        # plain LoRA there (bitsandbytes is not even imported)
        quant = "4bit" if cuda and _bitsandbytes() else "none"
    elif quant in ("4bit", "8bit") and not _bitsandbytes():
        raise DeescalwildError(f"train.quant = {quant} needs bitsandbytes: "
                               "pip install 'deescalwild[finetune]'")
    gc = t.gradient_checkpointing
    return Plan(device="cuda" if cuda else "cpu", precision=precision, quant=quant,
                gradient_checkpointing=cuda if gc == "auto" else gc == "true")


def _bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # missing, or a build that cannot load on this machine
        return False
    return True


# --- data -------------------------------------------------------------------------------------
@dataclass
class Prepared:
    train: list[dict[str, list[int]]]
    dev: list[dict[str, list[int]]]
    rewindowed: int  # examples re-cut because the model's tokenizer counted more than max_length
    truncated: int  # single exchanges longer than max_length, cut at its end
    train_tokens: int
    target_tokens: int


def prepare(records: list[dict], tokenizer: Any, system_role: bool, max_length: int
            ) -> tuple[list[dict[str, list[int]]], int, int]:
    """Tokenized examples with loss masks; an example longer than `max_length` is re-cut into
    windows by exact token counts (the same rule as `sft`), so nothing is thrown away."""
    out: list[dict[str, list[int]]] = []
    rewindowed = truncated = 0
    for rec in records:
        enc = encode(tokenizer, rec["messages"], system_role)
        if len(enc.input_ids) <= max_length:
            out.append({"input_ids": enc.input_ids, "assistant_masks": enc.assistant_masks})
            continue
        rewindowed += 1
        msgs = rec["messages"]
        system, body = (msgs[0]["content"], msgs[1:]) if msgs[0]["role"] == "system" \
            else ("", msgs)
        pairs = exchanges(body)
        ends = enc.message_ends  # token ends of the rendered messages (system first, if own)
        offset = len(ends) - len(body)
        system_tokens = ends[0] if offset else \
            len(tokenizer(system, add_special_tokens=False)["input_ids"]) + 4
        starts = [ends[offset + 2 * k - 1] if k else (ends[0] if offset else 0)
                  for k in range(len(pairs))]
        costs = [ends[offset + 2 * k + 1] - starts[k] for k in range(len(pairs))]
        if not offset:  # folded: the first exchange carries the system text, every window will
            costs[0] -= system_tokens
        budget = max(1, max_length - system_tokens)
        for _, part in windowed(system, pairs, costs, budget, budget // 4):
            sub = encode(tokenizer, part if system else part[1:], system_role)
            if len(sub.input_ids) > max_length:
                truncated += 1
                sub.input_ids = sub.input_ids[:max_length]
                sub.assistant_masks = sub.assistant_masks[:max_length]
            if any(sub.assistant_masks):
                out.append({"input_ids": sub.input_ids, "assistant_masks": sub.assistant_masks})
    return out, rewindowed, truncated


def prepare_data(data: Path, tokenizer: Any, system_role: bool, max_length: int) -> Prepared:
    records = read_sft(data)
    train_recs = [r for r in records if r.get("split") in ("train", None)]
    dev_recs = [r for r in records if r.get("split") == "dev"]
    if not train_recs:
        raise DeescalwildError(f"{data}: no examples of the train split")
    train, rw1, tr1 = prepare(train_recs, tokenizer, system_role, max_length)
    dev, rw2, tr2 = prepare(dev_recs, tokenizer, system_role, max_length)
    if not any(any(x["assistant_masks"]) for x in train):
        raise DeescalwildError(f"{data}: no assistant (civilian) tokens to train on")
    return Prepared(train, dev, rw1 + rw2, tr1 + tr2,
                    train_tokens=sum(len(x["input_ids"]) for x in train),
                    target_tokens=sum(sum(x["assistant_masks"]) for x in train))


# --- run folder -------------------------------------------------------------------------------
def last_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint: the trainer writes `trainer_state.json` last, so a folder
    whose state file is missing or unreadable was cut short by a kill and is skipped."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return None
    found = []
    for p in folder.glob("checkpoint-*"):
        try:
            step = int(p.name.rsplit("-", 1)[1])
            json.loads((p / "trainer_state.json").read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue
        if (p / "adapter_model.safetensors").is_file() and (p / "optimizer.pt").is_file():
            found.append((step, p))
    return max(found)[1] if found else None


def _check_run_folder(out: Path, config: dict[str, Any], resume: bool) -> Path | None:
    """Refuse to mix runs: a finished run is never overwritten, an unfinished one is continued
    only with `--resume` and the same settings and data."""
    saved_path = out / _CONFIG
    if (out / "run.json").is_file():
        raise DeescalwildError(f"{out} holds a finished run (run.json); choose another -o")
    if not saved_path.is_file():
        if resume:
            raise DeescalwildError(f"--resume: {out} has no unfinished run to continue")
        return None
    if not resume:
        raise DeescalwildError(f"{out} holds an unfinished run; add --resume to continue it, "
                               "or choose another -o")
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if diff:
        raise DeescalwildError(f"--resume: {out} was started with different {', '.join(diff)}; "
                               "resume with the same settings and data, or choose another -o")
    return last_checkpoint(out)


def _memory_check(preset: Preset, p: Plan) -> None:
    """Refuse, with a suggestion, settings whose weights alone cannot fit (before loading)."""
    import torch

    params = _param_count(preset.model)
    if params is None:
        return
    per = _BYTES_PER_PARAM["4bit" if p.quant == "4bit" else "8bit" if p.quant == "8bit"
                           else p.precision]
    need = params * per * 1.2  # weights, LoRA and optimizer states, a margin for buffers
    have = torch.cuda.mem_get_info()[0] if p.device == "cuda" else _available_ram()
    if have and need > have:
        tips = []
        if p.quant != "4bit":
            tips.append("--set train.quant=4bit (QLoRA)")
        tips += ["a smaller model", "--set train.batch_size=1 with a larger grad_accum",
                 "--set train.max_length=1024"]
        raise DeescalwildError(f"not enough {'GPU ' if p.device == 'cuda' else ''}memory: "
                               f"{params / 1e9:.2f}B parameters need about {need / 2**30:.1f} GiB "
                               f"as {p.quant if p.quant != 'none' else p.precision}, "
                               f"{have / 2**30:.1f} GiB free; try {', or '.join(tips)}")


def _param_count(model: str) -> int | None:
    try:
        import torch
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(model)
        with init_empty_weights():
            m = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        return sum(t.numel() for t in m.parameters())
    except Exception:  # an unknown architecture: the real load will say what is wrong
        return None


def _available_ram() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _oom_message(p: Plan, preset: Preset) -> str:
    t = preset.train
    tips = [f"--set train.batch_size={max(1, t.batch_size // 2)} "
            f"--set train.grad_accum={t.grad_accum * 2}",
            f"--set train.max_length={max(256, t.max_length // 2)}"]
    if not p.gradient_checkpointing:
        tips.append("--set train.gradient_checkpointing=true")
    if p.quant != "4bit":
        tips.append("--set train.quant=4bit")
    return (f"out of memory while training on {p.device} (batch {t.batch_size} x "
            f"{t.max_length} tokens); try {' or '.join(tips)}, then --resume")


# --- the run ----------------------------------------------------------------------------------
def run_config(preset: Preset, data: Path) -> dict[str, Any]:
    """What makes a run what it is: compared on --resume, recorded in the run card."""
    return {"preset": preset.to_dict(), "data": str(data.resolve()),
            "data_sha256": file_sha256(data)}


def train(preset: Preset, data: str | Path, out: str | Path, resume: bool = False,
          progress: bool = True, callbacks: list[Any] | None = None,
          echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune `preset.model` on the SFT file `data` into the run folder `out`; returns the
    run card (also written to `out/run.json`)."""
    import torch

    data, out = Path(data), Path(out)
    t, lora = preset.train, preset.lora
    config = run_config(preset, data)
    checkpoint = _check_run_folder(out, config, resume)
    p = plan(preset)
    _memory_check(preset, p)

    _quiet(progress)
    tokenizer = _load_tokenizer(preset.model)
    system_role = probe(tokenizer, preset.system_role)
    prepared = prepare_data(data, tokenizer, system_role, t.max_length)
    echo(f"{len(prepared.train)} train / {len(prepared.dev)} dev examples, "
         f"{prepared.train_tokens:,} tokens ({prepared.target_tokens:,} in the loss); "
         f"{p.device}, {p.quant if p.quant != 'none' else 'LoRA'}, {p.precision}")

    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / _CONFIG) as fh:
        json.dump(config, fh, indent=2)

    model = _load_model(preset, p)
    _check_targets(model, lora.target_modules, preset)
    trainer = _trainer(preset, p, model, tokenizer, prepared, out, progress, callbacks or [])
    if checkpoint is not None:
        echo(f"resuming from {checkpoint.name}")
    elif resume:
        echo("no complete checkpoint yet: starting from step 0")
    if p.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except torch.OutOfMemoryError as e:
        raise DeescalwildError(_oom_message(p, preset)) from e
    except MemoryError as e:
        raise DeescalwildError(_oom_message(p, preset)) from e
    wall = time.perf_counter() - start

    final_eval = trainer.evaluate() if prepared.dev else {}
    _save_final(trainer, tokenizer, out)
    history = trainer.state.log_history
    _loss_plot(history, out / "loss.png")
    tokens_seen = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    peak = (torch.cuda.max_memory_allocated() if p.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    card = {
        "schema": RUN_SCHEMA,
        **config,
        "resolved": {"device": p.device, "precision": p.precision, "quant": p.quant,
                     "gradient_checkpointing": p.gradient_checkpointing,
                     "system_role": system_role, "packing": t.packing},
        "examples": {"train": len(prepared.train), "dev": len(prepared.dev),
                     "rewindowed": prepared.rewindowed, "truncated": prepared.truncated,
                     "train_tokens": prepared.train_tokens,
                     "target_tokens": prepared.target_tokens},
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "resumed_from": checkpoint.name if checkpoint else None,
        "train_loss": result.training_loss,
        "eval_loss": final_eval.get("eval_loss"),
        "wall_time_s": round(wall, 3),
        "tokens_seen": tokens_seen,
        "tokens_per_s": round(tokens_seen / wall, 1) if wall and tokens_seen else None,
        "peak_memory_bytes": int(peak),
        "peak_memory_kind": "cuda_max_allocated" if p.device == "cuda" else "process_max_rss",
        "log_history": history,
        "seed": t.seed,
        "versions": versions("deescalwild", "torch", "transformers", "trl", "peft",
                             "bitsandbytes", "accelerate", "datasets"),
        "python": sys.version.split()[0],
        "git_commit": git_commit(),
    }
    with atomic_write(out / "run.json") as fh:
        json.dump(card, fh, indent=2, default=str)
    return card


def _quiet(progress: bool) -> None:
    """Dataset-map bars only on a terminal."""
    if not progress:
        import datasets

        datasets.disable_progress_bars()


def _load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_ref(model))
    except (OSError, ValueError) as e:
        raise DeescalwildError(f"cannot load the tokenizer of {model!r}: "
                               f"{str(e).strip().splitlines()[0]}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_model(preset: Preset, p: Plan) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[p.precision]
    kwargs: dict[str, Any] = {"dtype": dtype,
                              "attn_implementation": preset.train.attn_implementation}
    if p.quant in ("4bit", "8bit"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype if dtype != torch.float32
                               else torch.bfloat16)
            if p.quant == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
        kwargs["device_map"] = {"": 0 if p.device == "cuda" else "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_ref(preset.model), **kwargs)
    except torch.OutOfMemoryError as e:
        raise DeescalwildError(f"out of GPU memory loading {preset.model}; try "
                               "--set train.quant=4bit or a smaller model") from e
    except (OSError, ValueError, ImportError) as e:
        raise DeescalwildError(f"cannot load model {preset.model!r}: "
                               f"{str(e).strip().splitlines()[0]}") from e
    model.config.use_cache = False  # needed for gradient checkpointing, useless in training
    return model


def _check_targets(model: Any, targets: list[str], preset: Preset) -> None:
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) or "Linear" in type(m).__name__}
    missing = [t for t in targets if t not in names]
    if missing:
        raise DeescalwildError(f"preset {preset.name}: lora.target_modules {missing} not in "
                               f"{preset.model} (its linear layers: {', '.join(sorted(names))})")


def _trainer(preset: Preset, p: Plan, model: Any, tokenizer: Any, prepared: Prepared, out: Path,
             progress: bool, callbacks: list[Any]) -> Any:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    t, lora = preset.train, preset.lora
    has_dev = bool(prepared.dev)
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_dev else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        bf16=p.precision == "bf16",
        fp16=p.precision == "fp16",
        use_cpu=p.device == "cpu",
        gradient_checkpointing=p.gradient_checkpointing,
        max_length=t.max_length,
        packing=t.packing,
        packing_strategy="bfd",
        report_to=[],
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        dataset_num_proc=None,
    )
    lora_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules), bias="none",
                             task_type="CAUSAL_LM")
    return SFTTrainer(model=model, args=args, processing_class=tokenizer,
                      train_dataset=Dataset.from_list(prepared.train),
                      eval_dataset=Dataset.from_list(prepared.dev) if has_dev else None,
                      peft_config=lora_config, callbacks=callbacks)


def _save_final(trainer: Any, tokenizer: Any, out: Path) -> None:
    """The adapter and tokenizer, written beside the run folder and moved in file by file, so
    a kill leaves either the old state or the new file, never half a file."""
    tmp = out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    for f in tmp.iterdir():
        os.replace(f, out / f.name)
    tmp.rmdir()


def _loss_plot(history: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed: no loss.png")
        return
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    dev = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train", color="#1f77b4")
    if dev:
        ax.plot(*zip(*dev), "o-", label="dev", color="#d62728")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (civilian tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
