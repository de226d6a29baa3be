"""Read one acquired transcript (`deescalwild.transcript/1` JSON, written by `acquire`'s export
stage) into a Scenario.

The JSON is the richer twin of the DeEscalWild CSV exported beside it: the same rows, plus word
timings, the voices' roles and the video's metadata. A turn's speaker is the voice's exported
`label` (`[Police Officer 1]`, `[Civilian 2]`, ...), exactly what the CSV says, so role
resolution treats both files alike. Same contract as `csv_transcripts.read_transcript`: bad input
never raises; every problem names the file and the JSON path (`segments[3].start`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from pathlib import Path
from typing import Any

import orjson

from deescalwild.acquire.formats import TRANSCRIPT_SCHEMA
from deescalwild.core import Role, Scenario, Turn
from deescalwild.corpus.csv_transcripts import Problem, ReadResult, platform_of, split_of

# The speaker of a segment that no voice was attributed to (a generic label: no role by itself).
UNATTRIBUTED = "[Unidentified speaker]"
# Video fields copied into the scenario's meta (the same keys a joined YouTube list gives).
VIDEO_META = ("title", "url", "uploader", "channel", "upload_date", "duration_s")
# `discover` reads this much of a .json file to tell a transcript from any other JSON.
SNIFF_BYTES = 4096
_SCHEMA_KEY = re.compile(rb'"schema"\s*:\s*"' + re.escape(TRANSCRIPT_SCHEMA.encode()) + rb'"')

__all__ = ["UNATTRIBUTED", "is_transcript_json", "read_json_transcript"]


def is_transcript_json(path: Path) -> bool:
    """Whether `path` looks like a transcript JSON, from its first few KB only: a folder may
    hold large unrelated JSON files (reports, yt-dlp info) that are not worth parsing. The
    export writes `"schema"` first, so a real transcript always passes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return False
    return _SCHEMA_KEY.search(head) is not None


class _Doc:
    """One file being read: where problems go, with what was skipped kept for the meta."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.skipped: list[dict] = []
        self.warnings: list[dict] = []

    def file_problem(self, message: str) -> ReadResult:
        return ReadResult(None, [*self.problems, Problem(str(self.path), None, "file", message)])

    def skip(self, index: int, reason: str, raw: Any) -> None:
        self.problems.append(Problem(str(self.path), None, "row", f"segments[{index}]: {reason}"))
        self.skipped.append({"segment": index, "reason": reason,
                             "raw": orjson.dumps(raw).decode()[:2000]})

    def warn(self, where: str, index: int | None, field_name: str, message: str) -> None:
        self.problems.append(Problem(str(self.path), None, "warning", f"{where}: {message}"))
        self.warnings.append({"segment": index, "field": field_name, "message": message})


def _labels(doc: _Doc, voices: dict[str, Any]) -> dict[str, str]:
    """Voice id -> the label its turns carry (the exported `label`)."""
    labels: dict[str, str] = {}
    for vid, v in voices.items():
        label = v.get("label") if isinstance(v, dict) else None
        if isinstance(label, str) and label.strip():
            labels[vid] = label
        else:
            labels[vid] = f"[Speaker {vid}]"
            doc.warn(f"voices.{vid}.label", None, "label",
                     f"missing; its turns are labelled '[Speaker {vid}]'")
    return labels


def _start(doc: _Doc, i: int, value: Any) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and math.isfinite(value) and value >= 0:
        return float(value)
    doc.warn(f"segments[{i}].start", i, "start",
             f"expected seconds (a number >= 0) or null, found {value!r:.40}; kept as null")
    return None


def _speaker(doc: _Doc, i: int, voice: Any, labels: dict[str, str]) -> str:
    if voice is None:
        return UNATTRIBUTED
    if isinstance(voice, str) and voice in labels:
        return labels[voice]
    doc.warn(f"segments[{i}].voice", i, "voice",
             f"{voice!r:.40} is not a key of voices; speaker '{UNATTRIBUTED}'")
    return UNATTRIBUTED


def _turns(doc: _Doc, segments: list[Any], labels: dict[str, str]) -> list[Turn]:
    turns: list[Turn] = []
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict):
            doc.skip(i, f"expected an object, found {type(seg).__name__}", seg)
            continue
        text = seg.get("text")
        if not isinstance(text, str) or not text.strip():
            doc.skip(i, "no text (expected a non-empty string); segment skipped", seg)
            continue
        start = _start(doc, i, seg.get("start"))
        speaker = _speaker(doc, i, seg.get("voice"), labels)
        turns.append(Turn(len(turns), start, speaker, Role.UNKNOWN, text, [], None))
    return turns


def _meta(doc: _Doc, data: dict[str, Any], raw: bytes, rows: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"sha256": hashlib.sha256(raw).hexdigest(), "rows": rows}
    video = data.get("video")
    if isinstance(video, dict):
        meta.update({k: video[k] for k in VIDEO_META if video.get(k) is not None})
    elif video is not None:
        doc.warn("video", None, "video", "expected an object; no video metadata kept")
    meta["acquired"] = True
    if isinstance(data.get("source"), str):
        meta["diarizer"] = data["source"]
    relevance = data.get("relevance")
    if isinstance(relevance, dict):
        meta["relevance"] = {k: relevance[k] for k in ("accepted", "reason", "scores")
                             if k in relevance}
    return meta


def read_json_transcript(path: str | Path, split: str | None = None) -> ReadResult:
    """Parse one transcript JSON. `split` overrides the split read from the parent folder."""
    path = Path(path)
    doc = _Doc(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        return doc.file_problem(f"cannot read: {e.strerror}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return doc.file_problem(f"not JSON ({e}): expected a {TRANSCRIPT_SCHEMA} file")
    if not isinstance(data, dict):
        return doc.file_problem(f"expected a JSON object with \"schema\": \"{TRANSCRIPT_SCHEMA}\"")
    if data.get("schema") != TRANSCRIPT_SCHEMA:
        return doc.file_problem(f"schema: expected \"{TRANSCRIPT_SCHEMA}\", found "
                                f"{data.get('schema')!r:.60}")
    voices = data.get("voices") if data.get("voices") is not None else {}
    if not isinstance(voices, dict):
        return doc.file_problem("voices: expected an object (voice id -> voice)")
    segments = data.get("segments")
    if not isinstance(segments, list):
        return doc.file_problem("segments: expected a list of segments")

    turns = _turns(doc, segments, _labels(doc, voices))
    if not turns:
        return doc.file_problem("no segment with text")
    meta = _meta(doc, data, raw, len(turns))
    if doc.warnings:
        meta["warnings"] = doc.warnings
    if doc.skipped:
        meta["skipped_rows"] = doc.skipped
    backwards = sum(1 for a, b in itertools.pairwise(t.start for t in turns)
                    if a is not None and b is not None and b < a)
    if backwards:
        meta["timestamps_backwards"] = backwards
    video = data.get("video") if isinstance(data.get("video"), dict) else {}
    platform = video.get("platform")
    scenario = Scenario(
        id=path.stem,
        platform=platform.lower() if isinstance(platform, str) and platform else platform_of(path),
        split=split if split is not None else split_of(path),
        source=str(path),
        turns=turns,
        meta=meta,
    )
    return ReadResult(scenario, doc.problems)
