"""Core types every stage shares, and the corpus JSON Lines format.

Kept free of heavy imports: everything from `corpus stats` to the simulator reads these.
A corpus file holds one `Scenario` per line; every line carries its schema version so a
line can be filtered, concatenated or read on its own (`jq`, `grep`) without a header.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from deescalwild.atomic import atomic_write
from deescalwild.errors import InputError

CORPUS_SCHEMA = "deescalwild.corpus/1"


class Role(str, Enum):
    """Who a speaker is in the encounter (definitions in docs/roles.md)."""

    OFFICER = "officer"
    CIVILIAN = "civilian"
    BYSTANDER = "bystander"
    DISPATCHER = "dispatcher"
    NARRATOR = "narrator"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


class Evidence(str, Enum):
    """What settled a speaker's role: the label's words, the classifier, or a conversational cue."""

    LABEL = "label"
    MODEL = "model"
    CONTEXT = "context"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class SpeakerRole:
    """The resolved role of one speaker label in one scenario, with why and how sure."""

    role: Role
    evidence: Evidence
    confidence: float
    why: str = ""

    def __post_init__(self) -> None:
        self.confidence = round(float(self.confidence), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role.value,
            "evidence": self.evidence.value,
            "confidence": self.confidence,
            "why": self.why,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeakerRole:
        return cls(Role(d["role"]), Evidence(d["evidence"]), float(d["confidence"]),
                   d.get("why", ""))


@dataclass(slots=True)
class Turn:
    """One row of a transcript. `speaker` is the original label, verbatim."""

    index: int
    start: float | None
    speaker: str
    role: Role
    text: str
    flags: list[str] = field(default_factory=list)
    line: int | None = None  # line in the source file where the row starts

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": self.start,
            "speaker": self.speaker,
            "role": self.role.value,
            "text": self.text,
            "flags": self.flags,
            "line": self.line,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Turn:
        t = cls(
            index=d["index"],
            start=d.get("start"),
            speaker=d["speaker"],
            role=Role(d.get("role", "unknown")),
            text=d["text"],
            flags=list(d.get("flags") or []),
            line=d.get("line"),
        )
        if not (isinstance(t.text, str) and isinstance(t.speaker, str)
                and isinstance(t.index, int)
                and (t.start is None or isinstance(t.start, (int, float)))):
            raise ValueError(f"turn {t.index!r}: expected integer index, string speaker and "
                             "text, and a number or null start")
        return t


@dataclass(slots=True)
class Scenario:
    """One video's conversation: its turns, the role of each speaker label, and provenance."""

    id: str
    platform: str | None
    split: str | None
    source: str
    turns: list[Turn] = field(default_factory=list)
    speakers: dict[str, SpeakerRole] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (docs/formats.md)."""
        return {
            "schema": CORPUS_SCHEMA,
            "id": self.id,
            "platform": self.platform,
            "split": self.split,
            "source": self.source,
            "meta": self.meta,
            "flags": self.flags,
            "speakers": {k: v.to_dict() for k, v in self.speakers.items()},
            "turns": [t.to_dict() for t in self.turns],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scenario:
        return cls(
            id=d["id"],
            platform=d.get("platform"),
            split=d.get("split"),
            source=d.get("source", ""),
            turns=[Turn.from_dict(t) for t in d.get("turns", [])],
            speakers={k: SpeakerRole.from_dict(v) for k, v in (d.get("speakers") or {}).items()},
            meta=dict(d.get("meta") or {}),
            flags=list(d.get("flags") or []),
        )

    def apply_roles(self) -> None:
        """Copy each speaker's resolved role onto its turns (turn roles are denormalised)."""
        for t in self.turns:
            sr = self.speakers.get(t.speaker)
            t.role = sr.role if sr else Role.UNKNOWN


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building or dumping many small objects.

    A corpus is hundreds of thousands of acyclic turn objects; without this, CPython's collector
    rescans them over and over and doubles the time of an import.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def write_corpus(path: str | Path, scenarios: Iterable[Scenario]) -> int:
    """Write scenarios as JSON Lines, atomically: the old file survives any failure."""
    n = 0
    with atomic_write(path, "wb") as fh, gc_paused():
        for sc in scenarios:
            fh.write(orjson.dumps(sc.to_dict(), option=orjson.OPT_APPEND_NEWLINE))
            n += 1
    return n


def read_json_lines(path: str | Path, what: str = "record",
                    problems: list[InputError] | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file.

    A line that is not a JSON object raises `InputError` naming the file and the line; when
    `problems` is a list, the error is appended there instead and reading goes on.
    """
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as e:
        raise InputError(path, None, f"cannot open: {e.strerror or e}") from e
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                d = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                err = InputError(path, lineno, f"expected one JSON object per line ({e})")
                if problems is None:
                    raise err from e
                problems.append(err)
                continue
            if not isinstance(d, dict):
                err = InputError(path, lineno, f"expected a JSON object (one {what} per line)")
                if problems is None:
                    raise err
                problems.append(err)
                continue
            yield lineno, d


def read_corpus(path: str | Path, problems: list[InputError] | None = None) -> Iterator[Scenario]:
    """Yield scenarios from a corpus file. A bad line raises `InputError` naming file and line;
    with a `problems` list, bad lines are recorded there and skipped (the caller reports them)."""
    for lineno, d in read_json_lines(path, "scenario", problems):
        schema = d.get("schema")
        if schema != CORPUS_SCHEMA:
            err = InputError(path, lineno, f"expected schema {CORPUS_SCHEMA!r}, found {schema!r}")
        else:
            try:
                yield Scenario.from_dict(d)
                continue
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                err = InputError(path, lineno, f"malformed scenario record: {e!r}")
        if problems is None:
            raise err
        problems.append(err)


# --- benchmark items and replies -----------------------------------------------------------

CASES_SCHEMA = "deescalwild.cases/1"


@dataclass(slots=True)
class Case:
    """One benchmark item: the conversation so far and the civilian's real next turn.

    `history` is chat messages, `{"role": "user"|"assistant", "content": str}`: officer speech is
    `user`, the civilian's is `assistant` (docs/benchmark.md gives the folding rule for other
    speakers). `context` is what a responder may know about the scene before it starts.
    """

    id: str
    scenario_id: str
    context: str
    history: list[dict[str, str]]
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": CASES_SCHEMA,
            "id": self.id,
            "scenario_id": self.scenario_id,
            "context": self.context,
            "history": self.history,
            "reference": self.reference,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        c = cls(id=d["id"], scenario_id=d["scenario_id"], context=d.get("context") or "",
                history=list(d["history"]), reference=d["reference"],
                meta=dict(d.get("meta") or {}))
        if not (isinstance(c.id, str) and isinstance(c.reference, str)
                and all(isinstance(m, dict) and m.get("role") in ("user", "assistant")
                        and isinstance(m.get("content"), str) for m in c.history)):
            raise ValueError("expected string id and reference, and history messages "
                             "{role: user|assistant, content: string}")
        return c


def read_cases(path: str | Path) -> Iterator[Case]:
    """Yield cases from a cases file; a line of another schema or shape raises `InputError`."""
    for lineno, d in read_json_lines(path, "case"):
        schema = d.get("schema")
        if schema != CASES_SCHEMA:
            raise InputError(path, lineno, f"expected schema {CASES_SCHEMA!r}, found {schema!r} "
                             "(make cases with `deescalwild cases SPLIT.jsonl -o cases.jsonl`)")
        try:
            yield Case.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(path, lineno, f"malformed case record: {e}") from e


def write_cases(path: str | Path, cases: Iterable[Case]) -> int:
    """Write cases as JSON Lines, atomically."""
    n = 0
    with atomic_write(path, "wb") as fh:
        for c in cases:
            fh.write(orjson.dumps(c.to_dict(), option=orjson.OPT_APPEND_NEWLINE))
            n += 1
    return n


@dataclass(slots=True)
class Reply:
    """What a responder said, and how long it took. `error` is set (and `text` empty) when the
    backend failed: an error is counted, never scored as a reply."""

    text: str
    latency_s: float | None = None
    first_token_s: float | None = None
    tokens: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "latency_s": self.latency_s,
                "first_token_s": self.first_token_s, "tokens": self.tokens, "error": self.error}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reply:
        return cls(text=d.get("text") or "", latency_s=d.get("latency_s"),
                   first_token_s=d.get("first_token_s"), tokens=d.get("tokens"),
                   error=d.get("error"))
