"""Fine-tuning speed and memory on CPU: a tiny Qwen2 model on the embedded sample corpus.

    python benchmarks/train_speed.py [--steps 20] [--max-length 512]

Three settings are trained for the same number of steps on the same SFT file, each in a child
process (so its peak RSS is its own): padded batches (the baseline), padding-free packing (the
preset default), and QLoRA (4-bit NF4 base, bitsandbytes' CPU kernels). Tokens/s counts real
(non-padding) tokens, so the settings compare on the work that matters; the ratio to the
baseline run in the same invocation is the figure to trust on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys
from deescalwild.train.presets import load_preset
from deescalwild.train.trainer import train
p = load_preset("qwen2.5-3b", model={model!r}, overrides={overrides!r})
card = train(p, {data!r}, {out!r}, progress=False, echo=lambda s: None)
print(json.dumps({{k: card[k] for k in ("tokens_per_s", "tokens_seen", "wall_time_s",
                                          "peak_memory_bytes", "steps", "train_loss")}}))
"""

SETTINGS = {
    "padded (baseline)": {"train.packing": False, "train.quant": "none"},
    "padding-free packing": {"train.packing": True, "train.quant": "none"},
    "QLoRA 4-bit, packing": {"train.packing": True, "train.quant": "4bit"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from deescalwild.corpus.importer import import_to_file
    from deescalwild.corpus.sample import sample_path
    from deescalwild.curate.annotate import curate_file
    from deescalwild.curate.splits import split_file
    from deescalwild.train.sft import make_sft
    from deescalwild.train.tiny import build_tiny_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        import_to_file([sample_path()], t / "corpus.jsonl")
        curate_file(t / "corpus.jsonl", t / "curated.jsonl")
        split_file(t / "curated.jsonl", t / "split.jsonl")
        s = make_sft(t / "split.jsonl", t / "sft.jsonl", max_tokens=args.max_length)
        model = build_tiny_model(t / "tiny", "qwen2")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; tiny qwen2 "
              f"(hidden 64, 2 layers); {sum(s.examples.values())} SFT examples of <= "
              f"{args.max_length} tokens; {args.steps} steps of batch {args.batch_size}")
        base_tps = None
        print(f"{'setting':24} {'tokens/s':>10} {'ratio':>7} {'wall s':>8} {'peak RSS':>10} "
              f"{'loss':>7}")
        for i, (name, overrides) in enumerate(SETTINGS.items()):
            over = {**overrides, "train.max_steps": args.steps,
                    "train.batch_size": args.batch_size, "train.grad_accum": 1,
                    "train.max_length": args.max_length, "train.save_steps": 10_000,
                    "train.eval_steps": 10_000, "train.logging_steps": 10_000}
            code = CHILD.format(model=str(model), overrides=over, data=str(t / "sft.jsonl"),
                                out=str(t / f"run{i}"))
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{name:24} failed: {proc.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            tps = r["tokens_per_s"] or 0.0
            base_tps = base_tps or tps
            print(f"{name:24} {tps:>10,.0f} {tps / base_tps:>6.2f}x {r['wall_time_s']:>8.1f} "
                  f"{r['peak_memory_bytes'] / 2**20:>7,.0f} MiB {r['train_loss']:>7.3f}")


if __name__ == "__main__":
    main()
