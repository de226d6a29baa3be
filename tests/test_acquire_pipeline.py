"""The whole pipeline through the command line, offline: a page with a spoken clip served on
127.0.0.1 → `acquire add` → `acquire run` (yt-dlp metadata and audio, ffmpeg, faster-whisper
with a tiny model, speaker attribution and relevance through the OpenAI SDK against local fake
servers, or Gemini diarization against the fake Gemini API) → exported transcripts that
`corpus import` reads with the right roles."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import pytest
from fake_llm_servers import FakeGeminiServer, FakeOpenAIServer, Say
from media_fixtures import make_clip, make_page, needs_ffmpeg, serve_dir

from deescalwild.acquire.manifest import Manifest
from deescalwild.acquire.relevance.taxonomy import FEATURE_NAMES
from deescalwild.cli import main
from deescalwild.core import Role
from deescalwild.corpus.importer import import_transcripts

pytest.importorskip("yt_dlp")
pytestmark = [needs_ffmpeg, pytest.mark.slow]

ACCEPT = json.dumps({"features": {n: n in {
    "police_identified_by_role", "police_commands_present", "conversation_present",
    "raised_threat_language", "accusatory_language", "police_warning_language",
    "calming_language_used_by_officer", "empathetic_statements", "tone_softening_cues"}
    for n in FEATURE_NAMES}})
VOICES = [{"id": "V1", "role_hint": "police officer", "name": "Officer Vega",
           "description": "calm voice at the car window"},
          {"id": "V2", "role_hint": "civilian, the driver", "name": "",
           "description": "the driver"}]


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    pytest.importorskip("faster_whisper")
    pytest.importorskip("transformers")
    from tiny_whisper import session_model

    return session_model(tmp_path_factory)


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    make_clip(root / "clip.webm", "Good evening, officer. Why did you stop me?", seconds=3.0)
    make_page(root)
    with serve_dir(root) as base:
        yield f"{base}/watch.html"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_local_pipeline_from_a_web_page_to_the_corpus(tmp_path, site, tiny_whisper,
                                                      monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-pipeline")
    monkeypatch.chdir(tmp_path)
    assert main(["acquire", "add", site]) == 0
    with FakeOpenAIServer() as attribution, FakeOpenAIServer(Say(ACCEPT)) as judge:
        attribution.default = Say(json.dumps({"voices": VOICES, "segments": [
            {"i": 0, "voice": "V1"}, {"i": 1, "voice": "V2"}]}))
        code = main(["acquire", "run", "--executor", "inline", "--diarizer", "local",
                     "--whisper-model", str(tiny_whisper), "--device", "cpu",
                     "--attribution", f"openai:{attribution.url}#fake-model",
                     "--judge", f"openai:{judge.url}#fake-model"])
        assert code == 0
        assert len(judge.posts()) == 1 and len(attribution.posts()) == 1
    with Manifest(tmp_path / "deescalwild-acquire.db") as m:
        status = m.status()
        (video,) = m.videos()
        rows = m.stages_of(video.id)
    assert {s: {k for k, n in c.items() if n} for s, c in status["stages"].items()} == {
        s: {"done"} for s in status["stages"]}, [(r.stage, r.last_error) for r in rows.values()]
    assert video.meta["title"].startswith("Traffic stop on Main Street")
    assert video.meta["captions"] == ["en"]
    assert rows["diarize"].private["voices"]["V1"]["name"] == "Officer Vega"  # manifest only

    exported = tmp_path / "acquired" / f"{video.id}.csv"
    csv_rows = read_rows(exported)
    assert [r["speaker_label"] for r in csv_rows] == ["[Police Officer 1]", "[Civilian 1]"]
    assert all(r["transcript"] for r in csv_rows)
    for f in (exported, exported.with_suffix(".json")):
        assert "Vega" not in f.read_text(encoding="utf-8")
    data = json.loads(exported.with_suffix(".json").read_text(encoding="utf-8"))
    assert data["schema"] == "deescalwild.transcript/1"
    assert all(s["words"] for s in data["segments"])  # word timings from faster-whisper

    scenarios, summary = import_transcripts([tmp_path / "acquired"])
    (sc,) = scenarios
    assert [t.role for t in sc.turns] == [Role.OFFICER, Role.CIVILIAN]
    assert summary.to_dict()["companions"] == 1
    report = json.loads((tmp_path / "acquire-report" / "relevance-report.json").read_text())
    assert report["counts"]["accepted"] == 1
    assert not list((tmp_path / "acquire-work" / "tmp").glob("*"))  # downloads cleaned up

    # a second run has nothing to do and asks nobody anything
    assert main(["acquire", "run", "--executor", "inline", "--diarizer", "local",
                 "--whisper-model", str(tiny_whisper)]) == 0


def test_gemini_pipeline_skips_transcription_and_exports(tmp_path, site, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-pipeline")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-pipeline")
    monkeypatch.chdir(tmp_path)
    assert main(["acquire", "add", site]) == 0
    answer = {"voices": VOICES, "segments": [
        {"start": "00:00", "voice": "V1", "text": "Good evening. License and registration."},
        {"start": "00:02", "voice": "V2", "text": "Why did you stop me?"}]}
    with FakeGeminiServer(Say(json.dumps(answer))) as gem, \
            FakeOpenAIServer(Say(ACCEPT)) as judge:
        assert main(["acquire", "run", "--executor", "inline", "--gemini-base-url", gem.url,
                     "--judge", f"openai:{judge.url}#fake-model"]) == 0
        (post,) = gem.posts()
    blob = post.body["contents"][0]["parts"][0]["inlineData"]
    assert (blob.get("mimeType") or blob.get("mime_type")) == "audio/wav"
    wav = base64.b64decode(blob["data"])
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    with Manifest(tmp_path / "deescalwild-acquire.db") as m:
        (video,) = m.videos()
        rows = m.stages_of(video.id)
    assert rows["transcribe"].status == "skipped"
    assert "gemini transcribes" in rows["transcribe"].last_error
    assert rows["export"].status == "done"
    csv_rows = read_rows(tmp_path / "acquired" / f"{video.id}.csv")
    assert [(r["start_time"], r["speaker_label"]) for r in csv_rows] == [
        ("00:00", "[Police Officer 1]"), ("00:02", "[Civilian 1]")]
