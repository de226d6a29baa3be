"""The `audio` stage: a video's best audio as 16 kHz mono 16-bit PCM WAV, what Whisper and the
diarizers read.

yt-dlp downloads the best audio-only format (else the best single file) into a private folder
under `<workdir>/tmp/`; ffmpeg converts it, cutting at `max_duration_s`, into a temporary WAV in
that folder, which is then renamed to `<workdir>/audio/<id>.wav` (the same file system, so the
rename is atomic: a half-written WAV never carries the output's name). The folder is removed
whatever happens, Ctrl-C included. Videos known to be longer than `max_duration_s` are skipped
before anything is downloaded; those of unknown length are cut.

The output is made with ffmpeg's bit-exact flags, so converting the same download again gives
the same bytes (and the same hash in the manifest).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

from deescalwild.acquire import ytdlp
from deescalwild.acquire.tasks import StageError, StageOutcome, StageTask, output_path

__all__ = ["SAMPLE_RATE", "run_audio", "to_wav", "wav_duration"]

SAMPLE_RATE = 16000


def run_audio(task: StageTask) -> StageOutcome:
    """Download, convert, cut; see the module docstring."""
    s = task.settings
    duration = task.video.meta.get("duration_s")
    if duration is not None and float(duration) > s.max_duration_s:
        return StageOutcome.skipped(
            f"video lasts {float(duration):g} s, longer than max_duration_s {s.max_duration_s:g} s",
            duration_s=float(duration), max_duration_s=s.max_duration_s)
    ffmpeg = _ffmpeg()
    out = output_path(s, "audio", task.video.id, ".wav")
    tmp_root = s.path("tmp")
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"audio-{task.video.id}-", dir=tmp_root))
    try:
        media = ytdlp.download(task.video.url, s, tmp)
        source = _probe(media)
        if source.get("audio_streams") == 0:
            raise StageError(f"no audio stream in {media.name}")
        source.pop("audio_streams", None)
        part = tmp / "audio.wav"
        to_wav(media, part, s.max_duration_s, ffmpeg=ffmpeg)
        seconds = wav_duration(part)
        if seconds <= 0:
            raise StageError(f"ffmpeg produced no audio from {media.name} "
                             f"({source.get('codec') or 'unknown codec'})")
        _fsync(part)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    src_seconds = source.get("duration_s")
    detail: dict[str, Any] = {
        "duration_s": round(seconds, 3), "bytes": out.stat().st_size,
        "sample_rate": SAMPLE_RATE, "channels": 1,
        # cut: the WAV reached the limit (whatever ffprobe said, or when it could not say),
        # or the source is known to be longer
        "cut": bool(seconds >= s.max_duration_s - 0.05
                    or (src_seconds is not None and src_seconds > s.max_duration_s + 0.05)),
        "source": source}
    return StageOutcome(outputs={"wav": str(out)}, detail=detail)


def to_wav(src: str | Path, dest: str | Path, max_duration_s: float | None = None, *,
           ffmpeg: str | None = None) -> Path:
    """Convert the first audio stream of `src` to 16 kHz mono PCM s16le WAV at `dest` (not
    atomic: `dest` is a temporary name of the caller's). `StageError` when it fails: "no audio
    stream in <name>" when `src` has none, else ffmpeg's first error line (or its last two)."""
    ffmpeg = ffmpeg or _ffmpeg()
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
           "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
           "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"]
    if max_duration_s is not None:
        cmd += ["-t", f"{max_duration_s:.3f}"]
    cmd += ["-f", "wav", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        lines = [x.strip() for x in proc.stderr.splitlines() if x.strip()]
        if any("matches no streams" in x for x in lines):  # our `-map 0:a:0`
            raise StageError(f"no audio stream in {Path(src).name}")
        raise StageError(f"ffmpeg could not convert {Path(src).name}: "
                         f"{_ffmpeg_error(lines) or f'exit status {proc.returncode}'}")
    return Path(dest)


def _ffmpeg_error(lines: list[str]) -> str:
    """What went wrong, from ffmpeg's stderr lines: the first that says "error", else the last
    two (its last line alone is often advice, not the problem)."""
    first = next((x for x in lines if "error" in x.lower()), None)
    return first if first is not None else " ".join(lines[-2:])


def wav_duration(path: str | Path) -> float:
    """Seconds of audio in a PCM WAV file, read from its header."""
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        return w.getnframes() / rate if rate else 0.0


def _ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if not found:
        raise StageError("ffmpeg is not installed or not on PATH: install it (Debian/Ubuntu: "
                         "apt-get install ffmpeg; macOS: brew install ffmpeg) and rerun")
    return found


def _probe(media: Path) -> dict[str, Any]:
    """What was downloaded: container, audio codec, bytes, seconds (ffprobe; what it cannot
    tell is left out). `audio_streams` is 0 when ffprobe read the file and found no audio."""
    info: dict[str, Any] = {"file": media.name, "container": media.suffix.lstrip("."),
                            "bytes": media.stat().st_size}
    ffprobe = shutil.which("ffprobe")
    if not ffprobe:
        return info
    entries = "stream=codec_name,sample_rate,channels,duration:format=format_name,duration"
    cmd = [ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries", entries,
           "-of", "json", str(media)]
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        data = json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                                         check=True).stdout)
        stream = (data.get("streams") or [{}])[0]
        fmt = data.get("format") or {}
        if fmt and not data.get("streams"):
            info["audio_streams"] = 0
        info.update({"format": fmt.get("format_name"), "codec": stream.get("codec_name"),
                     "sample_rate": _int(stream.get("sample_rate")),
                     "channels": stream.get("channels")})
        # the audio stream's length when the container tells it (an mp4's video track may
        # run longer), else the file's
        seconds = next((d for d in (stream.get("duration"), fmt.get("duration"))
                        if d not in (None, "N/A")), None)
        if seconds is not None:
            info["duration_s"] = round(float(seconds), 3)
    return {k: v for k, v in info.items() if v is not None}


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
