"""The relevance stage end to end against a local OpenAI-compatible fake judge: verdicts and
their reasons, the correction turn, failures, retries, the cache, the inputs it reads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from fake_llm_servers import Fail, FakeOpenAIServer, Say

from deescalwild.acquire.formats import Segment, Transcript, Voice, write_segments
from deescalwild.acquire.relevance import RELEVANCE_SCHEMA, run_relevance
from deescalwild.acquire.relevance import judge as judge_mod
from deescalwild.acquire.relevance.judge import JUDGE_SYSTEM, parse_reply
from deescalwild.acquire.relevance.taxonomy import BY_GROUP, FEATURE_NAMES, FEATURES
from deescalwild.acquire.tasks import DEFAULT_RULE, Settings, StageError, StageTask, VideoRef

KEY = "sk-test-relevance-DO-NOT-LEAK-42"
GOOD_ON = ("police_identified_by_role", "police_commands_present", "id_request_event",
           "conversation_present", "raised_threat_language", "accusatory_language",
           "noncompliance_resistance_language", "calming_language_used_by_officer")


def answer(*on: str, evidence: dict | None = None, drop: str | None = None,
           extra: dict | None = None) -> str:
    feats = {n: n in on for n in FEATURE_NAMES if n != drop}
    feats.update(extra or {})
    return json.dumps({"features": feats, "evidence": evidence or {}})


GOOD = answer(*GOOD_ON, evidence={"police_commands_present": "Step out of the car."})


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def srv():
    with FakeOpenAIServer() as s:
        yield s


def make_settings(tmp_path: Path, srv: FakeOpenAIServer | None, **kw) -> Settings:
    kw.setdefault("judge", f"openai:{srv.url}#fake-model" if srv else None)
    return Settings(workdir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                    backoff_base_s=0.0, backoff_cap_s=0.0, **kw)


def diarized(tmp_path: Path, lines: list[tuple[str, str]] | None = None,
             name: str = "youtube_abc") -> Path:
    lines = lines or [("V1", "License and registration, please. Step out of the car."),
                      ("V2", "Why are you stopping me? I didn't do anything!"),
                      ("V1", "Relax, nobody is going to hurt you.")]
    t = Transcript(source="gemini",
                   segments=[Segment(float(i), float(i) + 1, text, voice=v)
                             for i, (v, text) in enumerate(lines)],
                   voices={"V1": Voice("V1", role="officer"), "V2": Voice("V2", role="civilian")})
    return write_segments(tmp_path / "work" / "diarize" / f"{name}.json", t)


def make_task(settings: Settings, inputs: dict[str, Path], vid: str = "youtube_abc") -> StageTask:
    video = VideoRef(vid, f"https://www.youtube.com/watch?v={vid}", "youtube",
                     meta={"title": "Traffic stop turns tense", "channel": "Bodycam Daily",
                           "description": "Officers stop a driver on Route 9."})
    return StageTask(video=video, stage="relevance", settings=settings,
                     inputs={k: str(v) for k, v in inputs.items()})


def user_message(post) -> str:
    return next(m for m in post.body["messages"] if m["role"] == "user")["content"]


# --- verdicts -----------------------------------------------------------------------------
def test_good_judgement_is_accepted_with_the_parts_that_held(tmp_path, srv):
    srv.queue(Say(GOOD))
    s = make_settings(tmp_path, srv)
    out = run_relevance(make_task(s, {"diarize.json": diarized(tmp_path)}))

    assert out.status == "done"
    d = out.detail
    assert d["accepted"] is True and d["cached"] is False and d["flags"] == []
    assert d["scores"] == {"police": 3, "interaction": 1, "escalation": 3, "deescalation": 1,
                           "exclusions": 0}
    assert d["reason"] == ("exclusions == 0 held: exclusions = 0; police >= 2 held: police = 3; "
                           "escalation >= 3 held: escalation = 3")
    path = Path(out.outputs["json"])
    assert path == tmp_path / "work" / "relevance" / "youtube_abc.json"
    rec = json.loads(path.read_text())
    assert rec["schema"] == RELEVANCE_SCHEMA and rec["accepted"] is True
    assert rec["features"] == {n: n in GOOD_ON for n in FEATURE_NAMES}
    assert rec["evidence"] == {"police_commands_present": "Step out of the car."}
    assert rec["rule"] == DEFAULT_RULE and rec["prompt_version"] == judge_mod.PROMPT_VERSION
    assert rec["transcript_source"] == "diarize.json" and rec["truncated"] is False
    assert rec["judge"] == s.judge and rec["judge_settings"]["temperature"] == 0.0

    # what the judge was asked
    (post,) = srv.posts()
    msgs = post.body["messages"]
    assert msgs[0] == {"role": "system", "content": JUDGE_SYSTEM}
    user = user_message(post)
    assert "Officer (V1): License and registration, please." in user
    assert "Civilian (V2): Why are you stopping me?" in user
    assert "Title: Traffic stop turns tense" in user and "Route 9" in user
    for f in FEATURES:
        assert f"- {f.name}: {f.definition}" in user
    assert post.body["temperature"] == 0 and post.body["max_tokens"] == 2048
    assert not post.body.get("stream")  # plain JSON servers (no SSE) work too
    # the key is sent to the server, and never written anywhere
    assert post.headers["authorization"] == f"Bearer {KEY}"
    for p in (tmp_path / "work").rglob("*"):
        if p.is_file():
            assert KEY not in p.read_text(errors="replace"), p


def test_exclusion_flag_rejects_and_is_still_done(tmp_path, srv):
    srv.queue(Say(answer(*GOOD_ON, "training_range_context")))
    out = run_relevance(make_task(make_settings(tmp_path, srv),
                                  {"diarize.json": diarized(tmp_path)}))
    assert out.status == "done" and out.error is None
    assert out.detail["accepted"] is False
    assert out.detail["flags"] == ["training_range_context"]
    assert out.detail["reason"] == "exclusions == 0 failed: training_range_context"


def test_weak_video_is_rejected_with_the_values(tmp_path, srv):
    srv.queue(Say(answer("police_identified_by_role", "raised_threat_language",
                         "empathetic_statements")))
    out = run_relevance(make_task(make_settings(tmp_path, srv),
                                  {"diarize.json": diarized(tmp_path)}))
    assert out.detail["reason"] == (
        "police >= 2 failed: police = 1; escalation >= 3 or deescalation >= 3 failed: "
        "escalation = 1, deescalation = 1")


def test_prose_and_code_fence_around_the_json_are_tolerated(tmp_path, srv):
    srv.queue(Say("Sure {as asked}! Here is my labelling:\n```json\n" + GOOD + "\n```\nDone."))
    out = run_relevance(make_task(make_settings(tmp_path, srv),
                                  {"diarize.json": diarized(tmp_path)}))
    assert out.detail["accepted"] is True and len(srv.posts()) == 1


# --- invalid replies ----------------------------------------------------------------------
def test_malformed_then_valid_is_accepted_after_one_correction(tmp_path, srv):
    srv.queue(Say('{"features": {"police_identified_by_role": true,'), Say(GOOD))
    out = run_relevance(make_task(make_settings(tmp_path, srv),
                                  {"diarize.json": diarized(tmp_path)}))
    assert out.detail["accepted"] is True and out.detail["requests"] == 2
    first, second = srv.posts()
    msgs = second.body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1] == first.body["messages"][1]  # the same task
    assert msgs[2]["content"].startswith('{"features": {"police_identified_by_role": true,')
    assert "could not be used: the JSON object is not closed" in msgs[3]["content"]
    assert json.loads(Path(out.outputs["json"]).read_text())["corrected"] is True


def test_malformed_twice_fails_with_the_reason_and_writes_nothing(tmp_path, srv):
    srv.queue(Say("I think this video is relevant."), Say("Still no JSON, sorry."))
    s = make_settings(tmp_path, srv)
    with pytest.raises(StageError) as err:
        run_relevance(make_task(s, {"diarize.json": diarized(tmp_path)}))
    assert str(err.value) == "judge reply invalid: no JSON object in the reply"
    assert err.value.retryable is False
    assert len(srv.posts()) == 2
    assert not (tmp_path / "work" / "relevance").exists()
    assert not list((tmp_path / "work").glob("cache/relevance/*.json"))


def test_missing_features_are_invalid(tmp_path, srv):
    bad = answer(*GOOD_ON, drop="agreement_reached")
    srv.queue(Say(bad), Say(bad))
    with pytest.raises(StageError, match=r"judge reply invalid: missing 1 of 30 features: "
                       r"agreement_reached$"):
        run_relevance(make_task(make_settings(tmp_path, srv),
                                {"diarize.json": diarized(tmp_path)}))
    assert "missing 1 of 30 features" in srv.posts()[1].body["messages"][-1]["content"]


def test_parse_reply_is_strict_about_names_and_values():
    feats, ev = parse_reply(answer(*GOOD_ON, extra={"agreement_reached": 1,
                                                    "training_range_context": 0}))
    assert feats["agreement_reached"] is True and feats["training_range_context"] is False
    assert sum(feats.values()) == len(GOOD_ON) + 1 and ev == {}
    with pytest.raises(ValueError, match=r"unknown feature.* police_present"):
        parse_reply(answer(extra={"police_present": True}))
    with pytest.raises(ValueError, match='conversation_present must be true or false, got "yes"'):
        parse_reply(answer(extra={"conversation_present": "yes"}))
    with pytest.raises(ValueError, match="must be true or false, got 2"):
        parse_reply(answer(extra={"conversation_present": 2}))
    with pytest.raises(ValueError, match=r'expected \{"features"'):
        parse_reply('{"labels": {}}')
    with pytest.raises(ValueError, match="max_tokens"):
        parse_reply(GOOD[:-40])
    # evidence is kept only for features judged present, cut to a short quote
    feats, ev = parse_reply(answer("id_request_event", evidence={
        "id_request_event": ["License", "and registration"], "agreement_reached": "no",
        "made_up": "x"}))
    assert ev == {"id_request_event": "License / and registration"}


def test_a_feature_given_twice_is_invalid_not_last_wins():
    body = json.dumps({n: False for n in FEATURE_NAMES})[:-1]
    with pytest.raises(ValueError, match="feature no_police_presence given twice"):
        parse_reply('{"features": ' + body + ', "no_police_presence": true}}')
    with pytest.raises(ValueError, match='"features" given twice'):
        parse_reply('{"features": ' + body + '}, "features": ' + body + '}}')
    # a repeated evidence quote is informational only: the reply stays valid
    feats, ev = parse_reply('{"features": ' + body + '}, "evidence": {"x": "a", "x": "b"}}')
    assert not any(feats.values()) and ev == {}


# --- the responder failing ----------------------------------------------------------------
def test_429_then_ok_is_retried_inside_the_request(tmp_path, srv):
    srv.queue(Fail(429, "slow down"), Say(GOOD))
    out = run_relevance(make_task(make_settings(tmp_path, srv),
                                  {"diarize.json": diarized(tmp_path)}))
    assert out.detail["accepted"] is True and len(srv.posts()) == 2


def test_server_errors_fail_retryably_and_refusals_do_not(tmp_path, srv):
    srv.queue(Fail(503, "overloaded"), Fail(503, "overloaded"))
    s = make_settings(tmp_path, srv, max_retries=1)
    with pytest.raises(StageError) as err:
        run_relevance(make_task(s, {"diarize.json": diarized(tmp_path)}))
    assert err.value.retryable is True
    assert str(err.value).startswith("judge failed: HTTP 503")
    assert "gave up after 2 attempts" in str(err.value) and KEY not in str(err.value)

    srv.queue(Fail(401, "bad key"))
    with pytest.raises(StageError) as err:
        run_relevance(make_task(s, {"diarize.json": diarized(tmp_path)}, vid="youtube_other"))
    assert err.value.retryable is False and "HTTP 401" in str(err.value)


# --- the cache ----------------------------------------------------------------------------
class _DriftingResponder:
    """settings() as a local backend reports them: runtime state that changes while a worker
    runs (trim counters, the system role resolved on load, threads, package versions)."""

    def __init__(self):
        self.calls = 0
        self.options = judge_mod.JUDGE_DEFAULTS  # not a pydantic model: no model_dump

    def settings(self):
        self.calls += 1
        return {"backend": "hf", "arg": "tiny", "model": "tiny", "adapter": None,
                "temperature": 0.0, "max_new_tokens": 2048, "load_in_4bit": False,
                "timeout": 30.0, "system_role": "auto" if self.calls == 1 else True,
                "trimmed": {"requests": self.calls, "messages": 2 * self.calls},
                "n_threads": self.calls, "versions": {"torch": f"2.{self.calls}"}}


def test_cache_key_ignores_runtime_state_of_the_responder():
    r = _DriftingResponder()
    first, second = judge_mod.judge_settings(r), judge_mod.judge_settings(r)
    assert first == second
    assert first["temperature"] == 0.0 and first["model"] == "tiny"
    assert not {"trimmed", "n_threads", "versions", "timeout"} & first.keys()
    assert judge_mod.cache_key("hf:tiny", first, "t") == judge_mod.cache_key("hf:tiny", second,
                                                                             "t")


def test_cache_key_of_a_real_hf_responder_is_stable_across_load_and_trims(tmp_path):
    pytest.importorskip("torch")
    from deescalwild.responders.hf import HFResponder

    model = tmp_path / "model"  # never loaded: a folder with config.json is enough to build
    model.mkdir()
    (model / "config.json").write_text("{}")
    r = HFResponder(str(model))
    before = judge_mod.judge_settings(r)
    r._system_role = True  # what loading the model sets
    r.trimmed_requests, r.trimmed_messages = 3, 5  # what trimming long prompts counts
    after = judge_mod.judge_settings(r)
    assert before == after and before["system_role"] == "auto"
    assert judge_mod.cache_key("hf:x", before, "t") == judge_mod.cache_key("hf:x", after, "t")
    # what does fix the answers still does
    hot = HFResponder(str(model), HFResponder.Options(temperature=0.7))
    assert judge_mod.judge_settings(hot) != before


def test_cache_hit_makes_no_request_and_a_new_rule_reuses_it(tmp_path, srv):
    srv.queue(Say(GOOD))
    s = make_settings(tmp_path, srv)
    inputs = {"diarize.json": diarized(tmp_path)}
    first = run_relevance(make_task(s, inputs))
    assert first.detail["cached"] is False and len(srv.posts()) == 1
    assert len(list((tmp_path / "work" / "cache" / "relevance").glob("*.json"))) == 1

    again = run_relevance(make_task(s, inputs))
    assert again.detail["cached"] is True and again.detail["requests"] == 0
    assert again.detail["accepted"] is True and len(srv.posts()) == 1

    strict = dataclasses.replace(s, rule="police >= 4 and exclusions == 0")
    out = run_relevance(make_task(strict, inputs))
    assert len(srv.posts()) == 1 and out.detail["cached"] is True
    assert out.detail["accepted"] is False
    assert out.detail["reason"] == "police >= 4 failed: police = 3"
    rec = json.loads(Path(out.outputs["json"]).read_text())
    assert rec["rule"] == "police >= 4 and exclusions == 0" and rec["accepted"] is False


def test_cache_misses_on_new_text_prompt_version_or_judge_settings(tmp_path, srv, monkeypatch):
    srv.default = Say(GOOD)
    s = make_settings(tmp_path, srv)
    run_relevance(make_task(s, {"diarize.json": diarized(tmp_path)}))
    assert len(srv.posts()) == 1
    # another transcript
    other = diarized(tmp_path, [("V1", "Hands up!"), ("V2", "Okay, okay.")], name="youtube_x")
    run_relevance(make_task(s, {"diarize.json": other}, vid="youtube_x"))
    assert len(srv.posts()) == 2
    # the judge's decoding changed
    hot = dataclasses.replace(s, judge=s.judge + "?temperature=0.7")
    run_relevance(make_task(hot, {"diarize.json": other}, vid="youtube_x"))
    assert len(srv.posts()) == 3
    # transport settings are not part of the key
    patient = dataclasses.replace(s, timeout_s=999.0, max_retries=9)
    run_relevance(make_task(patient, {"diarize.json": other}, vid="youtube_x"))
    assert len(srv.posts()) == 3
    # a new prompt version
    monkeypatch.setattr(judge_mod, "PROMPT_VERSION", "v1-000000000000")
    out = run_relevance(make_task(s, {"diarize.json": other}, vid="youtube_x"))
    assert len(srv.posts()) == 4
    assert json.loads(Path(out.outputs["json"]).read_text())["prompt_version"] == \
        "v1-000000000000"


def test_a_corrupt_cache_file_is_ignored(tmp_path, srv):
    srv.default = Say(GOOD)
    s = make_settings(tmp_path, srv)
    inputs = {"diarize.json": diarized(tmp_path)}
    run_relevance(make_task(s, inputs))
    (cached,) = (tmp_path / "work" / "cache" / "relevance").glob("*.json")
    cached.write_text('{"schema": "deescalwild.relevance-cache/1", "features": {}}')
    out = run_relevance(make_task(s, inputs))
    assert out.detail["cached"] is False and len(srv.posts()) == 2


# --- inputs -------------------------------------------------------------------------------
def test_long_transcript_is_cut_keeping_head_and_tail(tmp_path, srv):
    srv.queue(Say(GOOD))
    lines = [("V1" if i % 2 else "V2", f"Line number {i:04d} of the encounter, words words.")
             for i in range(400)]
    s = make_settings(tmp_path, srv, max_chars=3000)
    out = run_relevance(make_task(s, {"diarize.json": diarized(tmp_path, lines)}))
    user = user_message(srv.posts()[0])
    assert "Line number 0000 " in user and "Line number 0399 " in user
    assert "Line number 0200 " not in user
    marker = [ln for ln in user.splitlines() if ln.startswith("[... ")]
    assert len(marker) == 1 and marker[0].endswith(" characters omitted ...]")
    rec = json.loads(Path(out.outputs["json"]).read_text())
    assert rec["truncated"] is True and out.detail["truncated"] is True
    assert rec["chars"] <= 3000 + 60 and rec["original_chars"] > 20000


def test_published_csv_input(tmp_path, srv, write_csv):
    srv.queue(Say(GOOD))
    csv_path = write_csv("youtube_221.csv", (
        "start_time,speaker_label,transcript\n"
        "00:00,[Bystander],\"Hands down, weirdest encounter of my life.\"\n"
        "00:52,Officer Lina,\"Hi. Hello there, ma'am. Can I help you today?\"\n"
        "00:55,[Witness],He went that way.\n"
        "00:56,[Witness],He went that way.\n"
        "01:00,[Witness],\"" + "Help me. " * 5000 + "\"\n"))
    out = run_relevance(make_task(make_settings(tmp_path, srv), {"diarize.csv": csv_path}))
    assert out.detail["source"] == "diarize.csv"
    user = user_message(srv.posts()[0])
    assert "Transcript (speaker labels as published):" in user
    assert "[Bystander]: Hands down, weirdest encounter of my life." in user
    assert "Officer Lina: Hi. Hello there, ma'am. Can I help you today?" in user
    assert "[Witness]: He went that way. [line repeated 2 times in all]" in user
    assert "Help me. Help me. Help me. [... repeated 5000 times in all]" in user
    assert user.count("Help me.") == 3
    rec = json.loads(Path(out.outputs["json"]).read_text())
    assert rec["transcript_source"] == "diarize.csv" and rec["truncated"] is False
    assert rec["collapsed_repeats"] == 2


def test_best_input_wins_and_empty_ones_are_passed_over(tmp_path, srv):
    srv.default = Say(GOOD)
    plain = write_segments(tmp_path / "t.json", Transcript(
        source="whisper", segments=[Segment(0.0, 1.0, "Show me your hands."),
                                    Segment(1.0, 2.0, "  ")]))
    s = make_settings(tmp_path, srv)
    out = run_relevance(make_task(s, {"transcribe.json": plain,
                                      "diarize.json": diarized(tmp_path)}))
    assert out.detail["source"] == "diarize.json"
    assert "Officer (V1)" in user_message(srv.posts()[-1])

    empty = write_segments(tmp_path / "e.json", Transcript(source="gemini", voices={
        "V1": Voice("V1", role="officer")}))
    out = run_relevance(make_task(s, {"transcribe.json": plain, "diarize.json": empty}))
    assert out.detail["source"] == "transcribe.json"
    user = user_message(srv.posts()[-1])
    assert "Transcript (no speaker labels):\nShow me your hands.\n>>>" in user

    silent = write_segments(tmp_path / "s.json", Transcript(source="whisper"))
    n = len(srv.posts())
    out = run_relevance(make_task(s, {"transcribe.json": silent}))
    assert out.status == "skipped" and out.error == "empty transcript: nothing to judge"
    assert len(srv.posts()) == n


def test_stage_errors_before_any_request(tmp_path, srv):
    s = make_settings(tmp_path, srv)
    with pytest.raises(StageError, match=r"^no transcript: run transcribe or diarize first$"):
        run_relevance(make_task(s, {"audio.wav": tmp_path / "a.wav"}))
    with pytest.raises(StageError, match=r"^no judge: pass --judge SPEC$"):
        run_relevance(make_task(make_settings(tmp_path, None),
                                {"diarize.json": diarized(tmp_path)}))
    with pytest.raises(StageError, match=r"unknown name 'polise' \(did you mean 'police'\?\)"):
        run_relevance(make_task(dataclasses.replace(s, rule="polise >= 2"),
                                {"diarize.json": diarized(tmp_path)}))
    bad = tmp_path / "work" / "diarize" / "broken.json"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("{not json")
    with pytest.raises(StageError, match=r"broken\.json: not JSON"):
        run_relevance(make_task(s, {"diarize.json": bad}))
    with pytest.raises(StageError, match="judge 'nosuch:x': unknown responder 'nosuch'"):
        run_relevance(make_task(dataclasses.replace(s, judge="nosuch:x"),
                                {"diarize.json": diarized(tmp_path)}))
    assert srv.posts() == []


def test_group_counts_in_reason_match_the_taxonomy(tmp_path, srv):
    """Every escalation feature counts towards `escalation` (no feature is left out)."""
    srv.queue(Say(answer(*BY_GROUP["police"], *BY_GROUP["escalation"])))
    out = run_relevance(make_task(make_settings(tmp_path, srv),
                                  {"diarize.json": diarized(tmp_path)}))
    assert out.detail["scores"]["escalation"] == 7 and out.detail["scores"]["police"] == 6
