"""The `pyannote` diarizer: words assigned to speaker turns by time overlap (pure), and the small
adapter run against a fake `pyannote.audio` module (the real one cannot be installed here)."""

from __future__ import annotations

import json
import sys
import types
import wave
from pathlib import Path

import pytest
from fake_llm_servers import FakeOpenAIServer, Say

from deescalwild.acquire.diarize import attribution, run_diarize
from deescalwild.acquire.diarize import pyannote as pa
from deescalwild.acquire.diarize.pyannote import NOT_INSTALLED, assign_words, split_segments
from deescalwild.acquire.formats import Segment, Transcript, Word, read_segments, write_segments
from deescalwild.acquire.tasks import Settings, StageError, StageTask, VideoRef

LINES = [
    (0.0, 2.5, "Good evening. Licence and registration, please."),
    (2.8, 4.0, "What did I do?"),
    (4.2, 6.0, "You ran the red light back there."),
    (6.3, 8.0, "I'm sorry, I didn't see it."),
    (8.5, 9.9, "Hey, I'm filming all of this!"),
]


def w(a, b, text="x"):
    return Word(a, b, f" {text}")


# --- overlap assignment (pure) -------------------------------------------------------------
def test_assign_words_by_maximal_overlap():
    turns = [(0.0, 2.0, "A"), (1.8, 4.0, "B"), (5.0, 6.0, "A")]
    words = [w(0.1, 0.5),   # inside A
             w(1.7, 2.2),   # A 0.3 s, B 0.4 s -> B
             w(1.5, 1.9),   # A 0.4 s, B 0.1 s -> A
             w(4.2, 4.4),   # in a gap, nearer B's end (4.0) than A's start (5.0)
             w(4.8, 4.9),   # in the gap, nearer A
             w(None, None),  # untimed: the previous word's speaker
             w(9.0, 9.5)]   # after everything: the last turn
    assert assign_words(words, turns) == ["A", "B", "A", "B", "A", "A", "A"]


def test_assign_words_sums_turns_of_one_speaker_and_handles_edges():
    # a long early turn still counts for a word far later (turns overlap)
    turns = [(0.0, 10.0, "A"), (4.0, 4.3, "B"), (4.35, 4.6, "B")]
    assert assign_words([w(4.0, 4.6)], turns) == ["A"]  # A 0.6 s vs B 0.55 s
    assert assign_words([w(4.1, 4.5)], [(0.0, 4.2, "A"), (4.2, 4.3, "B"),
                                         (4.3, 4.5, "B")]) == ["B"]
    assert assign_words([w(None, None), w(1.0, 1.2)], [(0.0, 2.0, "A")]) == ["A", "A"]
    assert assign_words([w(1.0, 1.2)], []) == [None]


def test_split_segments_at_speaker_changes():
    seg = Segment(0.0, 4.0, "Hands up! Why?", words=[w(0.0, 0.8, "Hands"), w(0.8, 1.5, "up!"),
                                                     w(2.5, 3.5, "Why?")])
    whole = Segment(5.0, 6.0, "Okay.", words=[w(5.0, 6.0, "Okay.")])
    untimed = Segment(7.0, 8.0, "Yes.")
    turns = [(0.0, 2.0, "COP"), (2.2, 3.6, "MAN"), (4.9, 6.1, "MAN"), (6.9, 8.1, "COP")]
    out = split_segments([seg, whole, untimed], turns)
    assert [(s.start, s.end, s.text, s.voice) for s in out] == [
        (0.0, 1.5, "Hands up!", "COP"), (2.5, 3.5, "Why?", "MAN"),
        (5.0, 6.0, "Okay.", "MAN"), (7.0, 8.0, "Yes.", "COP")]
    assert [x.text for x in out[0].words] == [" Hands", " up!"]


# --- the adapter with a fake pyannote.audio ----------------------------------------------
class _Seg:
    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end


class _Annotation:
    def __init__(self, turns) -> None:
        self.turns = turns

    def itertracks(self, yield_label: bool = False):
        assert yield_label
        for k, (a, b, label) in enumerate(self.turns):
            yield _Seg(a, b), f"track{k}", label


TURNS = [(0.0, 2.6, "SPEAKER_01"), (2.7, 4.1, "SPEAKER_00"), (4.1, 6.1, "SPEAKER_01"),
         (6.2, 8.2, "SPEAKER_00"), (8.4, 10.0, "SPEAKER_02")]


@pytest.fixture
def fake_pyannote(monkeypatch):
    """`pyannote.audio.Pipeline` that records how it was loaded and called."""
    calls: dict[str, list] = {"load": [], "run": []}

    class Pipeline:
        v4 = False

        @classmethod
        def from_pretrained(cls, model, token=None):
            calls["load"].append((model, token))
            return cls()

        def __call__(self, path):
            calls["run"].append(path)
            ann = _Annotation(TURNS)
            return types.SimpleNamespace(speaker_diarization=ann) if self.v4 else ann

    pkg, audio = types.ModuleType("pyannote"), types.ModuleType("pyannote.audio")
    audio.Pipeline = Pipeline
    pkg.audio = audio
    monkeypatch.setitem(sys.modules, "pyannote", pkg)
    monkeypatch.setitem(sys.modules, "pyannote.audio", audio)
    monkeypatch.setattr(pa, "_PIPELINES", {})
    monkeypatch.setattr(attribution, "_RESPONDERS", {})
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    calls["cls"] = Pipeline
    return calls


def write_inputs(root: Path) -> tuple[Path, Path]:
    """A whisper transcript of LINES (two words per segment timed evenly) and 10 s of WAV."""
    root.mkdir(parents=True, exist_ok=True)
    segs = []
    for a, b, text in LINES:
        ws = text.split()
        step = (b - a) / len(ws)
        segs.append(Segment(a, b, text, words=[Word(a + k * step, a + (k + 1) * step, f" {x}")
                                               for k, x in enumerate(ws)]))
    tr = write_segments(root / "transcribe.json", Transcript("whisper", segs, language="en",
                                                             duration_s=10.0))
    with wave.open(str(root / "audio.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(b"\x00\x00" * 160000)
    return tr, root / "audio.wav"


def make_task(tmp_path: Path, attribution_spec: str | None = None) -> StageTask:
    tr, wav = write_inputs(tmp_path)
    s = Settings(workdir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                 diarizer="pyannote", attribution=attribution_spec)
    return StageTask(VideoRef("youtube_p", "u", "youtube", {"title": "Traffic stop"}),
                     "diarize", s, inputs={"transcribe.json": str(tr), "audio.wav": str(wav)})


@pytest.mark.parametrize("v4", [False, True])
def test_adapter_without_attribution(tmp_path, fake_pyannote, v4):
    fake_pyannote["cls"].v4 = v4
    task = make_task(tmp_path)
    out = run_diarize(task)
    assert fake_pyannote["load"] == [("pyannote/speaker-diarization-3.1", "hf_test_token")]
    assert fake_pyannote["run"] == [task.inputs["audio.wav"]]
    t = read_segments(out.outputs["json"])
    assert t.source == "pyannote" and out.detail["backend"] == "pyannote"
    assert [s.voice for s in t.segments] == ["V1", "V2", "V1", "V2", "V3"]
    assert [s.text for s in t.segments] == [line[2] for line in LINES]
    assert t.meta["labels"] == {"V1": "SPEAKER_01", "V2": "SPEAKER_00", "V3": "SPEAKER_02"}
    assert set(t.voices) == {"V1", "V2", "V3"}
    assert all(v.evidence in ("model", "context", "") for v in t.voices.values())
    run_diarize(make_task(tmp_path / "again"))  # the pipeline is loaded once per worker
    assert len(fake_pyannote["load"]) == 1


def test_adapter_with_llm_roles(tmp_path, fake_pyannote, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    described = {"voices": [
        {"id": "V1", "role_hint": "police officer", "name": "", "description": "at the window"},
        {"id": "V2", "role_hint": "civilian", "name": "", "description": "the driver"},
        {"id": "V3", "role_hint": "bystander", "name": "Sam", "description": "Sam, filming"}]}
    with FakeOpenAIServer() as srv:
        srv.queue(Say(json.dumps({"voices": described["voices"][:2]})), Say(json.dumps(described)))
        out = run_diarize(make_task(tmp_path, f"openai:{srv.url}#fake-model"))
        first = srv.posts()[0].body["messages"][1]["content"]
        retry = srv.posts()[1].body["messages"][-1]["content"]
    assert "V1: Good evening." in first and "V3: Hey, I'm filming" in first
    assert "no entry for V3" in retry  # the first answer left a voice out: corrected once
    t = read_segments(out.outputs["json"])
    assert {k: v.role for k, v in t.voices.items()} == {"V1": "officer", "V2": "civilian",
                                                       "V3": "bystander"}
    assert t.voices["V3"].description == "bystander, filming"
    assert out.private == {"voices": {"V3": {"name": "Sam"}}}
    assert t.meta["corrections"] == 1


def test_pyannote_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)  # import fails
    monkeypatch.setattr(pa, "_PIPELINES", {})
    with pytest.raises(StageError) as info:
        run_diarize(make_task(tmp_path))
    assert info.value.reason == NOT_INSTALLED
