"""Fine-tuning on tiny models of every preset's architecture: loss masks, presets, training,
save/reload, merge, generation, resume after a kill, and the refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_models import ARCHS, build_tiny_model

pytest.importorskip("trl")
pytest.importorskip("peft")

from deescalwild.cli import cli
from deescalwild.errors import DeescalwildError
from deescalwild.train.encode import TemplateError, encode, probe
from deescalwild.train.presets import load_preset, parse_set, preset_names

END_OF_TURN = {"qwen2": "<|im_end|>", "llama": "<|eot_id|>", "gemma2": "<end_of_turn>",
               "granite": "<|end_of_text|>", "phi3": "<|end|>", "mistral": "</s>"}

CONVERSATION = [
    {"role": "system", "content": "SYSTEM you are the civilian"},
    {"role": "user", "content": "USER license and registration please"},
    {"role": "assistant", "content": "What did I do wrong officer"},
    {"role": "user", "content": "USER you were going fifty in a thirty"},
    {"role": "assistant", "content": "No way, I was not", "train": False},
    {"role": "user", "content": "USER step out of the car"},
    {"role": "assistant", "content": "Okay okay, I am getting out"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_model(root / arch, arch) for arch in ARCHS}


def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _masked_runs(tok, enc):
    runs, cur = [], []
    for t, m in zip(enc.input_ids, enc.assistant_masks):
        if m:
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return [tok.decode(r) for r in runs]


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_mask_covers_exactly_the_trained_replies(tiny, arch):
    tok = _tokenizer(tiny[arch])
    system_role = probe(tok)
    assert system_role is (arch not in ("gemma2", "mistral"))  # both fold the system prompt
    enc = encode(tok, CONVERSATION, system_role)
    runs = [r.strip() for r in _masked_runs(tok, enc)]
    eot = END_OF_TURN[arch]
    # exactly the two trained replies, each with its end-of-turn token; the context reply
    # ("No way") and every system/user token are out of the loss
    assert runs == [f"What did I do wrong officer{eot}", f"Okay okay, I am getting out{eot}"]
    assert enc.input_ids == tok(enc.text, add_special_tokens=False)["input_ids"]
    assert "SYSTEM you are the civilian" in enc.text
    masked_text = "".join(runs)
    assert "USER" not in masked_text and "No way" not in masked_text


def test_probe_refuses_templates_that_cannot_express_the_roles(tiny):
    tok = _tokenizer(tiny["qwen2"])
    tok.chat_template = None
    with pytest.raises(TemplateError, match="no chat template"):
        probe(tok)
    # a template that drops assistant messages cannot give a reply its own span
    tok.chat_template = ("{% for m in messages %}{% if m['role'] != 'assistant' %}"
                         "{{ m['role'] + ': ' + m['content'] + '\n' }}{% endif %}{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(TemplateError, match="cannot express"):
        probe(tok)


def test_every_preset_loads_and_its_lora_targets_exist(tiny):
    from transformers import AutoModelForCausalLM

    from deescalwild.train.trainer import _check_targets

    names = preset_names()
    assert names == sorted(["qwen2.5-3b", "llama3.2-3b", "gemma2-2b", "granite3-2b",
                            "falcon3-3b", "phi4-mini", "ministral-3b"])
    for name in names:
        p = load_preset(name)
        assert p.lora.r == 16 and p.lora.alpha == 32 and p.arch in ARCHS and p.description
        model = AutoModelForCausalLM.from_pretrained(tiny[p.arch])
        _check_targets(model, p.lora.target_modules, p)  # raises on a typo in a preset


def test_preset_overrides_and_bad_names():
    p = load_preset("qwen2.5-3b", model="/some/where",
                    overrides=parse_set(["lora.r=8", "train.learning_rate=1e-4",
                                         "train.quant=none"]))
    assert (p.model, p.lora.r, p.train.learning_rate, p.train.quant) == \
        ("/some/where", 8, 1e-4, "none")
    assert load_preset("gemma2-2b").train.attn_implementation == "eager"
    with pytest.raises(DeescalwildError, match=r"unknown preset 'qwen9'; available: falcon3-3b"):
        load_preset("qwen9")
    with pytest.raises(DeescalwildError, match="unknown setting"):
        load_preset("qwen2.5-3b", overrides={"train.lerning_rate": 1.0})
    with pytest.raises(DeescalwildError, match="expected one of auto, 4bit"):
        load_preset("qwen2.5-3b", overrides={"train.quant": "3bit"})
    with pytest.raises(DeescalwildError, match=r"SECTION\.KEY=VALUE"):
        parse_set(["lora.r"])


# --- training -----------------------------------------------------------------------------
def _sft_file(path: Path, n: int = 12, with_dev: bool = True) -> Path:
    lines = []
    for i in range(n):
        msgs = [{"role": "system", "content": "You are the civilian. Scene: a traffic stop."}]
        for k in range(3):
            msgs += [{"role": "user", "content": f"Officer line {k} of stop {i}, sir."},
                     {"role": "assistant", "content": f"Civilian answer {k}: I was just driving "
                                                      f"home from work {i}."}]
        lines.append({"schema": "deescalwild.sft/1", "id": f"s{i}#w0", "scenario_id": f"s{i}",
                      "split": "dev" if with_dev and i % 6 == 5 else "train", "messages": msgs})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


FAST = ["train.batch_size=2", "train.grad_accum=1", "train.max_length=256",
        "train.logging_steps=1", "train.eval_steps=2", "train.save_steps=2",
        "train.learning_rate=5e-3", "train.quant=none"]


def _preset(name, model, steps, extra=()):
    return load_preset(name, model=str(model),
                       overrides={**parse_set(FAST + list(extra)), "train.max_steps": steps})


def _adapter(run):
    from safetensors.torch import load_file

    return load_file(str(Path(run) / "adapter_model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["qwen2.5-3b", "llama3.2-3b", "gemma2-2b", "granite3-2b",
                                    "phi4-mini", "ministral-3b"])
def test_train_save_reload_merge_generate(tiny, tmp_path, preset):
    from deescalwild.responders.base import Request
    from deescalwild.responders.registry import load_responder
    from deescalwild.train.export import merge
    from deescalwild.train.trainer import train

    p = _preset(preset, tiny[load_preset(preset).arch], steps=4)
    card = train(p, _sft_file(tmp_path / "sft.jsonl"), tmp_path / "run", progress=False,
                 echo=lambda s: None)
    run = tmp_path / "run"
    assert card["steps"] == 4 and card["eval_loss"] is not None
    assert card["examples"]["target_tokens"] > 0 and card["tokens_per_s"] > 0
    assert card["data_sha256"] and card["versions"]["trl"] and card["peak_memory_bytes"] > 0
    saved = json.loads((run / "run.json").read_text())
    assert saved["preset"]["name"] == preset and saved["preset"]["lora"]["alpha"] == 32
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    weights = _adapter(run)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # it learned
    targets = set(load_preset(preset).lora.target_modules)
    assert {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in weights} == targets

    req = Request(context="a traffic stop", history=[
        {"role": "user", "content": "Officer line 1 of stop 3, sir."}], id="r1")
    greedy = "?temperature=0&max_new_tokens=8&device=cpu"
    with_adapter = load_responder(f"hf:{run}{greedy}").respond(req)
    assert with_adapter.ok, with_adapter.error
    merged = tmp_path / "merged"
    merge(run, merged, dtype="float32")
    from_merged = load_responder(f"hf:{merged}{greedy}").respond(req)
    assert from_merged.ok and from_merged.text == with_adapter.text
    base = load_responder(f"hf:{tiny[load_preset(preset).arch]}{greedy}").respond(req)
    assert base.text != with_adapter.text or base.tokens != with_adapter.tokens


@pytest.mark.slow
def test_qlora_4bit_trains_on_cpu(tiny, tmp_path):
    pytest.importorskip("bitsandbytes")
    from deescalwild.train.trainer import train

    p = _preset("qwen2.5-3b", tiny["qwen2"], steps=2, extra=["train.quant=4bit"])
    card = train(p, _sft_file(tmp_path / "sft.jsonl"), tmp_path / "run", progress=False,
                 echo=lambda s: None)
    assert card["resolved"]["quant"] == "4bit" and card["steps"] == 2
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


def _train_cmd(model, data, out, steps, *extra):
    sets = [x for s in FAST for x in ("--set", s)]
    return [sys.executable, "-m", "deescalwild", "train", "--preset", "qwen2.5-3b", "--model",
            str(model), "--data", str(data), "-o", str(out), "--max-steps", str(steps), *sets,
            "--set", "train.save_steps=1", *extra]


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted(tiny, tmp_path):
    """SIGKILL mid-training (after a checkpoint), --resume, same adapter as a straight run."""
    import torch

    data = _sft_file(tmp_path / "sft.jsonl", n=24)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    steps = 30
    straight = subprocess.run(_train_cmd(tiny["qwen2"], data, tmp_path / "a", steps), env=env,
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    proc = subprocess.Popen(_train_cmd(tiny["qwen2"], data, tmp_path / "b", steps), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / "b" / "checkpoints"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any((c / "trainer_state.json").is_file() for c in ckpts.glob("checkpoint-*")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "run.json").exists()

    again = subprocess.run(_train_cmd(tiny["qwen2"], data, tmp_path / "b", steps), env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and "--resume" in again.stderr
    resumed = subprocess.run(_train_cmd(tiny["qwen2"], data, tmp_path / "b", steps, "--resume"),
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    card = json.loads((tmp_path / "b" / "run.json").read_text())
    assert card["resumed_from"] and card["steps"] == steps
    a, b = _adapter(tmp_path / "a"), _adapter(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- refusals -----------------------------------------------------------------------------
def test_resume_refuses_other_settings_and_finished_runs(tiny, tmp_path):
    from deescalwild.train.trainer import _CONFIG, run_config, train

    data = _sft_file(tmp_path / "sft.jsonl")
    p = _preset("qwen2.5-3b", tiny["qwen2"], steps=2)
    out = tmp_path / "run"
    out.mkdir()
    (out / _CONFIG).write_text(json.dumps(run_config(p, data)))
    other = _preset("qwen2.5-3b", tiny["qwen2"], steps=2, extra=["lora.r=4"])
    with pytest.raises(DeescalwildError, match="started with different preset"):
        train(other, data, out, resume=True)
    with pytest.raises(DeescalwildError, match="add --resume"):
        train(p, data, out)
    (out / "run.json").write_text("{}")
    with pytest.raises(DeescalwildError, match="finished run"):
        train(p, data, out, resume=True)
    with pytest.raises(DeescalwildError, match="no unfinished run"):
        train(p, data, tmp_path / "fresh", resume=True)


def test_data_without_assistant_turns_is_refused(tiny, tmp_path):
    from deescalwild.train.trainer import train

    data = tmp_path / "none.jsonl"
    data.write_text(json.dumps({"split": "train", "messages": [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi", "train": False}]}) + "\n")
    with pytest.raises(DeescalwildError, match="no assistant"):
        train(_preset("qwen2.5-3b", tiny["qwen2"], 1), data, tmp_path / "run")


def test_too_little_memory_gives_a_suggestion(tiny, tmp_path, monkeypatch):
    from deescalwild.train import trainer

    monkeypatch.setattr(trainer, "_available_ram", lambda: 1024)
    with pytest.raises(DeescalwildError, match=r"not enough memory.*try .*4bit"):
        trainer.train(_preset("qwen2.5-3b", tiny["qwen2"], 1), _sft_file(tmp_path / "d.jsonl"),
                      tmp_path / "run")


def test_long_example_is_rewindowed_with_the_real_tokenizer(tiny):
    from deescalwild.train.trainer import prepare

    tok = _tokenizer(tiny["qwen2"])
    msgs = [{"role": "system", "content": "You are the civilian."}]
    for k in range(30):
        msgs += [{"role": "user", "content": f"officer says number {k} again"},
                 {"role": "assistant", "content": f"civilian reply number {k}"}]
    out, rewindowed, truncated = prepare([{"messages": msgs}], tok, True, max_length=200)
    assert rewindowed == 1 and truncated == 0 and len(out) > 3
    assert all(len(x["input_ids"]) <= 200 for x in out)
    replies = []
    for x in out:
        runs, cur = [], []
        for t, m in zip(x["input_ids"], x["assistant_masks"]):
            if m:
                cur.append(t)
            elif cur:
                runs.append(tok.decode(cur))
                cur = []
        replies += [r.replace("<|im_end|>", "").strip() for r in runs + ([tok.decode(cur)]
                                                                       if cur else [])]
    assert replies == [f"civilian reply number {k}" for k in range(30)]  # each exactly once


def test_train_cli_lists_presets_and_reports_bad_input(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--list-presets"])
    assert res.exit_code == 0 and "Qwen/Qwen2.5-3B-Instruct" in res.output
    assert len(res.output.strip().splitlines()) == 7
    res = runner.invoke(cli, ["train", "--preset", "nope", "--data", __file__, "-o",
                              str(tmp_path / "r")])
    assert res.exit_code != 0 and "available:" in str(res.exception)
