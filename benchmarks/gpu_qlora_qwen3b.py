"""QLoRA on the exact Qwen2.5-3B-Instruct architecture, on a GPU: training speed, peak memory,
and the latency of a 128-token reply from the merged model and from its Q4_K_M GGUF.

    python benchmarks/gpu_qlora_qwen3b.py [--steps 20] [--replies 10] [--work DIR]
    python benchmarks/gpu_qlora_qwen3b.py --size tiny     # the same code paths on CPU, in ~1 min

No weights are downloaded: the model is randomly initialised from Qwen2.5-3B-Instruct's config
(36 layers, hidden 2048, 16 query / 2 KV heads, vocabulary 151,936, tied embeddings), so speed
and memory are the real model's, while the replies are noise. The tokenizer is a small BPE one
trained on the sample corpus with Qwen's ChatML template (the real one cannot be fetched
offline); a real tokenizer changes how many tokens a text takes, not the cost of a token.

Figures printed: training tokens/s (real tokens, not padding) and peak GPU memory, for QLoRA
(4-bit NF4 base, the preset default on CUDA) and, as the in-process baseline, bf16 LoRA; then the
p50/p95 wall time of a reply of exactly 128 new tokens (end-of-turn suppressed) for the merged
bf16 model through the `hf` responder's generation path and for the Q4_K_M GGUF through
llama.cpp (all layers offloaded when llama-cpp-python was built with CUDA, else on the CPU: the
line says which). Anchors: the paper reports 0.38 s per reply for fine-tuned Qwen2.5-3B;
Unsloth advertises 2x faster QLoRA than plain TRL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

QWEN25_3B = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                 num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                 max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=True, hidden_act="silu", use_sliding_window=False)
TINY = dict(QWEN25_3B, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=800)


def build_random(out: Path, size: str) -> tuple[Path, int]:
    """Random weights of the chosen architecture + the tiny model's tokenizer and template;
    returns the folder and the parameter count."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from deescalwild.train.tiny import build_tiny_model

    tok_dir = build_tiny_model(out.parent / "tokenizer-src", "qwen2")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    cfg = Qwen2Config(**(QWEN25_3B if size == "3b" else TINY), bos_token_id=None,
                      eos_token_id=eos, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(cfg).to(dtype)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out, n


def sft_data(work: Path, max_tokens: int) -> Path:
    from deescalwild.corpus.importer import import_to_file
    from deescalwild.corpus.sample import sample_path
    from deescalwild.curate.annotate import curate_file
    from deescalwild.curate.splits import split_file
    from deescalwild.train.sft import make_sft

    data = os.environ.get("DEESCALWILD_REAL_DATA")
    source = [data] if data and Path(data).is_dir() else [sample_path()]
    import_to_file(source, work / "corpus.jsonl")
    curate_file(work / "corpus.jsonl", work / "curated.jsonl")
    split_file(work / "curated.jsonl", work / "split.jsonl")
    make_sft(work / "split.jsonl", work / "sft.jsonl", max_tokens=max_tokens)
    return work / "sft.jsonl"


def train_once(model: Path, data: Path, out: Path, quant: str, steps: int, max_length: int):
    from deescalwild.train.presets import load_preset
    from deescalwild.train.trainer import train

    p = load_preset("qwen2.5-3b", model=str(model), overrides={
        "train.quant": quant, "train.max_steps": steps, "train.max_length": max_length,
        "train.save_steps": 10_000, "train.eval_steps": 10_000, "train.logging_steps": 5})
    return train(p, data, out, progress=False, echo=lambda s: print("  " + s))


def hf_latency(merged: Path, replies: int) -> list[float]:
    from deescalwild.responders.base import Request
    from deescalwild.responders.registry import load_responder

    r = load_responder(f"hf:{merged}?temperature=0&min_new_tokens=128&max_new_tokens=128"
                       "&batch_size=1")
    times = []
    for i in range(replies + 1):  # the first is warm-up
        reply = r.respond(Request(context="A traffic stop at night.", id=f"q{i}", history=[
            {"role": "user", "content": f"Sir, do you know why I stopped you? ({i})"}]))
        if reply.error:
            raise SystemExit(f"hf reply failed: {reply.error}")
        assert reply.tokens == 128, reply.tokens
        times.append(reply.latency_s)
    r.close()
    return times[1:]


def gguf_latency(path: Path, replies: int) -> tuple[list[float], bool]:
    import llama_cpp

    offload = bool(llama_cpp.llama_supports_gpu_offload())
    llm = llama_cpp.Llama(str(path), n_ctx=1024, n_gpu_layers=-1 if offload else 0,
                          n_threads=os.cpu_count(), seed=0, verbose=False)
    ban = {llm.token_eos(): -1e9}
    for t in ("<|im_end|>", "<|endoftext|>"):
        ids = llm.tokenize(t.encode(), add_bos=False, special=True)
        if len(ids) == 1:
            ban[ids[0]] = -1e9
    times = []
    for i in range(replies + 1):
        prompt = ("<|im_start|>system\nYou are the civilian.<|im_end|>\n<|im_start|>user\n"
                  f"Sir, do you know why I stopped you? ({i})<|im_end|>\n<|im_start|>assistant\n")
        t0 = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=128, temperature=0.0, logit_bias=ban)
        times.append(time.perf_counter() - t0)
        assert out["usage"]["completion_tokens"] == 128, out["usage"]
    return times[1:], offload


def _pct(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    return f"p50 {statistics.median(xs):.3f} s, p95 {p95:.3f} s ({len(xs)} replies)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["3b", "tiny"], default="3b")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--replies", type=int, default=10)
    ap.add_argument("--work", type=Path, help="keep the model files here (default: a temp dir)")
    ap.add_argument("--skip-lora-baseline", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from deescalwild.provenance import git_commit, versions
    from deescalwild.train.export import merge
    from deescalwild.train.gguf_export import export_gguf

    if args.size == "3b" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark is for a GPU (use --size tiny to check "
                         "its code paths on CPU)")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    libs = versions("transformers", "trl", "peft", "bitsandbytes", "llama_cpp_python")
    print(f"{gpu}; torch {torch.__version__}; {json.dumps(libs)}; commit {git_commit()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        model, n = build_random(work / "random-qwen2.5-3b", args.size)
        data = sft_data(work, args.max_length)
        print(f"random {args.size} model, {n / 1e9:.3f}B parameters, built in "
              f"{time.perf_counter() - t0:.0f} s")
        runs = [("QLoRA 4-bit" if torch.cuda.is_available() else "LoRA (CPU)", "auto")]
        if not args.skip_lora_baseline:
            runs.append(("LoRA bf16 (baseline)" if torch.cuda.is_available()
                         else "LoRA (CPU, again)", "none"))
        cards = {}
        for name, quant in runs:
            card = train_once(model, data, work / f"run-{quant}", quant, args.steps,
                              args.max_length)
            cards[name] = card
            print(f"{name}: {card['tokens_per_s']:,.0f} tokens/s, peak "
                  f"{card['peak_memory_bytes'] / 2**30:.2f} GiB ({card['peak_memory_kind']}), "
                  f"{card['steps']} steps in {card['wall_time_s']:.1f} s, resolved "
                  f"{card['resolved']}")
        if len(cards) == 2:
            (qa, qc), (la, lc) = cards.items()
            print(f"{qa} / {la} tokens/s ratio: {qc['tokens_per_s'] / lc['tokens_per_s']:.2f}")

        merged = work / "merged"
        t0 = time.perf_counter()
        merge(work / "run-auto", merged, dtype="bfloat16" if torch.cuda.is_available()
              else "float32")
        print(f"merged in {time.perf_counter() - t0:.0f} s")
        print(f"merged HF model, 128 new tokens: {_pct(hf_latency(merged, args.replies))}")

        gguf = work / "model-q4_k_m.gguf"
        t0 = time.perf_counter()
        facts = export_gguf(merged, gguf, quant="q4_k_m", pre_tokenizer="gpt-2")
        print(f"GGUF Q4_K_M {gguf.stat().st_size / 2**30:.2f} GiB in "
              f"{time.perf_counter() - t0:.0f} s ({facts.get('converter', '')})")
        times, offload = gguf_latency(gguf, args.replies)
        where = ("all layers on the GPU" if offload
                 else "CPU only: this llama-cpp-python was built without CUDA")
        print(f"GGUF Q4_K_M via llama.cpp ({where}), 128 new tokens: {_pct(times)}")


if __name__ == "__main__":
    sys.exit(main())
