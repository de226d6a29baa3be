"""Read one DeEscalWild transcript CSV (`start_time,speaker_label,transcript`) into a Scenario.

Faithful by design: every row becomes a turn with its label and text verbatim; nothing is merged
or cleaned (curation decides later). Problems never raise: they come back as `Problem`s that name
the file, the line and what was expected, so an import of a thousand files can report all of them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import operator
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deescalwild.core import Role, Scenario, Turn
from deescalwild.corpus.timestamps import parse_timestamp

HEADER = ("start_time", "speaker_label", "transcript")
PLATFORMS = frozenset([
    "youtube", "tiktok", "facebook", "instagram", "twitter", "x", "reddit", "vimeo", "twitch",
    "kick", "rumble", "dailymotion", "bitchute", "snapchat", "liveleak",
])
SPLITS = {"train": "train", "test": "test", "dev": "dev", "valid": "dev", "validation": "dev",
          "val": "dev"}

# Some rows of the published corpus are degenerate repetition loops over 100,000 characters.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(slots=True, frozen=True)
class Problem:
    """Something wrong with the input. `kind`: `file` (file skipped), `row` (row skipped) or
    `warning` (kept, e.g. a timestamp stored as null)."""

    path: str
    line: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


@dataclass(slots=True)
class ReadResult:
    scenario: Scenario | None
    problems: list[Problem] = field(default_factory=list)


def platform_of(path: Path) -> str | None:
    """Platform from the file-name prefix (`youtube_123.csv` → `youtube`), None when unknown."""
    prefix = path.stem.split("_", 1)[0].lower()
    return prefix if prefix in PLATFORMS and "_" in path.stem else None


def split_of(path: Path) -> str | None:
    """`train`/`test`/`dev` when the file's parent folder says so, else None."""
    return SPLITS.get(path.parent.name.lower())


def _decode(path: Path, data: bytes) -> tuple[str | None, Problem | None]:
    if not data.strip():
        return None, Problem(str(path), None, "file", "empty file: expected a header line "
                             "'start_time,speaker_label,transcript' and rows")
    if b"\x00" in data[:65536]:
        return None, Problem(str(path), None, "file", "binary file (NUL bytes): expected a "
                             "UTF-8 CSV transcript")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return None, Problem(str(path), line, "file", f"not UTF-8 (byte 0x{data[e.start]:02x} "
                             "cannot be decoded): expected a UTF-8 CSV transcript")


def _records(text: str, path: Path, problems: list[Problem]
             ) -> tuple[list[list[str]], Sequence[int]]:
    """Every CSV record (the header first; blank lines are not records) and the line each
    starts on.

    Fast path: when no field spans lines (the usual case) one C-level `list(reader)` suffices and
    record i sits on line i + 1. Otherwise (quoted newlines, or a syntax error to locate) the
    records are read one by one, tracking the reader's line counter.
    """
    fast = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = list(fast)
    except csv.Error:
        rows = None
    if rows is not None and fast.line_num == len(rows):  # every record is one physical line
        if all(rows):
            return rows, range(1, len(rows) + 1)
        return [r for r in rows if r], [i + 1 for i, r in enumerate(rows) if r]

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out: list[list[str]] = []
    lines: list[int] = []
    prev_end = 0
    while True:
        line = prev_end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append(Problem(str(path), line, "row", f"CSV syntax error: {e}; "
                                    "this row and the rest of the file were not read"))
            break
        prev_end = reader.line_num
        if row:
            out.append(row)
            lines.append(line)
    return out, lines


def _turns(body: list[list[str]], lines: Sequence[int], cols: tuple[int, int, int], path: Path,
           problems: list[Problem], warnings: list[dict]) -> list[Turn]:
    """One turn per well-formed row (built in comprehensions: this is the import's hot loop)."""
    i_start, i_speaker, i_text = cols
    if body and set(map(len, body)) != {3}:
        kept = []
        for line, row in zip(lines, body):
            if len(row) == 3:
                kept.append((line, row))
            else:
                problems.append(Problem(str(path), line, "row", "expected 3 fields "
                                        f"(start_time,speaker_label,transcript), found {len(row)}"))
        lines, body = [ln for ln, _ in kept], [row for _, row in kept]
    starts = [parse_timestamp(row[i_start]) for row in body]
    if None in starts:
        for st, row, line in zip(starts, body, lines):
            if st is None:
                msg = (f"start_time {row[i_start]!r} is not M:SS, MM:SS, H:MM:SS or MM:SS,mmm; "
                       "kept as null")
                warnings.append({"line": line, "field": "start_time", "message": msg})
                problems.append(Problem(str(path), line, "warning", msg))
    unknown = Role.UNKNOWN
    return [Turn(i, st, row[i_speaker], unknown, row[i_text], [], line)
            for i, (st, row, line) in enumerate(zip(starts, body, lines))]


def read_transcript(path: str | Path, source: str | None = None) -> ReadResult:
    """Parse one transcript file. `source` is what the scenario records as its origin."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        return ReadResult(None, [Problem(str(path), None, "file", f"cannot read: {e.strerror}")])
    text, problem = _decode(path, data)
    if text is None:
        return ReadResult(None, [problem] if problem else [])

    problems: list[Problem] = []
    records, lines = _records(text, path, problems)
    if not records:
        return ReadResult(None, problems or [Problem(str(path), 1, "file", "no header line")])
    header = records[0]
    names = tuple(h.strip().lower() for h in header)
    if sorted(names) != sorted(HEADER):
        found = ",".join(header)[:80]
        return ReadResult(None, [Problem(
            str(path), lines[0], "file",
            f"expected header 'start_time,speaker_label,transcript', found '{found}'")])
    cols = (names.index("start_time"), names.index("speaker_label"), names.index("transcript"))
    warnings: list[dict] = []
    turns = _turns(records[1:], lines[1:], cols, path, problems, warnings)

    if not turns:
        problems.append(Problem(str(path), None, "file", "no rows after the header"))
        return ReadResult(None, problems)

    meta: dict = {"sha256": hashlib.sha256(data).hexdigest(), "rows": len(turns)}
    if warnings:
        meta["warnings"] = warnings
    starts = [t.start for t in turns]
    if None in starts:
        backwards = sum(1 for a, b in itertools.pairwise(starts)
                        if a is not None and b is not None and b < a)
    else:  # the usual case, compared at C speed
        backwards = sum(map(operator.lt, starts[1:], starts))
    if backwards:
        meta["timestamps_backwards"] = backwards
    scenario = Scenario(
        id=path.stem,
        platform=platform_of(path),
        split=split_of(path),
        source=source if source is not None else str(path),
        turns=turns,
        meta=meta,
    )
    return ReadResult(scenario, problems)
