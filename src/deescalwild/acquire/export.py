"""Export stage: an accepted video's transcript as a DeEscalWild CSV plus its JSON twin.

The CSV is byte-for-byte the published corpus's format (`start_time,speaker_label,transcript`,
`MM:SS` times, UTF-8 without BOM, CRLF, minimal quoting), so every tool that reads DeEscalWild
reads it. Its speaker labels are made from the voices' roles, never from names:
`[Police Officer 1]`, `[Civilian 2]`, `[Narrator]`; the role resolution of `corpus import`
settles each from the label alone. The JSON (`deescalwild.transcript/1`) carries what the CSV
cannot: word timings, each voice's role with its evidence, the video's public metadata, the
relevance verdict and what made the transcript. `corpus import` reads the JSON when both are
present. A published CSV attached to the video at `add` time is exported as it is.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from pathlib import Path
from typing import Any

from deescalwild.acquire.formats import (
    TRANSCRIPT_SCHEMA,
    Segment,
    Transcript,
    Voice,
    read_segments,
    write_segments,
)
from deescalwild.acquire.tasks import StageError, StageOutcome, StageTask, file_hash
from deescalwild.atomic import atomic_write
from deescalwild.corpus.csv_transcripts import HEADER, read_transcript
from deescalwild.corpus.json_transcripts import UNATTRIBUTED, is_transcript_json
from deescalwild.errors import InputError

# Role -> the words of its label. Officers, civilians, bystanders and unknown voices are always
# numbered (a video seldom has only one of each, and a number keeps every label stable);
# a narrator or dispatcher is numbered only when there is more than one.
ROLE_WORDS = {"officer": "Police Officer", "civilian": "Civilian", "bystander": "Bystander",
              "narrator": "Narrator", "dispatcher": "Dispatcher", "unknown": "Voice"}
ALWAYS_NUMBERED = frozenset({"officer", "civilian", "bystander", "unknown"})
VIDEO_FIELDS = ("title", "uploader", "channel", "upload_date", "duration_s")

__all__ = ["format_timestamp", "run_export", "voice_labels"]


def format_timestamp(seconds: float | None) -> str:
    """`MM:SS` as in the published files, `H:MM:SS` from an hour on; seconds are truncated
    (a row starts in the second it starts in). No time gives an empty field."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    h, rest = divmod(max(0, int(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def voice_labels(voices: dict[str, Voice], order: list[str]) -> dict[str, str]:
    """Voice id -> exported label, numbered per role in `order` (first appearance)."""
    roles = {vid: voices[vid].role if voices[vid].role in ROLE_WORDS else "unknown"
             for vid in order}
    per_role = Counter(roles.values())
    seen: Counter[str] = Counter()
    labels: dict[str, str] = {}
    for vid in order:
        role = roles[vid]
        seen[role] += 1
        numbered = role in ALWAYS_NUMBERED or per_role[role] > 1
        labels[vid] = f"[{ROLE_WORDS[role]} {seen[role]}]" if numbered else f"[{ROLE_WORDS[role]}]"
    return labels


def run_export(task: StageTask) -> StageOutcome:
    """Write `<out_dir>/<id>.csv`, then `<out_dir>/<id>.json`, for an accepted video."""
    verdict = task.details.get("relevance")
    if not isinstance(verdict, dict) or "accepted" not in verdict:
        raise StageError("no relevance verdict for this video: the relevance stage must run "
                         "before export")
    out = Path(task.settings.out_dir)
    csv_path, json_path = out / f"{task.video.id}.csv", out / f"{task.video.id}.json"
    if not verdict["accepted"]:
        removed = _withdraw(csv_path, json_path)
        return StageOutcome.skipped(f"rejected: {verdict.get('reason') or 'no reason given'}",
                                    withdrawn=removed)
    if "diarize.json" in task.inputs:
        detail = _export_diarized(task, "diarize.json", csv_path, json_path)
    elif "diarize.csv" in task.inputs:
        detail = _export_attached(task, "diarize.csv", csv_path, json_path)
    else:
        raise StageError("no diarized transcript to export (diarize.json, or a DeEscalWild CSV "
                         "attached at add time)")
    return StageOutcome(outputs={"csv": str(csv_path), "json": str(json_path)}, detail=detail)


def _withdraw(csv_path: Path, json_path: Path) -> bool:
    """Remove an earlier export of a video now rejected (a rule or judge changed): the output
    folder holds accepted videos only. Only a pair this stage wrote is removed (the JSON is a
    transcript JSON); JSON first, so a crash never leaves a JSON without its CSV."""
    if not is_transcript_json(json_path):
        return False
    json_path.unlink(missing_ok=True)
    csv_path.unlink(missing_ok=True)
    return True


def _load(path: Path) -> Transcript:
    try:
        return read_segments(path)
    except InputError as e:
        raise StageError(str(e)) from e


def _export_diarized(task: StageTask, name: str, csv_path: Path, json_path: Path) -> dict:
    src = Path(task.inputs[name])
    transcript = _load(src)
    if not transcript.diarized:
        raise StageError(f"{src}: no voices: export needs a diarized transcript")
    segments: list[Segment] = []
    order: list[str] = []
    dropped = unattributed = 0
    for seg in transcript.segments:
        text = seg.text.strip()
        if not text:
            dropped += 1
            continue
        voice = seg.voice if seg.voice in transcript.voices else None
        if voice is None:
            unattributed += 1
        elif voice not in order:
            order.append(voice)
        segments.append(Segment(seg.start, seg.end, text, voice, seg.words))
    if not segments:
        raise StageError(f"{src}: no segment with text to export")
    labels = voice_labels(transcript.voices, order)
    rows = [(format_timestamp(s.start),
             UNATTRIBUTED if s.voice is None else labels[s.voice], s.text) for s in segments]
    _write_csv(csv_path, rows)

    voices = {vid: transcript.voices[vid] for vid in order}
    meta = {k: v for k, v in transcript.meta.items() if k != "private"}
    shown = Transcript(transcript.source, segments, voices, transcript.language,
                       transcript.duration_s, meta)
    _write_json(task, json_path, shown, labels, name)
    roles = Counter(v.role if v.role in ROLE_WORDS else "unknown" for v in voices.values())
    return {"rows": len(rows), "voices": len(voices), "roles": dict(roles),
            "source": transcript.source, "empty_segments": dropped,
            "unattributed_segments": unattributed}


def _export_attached(task: StageTask, name: str, csv_path: Path, json_path: Path) -> dict:
    """The published CSV is copied as it is (its labels are the published ones); the JSON is
    built from it, one voice per distinct label, roles from the corpus's role resolution."""
    from deescalwild.corpus.roles.resolve import resolve_corpus

    src = Path(task.inputs[name])
    result = read_transcript(src)
    sc = result.scenario
    if sc is None:
        first = result.problems[0] if result.problems else f"{src}: unreadable"
        raise StageError(f"attached CSV is not a DeEscalWild transcript: {first}")
    if task.video.meta.get("title"):
        sc.meta["title"] = task.video.meta["title"]  # the resolver reads names in the title
    resolve_corpus([sc])
    ids = {label: f"v{i}" for i, label in enumerate(sc.speakers, start=1)}
    voices = {ids[label]: Voice(ids[label], r.role.value, r.evidence.value, r.confidence, r.why)
              for label, r in sc.speakers.items()}
    segments = [Segment(t.start, None, t.text, ids[t.speaker]) for t in sc.turns if t.text.strip()]
    data = src.read_bytes()
    with atomic_write(csv_path, "wb", encoding=None) as fh:
        fh.write(data)
    meta = {"csv_sha256": sc.meta["sha256"], "csv_rows": len(sc.turns)}
    shown = Transcript("attached", segments, voices, None, task.video.meta.get("duration_s"), meta)
    _write_json(task, json_path, shown, {ids[label]: label for label in ids}, name)
    roles = Counter(v.role for v in voices.values())
    return {"rows": len(sc.turns), "voices": len(voices), "roles": dict(roles),
            "source": "attached", "empty_segments": len(sc.turns) - len(segments),
            "csv_problems": len(result.problems)}


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """CRLF endings and minimal quoting, as the published files; built in memory and written
    as bytes so no platform newline translation touches it."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(HEADER)
    writer.writerows(rows)
    with atomic_write(path, "wb", encoding=None) as fh:
        fh.write(buf.getvalue().encode("utf-8"))


def _write_json(task: StageTask, path: Path, transcript: Transcript, labels: dict[str, str],
                name: str) -> None:
    from deescalwild import __version__

    verdict = task.details["relevance"]
    video = task.video
    extra: dict[str, Any] = {
        "voices": {vid: {**v.to_dict(), "label": labels[vid]}
                   for vid, v in transcript.voices.items()},
        "video": {"id": video.id, "platform": video.platform, "url": video.url,
                  **{k: video.meta.get(k) for k in VIDEO_FIELDS}},
        "relevance": {"accepted": bool(verdict["accepted"]), "reason": verdict.get("reason"),
                      "scores": verdict.get("scores", {})},
        "provenance": {
            "diarizer": transcript.source,
            "models": {k: v for k, v in transcript.meta.items() if "model" in k.lower()},
            "input": {"name": name, **file_hash(task.inputs[name])},
            "deescalwild": __version__,
        },
    }
    write_segments(path, transcript, TRANSCRIPT_SCHEMA, extra=extra)
