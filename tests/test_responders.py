"""The responder protocol's shared parts: spec strings, the registry, the baselines, the prompt."""

from __future__ import annotations

import json

import pytest
from test_curate import STOP, scenario

from deescalwild.cli import main
from deescalwild.core import write_corpus
from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import Request
from deescalwild.responders.prompt import SYSTEM_PROMPT, chat_messages
from deescalwild.responders.registry import (
    BACKENDS,
    SpecError,
    load_responder,
    parse_spec,
)


@pytest.mark.parametrize("spec, want", [
    ("retrieval", ("retrieval", "", {})),
    (" Retrieval ", ("retrieval", "", {})),
    ("retrieval?k=5&context_turns=2", ("retrieval", "", {"k": "5", "context_turns": "2"})),
    # option values keep their case and may hold a colon
    ("random?train=/Data/Split:v2.jsonl", ("random", "", {"train": "/Data/Split:v2.jsonl"})),
    ("const:I don't know?", ("const", "I don't know?", {})),  # const text is verbatim
    ("hf:/m/Qwen?adapter=/runs/A&temperature=0", ("hf", "/m/Qwen",
                                                 {"adapter": "/runs/A", "temperature": "0"})),
    ("openai:http://127.0.0.1:8080/v1#llama?max_tokens=16",
     ("openai", "http://127.0.0.1:8080/v1#llama", {"max_tokens": "16"})),
])
def test_parse_spec(spec, want):
    assert parse_spec(spec) == want


def test_registry_errors_name_what_is_valid(tmp_path):
    with pytest.raises(SpecError, match="unknown responder 'gpt'; known: const, gemini, gguf, hf"):
        load_responder("gpt:4")
    with pytest.raises(SpecError, match=r"k: .*\(options: train, context_turns"):
        load_responder("retrieval?k=many")
    with pytest.raises(SpecError, match="Extra inputs are not permitted"):
        load_responder("random?sed=1", {"train": tmp_path / "x.jsonl"})
    with pytest.raises(DeescalwildError, match="const: needs the text"):
        load_responder("const:")
    with pytest.raises(DeescalwildError, match="random: needs a training corpus"):
        load_responder("random")


def test_baselines(tmp_path):
    path = tmp_path / "split.jsonl"
    write_corpus(path, [scenario(f"youtube_{i}", STOP) for i in range(3)])
    const = load_responder("const:I don't know.")
    r = const.respond(Request("", [{"role": "user", "content": "Hi."}]))
    assert (r.text, r.error, r.tokens) == ("I don't know.", None, 3) and r.latency_s >= 0
    rnd = load_responder("random", {"train": path, "seed": 0})
    reqs = [Request("", [], id=f"c{i}") for i in range(40)]
    first = [x.text for x in rnd.respond_batch(reqs)]
    assert first == [x.text for x in rnd.respond_batch(reqs)]  # fixed by seed and case id
    assert set(first) == {t for _, t in STOP[1::2]}  # real civilian lines of the train split
    other = load_responder("random?seed=7", {"train": path, "seed": 0})  # the spec wins
    assert other.settings()["seed"] == 7 and [x.text for x in other.respond_batch(reqs)] != first


def test_chat_messages_open_on_the_officer_side_and_fold_the_system_prompt():
    req = Request("Traffic stop.", [{"role": "assistant", "content": "What now?"},
                                    {"role": "user", "content": "License, please."}])
    msgs = chat_messages(req)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"].startswith(SYSTEM_PROMPT) and "Scene: Traffic stop." in msgs[0][
        "content"]
    folded = chat_messages(req, system_role=False)
    assert [m["role"] for m in folded] == ["user"]
    assert folded[0]["content"].startswith(SYSTEM_PROMPT) and folded[0]["content"].endswith(
        "License, please.")
    assert req.history[0]["role"] == "assistant"  # the caller's request is not changed


def test_chat_messages_carry_the_simulator_state_or_a_replacing_system_text():
    hist = [{"role": "user", "content": "Hi."}]
    state = chat_messages(Request("Scene.", hist, extra={"state": "Agitation 72/100."}))
    assert state[0]["content"].startswith(SYSTEM_PROMPT)
    assert state[0]["content"].endswith("Agitation 72/100.")
    judge = chat_messages(Request("Scene.", hist, extra={"system": "You grade.",
                                                         "state": "Agitation 72/100."}))
    assert judge[0] == {"role": "system", "content": "You grade."}


def test_responders_list_describes_every_backend(capsys):
    assert main(["responders", "list", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in info] == list(BACKENDS)
    assert all(b["available"] for b in info)  # the dev install has every extra
    opts = {b["name"]: {o["name"]: o for o in b["options"]} for b in info}
    assert opts["hf"]["temperature"]["default"] == 0.6 and opts["hf"]["top_p"]["default"] == 0.9
    assert opts["openai"]["max_tokens"]["default"] == 128
    assert opts["gemini"]["thinking_budget"]["default"] == 0
    assert all(o["description"] for b in opts.values() for o in b.values())
