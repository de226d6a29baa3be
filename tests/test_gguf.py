"""`export gguf` (llama.cpp's own converter and quantizer) and the `gguf:` responder, on tiny
random models of real architectures built offline by `tiny_models.build_tiny_model`.

The slow tests need llama.cpp's converter: `$LLAMA_CPP_CONVERT` when set (a llama.cpp folder or
its convert_hf_to_gguf.py), else it is fetched once per session from the llama-cpp-python sdist
on PyPI into the session's DEESCALWILD_HOME (~80 MB, seconds).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed "
                    "(pip install 'deescalwild[gguf]')")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import build_tiny_model, traffic_stop_request

from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import ResponderError
from deescalwild.responders.registry import load_responder
from deescalwild.train import gguf_export
from deescalwild.train.gguf_export import export_gguf, find_converter

GREEDY = "temperature=0&n_threads=1"


_req = traffic_stop_request


REQS = [_req(0), _req(1, turns=3), _req(2, turns=2)]


# --- fast: bad inputs, no converter needed ------------------------------------------------
def test_unknown_quant_is_one_clear_error(tmp_path):
    with pytest.raises(DeescalwildError, match=r"unknown quant 'q3_x'.*q4_k_m, q8_0, f16, f32"):
        export_gguf(tmp_path, tmp_path / "m.gguf", quant="q3_x")


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(DeescalwildError, match=r"no config\.json"):
        export_gguf(tmp_path, tmp_path / "m.gguf", quant="f32")
    assert not (tmp_path / "m.gguf").exists()


def test_converter_given_but_missing(tmp_path, monkeypatch):
    with pytest.raises(DeescalwildError, match="--converter"):
        find_converter(tmp_path / "nope.py")
    monkeypatch.setenv("LLAMA_CPP_CONVERT", str(tmp_path))  # a folder without the script
    with pytest.raises(DeescalwildError, match="LLAMA_CPP_CONVERT"):
        find_converter()


def test_converter_log_lines_lose_their_logger_prefix():
    err = "INFO:hf-to-gguf:Loading model\nERROR:hf-to-gguf:Model Nope is not supported\n\n"
    assert gguf_export._last_line(err) == "Model Nope is not supported"


def test_missing_or_foreign_file_fails_at_construction(tmp_path):
    with pytest.raises(DeescalwildError, match="no such file"):
        load_responder(f"gguf:{tmp_path / 'absent.gguf'}")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(DeescalwildError, match="not a GGUF file"):
        load_responder(f"gguf:{fake}")


def test_corrupt_gguf_fails_at_load_with_llama_cpps_reason(tmp_path):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    r = load_responder(f"gguf:{bad}")  # construction only checks the magic: lazy load
    with pytest.raises(DeescalwildError, match=r"gguf: cannot load .*cut\.gguf: \S"):
        r.check()


# --- slow: real conversion, quantization and inference ------------------------------------
@pytest.fixture(scope="module")
def converter(_session_home):
    """The converter script, found once (downloaded into the session's user directory: module
    fixtures run before the autouse one that sets DEESCALWILD_HOME, so it is set here)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEESCALWILD_HOME", str(_session_home))
        return find_converter()[0]


def _without_marker(model: Path, dest: Path) -> Path:
    """A copy of a tiny model without init-tiny's `deescalwild_tiny` marker: to the converter
    it is then just a model with a BPE tokenizer nobody published."""
    model = Path(shutil.copytree(model, dest))
    cfg = json.loads((model / "config.json").read_text())
    cfg.pop("deescalwild_tiny")
    (model / "config.json").write_text(json.dumps(cfg))
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """arch -> tiny model folder. qwen2 and mistral carry init-tiny's marker (the gpt-2
    pre-tokenizer is then chosen automatically); llama does not (named explicitly)."""
    root = tmp_path_factory.mktemp("tiny")
    out = {arch: build_tiny_model(root / arch, arch) for arch in ("qwen2", "llama", "mistral")}
    out["llama"] = _without_marker(out["llama"], root / "llama-unmarked")
    return out


@pytest.fixture(scope="module")
def exported(tiny, converter, tmp_path_factory):
    """(arch, quant) -> (path, facts) for the GGUFs the tests read."""
    out = tmp_path_factory.mktemp("gguf")
    done = {}
    for arch, quant in (("qwen2", "f32"), ("qwen2", "q8_0"), ("qwen2", "q4_k_m"),
                        ("llama", "f32"), ("mistral", "f32")):
        path = out / f"{arch}-{quant}.gguf"
        pre = "gpt-2" if arch == "llama" else None  # others: from their marker
        done[arch, quant] = path, export_gguf(tiny[arch], path, quant, pre_tokenizer=pre,
                                              converter=converter)
    return done


@pytest.fixture(scope="module")
def qwen(exported):
    r = load_responder(f"gguf:{exported['qwen2', 'f32'][0]}?{GREEDY}&max_tokens=12")
    yield r
    r.close()


@pytest.mark.slow
def test_export_writes_whole_files_with_facts(exported):
    sizes = {}
    for (arch, quant), (path, facts) in exported.items():
        assert path.read_bytes()[:4] == b"GGUF"
        assert facts["quant"] == quant and facts["size_bytes"] == path.stat().st_size
        assert facts["converter"]["llama_cpp_python"] and facts["seconds"] > 0
        assert facts["pre_tokenizer"] == "gpt-2"
        sizes[arch, quant] = facts["size_bytes"]
        # atomic: no temporary or intermediate (f16) file left beside the output
        assert sorted(p.name for p in path.parent.iterdir()
                      if p.name.startswith(".")) == []
    assert sizes["qwen2", "f32"] > sizes["qwen2", "q8_0"] > sizes["qwen2", "q4_k_m"]


@pytest.mark.slow
def test_chat_template_and_tokenizer_survive_the_export(exported, tiny):
    import llama_cpp  # reads the file's metadata without loading weights (vocab_only)

    llm = llama_cpp.Llama(str(exported["qwen2", "q4_k_m"][0]), vocab_only=True, verbose=False)
    try:
        assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
        assert llm.metadata["tokenizer.ggml.pre"] == "gpt-2"
    finally:
        llm.close()


@pytest.mark.slow
def test_unrecognised_tokenizer_suggests_pre_tokenizer(tiny, converter, tmp_path):
    out = tmp_path / "m.gguf"
    with pytest.raises(DeescalwildError) as e:
        export_gguf(tiny["llama"], out, "f32", converter=converter)
    assert "--pre-tokenizer" in str(e.value) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DeescalwildError, match="unknown pre-tokenizer 'gtp-2'"):
        export_gguf(tiny["llama"], out, "f32", pre_tokenizer="gtp-2", converter=converter)


@pytest.mark.slow
def test_converter_failure_is_its_last_line(tiny, converter, tmp_path):
    model = shutil.copytree(tiny["qwen2"], tmp_path / "odd")
    cfg = json.loads((model / "config.json").read_text())
    cfg["architectures"] = ["NopeForCausalLM"]
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DeescalwildError) as e:
        export_gguf(model, tmp_path / "out" / "m.gguf", "q8_0", converter=converter)
    msg = str(e.value)
    assert "NopeForCausalLM" in msg and "Traceback" not in msg and "\n" not in msg
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_respond_gives_text_tokens_and_timing(qwen):
    r = qwen.respond(REQS[0])
    assert r.ok and r.text and r.text == r.text.strip()
    assert 1 <= r.tokens <= 12
    assert 0 < r.first_token_s < r.latency_s
    batch = qwen.respond_batch(REQS)  # sequential: same replies as one at a time, in order
    assert [b.text for b in batch] == [qwen.respond(q).text for q in REQS]
    assert len({b.text for b in batch}) == len(REQS)


@pytest.mark.slow
def test_stream_pieces_join_to_the_reply(qwen):
    for req in REQS:
        pieces = list(qwen.stream(req))
        assert len(pieces) > 1  # really streamed, not one final piece
        assert "".join(pieces) == qwen.respond(req).text


@pytest.mark.slow
def test_settings_name_the_exact_file(qwen, exported):
    import hashlib

    path = exported["qwen2", "f32"][0]
    s = qwen.settings()
    assert s["backend"] == "gguf" and s["path"] == str(path)
    assert s["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert s["temperature"] == 0 and s["greedy"] and s["n_threads"] == 1
    assert s["versions"]["llama_cpp_python"]
    assert s["system_role"] is True  # the ChatML template renders a system message


@pytest.mark.slow
def test_quantized_files_load_and_answer(exported):
    for quant in ("q8_0", "q4_k_m"):
        with load_responder(f"gguf:{exported['qwen2', quant][0]}?{GREEDY}&max_tokens=6") as r:
            reply = r.respond(REQS[0])
            assert reply.ok and reply.text and 1 <= reply.tokens <= 6


@pytest.mark.slow
def test_context_overflow_is_an_error_reply_not_a_crash(exported):
    spec = f"gguf:{exported['qwen2', 'f32'][0]}?{GREEDY}&n_ctx=64&max_tokens=8"
    with load_responder(spec) as r:
        reply = r.respond(REQS[0])  # the system prompt alone is longer than 56 tokens
        assert not reply.ok and reply.text == "" and reply.error
        with pytest.raises(ResponderError):
            list(r.stream(REQS[0]))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen2", "llama", "mistral"])
def test_greedy_replies_match_the_hf_responder(arch, exported, tiny):
    """An f32 GGUF run greedily must say what transformers says with the same weights: same
    prompt (chat template, system prompt, BOS), same tokenizer, same argmax at every step.

    Compared on the text and the token count. A random model emits lone UTF-8 byte tokens,
    which transformers decodes to U+FFFD and llama-cpp-python drops, so U+FFFD is removed from
    the hf text. The repetition penalty is off on both sides: they apply it differently
    (llama.cpp over the last 64 tokens, transformers over the whole sequence). 12 tokens: long
    enough to catch a wrong prompt, template or max_tokens cut, short enough that float
    summation order (ggml vs torch) cannot flip a near-tie of the random model."""
    import torch

    n = 12
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with load_responder(f"hf:{tiny[arch]}?temperature=0&max_new_tokens={n}&device=cpu"
                            "&repetition_penalty=1") as hf:
            expected = [hf.respond(q) for q in REQS]
    finally:
        torch.set_num_threads(threads)
    spec = f"gguf:{exported[arch, 'f32'][0]}?{GREEDY}&max_tokens={n}&repeat_penalty=1"
    with load_responder(spec) as gg:
        got = [gg.respond(q) for q in REQS]
    assert [g.tokens for g in got] == [h.tokens for h in expected]
    assert [g.text for g in got] == [h.text.replace("\ufffd", "").strip() for h in expected]
    assert all(g.ok and g.text for g in got)
    assert len({g.text for g in got}) > 1  # the request really reaches the model


@pytest.mark.slow
def test_fine_tuned_run_to_gguf_chats_like_the_run(tmp_path):
    """The whole edge path: train a LoRA run, `export gguf RUN` (merged first), and the GGUF
    replies greedily as the merged HF model does (`export merge`, float32). The unmerged run
    computes x·W + x·A·B instead of x·(W + A·B): on a random tiny model, whose logits are
    nearly flat, that rounding difference alone can flip a greedy choice, so the merged model
    is the reference, as in the issue."""
    from click.testing import CliRunner

    from deescalwild.cli import cli
    from deescalwild.train.presets import load_preset
    from deescalwild.train.trainer import train

    model = build_tiny_model(tmp_path / "tiny", "qwen2")
    msgs = [{"role": "system", "content": "You are the civilian."}]
    for k in range(3):
        msgs += [{"role": "user", "content": f"Officer line {k}, sir."},
                 {"role": "assistant", "content": f"Civilian answer {k}, I was driving home."}]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"split": "train", "messages": msgs}) + "\n"
                            for _ in range(8)))
    preset = load_preset("qwen2.5-3b", model=str(model), overrides={
        "train.max_steps": 3, "train.batch_size": 2, "train.grad_accum": 1,
        "train.max_length": 256, "train.learning_rate": 5e-3, "train.quant": "none"})
    train(preset, data, tmp_path / "run", progress=False, echo=lambda s: None)

    out = tmp_path / "run.gguf"
    res = CliRunner().invoke(cli, ["export", "gguf", str(tmp_path / "run"), "-o", str(out),
                                   "--quant", "f32"])
    assert res.exit_code == 0, res.output + str(res.exception)
    assert "gguf:" in res.output and out.stat().st_size > 0
    from deescalwild.train.export import merge

    merge(tmp_path / "run", tmp_path / "merged", dtype="float32")
    # repetition penalties off: llama.cpp applies its own to the last 64 tokens only
    hf = load_responder(f"hf:{tmp_path / 'merged'}?temperature=0&max_new_tokens=12&device=cpu"
                        "&repetition_penalty=1")
    gg = load_responder(f"gguf:{out}?{GREEDY}&max_tokens=12&repeat_penalty=1")
    for req in REQS:
        a, b = hf.respond(req), gg.respond(req)
        assert a.ok and b.ok, (a.error, b.error)
        # same tokens; a token that is half a UTF-8 character shows as U+FFFD in transformers'
        # decode and is left out by llama.cpp's, so compare without those
        assert a.tokens == b.tokens and a.text.replace("\ufffd", "").strip() == b.text
