"""Caption files (WebVTT, SRT, YouTube's json3) to transcript segments.

What the sites serve is noisier than the formats suggest, and the transcript must not repeat
itself:

- styling and voice tags (`<c.colorE5E5E5>`, `<i>`, `<v Officer>`, `{\\an8}`) and HTML entities
  are removed from the text;
- YouTube's automatic captions "roll": each cue shows the previous line again above the new one,
  and a 10 ms cue repeats the finished line. Such files are recognised (most cues start with the
  previous cue's last line) and each line is kept once, timed by the cue that introduced it;
- their inline timestamps (`word<00:00:01.240><c> next</c>`) become word timings; captions
  without them give segments without words;
- cues that only annotate sound (`[Music]`, `[Applause]`, `♪`, `(laughs)`) are dropped: they are
  not speech, and a track made only of them gives no segments. Annotations within spoken text
  are kept as they are.

Pure functions over text: the transcribe stage downloads the file, these only read it.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import orjson

from deescalwild.acquire.formats import Segment, Word
from deescalwild.errors import InputError

__all__ = ["is_annotation", "parse_captions", "parse_json3", "parse_srt", "parse_vtt"]

_TIME = r"(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3}"
_TIMING = re.compile(rf"^\s*({_TIME})\s*-->\s*({_TIME})")
_INLINE_TIME = re.compile(rf"<({_TIME})>")
_TAG = re.compile(r"</?[A-Za-z][^>]*>|</?\d[^>]*>|\{\\[^}]*\}")
_ROLLING_SHARE = 0.5  # share of cues that repeat the previous line: automatic captions
# sound annotations: [Music], (laughs), music notes; a cue of nothing else is not speech
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|[\u2669-\u266f]")


@dataclass
class _Cue:
    start: float
    end: float
    lines: list[str]  # raw text lines, tags still in
    line_no: int  # where the cue's timing line is, for error messages


def parse_captions(text: str, ext: str | None = None, name: str | None = None) -> list[Segment]:
    """Segments of a caption file; `ext` (vtt, srt, json3) picks the parser, else the content
    does. `name` is the file or URL named in errors."""
    ext = (ext or "").lower().lstrip(".")
    body = text.lstrip("\ufeff").lstrip()
    if ext == "json3" or (not ext and body.startswith("{")):
        return parse_json3(text, name)
    if ext == "srt":
        return parse_srt(text, name)
    if ext == "vtt" or body.startswith("WEBVTT"):
        return parse_vtt(text, name)
    if not body or any(_TIMING.match(x) for x in _lines(text)):
        return parse_srt(text, name)
    raise InputError(name, None, "not a caption file: expected WebVTT, SRT or YouTube json3")


def parse_vtt(text: str, name: str | None = None) -> list[Segment]:
    """WebVTT: header, NOTE/STYLE/REGION blocks and cue ids are skipped; cue settings after the
    timing (`align:start position:0%`) are ignored."""
    lines = _lines(text)
    if not lines or not lines[0].lstrip("\ufeff").startswith("WEBVTT"):
        raise InputError(name, 1, "expected a WebVTT file starting with 'WEBVTT'")
    return _speech(_segments(_cues(lines, name)))


def parse_srt(text: str, name: str | None = None) -> list[Segment]:
    """SubRip: numbered blocks of `00:00:01,000 --> 00:00:02,500` and text lines."""
    lines = _lines(text)
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return _speech(_segments(_cues(lines, name)))


def parse_json3(text: str, name: str | None = None) -> list[Segment]:
    """YouTube's json3: `events` with `tStartMs`, `dDurationMs` and `segs` of `utf8` text, each
    with a `tOffsetMs` in automatic captions (which become word timings). Events that only
    open a caption window or break a line carry no text and are skipped."""
    try:
        data = orjson.loads(text)
        events = data["events"]
        if not isinstance(events, list):
            raise TypeError("events is not a list")
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(name, None, f"expected YouTube json3 captions with 'events' ({e})") from e
    timed: list[tuple[float, float, list[tuple[float | None, str]]]] = []
    for i, ev in enumerate(events):
        segs = ev.get("segs") if isinstance(ev, dict) else None
        if not segs or "tStartMs" not in ev:
            continue
        try:
            start = float(ev["tStartMs"]) / 1000.0
            end = start + float(ev.get("dDurationMs") or 0) / 1000.0
            pieces = [(None if "tOffsetMs" not in s else start + float(s["tOffsetMs"]) / 1000.0,
                       str(s.get("utf8", ""))) for s in segs]
        except (TypeError, ValueError, AttributeError) as e:
            raise InputError(name, None, f"event {i}: bad timing or text ({e})") from e
        if "".join(p for _, p in pieces).strip():
            timed.append((start, end, pieces))
    out: list[Segment] = []
    for k, (start, end, pieces) in enumerate(timed):
        if k + 1 < len(timed) and start < timed[k + 1][0] < end:
            end = timed[k + 1][0]  # automatic captions overlap the next line; cut there
        has_words = any(t is not None for t, _ in pieces[1:])
        pieces = [(start if (j == 0 and t is None) else t, _clean(p)) for j, (t, p) in
                  enumerate(pieces)]
        words = _words(pieces, end) if has_words else []
        text_ = " ".join(" ".join(p for _, p in pieces).split())
        if text_:
            out.append(Segment(round(start, 3), round(end, 3), text_, words=words))
    return _speech(out)


def _speech(segments: list[Segment]) -> list[Segment]:
    """The segments that hold more than sound annotations."""
    return [s for s in segments if not is_annotation(s.text)]


def is_annotation(text: str) -> bool:
    """Is this caption text only sound annotations (`[Music]`, `(laughs)`, `♪ ♪`) and
    punctuation, no words?"""
    return not any(c.isalnum() for c in _ANNOTATION.sub(" ", text))


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _cues(lines: list[str], name: str | None) -> list[_Cue]:
    """Cues in file order: a timing line and the non-blank lines after it. Blocks without a
    timing line (header, NOTE, STYLE, REGION, SRT numbers) contribute nothing."""
    cues: list[_Cue] = []
    i, n = 0, len(lines)
    while i < n:
        m = _TIMING.match(lines[i])
        if not m:
            i += 1
            continue
        start, end = _seconds(m.group(1)), _seconds(m.group(2))
        if end < start:
            raise InputError(name, i + 1, f"cue ends ({m.group(2)}) before it starts "
                             f"({m.group(1)})")
        j = i + 1
        body: list[str] = []
        while j < n and not _cue_ends(lines, j):
            body.append(lines[j])
            j += 1
        cues.append(_Cue(start, end, body, i + 1))
        i = j
    return cues


def _cue_ends(lines: list[str], j: int) -> bool:
    """Does the cue text end before line `j`? At an empty line or the next timing; a line of
    spaces ends it only when no cue text follows (YouTube's automatic captions put a line of one
    space above the text; some SRT files separate blocks with spaces)."""
    line = lines[j]
    if not line or _TIMING.match(line):
        return True
    if line.strip():
        return False
    nxt = lines[j + 1] if j + 1 < len(lines) else ""
    after = lines[j + 2] if j + 2 < len(lines) else ""
    return not nxt.strip() or bool(_TIMING.match(nxt)) or bool(_TIMING.match(after))


def _segments(cues: list[_Cue]) -> list[Segment]:
    """One segment per cue; for rolling (automatic) captions, one per new line."""
    if _is_rolling(cues):
        return _rolling_segments(cues)
    out: list[Segment] = []
    for cue in cues:
        text = " ".join(t for t in (_clean(x) for x in cue.lines) if t)
        if text:
            words = _inline_words(cue.lines, cue.start, cue.end)
            out.append(Segment(cue.start, cue.end, text, words=words))
    return out


def _is_rolling(cues: list[_Cue]) -> bool:
    """Automatic captions: cues carry inline word timestamps, or most cues begin with the line
    the previous cue ended with."""
    if any(_INLINE_TIME.search(x) for c in cues for x in c.lines):
        return True
    pairs = repeats = 0
    prev: list[str] = []
    for cue in cues:
        lines = [t for t in (_clean(x) for x in cue.lines) if t]
        if prev and lines:
            pairs += 1
            repeats += lines[0] == prev[-1]
        prev = lines or prev
    return pairs >= 2 and repeats >= _ROLLING_SHARE * pairs


def _rolling_segments(cues: list[_Cue]) -> list[Segment]:
    """Each cue's lines minus those it repeats from the previous cue (the longest prefix equal
    to the previous cue's tail); a cue that only repeats adds nothing."""
    out: list[Segment] = []
    shown: list[str] = []
    for cue in cues:
        raw = [x for x in cue.lines if _clean(x)]
        lines = [_clean(x) for x in raw]
        k = next((k for k in range(min(len(lines), len(shown)), 0, -1)
                  if lines[:k] == shown[-k:]), 0)
        new_raw = raw[k:]
        if lines:
            shown = lines
        for x in new_raw:
            words = _inline_words([x], cue.start, cue.end)
            out.append(Segment(cue.start, cue.end, _clean(x), words=words))
    return out


def _inline_words(lines: list[str], start: float, end: float) -> list[Word]:
    """Word timings from `<00:00:01.240>` marks: the text before the first mark starts with the
    cue, each mark starts the text after it, a word ends where the next one starts (the last
    with the cue). No marks: no words."""
    joined = " ".join(lines)
    if not _INLINE_TIME.search(joined):
        return []
    parts = _INLINE_TIME.split(joined)  # text, time, text, time, text ...
    pieces: list[tuple[float | None, str]] = [(start, _clean(parts[0]))]
    for t, piece in zip(parts[1::2], parts[2::2], strict=True):
        pieces.append((_seconds(t), _clean(piece)))
    return _words(pieces, end)


def _words(pieces: list[tuple[float | None, str]], end: float) -> list[Word]:
    """(start, text) pieces to words; a piece of several words gives each the piece's span."""
    pieces = [(t, p) for t, p in pieces if p.strip()]
    out: list[Word] = []
    for j, (t, p) in enumerate(pieces):
        nxt = pieces[j + 1][0] if j + 1 < len(pieces) else end
        w_end = nxt if nxt is not None else end
        if t is not None and w_end < t:
            w_end = t
        for w in p.split():
            out.append(Word(None if t is None else round(t, 3), round(w_end, 3), w))
    return out


def _clean(text: str) -> str:
    """Caption text without tags or entities, whitespace collapsed."""
    text = _INLINE_TIME.sub(" ", text)
    text = _TAG.sub("", text)
    return " ".join(html.unescape(text).replace("\u00a0", " ").split())


def _seconds(stamp: str) -> float:
    parts = stamp.replace(",", ".").split(":")
    seconds = float(parts[-1])
    minutes = int(parts[-2]) if len(parts) >= 2 else 0
    hours = int(parts[-3]) if len(parts) >= 3 else 0
    return round(hours * 3600 + minutes * 60 + seconds, 3)
