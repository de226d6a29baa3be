"""Checks that turn a diarizer's reply into segments or into a failure with its reason.

The reference diarizer stored whatever came back: truncated JSON, empty lists, loops of one line.
Everything here is pure (no network, no SDK) so each guard is tested on its own:

- `json_object`: the reply as a JSON object (a code fence or prose around it is tolerated);
- `validate_reply`: the shape {"voices": [...], "segments": [...]} checked with pydantic, then
  voice ids declared and unique, timestamps readable and inside the audio (plus `slack_s`);
- `repetition`: degenerate output, the way decoding loops look (thresholds below);
- `parse_timestamp`: "MM:SS", "H:MM:SS" (fractions of a second allowed) -> seconds.

A guard raises `GuardError`; its message is the one line the manifest keeps.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["LONG_BLOCK_MAX", "LONG_LOOP_MAX_N", "LOOP_MAX_BLOCK", "LOOP_MAX_N",
           "MIN_BLOCK_REPEATS", "MIN_LONG_BLOCK_REPEATS", "MIN_LONG_LOOP_REPEATS",
           "MIN_LOOP_REPEATS", "MIN_LOOP_WORDS",
           "GuardError", "ReplyShape", "SegmentShape", "VoiceShape", "json_object",
           "parse_timestamp", "period_runs", "pydantic_reason", "repeated_block", "repetition",
           "timestamp_slack", "validate_reply", "word_loop", "words"]

# Degenerate repetition (decoding loops), chosen so that shouted repetition is not flagged:
# - inside one segment: a word n-gram (n <= LOOP_MAX_N) said back to back at least
#   max(MIN_LOOP_REPEATS, ceil(MIN_LOOP_WORDS / n)) times: "Stop! Stop! Stop!" (3) and even
#   twenty "no"s pass; forty "no"s, twenty "get out"s or twelve "get on the ground"s in one turn
#   are a loop; a whole sentence (13 to LONG_LOOP_MAX_N words) needs only
#   MIN_LONG_LOOP_REPEATS: nobody says the same long sentence six times in a row, and models
#   loop on whole sentences. (A phrase of 12 words or fewer is never judged more leniently as a
#   multiple of itself: k back-to-back copies form a block of 13+ words only when k >= 2, and
#   then six blocks are 12+ copies, what the short rule asks.) A sentence longer than
#   LONG_LOOP_MAX_N words is not checked: the cost is O(words) per n;
# - across segments: a block of 1..LOOP_MAX_BLOCK consecutive segments with the same text
#   repeated back to back at least MIN_BLOCK_REPEATS times (ten identical turns in a row, or an
#   exchange of two lines played ten times); a block of LOOP_MAX_BLOCK+1..LONG_BLOCK_MAX
#   segments needs MIN_LONG_BLOCK_REPEATS; a block of fewer than three words ("No.",
#   "[inaudible]") needs three times as many. A block that is itself a shorter block
#   repeated ("No." / "Stop." twice or three times) is judged as the shorter one, so short
#   lines cannot slip under the three-times rule or the long blocks' lower count. One segment
#   per speaker turn means a person who repeats themself stays inside one segment.
LOOP_MAX_N = 12
LONG_LOOP_MAX_N = 40
MIN_LOOP_REPEATS = 12
MIN_LONG_LOOP_REPEATS = 6
MIN_LOOP_WORDS = 40
LOOP_MAX_BLOCK = 4
LONG_BLOCK_MAX = 12
MIN_BLOCK_REPEATS = 10
MIN_LONG_BLOCK_REPEATS = 5
# Timestamps may overrun the audio by this much (models round and drift on long audio).
SLACK_MIN_S = 10.0
SLACK_FRACTION = 0.02

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)
_TIME = re.compile(r"^(?:(\d+):([0-5]?\d):|(\d+):)([0-5]?\d(?:\.\d+)?)$")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


class GuardError(ValueError):
    """A reply that must not count as a result; the message says why, in one line."""


# --- JSON --------------------------------------------------------------------------------
def json_object(text: str) -> Any:
    """The JSON object in a reply; a ```json fence or prose around the braces is tolerated
    (chat models add them even when told not to)."""
    s = text.strip()
    if not s:
        raise GuardError("empty reply")
    m = _FENCE.match(s)
    if m:
        s = m.group(1)
    if not s.startswith("{"):
        a, b = s.find("{"), s.rfind("}")
        if a < 0 or b < a:
            raise GuardError("malformed JSON: no JSON object in the reply")
        s = s[a:b + 1]
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise GuardError(f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno} "
                         f"(reply of {len(text)} characters)") from e


# --- timestamps --------------------------------------------------------------------------
def parse_timestamp(value: str) -> float:
    """"MM:SS" or "H:MM:SS" (seconds may have a fraction) -> seconds. Minutes may pass 59
    without an hour part ("75:30"), as models write them. Raises ValueError otherwise."""
    m = _TIME.match(str(value).strip())
    if m is None:
        raise ValueError(f"timestamp {value!r} is not MM:SS or H:MM:SS")
    hours, minutes_h, minutes, seconds = m.groups()
    if hours is not None:
        return int(hours) * 3600 + int(minutes_h) * 60 + float(seconds)
    return int(minutes) * 60 + float(seconds)


def timestamp_slack(duration_s: float) -> float:
    """How far past the end of the audio a start time may be before it counts as invented."""
    return max(SLACK_MIN_S, SLACK_FRACTION * duration_s)


# --- the reply's shape -------------------------------------------------------------------
class VoiceShape(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    role_hint: str = ""
    name: str = ""
    description: str = ""


class SegmentShape(BaseModel):
    model_config = ConfigDict(extra="ignore")

    start: str
    voice: str = Field(min_length=1)
    text: str


class ReplyShape(BaseModel):
    model_config = ConfigDict(extra="ignore")

    voices: list[VoiceShape]
    segments: list[SegmentShape]


def pydantic_reason(e: ValidationError, limit: int = 3) -> str:
    """The first problems of a validation error as `where: what` pairs."""
    errs = e.errors()
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
             for err in errs[:limit]]
    more = f" (+{len(errs) - limit} more)" if len(errs) > limit else ""
    return "; ".join(parts) + more


def validate_reply(data: Any, duration_s: float | None) -> tuple[ReplyShape, list[float]]:
    """The reply checked: shape, unique voice ids, every segment's voice declared, every start
    readable and not past the audio's end plus slack. Returns it with each segment's start in
    seconds. Segments whose text is blank are dropped (nothing was said)."""
    try:
        reply = ReplyShape.model_validate(data)
    except ValidationError as e:
        raise GuardError(f"schema violation: {pydantic_reason(e)}") from e
    ids = [v.id.strip() for v in reply.voices]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise GuardError(f"schema violation: voice id(s) declared twice: {', '.join(dup)}")
    declared = set(ids)
    starts: list[float] = []
    kept: list[SegmentShape] = []
    limit = None if duration_s is None else duration_s + timestamp_slack(duration_s)
    for k, seg in enumerate(reply.segments):
        if not seg.text.strip():
            continue
        voice = seg.voice.strip()
        if voice not in declared:
            known = ", ".join(ids) or "none"
            raise GuardError(f"schema violation: segments[{k}].voice {voice!r} is not a declared "
                             f"voice (declared: {known})")
        try:
            start = parse_timestamp(seg.start)
        except ValueError as e:
            raise GuardError(f"schema violation: segments[{k}].start: {e}") from e
        if limit is not None and start > limit:
            raise GuardError(f"schema violation: segments[{k}].start {seg.start} is past the end "
                             f"of the audio ({duration_s:.1f}s)")
        kept.append(SegmentShape(start=seg.start, voice=voice, text=seg.text))
        starts.append(start)
    for v in reply.voices:
        v.id = v.id.strip()
    reply.segments = kept
    return reply, starts


# --- degenerate repetition ---------------------------------------------------------------
def words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped ("Stop!" and "stop," are the same word)."""
    return _WORD.findall(text.lower())


def period_runs(items: Sequence[Any], n: int) -> list[tuple[int, int]]:
    """(repeats, start) of every stretch where a block of `n` items repeats back to back at
    least twice: position j continues a run while items[j] == items[j - n]."""
    runs: list[tuple[int, int]] = []
    run = 0
    for j in range(n, len(items) + 1):
        if j < len(items) and items[j] == items[j - n]:
            run += 1
            continue
        if run >= n:  # the block came back whole at least once
            runs.append((1 + run // n, j - run - n))
        run = 0
    return runs


def word_loop(text: str) -> str | None:
    """The looped phrase when `text` is degenerate (see the thresholds above), else None."""
    ws = words(text)
    for n in range(1, LONG_LOOP_MAX_N + 1):
        need = (max(MIN_LOOP_REPEATS, math.ceil(MIN_LOOP_WORDS / n)) if n <= LOOP_MAX_N
                else MIN_LONG_LOOP_REPEATS)
        if len(ws) < need * n:
            continue
        for reps, start in period_runs(ws, n):
            if reps >= need:
                return f"{' '.join(ws[start:start + n])!r} x{reps}"
    return None


def _has_shorter_period(block: Sequence[Any]) -> bool:
    """Whether `block` is a shorter block repeated whole (abab, aaa)."""
    n = len(block)
    return any(n % p == 0 and all(block[i] == block[i - p] for i in range(p, n))
               for p in range(1, n // 2 + 1))


def repeated_block(texts: Sequence[str]) -> str | None:
    """The repeated block when consecutive segments loop (see the thresholds above). A block
    of fewer than three words ("No." / "[inaudible]") needs three times as many repeats."""
    norm = [" ".join(words(t)) for t in texts]
    for n in range(1, LONG_BLOCK_MAX + 1):
        need = MIN_BLOCK_REPEATS if n <= LOOP_MAX_BLOCK else MIN_LONG_BLOCK_REPEATS
        if len(norm) < need * n:
            continue
        for reps, start in period_runs(norm, n):
            block = norm[start:start + n]
            if n > 1 and _has_shorter_period(block):
                continue  # judged at its own period, with that period's count
            short = sum(len(t.split()) for t in block) < 3
            if reps >= need * (3 if short else 1):
                shown = " / ".join(t[:40] for t in block)
                return f"segments {start}-{start + reps * n - 1} repeat {shown!r} x{reps}"
    return None


def repetition(texts: Sequence[str]) -> str | None:
    """Why the segments look like a decoding loop, or None when they do not."""
    for k, text in enumerate(texts):
        loop = word_loop(text)
        if loop:
            return f"segment {k} loops {loop}"
    return repeated_block(texts)
