"""Fine-tuning presets: one small TOML file per model family (`train/presets/*.toml`).

A preset names the model, its architecture family, and only what differs from the defaults
below (the values every family shares). `--model` swaps the model id or path and keeps the
rest; `--set section.key=value` changes any value. The resolved settings go into the run card.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from deescalwild.errors import DeescalwildError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ATTENTION_AND_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    """LoRA on every attention and MLP projection; r and alpha are the paper's values."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(ATTENTION_AND_MLP))


@dataclass
class TrainSettings:
    """Trainer settings. Effective batch = batch_size x grad_accum (16 sequences of <= 2,048
    tokens); 2e-4 with cosine decay is the usual QLoRA rate (Dettmers et al., 2023)."""

    learning_rate: float = 2e-4
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4
    grad_accum: int = 4
    max_length: int = 2048
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    quant: str = "auto"  # 4bit (QLoRA, NF4 double-quant) | 8bit | none | auto: 4bit when it works
    precision: str = "auto"  # bf16 | fp16 | fp32 | auto: bf16 where supported, else fp32
    packing: bool = True  # padding-free: sequences concatenated, kept apart by position ids
    attn_implementation: str = "sdpa"
    gradient_checkpointing: str = "auto"  # auto: on with CUDA (memory), off on CPU (speed)
    eval_steps: int = 50
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        choices = {"quant": ("auto", "4bit", "8bit", "none"),
                   "precision": ("auto", "bf16", "fp16", "fp32"),
                   "gradient_checkpointing": ("auto", "true", "false")}
        for name, allowed in choices.items():
            value = str(getattr(self, name)).lower()
            if value not in allowed:
                raise DeescalwildError(f"train.{name} = {getattr(self, name)!r}: expected one "
                                       f"of {', '.join(allowed)}")
            setattr(self, name, value)


@dataclass
class Preset:
    name: str
    model: str
    arch: str
    description: str = ""
    system_role: str | bool = "auto"
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _preset_dir():
    return resources.files("deescalwild.train") / "presets"


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise DeescalwildError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(known))}")
    return cls(**values)


def _description(text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return first[1:].strip() if first.startswith("#") else ""


def load_preset(name: str, model: str | None = None,
                overrides: dict[str, Any] | None = None) -> Preset:
    """The preset `name` (or a TOML file path), with `--model` and `--set` overrides applied."""
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        text, where = path.read_text(encoding="utf-8"), str(path)
    else:
        file = _preset_dir() / f"{name}.toml"
        if not file.is_file():
            raise DeescalwildError(f"unknown preset {name!r}; available: "
                                   f"{', '.join(preset_names())} (or a path to a .toml file)")
        text, where = file.read_text(encoding="utf-8"), f"preset {name}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DeescalwildError(f"{where}: not valid TOML: {e}") from e
    for key, value in (overrides or {}).items():
        section, _, leaf = key.rpartition(".")
        target = data.setdefault(section, {}) if section else data
        if not isinstance(target, dict):
            raise DeescalwildError(f"--set {key}: {section!r} is not a section")
        target[leaf] = value
    data = dict(data)
    lora = _build(LoraSettings, data.pop("lora", {}), f"{where} [lora]")
    train = _build(TrainSettings, data.pop("train", {}), f"{where} [train]")
    for required in ("name", "model", "arch"):
        if required not in data:
            raise DeescalwildError(f"{where}: missing {required!r}")
    preset = _build(Preset, {**data, "lora": lora, "train": train}, where)
    preset.description = preset.description or _description(text)
    if model:
        preset.model = model
    return preset


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set train.learning_rate=1e-4 --set lora.r=8` -> {"train.learning_rate": 0.0001, ...},
    values read as TOML (numbers, booleans, ["lists"]) or else taken as strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise DeescalwildError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. "
                                   "train.learning_rate=1e-4")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key.strip()] = value
    return out
