"""Tiny, randomly initialised chat models of real architectures, built offline in about a second.

The `hf` responder and the fine-tuning code must be tested on the real loading path
(`from_pretrained` on a folder with config, weights, tokenizer and chat template) without a
download. A 2-layer, 64-wide model of the real class with a byte-level BPE tokenizer trained here
is exactly that: same code path as Qwen2.5 / Llama 3.2 / Gemma 2 / Granite 3.0 / Phi-4-mini /
Mistral v0.3, only small and meaningless.

Each family keeps its real special tokens and the behaviour of its real chat template (default
system prompts, Llama's date header, Gemma's refusal of a system role, Mistral's system prompt
moved into the last user turn, Phi-4-mini's trailing end-of-text), because the fine-tuning code
computes loss masks by rendering prefixes of a conversation and must meet those quirks in tests.
Tool-calling branches are left out and Llama's date is the template's own fallback date.

One deliberate simplification: `tokenizer.eos_token` is always the end-of-turn token the template
writes after an assistant message (as in Qwen2.5 and Llama 3.2 Instruct), also where the real
tokenizer names the document end instead (Gemma 2: `<eos>`, Phi-4-mini: `<|endoftext|>`); the
document end stays in `generation_config.eos_token_id`, after the end-of-turn id.
"""

from __future__ import annotations

import csv
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deescalwild.errors import DeescalwildError

__all__ = ["ARCHS", "FAMILIES", "build_tiny_model", "model_info", "sample_texts"]

# Qwen2.5-Instruct (tool branch left out): a default system prompt when none is given.
QWEN25_TEMPLATE = r"""
{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) or message.role == 'assistant' %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""  # noqa: E501

# Llama 3.2 Instruct (tools left out): the system header is always written, with the knowledge
# cutoff and a date (`strftime_now` does not exist here: the template's own fallback date).
LLAMA32_TEMPLATE = r"""
{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""  # noqa: E501

# Gemma 2 it, verbatim in behaviour: no system role (it raises), strict alternation,
# the assistant is called "model".
GEMMA2_TEMPLATE = (
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

# Granite 3.0 Instruct (tool roles left out): no default system prompt; the generation prompt is
# written inside the loop, so an empty conversation gets none.
GRANITE30_TEMPLATE = r"""
{%- for message in messages %}
    {%- if message['role'] == 'system' %}
    {{- '<|start_of_role|>system<|end_of_role|>' + message['content'] + '<|end_of_text|>\n' }}
    {%- elif message['role'] == 'user' %}
    {{- '<|start_of_role|>user<|end_of_role|>' + message['content'] + '<|end_of_text|>\n' }}
    {%- elif message['role'] == 'assistant' %}
    {{- '<|start_of_role|>assistant<|end_of_role|>'  + message['content'] + '<|end_of_text|>\n' }}
    {%- endif %}
    {%- if loop.last and add_generation_prompt %}
    {{- '<|start_of_role|>assistant<|end_of_role|>' }}
    {%- endif %}
{%- endfor %}
"""

# Phi-4-mini-instruct (tools left out): no newlines; without the generation prompt the text ends
# with the real eos_token, <|endoftext|> (written literally: our eos_token is <|end|>).
PHI4MINI_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ '<|endoftext|>' }}{% endif %}"
)

# Mistral-7B-Instruct-v0.3 ("v3", tools left out): strict alternation after an optional system
# message, which is put into the LAST message only when that is a user message; there is no
# generation prompt (a user turn already ends with [/INST]).
MISTRAL_V3_TEMPLATE = r"""
{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
    {%- if (message["role"] == "user") != (loop.index0 % 2 == 0) %}
        {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif %}
{%- endfor %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""  # noqa: E501


@dataclass(frozen=True)
class Family:
    """One architecture's tokenizer conventions. `specials` are in id order (ids 0..n-1);
    `eos[0]` is the tokenizer's eos_token (the end of an assistant turn); `add_bos`: the real
    tokenizer puts `bos` in front of every encoded text (Llama 3, Gemma, Mistral do)."""

    family: str
    specials: tuple[str, ...]
    bos: str | None
    eos: tuple[str, ...]
    pad: str | None
    template: str
    add_bos: bool = False


FAMILIES: dict[str, Family] = {
    "qwen2": Family("Qwen2.5-Instruct", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
                    None, ("<|im_end|>", "<|endoftext|>"), "<|endoftext|>", QWEN25_TEMPLATE),
    "llama": Family("Llama-3.2-Instruct",
                    ("<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>",
                     "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                     "<|python_tag|>"),
                    "<|begin_of_text|>", ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"),
                    "<|finetune_right_pad_id|>", LLAMA32_TEMPLATE, add_bos=True),
    "gemma2": Family("Gemma-2-it", ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
                     "<bos>", ("<end_of_turn>", "<eos>"), "<pad>", GEMMA2_TEMPLATE, add_bos=True),
    # Granite uses one token for bos, eos and pad (pad == eos: a classic label-masking trap)
    "granite": Family("Granite-3.0-Instruct",
                      ("<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>", "<|tool_call|>"),
                      "<|end_of_text|>", ("<|end_of_text|>",), "<|end_of_text|>",
                      GRANITE30_TEMPLATE),
    "phi3": Family("Phi-4-mini-instruct",
                   ("<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>",
                    "<|tool|>", "<|/tool|>"),
                   "<|endoftext|>", ("<|end|>", "<|endoftext|>"), "<|endoftext|>",
                   PHI4MINI_TEMPLATE),
    # Mistral v0.3 has no pad token: code must cope (e.g. pad with eos, mask by attention)
    "mistral": Family("Mistral-7B-Instruct-v0.3", ("<unk>", "<s>", "</s>", "[INST]", "[/INST]"),
                      "<s>", ("</s>",), None, MISTRAL_V3_TEMPLATE, add_bos=True),
}
ARCHS = tuple(FAMILIES)


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


def _train_tokenizer(texts: Iterable[str], fam: Family, vocab_size: int):
    """A byte-level BPE (the GPT-2/Qwen scheme: any text round-trips) trained on `texts`, with the
    family's special tokens at ids 0..n-1 and, where the real one does, BOS added on encode."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(fam.specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    if fam.add_bos and fam.bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{fam.bos} $A", pair=f"{fam.bos} $A {fam.bos} $B",
            special_tokens=[(fam.bos, tok.token_to_id(fam.bos))])
    return tok


def _config(arch: str, vocab: int, bos: int | None, eos: list[int], pad: int | None):
    """The architecture's real config class, shrunk: 2 layers, hidden 64, 4 heads (2 KV).
    Embeddings are untied: tied random embeddings make greedy decoding echo the last prompt
    token (a newline), i.e. an empty reply, and with the usual init (0.02) every prompt gets
    the same reply; both would hide real bugs (padding, masks, prompts) in tests."""
    import transformers

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                  bos_token_id=bos, eos_token_id=eos if len(eos) > 1 else eos[0],
                  pad_token_id=pad, initializer_range=0.1, tie_word_embeddings=False)
    if arch == "qwen2":
        return transformers.Qwen2Config(**common)
    if arch == "llama":
        return transformers.LlamaConfig(**common)
    if arch == "gemma2":
        return transformers.Gemma2Config(**common, head_dim=16, query_pre_attn_scalar=16,
                                         sliding_window=256)
    if arch == "granite":  # Granite 3.0's scalings but its embedding_multiplier (12): on random
        # weights that drowns the context and every prompt gets the same reply
        return transformers.GraniteConfig(**common, logits_scaling=8.0, residual_multiplier=0.22,
                                          attention_multiplier=1 / 16)
    if arch == "phi3":
        return transformers.Phi3Config(**common)
    return transformers.MistralConfig(**common, head_dim=16, sliding_window=None)


def build_tiny_model(out_dir: str | Path, arch: str = "qwen2", texts: Iterable[str] | None = None,
                     seed: int = 0, vocab_size: int = 800) -> Path:
    """Write a random `arch` chat model (config, safetensors weights, generation config,
    tokenizer with special tokens and chat template) to `out_dir` and return it. Loadable with
    `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained(out_dir)`; same `seed` and texts ->
    same files. config.json carries `deescalwild_tiny: {arch, family, seed}`."""
    if arch not in FAMILIES:
        raise DeescalwildError(
            f"unknown tiny architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    fam = FAMILIES[arch]
    if vocab_size < len(fam.specials) + 256:
        raise DeescalwildError(f"--vocab-size {vocab_size} is too small: a byte-level tokenizer "
                               f"needs at least {len(fam.specials) + 256} for {arch}")
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = _train_tokenizer(list(texts) if texts is not None else sample_texts(), fam, vocab_size)
    named = {fam.bos, fam.eos[0], fam.pad}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=fam.bos, eos_token=fam.eos[0], pad_token=fam.pad,
        unk_token="<unk>" if "<unk>" in fam.specials else None,
        additional_special_tokens=[t for t in fam.specials if t not in named | {"<unk>"}],
        chat_template=fam.template.strip(), model_max_length=4096)
    ids = {t: raw.token_to_id(t) for t in fam.specials}
    eos_ids = [ids[t] for t in fam.eos]
    bos_id = ids[fam.bos] if fam.bos else None
    pad_id = ids[fam.pad] if fam.pad else None

    with torch.random.fork_rng(devices=[]):  # the caller's random state stays untouched
        torch.manual_seed(seed)
        config = _config(arch, raw.get_vocab_size(), bos_id, eos_ids, pad_id)
        config.deescalwild_tiny = {"arch": arch, "family": fam.family, "seed": seed}
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_ids,
                                               pad_token_id=pad_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _safetensors_parameters(folder: Path) -> int | None:
    """Parameter count read from the safetensors headers (8-byte length + JSON), no torch."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for dim in meta["shape"]:
                    count *= dim
                total += count
    return total


def model_info(folder: str | Path) -> dict:
    """What a local model folder holds: architecture, parameters, vocabulary, chat template and
    whether that template takes a system role (a probe system text must survive rendering; a
    template that raises, like Gemma's, takes none). `tiny` is the marker of `build_tiny_model`."""
    path = Path(folder)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise DeescalwildError(f"{path}: not a model folder (no config.json)")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DeescalwildError(f"{cfg_file}: not readable JSON ({e})") from e
    from transformers import AutoTokenizer

    from deescalwild.responders.prompt import template_takes_system

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # any loader failure is one line for the user
        raise DeescalwildError(f"{path}: cannot load the tokenizer ({e})") from e
    template = bool(getattr(tok, "chat_template", None))
    system_role = template and template_takes_system(tok)
    return {"path": str(path), "arch": cfg.get("model_type"),
            "architectures": cfg.get("architectures") or [],
            "parameters": _safetensors_parameters(path), "vocab": len(tok),
            "chat_template": template, "system_role": system_role,
            "eos_token": tok.eos_token, "tiny": cfg.get("deescalwild_tiny")}
