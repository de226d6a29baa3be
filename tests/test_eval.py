"""`eval` and `bench`: results files, errors counted not scored, the cache that makes a rerun
free and an interrupted run resume, one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
from test_curate import STOP, scenario

from deescalwild.bench.cases import cases_from_corpus, make_cases
from deescalwild.bench.evaluate import EvalOptions, evaluate
from deescalwild.bench.metrics import Scorer
from deescalwild.cli import main
from deescalwild.core import Reply, read_cases, write_corpus
from deescalwild.responders.base import Request, Responder, Timer
from deescalwild.responders.registry import BACKENDS

METRICS = "rouge_l,bleu4,chrf,empty"
CALLS: list[str] = []


class FlakyResponder(Responder):
    """Echoes the officer's last line; fails on every third case; counts its calls."""

    prefix = "flaky"

    def respond(self, request: Request) -> Reply:
        CALLS.append(request.id)
        if int(request.id.rsplit("#", 1)[1]) % 6 == 5:
            return Timer().reply("", error="HTTP 500: server error")
        return Timer().reply(request.history[-1]["content"])


INTERRUPT = [True]


class InterruptingResponder(FlakyResponder):
    """Like Ctrl-C after two batches, while INTERRUPT[0] holds."""

    prefix = "interrupt"

    def respond_batch(self, requests):
        if INTERRUPT[0] and len(CALLS) >= 4:
            raise KeyboardInterrupt
        return super().respond_batch(requests)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "flaky", "test_eval:FlakyResponder")
    monkeypatch.setitem(BACKENDS, "interrupt", "test_eval:InterruptingResponder")
    monkeypatch.setenv("DEESCALWILD_HOME", str(tmp_path / "home"))  # an empty cache
    CALLS.clear()
    INTERRUPT[0] = True
    scs = [scenario(f"youtube_{i}", STOP, split="test" if i < 3 else "train") for i in range(6)]
    path = tmp_path / "split.jsonl"
    write_corpus(path, scs)
    cases = tmp_path / "cases.jsonl"
    make_cases(path, cases, split="test")
    return path, cases


def test_eval_writes_results_and_counts_errors_without_scoring_them(corpus, tmp_path):
    split, cases = corpus
    out = tmp_path / "res"
    r = evaluate(cases, ["flaky", "const:I don't know.", "random"], out, train=split,
                 options=EvalOptions(metrics=METRICS, batch_size=2))
    assert sorted(p.name for p in out.iterdir()) == ["leaderboard.md", "report.html",
                                                     "results.json", "samples.jsonl"]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["schema"] == "deescalwild.results/1" and on_disk["cases"]["n"] == 12
    assert on_disk["cases"]["scenarios"] == 3 and on_disk["train"]["sha256"]
    flaky = r["responders"]["flaky"]
    assert flaky["errors"] == 3 and flaky["n_cases"] == 12 and not flaky["baseline"]
    assert all(m["n"] == 9 for m in flaky["metrics"].values())  # errors are never scored
    assert r["responders"]["random"]["baseline"] and r["responders"]["const:I don't know."][
        "baseline"]
    samples = [json.loads(x) for x in (out / "samples.jsonl").open()]
    assert len(samples) == 36
    failed = [s for s in samples if s["error"]]
    assert len(failed) == 3 and all(s["scores"] == {} and s["prediction"] == "" for s in failed)
    # the const baseline's score is the metric itself, averaged
    refs = [c.reference for c in read_cases(cases)]
    want = Scorer(["bleu4"]).score_metric("bleu4", refs, ["I don't know."] * len(refs))
    got = r["responders"]["const:I don't know."]["metrics"]["bleu4"]
    assert got["mean"] == pytest.approx(sum(want) / len(want), abs=1e-5)
    assert got["ci_low"] <= got["mean"] <= got["ci_high"]
    # the random baseline draws real civilian lines of the training split
    train_lines = {t for _, t in STOP[1::2]}
    assert {s["prediction"] for s in samples if s["responder"] == "random"} <= train_lines
    lat = flaky["latency"]
    assert lat["n"] == 9 and 0 <= lat["p50"] <= lat["p95"] <= lat["max"]
    assert "flaky" in (out / "leaderboard.md").read_text()


def test_rerun_costs_nothing_and_errors_are_retried(corpus, tmp_path):
    split, cases = corpus
    opts = EvalOptions(metrics=METRICS, batch_size=4)
    evaluate(cases, ["flaky"], tmp_path / "a", train=split, options=opts)
    assert len(CALLS) == 12
    CALLS.clear()
    r = evaluate(cases, ["flaky"], tmp_path / "b", train=split, options=opts)
    assert sorted(CALLS) == ["youtube_0#5", "youtube_1#5", "youtube_2#5"]  # only the errors
    assert r["responders"]["flaky"]["cached"] == 9
    first = [json.loads(x) for x in (tmp_path / "a" / "samples.jsonl").open()]
    second = [json.loads(x) for x in (tmp_path / "b" / "samples.jsonl").open()]
    assert [s["prediction"] for s in first] == [s["prediction"] for s in second]
    CALLS.clear()
    evaluate(cases, ["flaky"], tmp_path / "c", train=split,
             options=EvalOptions(metrics=METRICS, batch_size=4, use_cache=False))
    assert len(CALLS) == 12


def test_an_interrupted_run_resumes_where_it_stopped(corpus, tmp_path):
    split, cases = corpus
    opts = EvalOptions(metrics=METRICS, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate(cases, ["interrupt"], tmp_path / "a", train=split, options=opts)
    assert len(CALLS) == 4 and not (tmp_path / "a" / "results.json").exists()
    done = set(CALLS)
    CALLS.clear()
    INTERRUPT[0] = False  # the same responder, now it is left to finish
    evaluate(cases, ["interrupt"], tmp_path / "a", train=split, options=opts)
    assert len(CALLS) == 12 - len(done - {"youtube_0#5", "youtube_1#5"}) and not (
        done - {"youtube_0#5"}) & set(CALLS)


def test_cli_errors_are_one_line(corpus, tmp_path, capsys):
    split, cases = corpus
    code = main(["eval", str(cases), "-r", "nonsense:x", "-o", str(tmp_path / "o"),
                 "--metrics", METRICS])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1  # one line, before anything runs
    assert "unknown responder 'nonsense'" in err and "Traceback" not in err
    code = main(["eval", str(cases), "-r", "retrieval?k=abc", "--train", str(split), "-o",
                 str(tmp_path / "o"), "--metrics", METRICS])
    err = capsys.readouterr().err
    assert code == 1 and "k:" in err and "options:" in err
    code = main(["eval", str(split), "-r", "const:x", "-o", str(tmp_path / "o"),
                 "--metrics", METRICS])
    err = capsys.readouterr().err
    assert code == 1 and "split.jsonl:1: expected schema 'deescalwild.cases/1'" in err
    code = main(["eval", str(cases), "-r", "hf:/no/such/model", "-o", str(tmp_path / "o"),
                 "--metrics", METRICS])
    err = capsys.readouterr().err
    assert code == 1 and "/no/such/model" in err and "Traceback" not in err
    code = main(["eval", str(cases), "-r", "openai:http://127.0.0.1:9/v1#m", "-o",
                 str(tmp_path / "o"), "--metrics", METRICS])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach" in err and "Traceback" not in err
    code = main(["eval", str(cases), "-r", "const:x", "-o", str(tmp_path / "o"),
                 "--metrics", "rouge_l,bleu5"])
    err = capsys.readouterr().err
    assert code == 1 and "bleu5" in err


def test_bench_on_the_sample(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEESCALWILD_HOME", str(tmp_path / "home"))
    code = main(["bench", "-o", str(tmp_path / "b"), "--metrics", METRICS])
    err = capsys.readouterr().err
    assert code == 0, err
    r = json.loads((tmp_path / "b" / "results" / "results.json").read_text())
    assert list(r["responders"]) == ["retrieval", "const:I don't know.", "random"]
    assert r["cases"]["scenarios"] >= 3 and r["cases"]["split"] == ["test"]
    assert all(v["errors"] == 0 for v in r["responders"].values())
    # retrieval answers with real civilian replies of the training split
    train = {c.reference for c in cases_from_corpus(tmp_path / "b" / "split.jsonl", "train")}
    said = [json.loads(x) for x in (tmp_path / "b" / "results" / "samples.jsonl").open()]
    assert all(s["prediction"] in train for s in said if s["responder"] == "retrieval")
    assert "retrieval" in err and "calibration" in (tmp_path / "b" / "results" /
                                                    "leaderboard.md").read_text()


# --- every backend end to end through `eval` ---------------------------------------------------

def test_eval_with_api_backends_against_local_fake_servers(corpus, tmp_path, monkeypatch):
    from fake_llm_servers import Fail, FakeGeminiServer, FakeOpenAIServer, Say

    split, cases = corpus
    monkeypatch.setenv("GEMINI_API_KEY", "sk-test-secret-123")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with FakeOpenAIServer(default=Say("Sure, here you go.")) as oa, \
            FakeGeminiServer(default=Say("Fine, whatever.")) as gm:
        oa.queue(Fail(500), Fail(500), Fail(500), Fail(500), Fail(500), Fail(500))  # one case
        specs = [f"openai:{oa.url}#fake-model?max_retries=5", f"gemini:fake-gemini?base_url="
                 f"{gm.url}"]
        monkeypatch.setattr("time.sleep", lambda s: None)  # no real backoff waits
        r = evaluate(cases, specs, tmp_path / "res", train=split,
                     options=EvalOptions(metrics=METRICS, batch_size=4))
    oa_r, gm_r = r["responders"][specs[0]], r["responders"][specs[1]]
    assert oa_r["errors"] == 1 and "500" in oa_r["error_examples"][0]["error"]
    assert oa_r["metrics"]["rouge_l"]["n"] == 11
    assert gm_r["errors"] == 0 and gm_r["metrics"]["rouge_l"]["n"] == 12
    assert oa_r["settings"]["temperature"] == 0.6 and gm_r["settings"]["thinking_budget"] == 0
    assert oa_r["latency"]["first_token_p50"] <= oa_r["latency"]["p50"]
    text = (tmp_path / "res" / "results.json").read_text() + (
        tmp_path / "res" / "samples.jsonl").read_text()
    assert "sk-test-secret-123" not in text
    # the history the server saw ends with the officer and never holds the reference
    body = oa.posts()[-1].body
    assert body["messages"][0]["role"] == "system" and body["messages"][-1]["role"] == "user"


def test_eval_with_a_tiny_hf_model(corpus, tmp_path):
    pytest.importorskip("torch")
    from tiny_models import build_tiny_model

    split, cases = corpus
    model = build_tiny_model(tmp_path / "tiny", "qwen2")
    spec = f"hf:{model}?max_new_tokens=6&temperature=0&min_new_tokens=1&device=cpu"
    r = evaluate(cases, [spec], tmp_path / "res", train=split,
                 options=EvalOptions(metrics=METRICS, batch_size=4))
    hf = r["responders"][spec]
    assert hf["n_cases"] == 12 and hf["errors"] + hf["metrics"]["rouge_l"]["n"] == 12
    assert hf["settings"]["max_new_tokens"] == 6 and hf["settings"]["do_sample"] is not None
    samples = [json.loads(x) for x in (tmp_path / "res" / "samples.jsonl").open()]
    assert all(s["error"] or (s["prediction"] and s["tokens"] <= 6) for s in samples
               if s["responder"] == spec)
    # a second run comes from the cache without loading the model
    r2 = evaluate(cases, [spec], tmp_path / "res2", train=split,
                  options=EvalOptions(metrics=METRICS, batch_size=4))
    assert r2["responders"][spec]["cached"] == 12 - hf["errors"]


def test_the_cache_key_follows_the_files_a_responder_reads_not_unrelated_flags(corpus,
                                                                               tmp_path):
    from deescalwild.bench.cache import responder_key

    split, cases = corpus
    d = {"train": split, "seed": 0}
    # deterministic backends: the batch size and an unused --train do not matter
    assert responder_key("flaky", d, 2) == responder_key("flaky", {}, 8)
    assert responder_key("const:x", d, 2) == responder_key("const:x", {"seed": 5}, 8)
    # the random baseline reads the training file: its content is in the key
    before = responder_key("random", d, 8)
    assert before != responder_key("random", {**d, "seed": 1}, 8)
    assert responder_key(f"random?train={split}&seed=0", {}, 8) == before
    opts = EvalOptions(metrics=METRICS)
    evaluate(cases, ["random"], tmp_path / "a", train=split, options=opts)
    write_corpus(split, [scenario("youtube_9", [("Officer", "Hi."), ("Driver", "Go away.")])])
    assert responder_key("random", d, 8) != before
    r = evaluate(cases, ["random"], tmp_path / "b", train=split, options=opts)
    assert r["responders"]["random"]["cached"] == 0
    assert {json.loads(x)["prediction"] for x in (tmp_path / "b" / "samples.jsonl").open()
            if json.loads(x)["responder"] == "random"} == {"Go away."}


def test_a_corrupt_cache_is_one_line_and_no_cache_still_works(corpus, tmp_path, capsys):
    _, cases = corpus
    db = tmp_path / "home" / "cache" / "generations.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    args = ["eval", str(cases), "-r", "flaky", "-o", str(tmp_path / "o"), "--metrics", METRICS]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "generation cache cannot be used" in err and "--no-cache" in err
    assert "Traceback" not in err
    assert main([*args, "--no-cache", "--no-baselines"]) == 0
    r = json.loads((tmp_path / "o" / "results.json").read_text())
    assert list(r["responders"]) == ["flaky"]
    assert main([*args, "--no-cache"]) == 0  # baselines added by default; const only:
    r = json.loads((tmp_path / "o" / "results.json").read_text())  # no --train, no random
    assert list(r["responders"]) == ["flaky", "const:I don't know."]
