"""Tiny, randomly initialised chat models of real architectures, built offline in about a second.

The `hf` responder and the fine-tuning code must be tested on the real loading path
(`from_pretrained` on a folder with config, weights, tokenizer and chat template) without a
download. A 2-layer, 64-wide model of the real class with a byte-level BPE tokenizer trained here
is exactly that: same code path as Qwen2.5 / Llama / Gemma 2, only small and meaningless.
Kept as one clean function so the CLI can expose it later (`deescalwild model init-tiny`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ARCHS", "build_tiny_model", "sample_texts"]

# ChatML, as in Qwen2.5-Instruct (its default system prompt left out: the responder sends one)
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Gemma 2's template, verbatim in behaviour: no system role (it raises), strict alternation,
# the assistant is called "model".
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# arch -> (special tokens in id order, bos, eos tokens (first = main), pad, chat template)
_TOKENS: dict[str, tuple[list[str], str | None, list[str], str, str]] = {
    "qwen2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None,
              ["<|im_end|>", "<|endoftext|>"], "<|endoftext|>", CHATML_TEMPLATE),
    "llama": (["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"],
              "<|begin_of_text|>", ["<|im_end|>", "<|end_of_text|>"], "<|end_of_text|>",
              CHATML_TEMPLATE),
    "gemma2": (["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>",
               ["<eos>", "<end_of_turn>"], "<pad>", GEMMA_TEMPLATE),
}
ARCHS = tuple(_TOKENS)


def sample_texts(limit: int = 400) -> list[str]:
    """Up to `limit` utterances of the shipped sample corpus (read with `csv`, no importer): real-
    shaped English speech to train the tokenizer on."""
    from deescalwild.corpus.sample import sample_path

    texts: list[str] = []
    for path in sorted(sample_path().rglob("*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            texts.extend(row["transcript"] for row in csv.DictReader(f) if row.get("transcript"))
        if len(texts) >= limit:
            break
    return texts[:limit]


def _train_tokenizer(texts: Iterable[str], specials: list[str], vocab_size: int):
    """A byte-level BPE (the GPT-2/Qwen scheme: any text round-trips) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _config(arch: str, vocab: int, bos: int | None, eos: list[int], pad: int):
    """The architecture's real config class, shrunk: 2 layers, hidden 64, 4 heads (2 KV).
    Embeddings are untied: tied random embeddings make greedy decoding echo the last prompt
    token (a newline), i.e. an empty reply, and with the usual init (0.02) every prompt gets
    the same reply; both would hide real bugs (padding, masks, prompts) in tests."""
    import transformers

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                  bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, initializer_range=0.1)
    if arch == "qwen2":
        return transformers.Qwen2Config(**common, tie_word_embeddings=False)
    if arch == "llama":
        return transformers.LlamaConfig(**common, tie_word_embeddings=False)
    return transformers.Gemma2Config(**common, tie_word_embeddings=False, head_dim=16,
                                     query_pre_attn_scalar=16, sliding_window=256)


def build_tiny_model(out_dir: str | Path, arch: str = "qwen2", texts: Iterable[str] | None = None,
                     seed: int = 0, vocab_size: int = 800) -> Path:
    """Write a random `arch` chat model (config, safetensors weights, generation config,
    tokenizer with special tokens and chat template) to `out_dir` and return it. Loadable with
    `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained(out_dir)`; same `seed` and texts ->
    same files."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    if arch not in _TOKENS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    specials, bos, eos, pad, template = _TOKENS[arch]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    raw = _train_tokenizer(list(texts) if texts is not None else sample_texts(), specials,
                           vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=bos, eos_token=eos[0], pad_token=pad,
        additional_special_tokens=[t for t in specials if t not in {bos, eos[0], pad}],
        chat_template=template, model_max_length=4096)
    ids = {t: raw.token_to_id(t) for t in specials}
    eos_ids = [ids[t] for t in eos]
    bos_id = ids[bos] if bos else None

    torch.manual_seed(seed)
    config = _config(arch, raw.get_vocab_size(), bos_id, eos_ids, ids[pad])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_ids,
                                               pad_token_id=ids[pad])
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
