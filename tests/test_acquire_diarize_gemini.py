"""The `gemini` diarizer end to end through google-genai against the local fake Gemini server
(tests/fake_llm_servers.py), with one test per fault: every guard is a recorded failure with
its reason, never a diarized file; network faults are retried, then fail as retryable."""

from __future__ import annotations

import base64
import json
import time
import wave
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_llm_servers import Blocked, Drop, Fail, FakeGeminiServer, Say

from deescalwild.acquire.diarize import gemini, run_diarize
from deescalwild.acquire.diarize.gemini import INLINE_LIMIT, PROMPT_VERSION
from deescalwild.acquire.formats import read_segments
from deescalwild.acquire.tasks import Settings, StageError, StageTask, VideoRef

KEY = "gm-test-DO-NOT-LEAK-0123456789"
ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_API_VERSION", "GOOGLE_GEMINI_BASE_URL",
       "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE")
SECONDS = 12.0

GOOD = {
    "voices": [
        {"id": "V1", "role_hint": "police officer", "name": "Officer Bruno",
         "description": "Bruno, calm male voice, asks for the licence"},
        {"id": "V2", "role_hint": "civilian, the driver", "name": "Dana Whitfield",
         "description": "nervous female voice"},
    ],
    "segments": [
        {"start": "00:01", "voice": "V1", "text": "Good evening. Licence and registration."},
        {"start": "00:04", "voice": "V2", "text": "Why did you pull me over?"},
        {"start": "00:06", "voice": "V1", "text": "You ran the red light back there."},
        {"start": "00:09", "voice": "V2", "text": "I'm sorry, I didn't see it."},
    ],
}


def good(**changes) -> str:
    return json.dumps({**GOOD, **changes})


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)


@pytest.fixture
def gem():
    with FakeGeminiServer() as srv:
        yield srv


def write_wav(path: Path, seconds: float = SECONDS) -> Path:
    """Silence, 16 kHz mono s16le: what the audio stage makes (content is the fake's concern)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x01\x00" * int(16000 * seconds))
    return path


def make_task(tmp_path: Path, srv: FakeGeminiServer, seconds: float = SECONDS,
              **settings) -> StageTask:
    tmp_path.mkdir(parents=True, exist_ok=True)
    wav = write_wav(tmp_path / "audio.wav", seconds)
    s = Settings(workdir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                 gemini_base_url=srv.url, backoff_base_s=0.01, max_retries=2,
                 diarize_max_output_tokens=8192, **settings)
    video = VideoRef("youtube_abc", "https://www.youtube.com/watch?v=abc", "youtube",
                     {"title": "Traffic stop on Main Street", "uploader": "Bodycam Channel"})
    return StageTask(video, "diarize", s, inputs={"audio.wav": str(wav)})


def fails(task: StageTask, match: str, retryable: bool = False) -> StageError:
    """Run the stage, expect a failure with this reason, and no diarized file left behind."""
    with pytest.raises(StageError, match=match) as info:
        run_diarize(task)
    err = info.value
    assert err.retryable is retryable, err.reason
    assert "\n" not in err.reason and KEY not in err.reason
    out = Path(task.settings.workdir, "diarize")
    assert not out.exists() or list(out.iterdir()) == []
    return err


# --- success -------------------------------------------------------------------------------
def test_good_answer_gives_voices_with_roles_and_keeps_names_private(tmp_path, gem):
    gem.queue(Say(good()))
    task = make_task(tmp_path, gem)
    outcome = run_diarize(task)

    assert outcome.status == "done"
    assert outcome.detail == {"voices": 2, "segments": 4, "roles": {"officer": 1, "civilian": 1},
                              "backend": "gemini"}
    assert outcome.private == {"voices": {"V1": {"name": "Officer Bruno"},
                                          "V2": {"name": "Dana Whitfield"}}}
    path = Path(outcome.outputs["json"])
    assert path == tmp_path / "work" / "diarize" / "youtube_abc.json"
    raw = path.read_text()
    for secret in ("Bruno", "Dana", "Whitfield", KEY):  # names stay in the manifest only
        assert secret not in raw
    t = read_segments(path)
    assert t.source == "gemini" and t.language == "en" and t.duration_s == SECONDS
    assert {v: t.voices[v].role for v in t.voices} == {"V1": "officer", "V2": "civilian"}
    assert t.voices["V1"].evidence == "label" and t.voices["V1"].confidence > 0.9
    assert t.voices["V1"].description == "officer, calm male voice, asks for the licence"
    assert [s.voice for s in t.segments] == ["V1", "V2", "V1", "V2"]
    assert [(s.start, s.end) for s in t.segments] == [(1, 4), (4, 6), (6, 9), (9, None)]
    assert t.segments[2].text == "You ran the red light back there."
    assert t.meta["model"] == "gemini-2.5-flash" and t.meta["prompt_version"] == PROMPT_VERSION
    assert t.meta["finish_reason"] == "STOP" and t.meta["audio"] == "inline"
    assert t.meta["tokens"]["reply"] > 0
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_request_carries_inline_audio_schema_and_limits(tmp_path, gem):
    gem.queue(Say(good()))
    task = make_task(tmp_path, gem)
    run_diarize(task)
    (post,) = gem.posts()
    assert post.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert post.headers["x-goog-api-key"] == KEY
    audio, prompt = post.body["contents"][0]["parts"]
    blob = audio["inlineData"]
    assert (blob.get("mimeType") or blob.get("mime_type")) == "audio/wav"
    assert base64.b64decode(blob["data"]) == Path(task.inputs["audio.wav"]).read_bytes()
    assert "verbatim" in prompt["text"] and "one segment per speaker turn" in prompt["text"].lower()
    cfg = post.body["generationConfig"]
    assert cfg["responseMimeType"] == "application/json"
    assert cfg["maxOutputTokens"] == 8192 and cfg["temperature"] == 0
    schema = cfg["responseSchema"]
    assert schema["required"] == ["voices", "segments"]
    assert set(schema["properties"]["voices"]["items"]["properties"]) == {
        "id", "role_hint", "name", "description"}
    assert schema["properties"]["segments"]["items"]["required"] == ["start", "voice", "text"]
    assert {s["threshold"] for s in post.body["safetySettings"]} == {"OFF"}


def test_names_are_scrubbed_from_every_voice_not_only_their_own(tmp_path, gem):
    voices = [
        {"id": "V1", "role_hint": "police officer", "name": "Officer Bruno",
         "description": "asks Dana Whitfield for her licence"},
        {"id": "V2", "role_hint": "civilian, the driver", "name": "Dana Whitfield",
         "description": "nervous; argues with officer bruno, says WHITFIELD is her name"},
    ]
    gem.queue(Say(good(voices=voices)))
    outcome = run_diarize(make_task(tmp_path, gem))
    raw = Path(outcome.outputs["json"]).read_text()
    for name in ("Dana", "Whitfield", "Bruno"):
        assert name.lower() not in raw.lower()
    assert outcome.private == {"voices": {"V1": {"name": "Officer Bruno"},
                                          "V2": {"name": "Dana Whitfield"}}}
    t = read_segments(outcome.outputs["json"])
    assert t.voices["V1"].description == "asks civilian for her licence"  # the owner's role
    assert t.voices["V2"].description == "nervous; argues with officer, says civilian is her name"


def test_inline_request_stays_under_the_20_mb_body_limit(tmp_path, gem):
    """Inline audio travels as base64 (4/3 larger): the largest inline WAV must still make a
    request body under 20,000,000 bytes."""
    seconds = (INLINE_LIMIT - 44) / 32000  # a WAV of INLINE_LIMIT bytes (header 44)
    gem.queue(Say(good()))
    task = make_task(tmp_path, gem, seconds=seconds)
    assert Path(task.inputs["audio.wav"]).stat().st_size == pytest.approx(INLINE_LIMIT, abs=2)
    out = run_diarize(task)
    assert read_segments(out.outputs["json"]).meta["audio"] == "inline"
    (post,) = gem.posts()
    assert len(json.dumps(post.body).encode()) < 20_000_000


def test_google_api_key_takes_precedence(tmp_path, gem, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "google-var-key-0000")
    gem.queue(Say(good()))
    run_diarize(make_task(tmp_path, gem))
    assert gem.posts()[0].headers["x-goog-api-key"] == "google-var-key-0000"


# --- network faults: retried, then retryable failures ------------------------------------
def test_429_then_success(tmp_path, gem):
    gem.queue(Fail(429, "Resource has been exhausted"), Say(good()))
    assert run_diarize(make_task(tmp_path, gem)).status == "done"
    assert len(gem.posts()) == 2


def test_429_forever_fails_retryable_after_the_retries(tmp_path, gem):
    gem.queue(*[Fail(429, f"quota exceeded for key {KEY}")] * 5)
    err = fails(make_task(tmp_path, gem), r"HTTP 429 RESOURCE_EXHAUSTED: .*gave up after 3 "
                r"attempts", retryable=True)
    assert "***" in err.reason  # the key a proxy echoed is masked
    assert len(gem.posts()) == 3  # max_retries=2


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_then_retryable(tmp_path, gem, status):
    gem.queue(Fail(status), Say(good()))
    assert run_diarize(make_task(tmp_path, gem)).status == "done"
    gem.queue(*[Fail(status)] * 3)
    fails(make_task(tmp_path / "again", gem), f"HTTP {status}", retryable=True)


def test_dropped_connection_is_retried(tmp_path, gem):
    gem.queue(Drop(), Say(good()))
    assert run_diarize(make_task(tmp_path, gem)).status == "done"
    assert len(gem.posts()) == 2
    gem.queue(Drop(), Drop(), Drop())
    fails(make_task(tmp_path / "again", gem), "connection failed.*gave up after 3", retryable=True)


def test_timeout_is_retried(tmp_path, gem):
    gem.queue(Say(good(), delay_s=1.5), Say(good()))
    assert run_diarize(make_task(tmp_path, gem, timeout_s=0.5)).status == "done"
    assert len(gem.posts()) == 2
    gem.queue(*[Say(good(), delay_s=0.6)] * 3)
    fails(make_task(tmp_path / "again", gem, timeout_s=0.2),
          r"timed out after 0\.2s \(gave up after 3 attempts\)", retryable=True)


def test_retry_after_is_capped_at_backoff_cap(tmp_path, gem):
    gem.queue(Fail(429, "slow down", headers={"Retry-After": "30"}), Say(good()))
    started = time.monotonic()
    assert run_diarize(make_task(tmp_path, gem, backoff_cap_s=0.05)).status == "done"
    assert time.monotonic() - started < 10  # not the 30 s the server asked for
    assert len(gem.posts()) == 2


def test_client_error_is_final_at_once(tmp_path, gem):
    gem.queue(Fail(400, "Request contains an invalid argument."))
    fails(make_task(tmp_path, gem), "HTTP 400 INVALID_ARGUMENT", retryable=False)
    assert len(gem.posts()) == 1


def test_missing_key_and_missing_audio(tmp_path, gem, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    fails(make_task(tmp_path, gem), "no API key; set GOOGLE_API_KEY or GEMINI_API_KEY")
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    task = make_task(tmp_path, gem)
    task.inputs = {}
    fails(task, "needs audio.wav: run the audio stage first")
    assert gem.posts() == []


# --- guards: failures with their reason, never a success ---------------------------------
def test_max_tokens_truncation_is_a_failure(tmp_path, gem):
    text = good()
    gem.queue(Say(text[: len(text) // 2], finish="MAX_TOKENS"))
    fails(make_task(tmp_path, gem), r"truncated at max_output_tokens=8192 "
          r"\(finish_reason=MAX_TOKENS")
    # even when what came back happens to parse, a cut-off reply is not the whole audio
    gem.queue(Say(text, finish="MAX_TOKENS"))
    fails(make_task(tmp_path, gem), "truncated")


@pytest.mark.parametrize("finish", ["SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST",
                                    "SPII", "OTHER"])
def test_blocked_finish_reasons_are_failures(tmp_path, gem, finish):
    gem.queue(Say(good(), finish=finish))
    fails(make_task(tmp_path, gem), rf"reply blocked \(finish_reason={finish}\)")
    assert len(gem.posts()) == 1  # a block is not retried


def test_prompt_blocked(tmp_path, gem):
    gem.queue(Blocked("PROHIBITED_CONTENT"))
    fails(make_task(tmp_path, gem), r"prompt blocked \(PROHIBITED_CONTENT\)")


def test_empty_reply(tmp_path, gem):
    gem.queue(Say(""))
    fails(make_task(tmp_path, gem), r"empty reply \(finish_reason=STOP\)")


def test_malformed_json(tmp_path, gem):
    gem.queue(Say('{"voices": [{"id": "V1", "role_hint": "police officer"}], "segments": [{'))
    fails(make_task(tmp_path, gem), "malformed JSON")


@pytest.mark.parametrize("changes, expect", [
    ({"segments": [{"start": "00:01", "voice": "V7", "text": "Hands up!"}]},
     r"segments\[0\]\.voice 'V7' is not a declared voice"),
    ({"segments": [{"start": "00:01", "text": "Hands up!"}]}, r"segments\.0\.voice: Field"),
    ({"voices": None}, r"schema violation: voices"),
    ({"segments": [{"start": "a minute in", "voice": "V1", "text": "Hands up!"}]},
     r"segments\[0\]\.start: timestamp 'a minute in'"),
    ({"segments": [{"start": "04:10", "voice": "V1", "text": "Hands up!"}]},
     r"past the end of the audio \(12\.0s\)"),
])
def test_schema_violations(tmp_path, gem, changes, expect):
    gem.queue(Say(good(**changes)))
    err = fails(make_task(tmp_path, gem), expect)
    assert err.reason.startswith("gemini gemini-2.5-flash: schema violation: ")


def test_degenerate_repetition(tmp_path, gem):
    looped = [{"start": "00:02", "voice": "V1", "text": "I'm going to need you to " * 30}]
    gem.queue(Say(good(segments=looped)))
    fails(make_task(tmp_path, gem), "degenerate repetition: segment 0 loops")
    same = [{"start": f"00:{k:02d}", "voice": "V2", "text": "Am I being detained right now?"}
            for k in range(11)]
    gem.queue(Say(good(segments=same)))
    fails(make_task(tmp_path, gem), r"degenerate repetition: segments 0-10 repeat .* x11")


def test_shouted_repetition_is_kept(tmp_path, gem):
    shout = [{"start": "00:01", "voice": "V1", "text": "Stop! Stop! Stop! Drop the knife!"},
             {"start": "00:03", "voice": "V2", "text": "Okay, okay, okay."}]
    gem.queue(Say(good(segments=shout)))
    t = read_segments(run_diarize(make_task(tmp_path, gem)).outputs["json"])
    assert t.segments[0].text == "Stop! Stop! Stop! Drop the knife!"


def test_zero_segments(tmp_path, gem):
    gem.queue(Say(good(segments=[])))
    fails(make_task(tmp_path, gem), r"no segments")
    blank = [{"start": "00:01", "voice": "V1", "text": "  "}]
    gem.queue(Say(good(segments=blank)))
    fails(make_task(tmp_path, gem), r"no segments")


# --- the Files API path (large audio), with a stand-in client ------------------------------
class _Files:
    def __init__(self, state: str):
        self.state, self.deleted, self.gets = state, [], 0

    def _file(self):
        return SimpleNamespace(name="files/abc", state=self.state, uri="u", error=None)

    def upload(self, file, config):
        return self._file()

    def get(self, name):
        self.gets += 1
        return self._file()

    def delete(self, name):
        self.deleted.append(name)


@pytest.mark.parametrize("state, retryable", [("PROCESSING", True), ("FAILED", False)])
def test_upload_not_active_after_the_wait(tmp_path, gem, monkeypatch, state, retryable):
    files = _Files(state)
    monkeypatch.setattr(gemini, "INLINE_LIMIT", 0)
    monkeypatch.setattr(gemini, "UPLOAD_POLL_S", 0.01)
    monkeypatch.setattr(gemini, "_client", lambda settings, key: SimpleNamespace(
        files=files, close=lambda: None))
    err = fails(make_task(tmp_path, gem, timeout_s=0.1),
                rf"^gemini gemini-2\.5-flash: the uploaded audio is .*{state} after 0\.1s",
                retryable=retryable)
    assert "still PROCESSING" in err.reason if retryable else "FAILED" in err.reason
    assert files.deleted == ["files/abc"] and gem.posts() == []
