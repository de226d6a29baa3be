"""The `hf:` backend on tiny random models of the real architectures (built offline by
`tiny_models.build_tiny_model`): the real loading, chat-template, batching and adapter paths."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import build_tiny_model, traffic_stop_request

from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import ResponderError
from deescalwild.responders.registry import SpecError, load_responder

# CPU float32 pinned: the exactness checks (batched == single) are about padding, not about
# bf16/4-bit numerics, which the CUDA test covers on its own.
GREEDY = "max_new_tokens=8&temperature=0&device=cpu"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """arch -> folder of a tiny random chat model (built once per module)."""
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_model(root / arch, arch) for arch in ("qwen2", "llama", "gemma2")}


@pytest.fixture(scope="module")
def qwen(tiny):
    """A greedy qwen2 responder shared by the read-only tests."""
    r = load_responder(f"hf:{tiny['qwen2']}?{GREEDY}")
    yield r
    r.close()


_req = traffic_stop_request


REQS = [_req(0), _req(1, turns=3), _req(2, turns=2), _req(3)]


def test_end_to_end_replies_are_real_text(qwen):
    replies = qwen.respond_batch(REQS)
    assert len(replies) == len(REQS)
    for r in replies:
        assert r.ok and r.text and r.text == r.text.strip()
        assert 1 <= r.tokens <= 8
        assert r.latency_s > 0 and r.first_token_s == r.latency_s
    assert len({r.latency_s for r in replies}) == 1  # one batch, one wall time


def test_batched_greedy_equals_one_at_a_time(qwen):
    """Left padding with the attention mask must not change any row's output."""
    batched = [r.text for r in qwen.respond_batch(REQS)]
    single = [qwen.respond_batch([q])[0].text for q in REQS]
    streamed = [qwen.respond(q).text for q in REQS]
    assert batched == single == streamed
    assert len(set(batched)) > 1  # the prompts really differ


def test_stream_pieces_join_to_the_reply(qwen):
    pieces = list(qwen.stream(REQS[1]))
    assert len(pieces) >= 1
    assert "".join(pieces) == qwen.respond_batch([REQS[1]])[0].text
    reply = qwen.respond(REQS[1])
    assert reply.first_token_s is not None and 0 < reply.first_token_s <= reply.latency_s
    assert reply.tokens == qwen.respond_batch([REQS[1]])[0].tokens


def test_sampling_is_repeatable_per_seed(tiny, qwen):
    spec = f"hf:{tiny['qwen2']}?max_new_tokens=8&temperature=1.5&top_p=1&device=cpu"
    with load_responder(spec) as a:
        first = [r.text for r in a.respond_batch(REQS)]
        assert first == [r.text for r in a.respond_batch(REQS)]  # reseeded per batch
        assert a.respond(REQS[0]).text == a.respond_batch(REQS[:1])[0].text
        assert first != [r.text for r in qwen.respond_batch(REQS)]  # it does sample
    with load_responder(spec + "&seed=7") as c:
        assert first != [r.text for r in c.respond_batch(REQS)]


def test_settings_record_decoding_and_versions(tiny):
    r = load_responder(f"hf:{tiny['qwen2']}?temperature=0.7&top_p=0.8&repetition_penalty=1.2"
                       "&max_new_tokens=33&batch_size=3&seed=5&max_input_tokens=500&device=cpu")
    s = r.settings()
    assert r.model is None  # settings do not load the model
    assert (s["temperature"], s["top_p"], s["repetition_penalty"]) == (0.7, 0.8, 1.2)
    assert (s["max_new_tokens"], s["batch_size"], s["seed"], s["max_input_tokens"]) == \
        (33, 3, 5, 500)
    assert s["greedy"] is False and s["do_sample"] is True
    assert s["model"] == str(tiny["qwen2"]) and s["adapter"] is None
    assert (s["device"], s["dtype"], s["load_in_4bit"]) == ("cpu", "float32", False)
    assert s["versions"]["transformers"] and s["versions"]["torch"]
    gc = (r.check(), r._generation_config())[1]
    assert (gc.temperature, gc.top_p, gc.top_k, gc.max_new_tokens) == (0.7, 0.8, 0, 33)
    assert load_responder(f"hf:{tiny['qwen2']}?{GREEDY}").settings()["greedy"] is True
    r.close()
    assert r.model is None


def test_unknown_option_is_a_spec_error(tiny):
    with pytest.raises(SpecError, match="temprature"):
        load_responder(f"hf:{tiny['qwen2']}?temprature=0")


def test_gemma_folds_system_prompt_into_first_user_turn(tiny):
    r = load_responder(f"hf:{tiny['gemma2']}?{GREEDY}")
    prompt = r.render(REQS[1]).text
    assert r.settings()["system_role"] is False
    assert "<start_of_turn>system" not in prompt
    first_user = prompt.split("<start_of_turn>user\n", 1)[1].split("<end_of_turn>", 1)[0]
    assert "You are the civilian" in first_user and "Traffic stop number 1" in first_user
    assert first_user.endswith(REQS[1].history[0]["content"])
    assert all(x.ok and x.text for x in r.respond_batch(REQS))


def test_gemma_forced_system_role_is_a_per_request_error(tiny):
    """The template raises: the request fails (recorded), the backend does not crash."""
    r = load_responder(f"hf:{tiny['gemma2']}?{GREEDY}&system_role=true")
    replies = r.respond_batch(REQS[:2])
    assert [x.error for x in replies] == ["chat template: System role not supported"] * 2
    assert r.respond(REQS[0]).error.startswith("chat template")
    with pytest.raises(ResponderError, match="System role"):
        list(r.stream(REQS[0]))


def test_llama_keeps_system_role(tiny):
    r = load_responder(f"hf:{tiny['llama']}?{GREEDY}")
    assert r.render(REQS[0]).text.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are the civilian")
    assert r.settings()["system_role"] is True


def test_long_history_loses_oldest_messages_whole(tiny):
    r = load_responder(f"hf:{tiny['qwen2']}?{GREEDY}&max_input_tokens=200")
    req = _req(9, turns=12)
    r.check()
    full = r._render_from(req, 0)
    assert full.n_tokens > 200
    p = r.render(req)
    assert p.n_tokens <= 200 and p.dropped > 0
    kept, dropped = req.history[p.dropped:], req.history[:p.dropped]
    assert all(f"\n{m['content']}<|im_end|>" in p.text for m in kept)  # whole, none cut
    assert not any(m["content"] in p.text for m in dropped)
    assert "You are the civilian" in p.text and "Traffic stop number 9" in p.text
    # dropped no more than needed: keeping the previous officer turn would not fit
    assert req.history[p.dropped]["role"] == "user"
    prev = max(j for j in range(p.dropped) if req.history[j]["role"] == "user")
    assert r._render_from(req, prev).n_tokens > 200
    assert r.settings()["trimmed"] == {"requests": 1, "messages": p.dropped}
    assert r.respond_batch([req])[0].ok


def test_missing_model_fails_fast(tmp_path):
    for arg in (tmp_path / "nope", "nobody-here/no-such-model-xyz", tmp_path):
        t = time.perf_counter()
        with pytest.raises(DeescalwildError, match=r"cannot load model .* not a local folder "
                           r"with config.json and not in the Hugging Face cache \(offline\)"):
            load_responder(f"hf:{arg}")
        assert time.perf_counter() - t < 2
    with pytest.raises(DeescalwildError, match="needs a model"):
        load_responder("hf:")


def test_tokenizer_without_chat_template_is_rejected(tmp_path):
    d = build_tiny_model(tmp_path / "m", "qwen2")
    (d / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(DeescalwildError, match="no chat template"):
        load_responder(f"hf:{d}").check()


def test_empty_generation_is_an_error_reply(tiny):
    """A model whose first token is end-of-turn: zeroed output head -> argmax = id 0, which is
    the tiny qwen2's <|endoftext|> (an eos)."""
    r = load_responder(f"hf:{tiny['qwen2']}?{GREEDY}")
    r.check()
    r.model.lm_head.weight.data.zero_()
    reply = r.respond_batch([REQS[0]])[0]
    assert (reply.text, reply.error, reply.tokens) == ("", "empty reply", 0)
    assert r.respond(REQS[0]).error == "empty reply"


def test_out_of_memory_batch_is_retried_in_halves(tiny, monkeypatch):
    import torch

    r = load_responder(f"hf:{tiny['qwen2']}?{GREEDY}")
    expected = [x.text for x in r.respond_batch(REQS)]
    real, sizes = r._generate, []

    def flaky(chunk):
        sizes.append(len(chunk))
        if len(chunk) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(chunk)

    monkeypatch.setattr(r, "_generate", flaky)
    assert [x.text for x in r.respond_batch(REQS)] == expected
    assert sizes == [4, 2, 1, 1, 2, 1, 1]
    monkeypatch.setattr(r, "_generate", lambda chunk: (_ for _ in ()).throw(
        torch.OutOfMemoryError("CUDA out of memory.")))
    assert all(x.error.startswith("CUDA out of memory") for x in r.respond_batch(REQS[:2]))


def test_four_bit_on_cpu_is_refused(tiny):
    with pytest.raises(DeescalwildError, match="load_in_4bit=true needs a CUDA"):
        load_responder(f"hf:{tiny['qwen2']}?load_in_4bit=true&device=cpu").check()


def test_lora_adapter_changes_output_via_option_and_as_path(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny["qwen2"])
    lora = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, init_lora_weights=False,
                                           target_modules=["q_proj", "v_proj", "o_proj"]))
    adapter = tmp_path / "run"
    lora.save_pretrained(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == str(tiny["qwen2"])

    plain = [x.text for x in load_responder(f"hf:{tiny['qwen2']}?{GREEDY}").respond_batch(REQS)]
    via_option = load_responder(f"hf:{tiny['qwen2']}?adapter={adapter}&{GREEDY}")
    as_path = load_responder(f"hf:{adapter}?{GREEDY}")
    assert as_path.settings()["adapter"] == str(adapter)
    assert as_path.settings()["model"] == str(tiny["qwen2"])
    a = [x.text for x in via_option.respond_batch(REQS)]
    b = [x.text for x in as_path.respond_batch(REQS)]
    assert all(a) and a == b
    assert a != plain

    with pytest.raises(DeescalwildError, match="already a PEFT adapter folder"):
        load_responder(f"hf:{adapter}?adapter={adapter}")
    with pytest.raises(DeescalwildError, match="not a PEFT adapter folder"):
        load_responder(f"hf:{tiny['qwen2']}?adapter={tmp_path}")


def test_cuda_defaults_to_four_bit_bf16(tiny):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("bitsandbytes")
    r = load_responder(f"hf:{tiny['qwen2']}?max_new_tokens=8&temperature=0")
    s = r.settings()
    assert (s["device"], s["dtype"], s["load_in_4bit"]) == ("cuda", "bfloat16", True)
    r.check()
    assert any(type(m).__name__ == "Linear4bit" for m in r.model.modules())
    replies = r.respond_batch(REQS)
    assert all(x.error in (None, "empty reply") and x.tokens >= 1 for x in replies)
    assert "".join(r.stream(REQS[0])) == r.respond(REQS[0]).text
    r.close()
