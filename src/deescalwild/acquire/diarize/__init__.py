"""The `diarize` stage: who said what, with roles, for one video.

Three backends (`Settings.diarizer`), each producing voices and segments (`Diarized`):

- `gemini` (gemini.py, the paper's method): the audio in, a JSON schema out, with guards;
- `local` (attribution.py): faster-whisper's segments attributed to voices by an LLM;
- `pyannote` (pyannote.py, optional): speaker turns from pyannote.audio, words assigned by
  time overlap, roles from the LLM attribution when one is given.

What they share happens here: voices get roles through the foundation's role resolution
(voices.py), names go to `StageOutcome.private` only, and the stage file is written atomically
as a `deescalwild.segments/1` Transcript with voices (docs/acquisition.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deescalwild.acquire.diarize.voices import VoiceHint, resolve_voices
from deescalwild.acquire.formats import Segment, Transcript, read_segments, write_segments
from deescalwild.acquire.tasks import StageError, StageOutcome, StageTask, output_path
from deescalwild.errors import InputError

__all__ = ["Diarized", "needs_input", "run_diarize"]


@dataclass
class Diarized:
    """A backend's result before roles: segments whose `voice` is a key of `voices`."""

    source: str  # gemini | local | pyannote
    segments: list[Segment]
    voices: list[VoiceHint]
    language: str | None = None
    duration_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # model/spec, prompt version, tokens...


def needs_input(task: StageTask, name: str, made_by: str) -> Path:
    """The path of an earlier stage's output, or a StageError saying which stage makes it."""
    path = task.inputs.get(name)
    if not path:
        raise StageError(f"diarize ({task.settings.diarizer}) needs {name}: run the {made_by} "
                         "stage first")
    if not Path(path).is_file():
        raise StageError(f"diarize: input {name} is missing on disk: {path}", retryable=True)
    return Path(path)


def read_input(path: Path) -> Transcript:
    """An earlier stage's segments file; a bad one is this stage's failure, in one line."""
    try:
        return read_segments(path)
    except InputError as e:
        raise StageError(str(e)) from e


def run_diarize(task: StageTask) -> StageOutcome:
    """Diarize one video with the configured backend and write `<workdir>/diarize/<id>.json`."""
    backend = task.settings.diarizer
    if backend == "gemini":
        from deescalwild.acquire.diarize.gemini import diarize_gemini

        result = diarize_gemini(task)
    elif backend == "local":
        from deescalwild.acquire.diarize.attribution import diarize_local

        result = diarize_local(task)
    elif backend == "pyannote":
        from deescalwild.acquire.diarize.pyannote import diarize_pyannote

        result = diarize_pyannote(task)
    else:
        raise StageError(f"unknown diarizer {backend!r}; expected gemini, local or pyannote")
    if isinstance(result, StageOutcome):  # skipped (e.g. a transcript without speech)
        return result
    return finish(task, result)


def finish(task: StageTask, result: Diarized) -> StageOutcome:
    """Roles, names kept aside, the stage file, and the outcome."""
    used = {s.voice for s in result.segments}
    hints = [v for v in result.voices if v.id in used]  # a declared voice that never speaks
    voices, names = resolve_voices(task.video, hints, result.segments, result.source)
    transcript = Transcript(source=result.source, segments=result.segments, voices=voices,
                            language=result.language, duration_s=result.duration_s,
                            meta=result.meta)
    path = write_segments(output_path(task.settings, "diarize", task.video.id, ".json"),
                          transcript)
    roles = Counter(v.role for v in voices.values())
    detail = {"voices": len(voices), "segments": len(result.segments), "roles": dict(roles),
              "backend": result.source}
    return StageOutcome(outputs={"json": str(path)}, detail=detail,
                        private={"voices": names} if names else {})
