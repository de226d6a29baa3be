"""The `local` diarizer: whisper segments attributed to voices by an LLM through the openai:
responder against the local fake server; and voices.py (labels for role resolution, names kept
out of the files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_llm_servers import Fail, FakeOpenAIServer, Say

from deescalwild.acquire.diarize import attribution, run_diarize
from deescalwild.acquire.diarize.attribution import SYSTEM, parse_attribution, windows
from deescalwild.acquire.diarize.guards import GuardError
from deescalwild.acquire.diarize.voices import (
    VoiceHint,
    resolve_voices,
    scrub_name,
    scrub_names,
    voice_labels,
)
from deescalwild.acquire.formats import Segment, Transcript, Word, read_segments, write_segments
from deescalwild.acquire.tasks import Settings, StageError, StageTask, VideoRef

LINES = [
    (0.0, 2.5, "Good evening. Licence and registration, please."),
    (2.8, 4.0, "What did I do, Officer Bruno?"),
    (4.2, 6.0, "You ran the red light back there."),
    (6.3, 8.0, "I'm sorry, I didn't see it."),
    (8.5, 9.9, "Hey, I'm filming all of this!"),
]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setattr(attribution, "_RESPONDERS", {})


@pytest.fixture
def oai():
    with FakeOpenAIServer() as srv:
        yield srv


def words_of(start: float, end: float, text: str) -> list[Word]:
    ws = text.split()
    step = (end - start) / len(ws)
    return [Word(round(start + k * step, 2), round(start + (k + 1) * step, 2), f" {w}", 0.9)
            for k, w in enumerate(ws)]


def write_transcript(path: Path, lines=LINES) -> Path:
    segs = [Segment(a, b, t, words=words_of(a, b, t)) for a, b, t in lines]
    return write_segments(path, Transcript("whisper", segs, language="en", duration_s=10.0,
                                           meta={"model": "tiny-test"}))


def make_task(tmp_path: Path, spec: str | None, lines=LINES, **settings) -> StageTask:
    tmp_path.mkdir(parents=True, exist_ok=True)
    tr = write_transcript(tmp_path / "transcribe.json", lines)
    s = Settings(workdir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                 diarizer="local", attribution=spec, **settings)
    return StageTask(VideoRef("youtube_xyz", "u", "youtube", {"title": "Traffic stop"}),
                     "diarize", s, inputs={"transcribe.json": str(tr)})


def answer(assign: dict[int, str], voices=None) -> str:
    voices = voices if voices is not None else [
        {"id": "V1", "role_hint": "police officer", "name": "Officer Bruno",
         "description": "Bruno, the officer at the window"},
        {"id": "V2", "role_hint": "civilian (driver)", "name": "", "description": "the driver"},
        {"id": "V3", "role_hint": "bystander filming", "name": "", "description": "filming"}]
    return json.dumps({"voices": voices,
                       "segments": [{"i": i, "voice": v} for i, v in assign.items()]})


FULL = {0: "V1", 1: "V2", 2: "V1", 3: "V2", 4: "V3"}


def user_messages(post) -> list[str]:
    return [m["content"] for m in post.body["messages"] if m["role"] == "user"]


# --- the local backend ---------------------------------------------------------------------
def test_good_attribution(tmp_path, oai):
    oai.queue(Say("```json\n" + answer(FULL) + "\n```"))
    task = make_task(tmp_path, f"openai:{oai.url}#fake-model")
    out = run_diarize(task)

    assert out.status == "done"
    assert out.detail == {"voices": 3, "segments": 5, "backend": "local",
                          "roles": {"officer": 1, "civilian": 1, "bystander": 1}}
    assert out.private == {"voices": {"V1": {"name": "Officer Bruno"}}}
    t = read_segments(out.outputs["json"])
    assert t.source == "local" and t.duration_s == 10.0 and t.language == "en"
    assert [s.voice for s in t.segments] == ["V1", "V2", "V1", "V2", "V3"]
    assert [(s.start, s.end, s.text) for s in t.segments] == LINES  # kept as transcribed
    assert [w.text for w in t.segments[0].words] == [f" {w}" for w in LINES[0][2].split()]
    assert {k: v.role for k, v in t.voices.items()} == {"V1": "officer", "V2": "civilian",
                                                       "V3": "bystander"}
    assert t.voices["V1"].description == "officer, the officer at the window"
    assert t.meta["windows"] == 1 and t.meta["corrections"] == 0
    assert t.meta["transcript"] == {"source": "whisper", "model": "tiny-test"}
    # the description and the voices never carry the name; the transcript's own words do
    assert "Bruno" not in json.dumps(t.to_dict()["voices"])

    (post,) = oai.posts()
    system, prompt = post.body["messages"][0], post.body["messages"][1]["content"]
    assert system == {"role": "system", "content": SYSTEM}
    assert post.body["temperature"] == 0 and post.body["max_tokens"] == 4096
    assert "[0] (00:00) Good evening." in prompt and "[4] (00:08) Hey, I'm filming" in prompt
    assert "from [0] to [4] exactly one voice" in prompt


def test_invalid_then_corrected(tmp_path, oai):
    missing = {0: "V1", 1: "V2", 2: "V1", 3: "V2"}
    oai.queue(Say(answer(missing)), Say(answer(FULL)))
    out = run_diarize(make_task(tmp_path, f"openai:{oai.url}#fake-model"))
    assert out.status == "done"
    assert read_segments(out.outputs["json"]).meta["corrections"] == 1
    first, second = oai.posts()
    msgs = second.body["messages"]
    assert msgs[2] == {"role": "assistant", "content": answer(missing)}
    assert "cannot be used: 1 line(s) have no voice: [4]" in msgs[3]["content"]
    assert user_messages(first)[0] == user_messages(second)[0]


@pytest.mark.parametrize("bad, reason", [
    ("Speaker 1 says the first line.", "no JSON object"),
    (answer({**FULL, 4: "V9"}), r"line \[4\] has voice 'V9', which is not in"),
    (json.dumps({"voices": [{"id": "V1"}], "segments": [{"i": 0, "voice": "V1"}] * 2}),
     r"line \[0\] is given twice"),
])
def test_invalid_twice_is_a_failure(tmp_path, oai, bad, reason):
    oai.queue(Say(bad), Say(bad))
    task = make_task(tmp_path, f"openai:{oai.url}#fake-model")
    with pytest.raises(StageError, match="failed validation twice: .*" + reason) as info:
        run_diarize(task)
    assert info.value.retryable is False
    assert len(oai.posts()) == 2
    assert not Path(task.settings.workdir, "diarize").exists()


def test_windows_keep_voice_ids_consistent(tmp_path, oai, monkeypatch):
    monkeypatch.setattr(attribution, "WINDOW", 3)
    voices1 = [{"id": "V1", "role_hint": "police officer", "name": "", "description": "deep"},
               {"id": "V2", "role_hint": "civilian", "name": "", "description": "the driver"}]
    voices2 = [{"id": "V1", "role_hint": "", "name": "", "description": ""},
               {"id": "V3", "role_hint": "bystander", "name": "", "description": "filming"}]
    oai.queue(Say(answer({0: "V1", 1: "V2", 2: "V1"}, voices1)),
              Say(answer({3: "V2", 4: "V3"}, voices2)))  # V2 only known from window 1
    out = run_diarize(make_task(tmp_path, f"openai:{oai.url}#fake-model"))
    t = read_segments(out.outputs["json"])
    assert [s.voice for s in t.segments] == ["V1", "V2", "V1", "V2", "V3"]
    assert t.voices["V1"].description == "deep" and t.voices["V1"].role == "officer"
    assert t.meta["windows"] == 2
    second = user_messages(oai.posts()[1])[0]
    assert "- V1: police officer; deep" in second and "- V2: civilian; the driver" in second
    assert "[2] (00:04) You ran the red light back there. -> V1" in second  # context
    assert "Lines to attribute, [3] to [4]" in second and "[1] (00:02)" in second


def test_responder_failure_is_recorded(tmp_path, oai):
    oai.queue(Fail(500, "upstream exploded"))
    with pytest.raises(StageError, match=r"attribution .*HTTP 500") as info:
        run_diarize(make_task(tmp_path, f"openai:{oai.url}#fake-model", max_retries=0))
    assert info.value.retryable is True
    oai.queue(Fail(400, "bad request"))
    with pytest.raises(StageError, match="HTTP 400") as info:
        run_diarize(make_task(tmp_path / "b", f"openai:{oai.url}#fake-model", max_retries=0))
    assert info.value.retryable is False


def test_retryable_depends_on_the_last_failure_only(tmp_path, oai):
    # a 503, then a 400: the responder gave up after two attempts, but on a final error
    oai.queue(Fail(503, "busy"), Fail(400, "bad request"))
    with pytest.raises(StageError, match=r"HTTP 400.*gave up after 2 attempts") as info:
        run_diarize(make_task(tmp_path, f"openai:{oai.url}#fake-model", max_retries=1))
    assert info.value.retryable is False
    # a 400 whose message mentions a timeout is still a 400
    oai.queue(Fail(400, "upstream timed out; connection failed"))
    with pytest.raises(StageError, match="HTTP 400") as info:
        run_diarize(make_task(tmp_path / "b", f"openai:{oai.url}#fake-model", max_retries=0))
    assert info.value.retryable is False
    # 503 after 503: retryable
    oai.queue(Fail(503, "busy"), Fail(503, "busy"))
    with pytest.raises(StageError, match=r"HTTP 503.*gave up after 2 attempts") as info:
        run_diarize(make_task(tmp_path / "c", f"openai:{oai.url}#fake-model", max_retries=1))
    assert info.value.retryable is True


def test_missing_spec_input_and_empty_transcript(tmp_path):
    with pytest.raises(StageError, match="pass --attribution SPEC"):
        run_diarize(make_task(tmp_path, None))
    task = make_task(tmp_path, "const:{}")
    task.inputs = {}
    with pytest.raises(StageError, match=r"needs transcribe\.json: run the transcribe stage"):
        run_diarize(task)
    out = run_diarize(make_task(tmp_path / "e", "const:{}", lines=[]))
    assert out.status == "skipped" and "no segments" in out.error


def test_parse_attribution_rules():
    known = {"V1": VoiceHint("V1", "police officer")}
    todo = range(3, 5)
    voices, got = parse_attribution(
        '{"voices": [{"id": "V2", "role_hint": "civilian"}], '
        '"segments": [{"i": 3, "voice": "V1"}, {"i": 4, "voice": "V2"}]}', todo, known)
    assert got == {3: "V1", 4: "V2"} and [v.id for v in voices] == ["V2"]
    for bad, why in [('{"voices": [], "segments": [{"i": 2, "voice": "V1"}]}',
                      r"\[2\] is not one of \[3\] to \[4\]"),
                     ('{"voices": [{"id": "V1"}, {"id": "V1"}], "segments": []}',
                      "declared twice"),
                     ('{"voices": [], "segments": [{"i": "three", "voice": "V1"}]}',
                      "schema violation"),
                     ('{"voices": []}', "schema violation")]:
        with pytest.raises(GuardError, match=why):
            parse_attribution(bad, todo, known)
    assert windows(5, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert windows(0, 2) == []


# --- voices.py ---------------------------------------------------------------------------
def test_voice_labels():
    labels = voice_labels([VoiceHint("V1", "police officer"), VoiceHint("V2", "unknown", "Dana"),
                           VoiceHint("V3", "Unknown"), VoiceHint("V4", "police officer"),
                           VoiceHint("V5", "[civilian]")])
    assert labels == {"V1": "[police officer]", "V2": "Dana", "V3": "Voice 3",
                      "V4": "[police officer] 2", "V5": "[civilian]"}


def test_scrub_name():
    assert scrub_name("Officer Bruno, calm; Bruno asks questions", "Officer Bruno",
                      "officer") == "officer, calm; officer asks questions"
    # case-insensitive: a name must not survive in lower case; a name that is also a word
    # costs that word (privacy over prose)
    assert scrub_name("says smith will comply; WILL is calm", "Will Smith", "civilian") \
        == "says civilian civilian comply; civilian is calm"
    assert scrub_name("deep voice", "", "x") == "deep voice"
    assert scrub_name("the officer waits", "Officer", "officer") == "the officer waits"
    assert scrub_name("Al's phone", "Al", "bystander") == "bystander's phone"
    assert scrub_name("Jane and Mary-Jane", "Mary-Jane Watts", "civilian") \
        == "civilian and civilian"
    assert scrub_name("Brunoesque", "Bruno", "officer") == "Brunoesque"  # word-bounded


def test_scrub_names_uses_each_owners_role_and_never_rescrubs():
    owners = {"Officer Bruno": "officer", "Dana Whitfield": "civilian", "Civ": "bystander"}
    assert scrub_names("Bruno asks dana whitfield, then Whitfield, to wait", owners) \
        == "officer asks civilian, then civilian, to wait"
    assert scrub_names("", owners) == ""


def test_resolve_voices_scrubs_other_voices_names():
    segs = [Segment(0.0, 1.0, "Licence please.", "V1"), Segment(1.0, 2.0, "Why?", "V2")]
    voices, names = resolve_voices(
        VideoRef("v", "u", None, {}),
        [VoiceHint("V1", "police officer", "Officer Bruno", "asks Dana Whitfield for her licence"),
         VoiceHint("V2", "civilian", "Dana Whitfield", "answers Officer Bruno"),
         VoiceHint("V3", "bystander", "", "films Dana")], segs, "gemini")
    dumped = json.dumps({k: v.to_dict() for k, v in voices.items()})
    assert not any(n in dumped for n in ("Dana", "Whitfield", "Bruno"))
    assert voices["V1"].description == "asks civilian for her licence"
    assert voices["V3"].description == "films civilian"
    assert names == {"V1": {"name": "Officer Bruno"}, "V2": {"name": "Dana Whitfield"}}


def test_roles_from_titles_and_text_when_no_hint():
    segs = [Segment(0.0, 1.0, "Driver's licence and registration.", "V1"),
            Segment(1.0, 2.0, "Why did you stop me, officer?", "V2")]
    voices, names = resolve_voices(
        VideoRef("v", "u", None, {"title": "Bodycam"}),
        [VoiceHint("V1", "", "Sergeant Alvarez", "Alvarez, loud"), VoiceHint("V2")], segs,
        "local")
    assert voices["V1"].role == "officer" and voices["V1"].evidence == "label"
    assert "Alvarez" not in json.dumps(voices["V1"].to_dict())
    assert names == {"V1": {"name": "Sergeant Alvarez"}}
    assert voices["V2"].role in {"civilian", "unknown", "bystander"}  # classifier, no label
    assert voices["V2"].evidence in {"model", ""}
