"""The stage files between transcription and export: segments with words, voices with roles.

One shape serves three stages so that each reads what the one before wrote without adapters:

- `transcribe` writes it with no voices (faster-whisper segments with word timings, or captions);
- `diarize` writes it with every segment's `voice` set and `voices` describing each voice and
  its role (resolved by the foundation's role resolution);
- `export` adds the video's metadata and writes it next to the DeEscalWild CSV
  (`deescalwild.transcript/1`, read back by `deescalwild corpus import`).

Names never enter these files: a voice's name, when the audio says it, is kept in the
manifest only (`StageOutcome.private`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from deescalwild.atomic import atomic_write
from deescalwild.errors import InputError

SEGMENTS_SCHEMA = "deescalwild.segments/1"  # transcribe and diarize stage files
TRANSCRIPT_SCHEMA = "deescalwild.transcript/1"  # export: segments + voices + video metadata

__all__ = ["SEGMENTS_SCHEMA", "TRANSCRIPT_SCHEMA", "Segment", "Transcript", "Voice", "Word",
           "read_segments", "write_segments"]


@dataclass(slots=True)
class Word:
    start: float | None
    end: float | None
    text: str
    p: float | None = None  # recogniser's probability, when it gives one

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"start": self.start, "end": self.end, "text": self.text}
        if self.p is not None:
            d["p"] = round(self.p, 4)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Word:
        return cls(_num(d.get("start")), _num(d.get("end")), str(d["text"]), _num(d.get("p")))


@dataclass(slots=True)
class Segment:
    """A stretch of speech. `start`/`end` in seconds from the start of the audio (None when
    the source gives no timing, e.g. a caption text without cues)."""

    start: float | None
    end: float | None
    text: str
    voice: str | None = None  # a key of Transcript.voices once diarized
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"start": self.start, "end": self.end, "text": self.text}
        if self.voice is not None:
            d["voice"] = self.voice
        if self.words:
            d["words"] = [w.to_dict() for w in self.words]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls(_num(d.get("start")), _num(d.get("end")), str(d.get("text", "")),
                   d.get("voice"), [Word.from_dict(w) for w in d.get("words") or []])


@dataclass(slots=True)
class Voice:
    """One voice of a diarized transcript. `role` is a `core.Role` value; `evidence`,
    `confidence` and `why` say how the role was settled (as in the corpus's speakers)."""

    id: str
    role: str = "unknown"
    evidence: str = ""
    confidence: float = 0.0
    why: str = ""
    description: str = ""  # what the diarizer said about the voice (no names)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "evidence": self.evidence,
                "confidence": round(float(self.confidence), 3), "why": self.why,
                "description": self.description}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Voice:
        return cls(str(d["id"]), str(d.get("role", "unknown")), str(d.get("evidence", "")),
                   float(d.get("confidence") or 0.0), str(d.get("why", "")),
                   str(d.get("description", "")))


@dataclass(slots=True)
class Transcript:
    """Segments of one video. `source`: whisper | captions | list (caption text from a video
    list) | gemini | local | pyannote | attached (an existing DeEscalWild CSV)."""

    source: str
    segments: list[Segment] = field(default_factory=list)
    voices: dict[str, Voice] = field(default_factory=dict)
    language: str | None = None
    duration_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # model, settings: what made it

    @property
    def diarized(self) -> bool:
        return bool(self.voices)

    def text(self) -> str:
        """The words only, one segment per line."""
        return "\n".join(s.text for s in self.segments if s.text.strip())

    def to_dict(self, schema: str = SEGMENTS_SCHEMA) -> dict[str, Any]:
        return {"schema": schema, "source": self.source, "language": self.language,
                "duration_s": self.duration_s, "meta": self.meta,
                "voices": {k: v.to_dict() for k, v in self.voices.items()},
                "segments": [s.to_dict() for s in self.segments]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transcript:
        return cls(source=str(d.get("source", "")),
                   segments=[Segment.from_dict(s) for s in d.get("segments") or []],
                   voices={str(k): Voice.from_dict({"id": k, **v})
                           for k, v in (d.get("voices") or {}).items()},
                   language=d.get("language"), duration_s=_num(d.get("duration_s")),
                   meta=dict(d.get("meta") or {}))


def write_segments(path: str | Path, transcript: Transcript,
                   schema: str = SEGMENTS_SCHEMA, extra: dict[str, Any] | None = None) -> Path:
    """Write atomically (a reader never sees half a file); `extra` adds top-level keys."""
    data = transcript.to_dict(schema)
    if extra:
        data.update(extra)
    with atomic_write(path, "wb", encoding=None) as fh:
        fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return Path(path)


def read_segments(path: str | Path) -> Transcript:
    """Read a segments or transcript file; `InputError` names the file and what is wrong."""
    path = Path(path)
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as e:
        raise InputError(path, None, f"cannot read: {e.strerror or e}") from e
    except orjson.JSONDecodeError as e:
        raise InputError(path, None, f"not JSON ({e}); expected a {SEGMENTS_SCHEMA} file") from e
    if not isinstance(data, dict) or data.get("schema") not in (SEGMENTS_SCHEMA,
                                                                 TRANSCRIPT_SCHEMA):
        raise InputError(path, None, f"expected \"schema\": \"{SEGMENTS_SCHEMA}\" or "
                         f"\"{TRANSCRIPT_SCHEMA}\"")
    try:
        return Transcript.from_dict(data)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(path, None, f"malformed segments: {e!r}") from e


def _num(v: Any) -> float | None:
    return None if v is None else float(v)
