"""The `transcribe` stage: segments with word timings, from faster-whisper or from the
platform's captions.

- `whisper` (default) runs faster-whisper on the audio stage's WAV: the model, device and compute
  type come from the settings (a model name is fetched from the Hugging Face hub once and cached
  there; a folder is used as is), Silero VAD skips silence when `vad` is on, words carry their
  timings and probabilities. Decoding does not condition on the previous window, which keeps a
  hallucinated line from repeating through a long video. Loaded models are kept per
  (model, device, compute type) for the worker's later tasks.
- `captions` asks yt-dlp for the video's subtitles: manual ones in `caption_languages` order
  first, then automatic ones, WebVTT preferred; `captions.py` parses them (automatic captions
  keep their word timings; cues that only annotate sound, "[Music]", "(laughs)", are dropped).
  The caption file is fetched with the `http_headers` yt-dlp gives for it.

A transcript without a word is not a success: the stage reports "no speech found" (or "no
captions in ...") as skipped, so later stages never see an empty file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from deescalwild.acquire import ytdlp
from deescalwild.acquire.captions import parse_captions
from deescalwild.acquire.formats import Segment, Transcript, Word, write_segments
from deescalwild.acquire.tasks import Settings, StageError, StageOutcome, StageTask, output_path
from deescalwild.errors import InputError
from deescalwild.responders.retry import is_transport_error, one_line

__all__ = ["choose_captions", "run_transcribe"]

BEAM_SIZE = 5
CAPTION_FORMATS = ("vtt", "srt", "json3")  # in order of preference; what captions.py reads

_MODELS: dict[tuple[str, str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def run_transcribe(task: StageTask) -> StageOutcome:
    """Transcribe one video with `settings.transcriber`; see the module docstring."""
    kind = task.settings.transcriber
    if kind == "whisper":
        return _whisper(task)
    if kind == "captions":
        return _captions(task)
    raise StageError(f"unknown transcriber {kind!r}: expected 'whisper' or 'captions'")


def _whisper(task: StageTask) -> StageOutcome:
    s = task.settings
    wav = task.inputs.get("audio.wav")
    if not wav:
        raise StageError("no audio to transcribe: the audio stage has not produced audio.wav")
    if not Path(wav).is_file():
        raise StageError(f"audio file {wav} is missing: run the audio stage again")
    model = _model(s)
    try:
        pieces, info = model.transcribe(wav, language=s.language, vad_filter=s.vad,
                                        word_timestamps=True, beam_size=BEAM_SIZE,
                                        condition_on_previous_text=False)
        segments = [_segment(p) for p in pieces]  # the generator does the decoding
    except (ValueError, RuntimeError, OSError) as e:
        raise StageError(f"faster-whisper failed on {Path(wav).name}: {one_line(e)}") from e
    segments = [seg for seg in segments if seg.text]
    duration = round(float(info.duration), 3)
    if not segments:
        return StageOutcome.skipped("no speech found", duration_s=duration, vad=s.vad)
    import faster_whisper

    transcript = Transcript(
        source="whisper", segments=segments, language=info.language, duration_s=duration,
        meta={"model": s.whisper_model, "device": s.whisper_device,
              "compute_type": s.compute_type, "vad": s.vad, "beam_size": BEAM_SIZE,
              "language_probability": round(float(info.language_probability), 4),
              "faster_whisper": faster_whisper.__version__})
    out = write_segments(output_path(s, "transcribe", task.video.id, ".json"), transcript)
    speech = getattr(info, "duration_after_vad", None)
    return StageOutcome(outputs={"json": str(out)}, detail={
        "source": "whisper", "language": info.language, "segments": len(segments),
        "words": sum(len(seg.words) for seg in segments), "duration_s": duration,
        "speech_s": None if speech is None else round(float(speech), 3)})


def _model(s: Settings) -> Any:
    """The faster-whisper model for these settings, loaded once per worker."""
    key = (s.whisper_model, s.whisper_device, s.compute_type)
    with _MODELS_LOCK:
        if key in _MODELS:
            return _MODELS[key]
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise StageError("faster-whisper is not installed: pip install "
                             "'deescalwild[acquire]'") from e
        try:
            model = WhisperModel(s.whisper_model, device=s.whisper_device,
                                 compute_type=s.compute_type)
        except Exception as e:  # hub lookups, unreadable folders, unsupported compute types
            raise StageError(f"cannot load Whisper model {s.whisper_model!r} "
                             f"({s.whisper_device}, {s.compute_type}): {one_line(e)}",
                             retryable=is_transport_error(e)) from e
        _MODELS[key] = model
        return model


def _segment(piece: Any) -> Segment:
    words = [Word(_t(w.start), _t(w.end), w.word.strip(), float(w.probability))
             for w in piece.words or [] if w.word.strip()]
    return Segment(_t(piece.start), _t(piece.end), piece.text.strip(), words=words)


def _t(x: Any) -> float:
    return round(float(x), 3)


def _captions(task: StageTask) -> StageOutcome:
    s = task.settings
    info = ytdlp.extract_info(task.video.url, s)
    if info.get("entries") is not None:
        raise StageError(f"{task.video.url} is a playlist, not a video")
    chosen = choose_captions(info, s.caption_languages)
    if chosen is None:
        return StageOutcome.skipped(f"no captions in {', '.join(s.caption_languages)}",
                                    available=sorted(info.get("subtitles") or {}),
                                    automatic=len(info.get("automatic_captions") or {}))
    language, kind, fmt = chosen
    ext = fmt.get("ext")
    where = fmt.get("url") or f"{task.video.url} ({language} captions)"
    body = (fmt["data"].encode("utf-8") if fmt.get("data")
            else ytdlp.fetch(fmt["url"], s, headers=fmt.get("http_headers")))
    try:
        segments = parse_captions(body.decode("utf-8-sig", errors="replace"), ext, where)
    except InputError as e:
        raise StageError(f"unreadable {kind} {language} captions: {e}") from e
    if not segments:
        return StageOutcome.skipped("no speech found", language=language, kind=kind)
    duration = info.get("duration") or task.video.meta.get("duration_s")
    transcript = Transcript(
        source="captions", segments=segments, language=language,
        duration_s=None if duration is None else round(float(duration), 3),
        meta={"language": language, "kind": kind, "format": ext,
              "extractor": info.get("extractor_key") or info.get("extractor")})
    out = write_segments(output_path(s, "transcribe", task.video.id, ".json"), transcript)
    return StageOutcome(outputs={"json": str(out)}, detail={
        "source": "captions", "language": language, "kind": kind, "format": ext,
        "segments": len(segments), "words": sum(len(seg.words) for seg in segments)})


def choose_captions(info: dict[str, Any], languages: tuple[str, ...] | list[str]
                    ) -> tuple[str, str, dict[str, Any]] | None:
    """(language, "manual" | "automatic", format entry) of the captions to use: manual
    subtitles in `languages` order, then automatic captions in that order; within a language
    the first of `CAPTION_FORMATS` offered. Language codes match case-insensitively."""
    for kind, key in (("manual", "subtitles"), ("automatic", "automatic_captions")):
        tracks = {str(k).lower(): (k, v) for k, v in (info.get(key) or {}).items()}
        for lang in languages:
            found = tracks.get(lang.lower())
            if not found:
                continue
            name, formats = found
            for ext in CAPTION_FORMATS:
                for fmt in formats or []:
                    if fmt.get("ext") == ext and (fmt.get("url") or fmt.get("data")):
                        return name, kind, fmt
    return None
