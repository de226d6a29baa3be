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
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None, Problem(str(path), None, "file", "UTF-16 text: expected a UTF-8 CSV "
                             "transcript (re-save it as UTF-8)")
    if b"\x00" in data[:65536]:
        return None, Problem(str(path), None, "file", "binary file (NUL bytes): expected a "
                             "UTF-8 CSV transcript")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return None, Problem(str(path), line, "file", f"not UTF-8 (byte 0x{data[e.start]:02x} "
                             "cannot be decoded): expected a UTF-8 CSV transcript")


class _File:
    """One file being read: its text, and what went wrong where, with the skipped text kept."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.problems: list[Problem] = []
        self.skipped: list[dict] = []  # recorded in the scenario's meta: nothing is lost
        self.warnings: list[dict] = []
        self._lines: list[str] | None = None

    def raw(self, first: int, last: int) -> str:
        if self._lines is None:
            self._lines = self.text.splitlines()
        return "\n".join(self._lines[first - 1:last])

    def skip_row(self, line: int, reason: str, last: int | None = None) -> None:
        self.problems.append(Problem(str(self.path), line, "row", reason))
        self.skipped.append({"line": line, "reason": reason,
                             "raw": self.raw(line, last or line)})

    def warn(self, line: int, field_name: str, message: str) -> None:
        self.problems.append(Problem(str(self.path), line, "warning", message))
        self.warnings.append({"line": line, "field": field_name, "message": message})


def _records(f: _File) -> tuple[list[list[str]], Sequence[int]]:
    """Every CSV record (the header first; blank lines are not records) and the line each
    starts on.

    Fast path: when no field spans lines (the usual case) one C-level `list(reader)` suffices and
    record i sits on line i + 1. Otherwise (quoted newlines, or a syntax error to locate) the
    records are read one by one, tracking the reader's line counter; a syntax error skips only
    the lines it spoils and reading goes on.
    """
    fast = csv.reader(io.StringIO(f.text, newline=""), strict=True)
    try:
        rows = list(fast)
    except csv.Error:
        rows = None
    if rows is not None and fast.line_num == len(rows):  # every record is one physical line
        if all(rows):
            return rows, range(1, len(rows) + 1)
        return [r for r in rows if r], [i + 1 for i, r in enumerate(rows) if r]

    reader = csv.reader(io.StringIO(f.text, newline=""), strict=True)
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
            end = max(line, reader.line_num)
            span = f"line {line}" if end == line else f"lines {line}-{end}"
            f.skip_row(line, f"CSV syntax error ({e}): {span} skipped", end)
            prev_end = end
            continue
        prev_end = reader.line_num
        if row:
            out.append(row)
            lines.append(line)
    return out, lines


def _turns(f: _File, body: list[list[str]], lines: Sequence[int], cols: tuple[int, int, int],
           width: int, header: tuple[str, ...]) -> list[Turn]:
    """One turn per well-formed row (built in comprehensions: this is the import's hot loop).
    `width` is the header's field count: 3, or more when a spreadsheet left empty columns."""
    i_start, i_speaker, i_text = cols
    if width != 3 or set(map(len, body)) != {3}:
        kept = []
        for line, row in zip(lines, body):
            if len(row) == 3 or (len(row) == width and not any(x.strip() for x in row[3:])):
                kept.append((line, row))
            else:
                f.skip_row(line, "expected 3 fields (start_time,speaker_label,transcript), "
                           f"found {len(row)}")
        lines, body = [ln for ln, _ in kept], [row for _, row in kept]
    starts = [parse_timestamp(row[i_start]) for row in body]
    if None in starts:
        kept = []
        for st, row, line in zip(starts, body, lines):
            if st is None and tuple(x.strip().lower() for x in row[:3]) == header:
                f.skip_row(line, "repeated header row")
                continue
            if st is None:
                f.warn(line, "start_time", f"start_time {row[i_start]!r} is not M:SS, MM:SS, "
                       "H:MM:SS or MM:SS,mmm; kept as null")
            kept.append((st, row, line))
        starts, body, lines = ([k[i] for k in kept] for i in range(3))
    unknown = Role.UNKNOWN
    return [Turn(i, st, row[i_speaker], unknown, row[i_text], [], line)
            for i, (st, row, line) in enumerate(zip(starts, body, lines))]


def read_transcript(path: str | Path, split: str | None = None) -> ReadResult:
    """Parse one transcript file. `split` overrides the split read from the parent folder."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        return ReadResult(None, [Problem(str(path), None, "file", f"cannot read: {e.strerror}")])
    text, problem = _decode(path, data)
    if text is None:
        return ReadResult(None, [problem] if problem else [])

    f = _File(path, text)
    records, lines = _records(f)
    if not records:
        return ReadResult(None, f.problems or [Problem(str(path), 1, "file", "no header line")])
    header = list(records[0])
    while len(header) > 3 and not header[-1].strip():  # "a,b,c," from a spreadsheet
        header.pop()
    names = tuple(h.strip().lower() for h in header)
    if sorted(names) != sorted(HEADER):
        found = ",".join(records[0])[:80]
        return ReadResult(None, [Problem(
            str(path), lines[0], "file",
            f"expected header 'start_time,speaker_label,transcript', found '{found}'")])
    cols = (names.index("start_time"), names.index("speaker_label"), names.index("transcript"))
    turns = _turns(f, records[1:], lines[1:], cols, len(records[0]), names)
    if not turns:
        f.problems.append(Problem(str(path), None, "file", "no rows after the header"))
        return ReadResult(None, f.problems)

    meta: dict = {"sha256": hashlib.sha256(data).hexdigest(), "rows": len(turns)}
    if f.warnings:
        meta["warnings"] = f.warnings
    if f.skipped:
        meta["skipped_rows"] = f.skipped
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
        split=split if split is not None else split_of(path),
        source=str(path),
        turns=turns,
        meta=meta,
    )
    return ReadResult(scenario, f.problems)
