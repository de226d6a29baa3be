"""`deescalwild export merge|gguf`: a fine-tuning run as a standalone model for serving and the
edge.

Merging loads the base model in full precision (never the 4-bit weights QLoRA trained on: a
merge into quantized weights would round the adapter away), applies the adapter and folds it in.
The GGUF export merges into a temporary folder and hands it to llama.cpp's own converter and
quantizer (`gguf_export.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from deescalwild.errors import DeescalwildError
from deescalwild.responders.hf import is_adapter, resolve_model

MERGE_DTYPES = ("float32", "bfloat16", "float16")


def merge(run: str | Path, out: str | Path, dtype: str = "bfloat16") -> dict[str, Any]:
    """Write the run's base model with its adapter merged in (weights, config, tokenizer with
    the chat template) to the folder `out`, atomically (a temporary sibling, then renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, out = Path(run), Path(out)
    if not is_adapter(run):
        raise DeescalwildError(f"{run}: not a fine-tuning run (no adapter_config.json)")
    if dtype not in MERGE_DTYPES:
        raise DeescalwildError(f"--dtype {dtype!r}: expected one of {', '.join(MERGE_DTYPES)}")
    if out.exists() and any(out.iterdir()):
        raise DeescalwildError(f"{out} exists and is not empty; choose another -o")
    base, adapter, tokenizer_ref = resolve_model(str(run), None)
    start = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as e:
        raise DeescalwildError(f"cannot load the base model {base!r} of {run}: "
                               f"{str(e).strip().splitlines()[0]}") from e
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        facts = {"run": str(run), "base_model": base, "dtype": dtype,
                 "parameters": sum(p.numel() for p in model.parameters()),
                 "seconds": round(time.perf_counter() - start, 2)}
        (tmp / "deescalwild_merge.json").write_text(json.dumps(facts, indent=2))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return facts


def export_gguf(source: str | Path, out: str | Path, quant: str = "q4_k_m",
                pre_tokenizer: str | None = None,
                converter: str | Path | None = None) -> dict[str, Any]:
    """A GGUF file from a run (merged first, in float32 into a temporary folder, so the
    converter quantizes from the exact merged weights) or from a full model folder."""
    from deescalwild.train import gguf_export

    source = Path(source)
    conv = Path(converter) if converter else None
    if not is_adapter(source):
        if not (source / "config.json").is_file():
            raise DeescalwildError(f"{source}: neither a fine-tuning run (adapter_config.json) "
                                   "nor a model folder (config.json)")
        return gguf_export.export_gguf(source, Path(out), quant=quant,
                                       pre_tokenizer=pre_tokenizer, converter=conv)
    with tempfile.TemporaryDirectory(prefix="deescalwild-merge-") as tmp:
        merged = Path(tmp) / "merged"
        facts = merge(source, merged, dtype="float32")
        result = gguf_export.export_gguf(merged, Path(out), quant=quant,
                                         pre_tokenizer=pre_tokenizer, converter=conv)
    return {**result, "merge": facts}
