"""The text the relevance judge reads: the video's title and description, then the best
transcript the video has, cleaned of degenerate repetition and cut to a budget.

Which transcript, best first:

1. `diarize.json`: segments with voices and roles -> `Officer (V1): text`;
2. `diarize.csv`: a published DeEscalWild CSV attached at `add` time -> `label: text`
   (labels as published: `Officer Lina`, `[Bystander]`);
3. `transcribe.json`: the words without speakers, one segment per line.

A transcript that exists but has no words is skipped in favour of the next one.

Degenerate repetition: the published corpus has rows that repeat the row before and rows that
loop one phrase for over 100,000 characters ("Please. Please. ..."). Both are collapsed before
the cut (three copies kept, then `[... repeated N times in all]`), so the budget is spent on
speech and the judge still sees that something was repeated.

The cut keeps the head and the tail (how the encounter starts and ends) with
`[... N characters omitted ...]` between them, at line boundaries when one is near.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deescalwild.acquire.formats import read_segments
from deescalwild.acquire.tasks import StageError, StageTask
from deescalwild.errors import InputError

__all__ = ["JudgeText", "build_text", "collapse_repeats", "cut_middle", "transcript_lines"]

SOURCES = ("diarize.json", "diarize.csv", "transcribe.json")
MAX_TITLE = 300
MAX_DESCRIPTION = 600
KEEP_COPIES = 3  # copies of a repeated unit kept before the marker
# a unit (1-120 characters, whole words) followed by at least 5 copies of itself: 6 in a row
# is a loop, while "stop, stop, stop" is speech
_LOOP = re.compile(r"(?<!\S)(\S.{0,118}?)(?:\s+\1){5,}(?!\S)", re.DOTALL)
_HEADINGS = {
    "diarize.json": "Transcript (speaker roles assigned automatically; they may be wrong):",
    "diarize.csv": "Transcript (speaker labels as published):",
    "transcribe.json": "Transcript (no speaker labels):",
}


@dataclass(frozen=True)
class JudgeText:
    """What the judge is shown, and where it came from."""

    text: str  # context + transcript, exactly as sent
    source: str  # which input: diarize.json | diarize.csv | transcribe.json
    truncated: bool
    chars: int  # transcript characters sent (after collapsing and cutting)
    original_chars: int  # transcript characters before collapsing and cutting
    collapsed: int  # repetitions removed (repeated lines + loops)


def _label(role: str, voice: str | None) -> str:
    name = (role or "unknown").capitalize()
    return f"{name} ({voice})" if voice else name


def transcript_lines(source: str, path: str | Path) -> list[str]:
    """One `speaker: text` line per segment or row of an input (no speaker for
    `transcribe.json`). Raises `StageError` when the file cannot be read."""
    try:
        if source == "diarize.csv":
            from deescalwild.corpus.csv_transcripts import read_transcript

            result = read_transcript(path)
            if result.scenario is None:
                why = str(result.problems[0]) if result.problems else f"{path}: unreadable"
                raise StageError(f"cannot read the attached transcript: {why}")
            return [f"{t.speaker.strip() or 'Unknown'}: {' '.join(t.text.split())}"
                    for t in result.scenario.turns if t.text.strip()]
        transcript = read_segments(path)
    except InputError as e:
        raise StageError(str(e)) from e
    lines = []
    for seg in transcript.segments:
        text = " ".join(seg.text.split())
        if not text:
            continue
        if source == "diarize.json":
            voice = transcript.voices.get(seg.voice) if seg.voice else None
            text = f"{_label(voice.role if voice else 'unknown', seg.voice)}: {text}"
        lines.append(text)
    return lines


def _loop(m: re.Match[str]) -> str:
    unit = m.group(1)
    n = 1 + len(re.findall(r"\s+" + re.escape(unit), m.group(0)[len(unit):]))
    return " ".join([unit] * KEEP_COPIES) + f" [... repeated {n} times in all]"


def collapse_repeats(lines: list[str]) -> tuple[list[str], int]:
    """Lines (whitespace normalised) with phrase loops and runs of identical lines collapsed;
    also how many repetitions were removed."""
    removed = 0
    out: list[str] = []
    last, run = None, 0  # the previous line (collapsed) and its copies in a row
    for line in lines:
        new, loops = _LOOP.subn(_loop, " ".join(line.split()))
        removed += loops
        if new == last:
            run += 1
            removed += 1
            out[-1] = f"{new} [line repeated {run} times in all]"
            continue
        last, run = new, 1
        out.append(new)
    return out, removed


def cut_middle(text: str, max_chars: int) -> tuple[str, bool]:
    """`text` if it fits, else its head and tail (about half the budget each, ending and
    starting at a line break when one is within the last fifth) around a marker."""
    if len(text) <= max_chars:
        return text, False
    budget = max(max_chars, 0)
    head_n = budget // 2
    tail_n = budget - head_n
    head = text[:head_n]
    nl = head.rfind("\n")
    if nl >= head_n * 4 // 5:
        head = head[:nl]
    tail = text[len(text) - tail_n:] if tail_n else ""
    nl = tail.find("\n")
    if 0 <= nl <= tail_n // 5:
        tail = tail[nl + 1:]
    omitted = len(text) - len(head) - len(tail)
    return f"{head}\n[... {omitted} characters omitted ...]\n{tail}", True


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def build_text(task: StageTask) -> JudgeText | None:
    """The judge's text for a task, from its best transcript input; None when every
    transcript there is has no words. Raises `StageError` when there is no transcript."""
    found = [s for s in SOURCES if task.inputs.get(s)]
    if not found:
        raise StageError("no transcript: run transcribe or diarize first")
    for source in found:
        raw = transcript_lines(source, task.inputs[source])
        if raw:
            break
    else:
        return None
    lines, collapsed = collapse_repeats(raw)
    body = "\n".join(lines)
    cut, truncated = cut_middle(body, task.settings.max_chars)
    meta = task.video.meta or {}
    context = []
    if meta.get("title"):
        context.append(f"Title: {_short(meta['title'], MAX_TITLE)}")
    channel = meta.get("channel") or meta.get("uploader")
    if channel:
        context.append(f"Channel: {_short(channel, MAX_TITLE)}")
    if meta.get("description"):
        context.append(f"Description: {_short(meta['description'], MAX_DESCRIPTION)}")
    head = "\n".join(context) + ("\n\n" if context else "")
    return JudgeText(text=f"{head}{_HEADINGS[source]}\n{cut}", source=source,
                     truncated=truncated, chars=len(cut),
                     original_chars=len("\n".join(raw)),
                     collapsed=collapsed)
