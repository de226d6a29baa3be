"""The audio stage (acquire/audio.py) end to end: yt-dlp downloads a clip from a local server,
ffmpeg makes 16 kHz mono 16-bit WAV; too-long videos are skipped, unknown-length ones cut;
failures are clear and leave no temporary files."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest
from media_fixtures import flaky_server, make_clip, needs_ffmpeg, serve_dir

from deescalwild.acquire import audio
from deescalwild.acquire.audio import run_audio
from deescalwild.acquire.tasks import Settings, StageError, StageTask, VideoRef, output_path

pytestmark = needs_ffmpeg


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    make_clip(root / "clip.webm", seconds=3.0)
    make_clip(root / "clip.mp4", seconds=3.0)
    return root


def settings(tmp_path: Path, **kw) -> Settings:
    kw.setdefault("backoff_base_s", 0.01)
    return Settings(workdir=str(tmp_path / "w"), out_dir=str(tmp_path / "out"),
                    allow_file_urls=True, **kw)


def task(url: str, s: Settings, duration: float | None = 3.0) -> StageTask:
    return StageTask(video=VideoRef(id="generic_clip", url=url, meta={"duration_s": duration}),
                     stage="audio", settings=s)


def leftovers(s: Settings) -> list[Path]:
    return [p for p in s.path("tmp").rglob("*") if p.is_file()] if s.path("tmp").exists() else []


def wav_params(path: str | Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as w:
        return (w.getframerate(), w.getnchannels(), w.getsampwidth(),
                w.getnframes() / w.getframerate())


@pytest.mark.parametrize("name", ["clip.webm", "clip.mp4"])
def test_audio_from_local_server_is_16k_mono_s16(media, tmp_path, name):
    s = settings(tmp_path)
    with serve_dir(media) as base:
        out = run_audio(task(f"{base}/{name}", s))
    assert out.status == "done"
    wav = Path(out.outputs["wav"])
    assert wav == output_path(s, "audio", "generic_clip", ".wav")
    rate, channels, width, seconds = wav_params(wav)
    assert (rate, channels, width) == (16000, 1, 2)
    source_s = audio._probe(media / name)["duration_s"]  # espeak's speech: ~2.3 s of 3 s at most
    assert 1.5 < source_s <= 3.05 and seconds == pytest.approx(source_s, abs=0.05)
    d = out.detail
    assert d["duration_s"] == pytest.approx(seconds, abs=1e-3) and d["bytes"] == wav.stat().st_size
    assert d["cut"] is False and d["source"]["container"] == name.split(".")[1]
    assert d["source"]["codec"] in ({"opus", "vorbis"} if name.endswith("webm") else {"aac"})
    assert leftovers(s) == [] and list(wav.parent.iterdir()) == [wav]


def test_conversion_is_reproducible(media, tmp_path):
    """The same download converts to the same bytes (the manifest's hash does not change)."""
    s1, s2 = settings(tmp_path / "a"), settings(tmp_path / "b")
    url = (media / "clip.webm").as_uri()
    a, b = run_audio(task(url, s1)), run_audio(task(url, s2))
    assert Path(a.outputs["wav"]).read_bytes() == Path(b.outputs["wav"]).read_bytes()


def test_too_long_is_skipped_before_download(tmp_path):
    s = settings(tmp_path, max_duration_s=600)
    out = run_audio(task("http://127.0.0.1:9/never-fetched.webm", s, duration=4000.5))
    assert out.status == "skipped"
    assert "4000.5" in out.error and "600" in out.error
    assert not s.path("audio").exists()


def test_unknown_duration_is_cut_at_max(media, tmp_path):
    s = settings(tmp_path, max_duration_s=1.0)
    out = run_audio(task((media / "clip.webm").as_uri(), s, duration=None))
    assert wav_params(out.outputs["wav"])[3] == pytest.approx(1.0, abs=0.02)
    assert out.detail["cut"] is True and out.detail["source"]["duration_s"] > 1.5


def test_404_fails_not_retryable_and_cleans_up(media, tmp_path):
    s = settings(tmp_path)
    with serve_dir(media) as base, pytest.raises(StageError) as e:
        run_audio(task(f"{base}/missing.webm", s))
    assert e.value.retryable is False and "404" in e.value.reason
    assert leftovers(s) == [] and not s.path("audio").exists()


def test_429_then_ok_succeeds(media, tmp_path):
    s = settings(tmp_path)
    with flaky_server(media) as srv:
        srv.fail("/clip.webm", 429)
        out = run_audio(task(f"{srv.url}/clip.webm", s))
    assert out.status == "done" and [c for _, c in srv.requests][:2] == [429, 200]
    assert wav_params(out.outputs["wav"])[0] == 16000


def test_ffmpeg_failure_reports_its_error_and_cleans_up(media, tmp_path):
    """A file ffmpeg cannot read: its complaint reaches the reason; temp files go."""
    s = settings(tmp_path)
    junk = tmp_path / "src" / "noaudio.webm"
    junk.parent.mkdir()
    junk.write_bytes(b"\x1aE\xdf\xa3 this is not a real webm" * 50)
    with pytest.raises(StageError, match=r"ffmpeg could not convert media\.webm: .+") as e:
        run_audio(task(junk.as_uri(), s))
    assert "\n" not in e.value.reason
    assert leftovers(s) == [] and not s.path("audio").exists()


def test_interrupt_during_conversion_cleans_up(media, tmp_path, monkeypatch):
    s = settings(tmp_path)

    def interrupted(src, dest, *a, **kw):
        Path(dest).write_bytes(b"RIFF partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(audio, "to_wav", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_audio(task((media / "clip.webm").as_uri(), s))
    assert leftovers(s) == [] and not s.path("audio").exists()


def test_missing_ffmpeg_says_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StageError, match=r"ffmpeg is not installed.*apt-get install ffmpeg"):
        run_audio(task("http://127.0.0.1:9/clip.webm", settings(tmp_path)))


def _video_only(path: Path) -> Path:
    import subprocess

    from media_fixtures import FFMPEG

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=black:s=64x48:d=2", "-an", str(path)], check=True,
                   capture_output=True)
    return path


def _no_ffprobe(media: Path) -> dict:
    return {"file": media.name, "container": media.suffix.lstrip("."),
            "bytes": media.stat().st_size}


@pytest.mark.parametrize("ffprobe", [True, False])
def test_video_without_audio_says_so(tmp_path, monkeypatch, ffprobe):
    """Not ffmpeg's advice ("To ignore this, add a trailing '?' to the map"): the problem."""
    if not ffprobe:
        monkeypatch.setattr(audio, "_probe", _no_ffprobe)
    s = settings(tmp_path)
    src = _video_only(tmp_path / "src" / "vonly.mp4")
    with pytest.raises(StageError) as e:
        run_audio(task(src.as_uri(), s))
    assert e.value.reason == "no audio stream in media.mp4" and e.value.retryable is False
    assert leftovers(s) == [] and not s.path("audio").exists()


def test_ffmpeg_error_line_is_the_error_not_the_advice():
    lines = ["Input #0, matroska,webm, from 'x':", "[matroska @ 0x1] Error parsing header",
             "Use -h to get help"]
    assert audio._ffmpeg_error(lines) == "[matroska @ 0x1] Error parsing header"
    assert audio._ffmpeg_error(["x.webm: Invalid data found", "Conversion failed!"]) == \
        "x.webm: Invalid data found Conversion failed!"
    assert audio._ffmpeg_error([]) == ""


def test_cut_is_reported_without_ffprobe(media, tmp_path, monkeypatch):
    """The source's length unknown (no ffprobe, no metadata): a WAV that reached
    max_duration_s was cut."""
    monkeypatch.setattr(audio, "_probe", _no_ffprobe)
    s = settings(tmp_path, max_duration_s=1.0)
    out = run_audio(task((media / "clip.webm").as_uri(), s, duration=None))
    assert out.detail["duration_s"] == pytest.approx(1.0, abs=0.02)
    assert out.detail["cut"] is True and "duration_s" not in out.detail["source"]
    whole = run_audio(task((media / "clip.webm").as_uri(), settings(tmp_path / "b")))
    assert whole.detail["cut"] is False
