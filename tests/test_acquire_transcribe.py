"""The transcribe stage (acquire/transcribe.py): faster-whisper on a tiny model built here
(tests/tiny_whisper.py), and captions fetched by yt-dlp from a local page with a caption track."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from media_fixtures import FFMPEG, VTT, make_clip, make_page, needs_ffmpeg, serve_dir
from tiny_whisper import SCRIPT, session_model

from deescalwild.acquire import transcribe
from deescalwild.acquire.audio import to_wav, wav_duration
from deescalwild.acquire.formats import read_segments
from deescalwild.acquire.tasks import Settings, StageError, StageTask, VideoRef, output_path
from deescalwild.acquire.transcribe import choose_captions, run_transcribe

pytestmark = needs_ffmpeg


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    pytest.importorskip("faster_whisper")
    pytest.importorskip("transformers")
    return session_model(tmp_path_factory)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("speech")
    return to_wav(make_clip(root / "clip.webm", seconds=3.0), root / "clip.wav")


def whisper_settings(tmp_path: Path, model: Path, **kw) -> Settings:
    kw.setdefault("vad", False)
    return Settings(workdir=str(tmp_path / "w"), out_dir=str(tmp_path / "out"),
                    whisper_model=str(model), whisper_device="cpu", compute_type="float32",
                    **kw)


def task(s: Settings, url: str = "http://127.0.0.1:9/clip.webm", **inputs: str) -> StageTask:
    return StageTask(video=VideoRef(id="generic_clip", url=url, meta={"duration_s": 3.0}),
                     stage="transcribe", settings=s,
                     inputs={k.replace("_", "."): v for k, v in inputs.items()})


def test_whisper_writes_segments_with_word_timings(tiny_whisper, speech_wav, tmp_path):
    s = whisper_settings(tmp_path, tiny_whisper)
    out = run_transcribe(task(s, audio_wav=str(speech_wav)))
    assert out.status == "done"
    assert Path(out.outputs["json"]) == output_path(s, "transcribe", "generic_clip", ".json")
    t = read_segments(out.outputs["json"])
    assert t.source == "whisper" and t.language == "en" and not t.voices
    assert t.duration_s == pytest.approx(wav_duration(speech_wav), abs=0.01)
    # the tiny model's decoder follows a script; the words and their timings come through
    assert [seg.text for seg in t.segments] == [text.strip() for _, text, _ in SCRIPT]
    words = [w for seg in t.segments for w in seg.words]
    assert [w.text for w in words] == " ".join(text for _, text, _ in SCRIPT).split()
    times = [x for w in words for x in (w.start, w.end)]
    assert times == sorted(times) and times[0] >= 0.0 and times[-1] <= t.duration_s + 0.02
    for seg in t.segments:
        assert seg.start <= seg.words[0].start and seg.words[-1].end <= seg.end + 1e-6
        assert all(0.0 <= w.p <= 1.0 for w in seg.words)
    assert t.meta["model"] == str(tiny_whisper) and t.meta["compute_type"] == "float32"
    assert t.meta["vad"] is False and t.meta["faster_whisper"]
    assert out.detail["words"] == len(words) and out.detail["segments"] == 2


def test_model_is_loaded_once_per_settings(tiny_whisper, speech_wav, tmp_path, monkeypatch):
    monkeypatch.setattr(transcribe, "_MODELS", {})
    s = whisper_settings(tmp_path, tiny_whisper)
    run_transcribe(task(s, audio_wav=str(speech_wav)))
    first = dict(transcribe._MODELS)
    run_transcribe(task(whisper_settings(tmp_path / "again", tiny_whisper),
                        audio_wav=str(speech_wav)))
    key = (str(tiny_whisper), "cpu", "float32")
    assert list(transcribe._MODELS) == [key]
    assert transcribe._MODELS[key] is first[key]  # the same object, not a reload


def test_vad_keeps_speech_and_skips_silence(tiny_whisper, speech_wav, tmp_path):
    s = whisper_settings(tmp_path, tiny_whisper, vad=True)
    spoken = run_transcribe(task(s, audio_wav=str(speech_wav)))
    assert spoken.status == "done" and read_segments(spoken.outputs["json"]).meta["vad"] is True
    silence = tmp_path / "silence.wav"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i",
                    "anullsrc=r=16000:cl=mono", "-t", "3", "-c:a", "pcm_s16le", str(silence)],
                   check=True)
    s2 = whisper_settings(tmp_path / "silent", tiny_whisper, vad=True)
    out = run_transcribe(task(s2, audio_wav=str(silence)))
    assert out.status == "skipped" and out.error == "no speech found"
    assert not output_path(s2, "transcribe", "generic_clip", ".json").exists()


def test_whisper_failures_are_clear(tiny_whisper, tmp_path, monkeypatch):
    s = whisper_settings(tmp_path, tiny_whisper)
    with pytest.raises(StageError, match=r"audio stage has not produced audio\.wav"):
        run_transcribe(task(s))
    with pytest.raises(StageError, match="missing: run the audio stage again"):
        run_transcribe(task(s, audio_wav=str(tmp_path / "gone.wav")))
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    with pytest.raises(StageError, match="cannot load Whisper model") as e:
        run_transcribe(task(whisper_settings(tmp_path, empty), audio_wav=str(wav)))
    assert e.value.retryable is False
    monkeypatch.setattr(transcribe, "_MODELS", {})
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if not installed
    with pytest.raises(StageError, match=r"pip install 'deescalwild\[acquire\]'"):
        run_transcribe(task(s, audio_wav=str(wav)))


def test_captions_from_a_page_with_a_track(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    make_clip(root / "clip.webm")
    make_page(root, "clip.webm", VTT)
    s = Settings(workdir=str(tmp_path / "w"), out_dir=str(tmp_path / "out"),
                 transcriber="captions")
    with serve_dir(root) as base:
        out = run_transcribe(task(s, f"{base}/watch.html"))
    assert out.status == "done"
    t = read_segments(out.outputs["json"])
    assert t.source == "captions" and t.language == "en"
    assert t.meta["kind"] == "manual" and t.meta["format"] == "vtt"
    assert [(seg.start, seg.end, seg.text) for seg in t.segments] == [
        (0.0, 1.5, "Good evening, I'm Officer Vega."), (1.5, 3.0, "Why did you stop me?")]
    assert out.detail["kind"] == "manual" and out.detail["segments"] == 2


def test_captions_missing_empty_or_unreachable(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    make_clip(root / "clip.webm")
    s = Settings(workdir=str(tmp_path / "w"), out_dir=str(tmp_path / "out"),
                 transcriber="captions", backoff_base_s=0.01)
    with serve_dir(root) as base:
        make_page(root, "clip.webm", vtt=None)
        out = run_transcribe(task(s, f"{base}/watch.html"))
        assert out.status == "skipped" and out.error == "no captions in en, en-US, en-GB, en-orig"
        make_page(root, "clip.webm", "WEBVTT\n\n")
        out = run_transcribe(task(s, f"{base}/watch.html"))
        assert out.status == "skipped" and out.error == "no speech found"
        make_page(root, "clip.webm", "WEBVTT\n\n00:00.000 --> 00:02.000\n[Music]\n\n"
                  "00:02.000 --> 00:03.000\n\u266a (laughs) \u266a\n")
        out = run_transcribe(task(s, f"{base}/watch.html"))
        assert out.status == "skipped" and out.error == "no speech found"
        (root / "clip.en.vtt").unlink()
        with pytest.raises(StageError, match="HTTP Error 404") as e:
            run_transcribe(task(s, f"{base}/watch.html"))
        assert e.value.retryable is False
    assert not s.path("transcribe").exists()


def test_choose_captions_prefers_manual_then_language_order_then_vtt():
    def track(*exts: str) -> list[dict]:
        return [{"ext": e, "url": f"https://x/{e}"} for e in exts]

    info = {"subtitles": {"fr": track("vtt"), "en-GB": track("json3", "srv3", "vtt")},
            "automatic_captions": {"en": track("json3", "vtt"), "de": track("vtt")}}
    langs = ("en", "en-US", "en-GB", "en-orig")
    assert choose_captions(info, langs) == ("en-GB", "manual", {"ext": "vtt",
                                                                "url": "https://x/vtt"})
    info["subtitles"].pop("en-GB")
    assert choose_captions(info, langs)[:2] == ("en", "automatic")
    assert choose_captions({"subtitles": {"EN-us": track("srt")}}, langs)[:2] == ("EN-us",
                                                                                  "manual")
    assert choose_captions({"subtitles": {"en": track("ttml")}}, langs) is None
    assert choose_captions({}, langs) is None
