"""Tiny random chat models of six real architectures (`deescalwild.train.tiny`) and the
`deescalwild model` verbs: loadable by the Auto classes, templates that behave like the real
families' (the fine-tuning code derives loss masks from them), right eos ids, reproducible."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner

from deescalwild.cli import cli
from deescalwild.errors import DeescalwildError
from deescalwild.train.tiny import ARCHS, FAMILIES, build_tiny_model, model_info

SYSTEM, U1, A1, U2, A2 = ("Be calm.", "License please.", "Why, officer?", "You were speeding.",
                          "No I was not.")
CLASSES = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM",
           "gemma2": "Gemma2ForCausalLM", "granite": "GraniteForCausalLM",
           "phi3": "Phi3ForCausalLM", "mistral": "MistralForCausalLM"}
# system + user + assistant + user with the generation prompt, as the real templates render it
# (gemma: the system text folded into the first user turn; mistral: it moves to the last one)
EXPECTED = {
    "qwen2": "<|im_start|>system\nBe calm.<|im_end|>\n<|im_start|>user\nLicense please.<|im_end|>"
             "\n<|im_start|>assistant\nWhy, officer?<|im_end|>\n<|im_start|>user\nYou were "
             "speeding.<|im_end|>\n<|im_start|>assistant\n",
    "llama": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
             "Date: December 2023\nToday Date: 26 Jul 2024\n\nBe calm.<|eot_id|>"
             "<|start_header_id|>user<|end_header_id|>\n\nLicense please.<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\nWhy, officer?<|eot_id|>"
             "<|start_header_id|>user<|end_header_id|>\n\nYou were speeding.<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "gemma2": "<bos><start_of_turn>user\nBe calm.\n\nLicense please.<end_of_turn>\n"
              "<start_of_turn>model\nWhy, officer?<end_of_turn>\n<start_of_turn>user\n"
              "You were speeding.<end_of_turn>\n<start_of_turn>model\n",
    "granite": "<|start_of_role|>system<|end_of_role|>Be calm.<|end_of_text|>\n"
               "<|start_of_role|>user<|end_of_role|>License please.<|end_of_text|>\n"
               "<|start_of_role|>assistant<|end_of_role|>Why, officer?<|end_of_text|>\n"
               "<|start_of_role|>user<|end_of_role|>You were speeding.<|end_of_text|>\n"
               "<|start_of_role|>assistant<|end_of_role|>",
    "phi3": "<|system|>Be calm.<|end|><|user|>License please.<|end|><|assistant|>Why, officer?"
            "<|end|><|user|>You were speeding.<|end|><|assistant|>",
    "mistral": "<s>[INST] License please.[/INST] Why, officer?</s>[INST] Be calm.\n\n"
               "You were speeding.[/INST]",
}
GENERATION_PROMPT = {"qwen2": "<|im_start|>assistant\n",
                     "llama": "<|start_header_id|>assistant<|end_header_id|>\n\n",
                     "gemma2": "<start_of_turn>model\n",
                     "granite": "<|start_of_role|>assistant<|end_of_role|>",
                     "phi3": "<|assistant|>", "mistral": "[/INST]"}  # mistral: none of its own


def _msgs(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in pairs]


def _conversation(arch: str, system: bool) -> list[dict]:
    """user/assistant/user/assistant, with a system message first (folded for gemma)."""
    msgs = _msgs(("user", U1), ("assistant", A1), ("user", U2), ("assistant", A2))
    if system and arch == "gemma2":
        msgs[0]["content"] = f"{SYSTEM}\n\n{U1}"
    elif system:
        msgs.insert(0, {"role": "system", "content": SYSTEM})
    return msgs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """arch -> (folder, tokenizer, model), each built and loaded once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for arch in ARCHS:
        d = build_tiny_model(root / arch, arch)
        out[arch] = (d, AutoTokenizer.from_pretrained(d), AutoModelForCausalLM.from_pretrained(d))
    return out


def _render(tok, msgs, gen: bool) -> str:
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)


@pytest.mark.parametrize("arch", ARCHS)
def test_folder_loads_as_the_real_class_and_carries_the_marker(tiny, arch):
    d, tok, model = tiny[arch]
    assert type(model).__name__ == CLASSES[arch]
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (2, 64, len(tok))
    assert cfg.deescalwild_tiny == {"arch": arch, "family": FAMILIES[arch].family, "seed": 0}
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.data_ptr() != head.data_ptr()  # untied (see the _config docstring)
    assert json.loads((d / "config.json").read_text())["deescalwild_tiny"]["arch"] == arch


@pytest.mark.parametrize("arch", ARCHS)
def test_template_renders_like_the_real_family(tiny, arch):
    tok = tiny[arch][1]
    msgs = _conversation(arch, system=True)[:-1]  # ... user: ends on the officer's turn
    text = _render(tok, msgs, gen=True)
    assert text == EXPECTED[arch]
    assert text.endswith(GENERATION_PROMPT[arch])
    for special in FAMILIES[arch].specials:  # every marker in the text is one token, not pieces
        if special in text:
            assert tok.convert_tokens_to_ids(special) in tok(text, add_special_tokens=False)[
                "input_ids"]


def test_family_specific_rules(tiny):
    """Gemma refuses a system role, Gemma and Mistral insist on alternation, Qwen and Llama
    write their default system block when none is given."""
    sys_first = _msgs(("system", SYSTEM), ("user", U1))
    with pytest.raises(Exception, match="System role not supported"):
        _render(tiny["gemma2"][1], sys_first, gen=True)
    for arch in ("gemma2", "mistral"):
        with pytest.raises(Exception, match="alternate"):
            _render(tiny[arch][1], _msgs(("user", U1), ("user", U2)), gen=True)
    user_only = _msgs(("user", U1))
    assert _render(tiny["qwen2"][1], user_only, gen=True).startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    assert "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user" in _render(
        tiny["llama"][1], user_only, gen=True)
    # mistral (v0.3) keeps the system prompt only when the conversation ends on a user turn
    assert SYSTEM not in _render(tiny["mistral"][1], _conversation("mistral", True), gen=False)


@pytest.mark.parametrize("arch", ARCHS)
def test_eos_token_ends_an_assistant_turn_and_stops_generation(tiny, arch):
    _, tok, model = tiny[arch]
    text = _render(tok, _msgs(("user", U1), ("assistant", A1)), gen=False)
    assert text.split(A1, 1)[1].startswith(tok.eos_token)
    assert tok.eos_token == FAMILIES[arch].eos[0]
    gen_eos = model.generation_config.eos_token_id
    gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos]
    assert gen_eos[0] == tok.eos_token_id
    assert [tok.convert_ids_to_tokens(i) for i in gen_eos] == list(FAMILIES[arch].eos)
    cfg_eos = model.config.eos_token_id
    assert tok.eos_token_id in (cfg_eos if isinstance(cfg_eos, list) else [cfg_eos])


@pytest.mark.parametrize("arch", ARCHS)
def test_bos_is_added_on_encode_exactly_where_the_family_does(tiny, arch):
    tok = tiny[arch][1]
    ids = tok("hi there")["input_ids"]
    if FAMILIES[arch].add_bos:
        assert ids[0] == tok.bos_token_id and tok("hi there", add_special_tokens=False)[
            "input_ids"] == ids[1:]
        # the template writes bos itself: encoding a rendering must not add a second one
        rendered = tok(_render(tok, _msgs(("user", U1)), gen=True), add_special_tokens=False)
        assert rendered["input_ids"][:2].count(tok.bos_token_id) == 1
    else:
        assert tok.bos_token_id not in ids


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_generation_runs_and_depends_on_the_prompt(tiny, arch):
    import torch

    _, tok, model = tiny[arch]
    replies = set()
    for user in (U1, U2, "Step out of the car for me."):
        enc = tok(_render(tok, _msgs(("user", user)), gen=True), add_special_tokens=False,
                  return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=5, do_sample=False,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        new = out[0, enc["input_ids"].shape[1]:]
        assert 1 <= len(new) <= 5
        replies.add(tuple(new.tolist()))
    assert len(replies) > 1  # a model that says the same to everyone hides prompt bugs


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_weights(tiny, arch, tmp_path):
    from safetensors.torch import load_file

    first = load_file(tiny[arch][0] / "model.safetensors")
    again = load_file(build_tiny_model(tmp_path / "a", arch) / "model.safetensors")
    other = load_file(build_tiny_model(tmp_path / "b", arch, seed=1) / "model.safetensors")
    assert first.keys() == again.keys() == other.keys()
    assert all(first[k].equal(again[k]) for k in first)
    assert not all(first[k].equal(other[k]) for k in first)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tiny[arch][0] / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("system", [False, True], ids=["no-system", "system"])
@pytest.mark.parametrize("arch", ARCHS)
def test_prefix_renderings_extend_to_the_next_message(tiny, arch, system):
    """What loss masks rely on: for every k, rendering messages[:k] (with the generation prompt
    when messages[k] is the assistant's) is a string prefix of rendering messages[:k+1].

    Mistral breaks it with a system message: v0.3 puts the system prompt into the LAST user
    turn, so it sits before the first reply in `messages[:k]` and nowhere in `messages[:k+1]`."""
    tok = tiny[arch][1]
    msgs = _conversation(arch, system)
    first = 1 if msgs[0]["role"] == "system" else 0
    broken = []
    for k in range(first + 1, len(msgs)):
        before = _render(tok, msgs[:k], gen=msgs[k]["role"] == "assistant")
        if not _render(tok, msgs[: k + 1], gen=True).startswith(before):
            broken.append((k, msgs[k]["role"]))
    if arch == "mistral" and system:  # every reply: the system text was in its prompt only
        assert broken == [(first + 1, "assistant"), (first + 3, "assistant")]
    elif arch == "phi3":
        # without the generation prompt Phi-4-mini closes the text with <|endoftext|>: a
        # conversation ending on a reply is not a prefix of its continuation
        assert broken == [(first + 2, "user")]
    else:
        assert broken == []


def test_model_info_reads_the_folder(tiny):
    d, tok, model = tiny["gemma2"]
    info = model_info(d)
    assert info["parameters"] == model.num_parameters()
    assert (info["arch"], info["vocab"], info["chat_template"], info["system_role"]) == (
        "gemma2", len(tok), True, False)
    assert model_info(tiny["mistral"][0])["system_role"] is True  # probe in the last user turn
    with pytest.raises(DeescalwildError, match=r"no config\.json"):
        model_info(d / "nope")
    with pytest.raises(DeescalwildError, match="unknown tiny architecture 'gpt9'"):
        build_tiny_model(d / "x", "gpt9")


def test_cli_init_tiny_and_info(tmp_path):
    runner = CliRunner()
    out = tmp_path / "phi"
    r = runner.invoke(cli, ["model", "init-tiny", "--arch", "phi3", "-o", str(out), "--seed", "3",
                             "--vocab-size", "600"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()  # (stderr: the library's progress bars)
    assert len(lines) == 1
    path, params, arch = lines[0].split("\t")
    assert (path, arch) == (str(out), "phi3") and params.endswith(" parameters")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["deescalwild_tiny"] == {"arch": "phi3", "family": "Phi-4-mini-instruct", "seed": 3}
    assert int(params.split()[0].replace(",", "")) == model_info(out)["parameters"]
    assert cfg["vocab_size"] <= 600

    r = runner.invoke(cli, ["model", "info", str(out)])
    assert r.exit_code == 0, r.output
    assert "arch: phi3 (Phi3ForCausalLM)" in r.output and "system role: yes" in r.output
    assert "chat template: yes" in r.output and "tiny: Phi-4-mini-instruct (seed 3)" in r.output
    r = runner.invoke(cli, ["model", "info", "--json", str(out)])
    assert json.loads(r.output)["vocab"] == cfg["vocab_size"]

    r = runner.invoke(cli, ["model", "init-tiny", "--arch", "gpt9", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "gpt9" in r.output
    r = runner.invoke(cli, ["model", "init-tiny", "-o", str(tmp_path / "y"), "--vocab-size", "10"])
    assert isinstance(r.exception, DeescalwildError) and "too small" in str(r.exception)
    r = runner.invoke(cli, ["model", "info", str(tmp_path)])
    assert isinstance(r.exception, DeescalwildError) and "no config.json" in str(r.exception)
