"""Import transcript files and folders into a corpus: find, read, join metadata, resolve roles.

The public entry point is `import_transcripts`. It never stops at a bad file unless asked to
(`strict=True`): every skipped file and row comes back in the summary with its reason.

Two kinds of transcript file are read: DeEscalWild CSVs, and the `deescalwild.transcript/1` JSON
that `acquire`'s export writes beside each CSV (same rows, plus word timings and video metadata).
When both sit in one folder under one name, the JSON is read and the CSV counted as its companion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from deescalwild.core import Scenario, gc_paused, write_corpus
from deescalwild.corpus.csv_transcripts import (
    SPLITS,
    Problem,
    ReadResult,
    read_transcript,
    split_of,
)
from deescalwild.corpus.json_transcripts import is_transcript_json, read_json_transcript
from deescalwild.corpus.youtube_metadata import FILENAME as YOUTUBE_LIST
from deescalwild.corpus.youtube_metadata import load_youtube_list
from deescalwild.errors import DeescalwildError, InputError

IMPORT_SUMMARY_SCHEMA = "deescalwild.import-summary/1"


@dataclass
class ImportSummary:
    files: int = 0
    scenarios: int = 0
    turns: int = 0
    skipped_files: list[Problem] = field(default_factory=list)
    skipped_rows: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    metadata_files: list[str] = field(default_factory=list)
    companions: int = 0  # CSVs not read because the transcript JSON of the same name was

    def add(self, problem: Problem) -> None:
        {"file": self.skipped_files, "row": self.skipped_rows}.get(
            problem.kind, self.warnings).append(problem)

    def to_dict(self) -> dict:
        def rows(ps: list[Problem]) -> list[dict]:
            return [{"path": p.path, "line": p.line, "reason": p.message} for p in ps]

        return {
            "files": self.files,
            "scenarios": self.scenarios,
            "turns": self.turns,
            "skipped_files": rows(self.skipped_files),
            "skipped_rows": rows(self.skipped_rows),
            "warnings": rows(self.warnings),
            "metadata_files": self.metadata_files,
            "companions": self.companions,
        }


def _split(path: Path, root: Path | None) -> str | None:
    """The split named by the nearest folder between `root` (included) and the file: a file
    under `train/` or `test/deep/` is in that split; above the imported folder nothing counts."""
    if root is None:
        return split_of(path)
    folders = [root.name, *path.relative_to(root).parent.parts]
    return next((SPLITS[f.lower()] for f in reversed(folders) if f.lower() in SPLITS), None)


class Found(NamedTuple):
    """What `find_inputs` found. `companions`: transcript JSON -> the CSV of the same name in
    the same folder, which is read only when the JSON cannot be."""

    transcripts: list[tuple[Path, str | None]]
    lists: list[Path]
    companions: dict[Path, Path]


def _candidate(f: Path) -> bool:
    """A file a folder search considers: every CSV; a JSON only when it is a transcript (other
    JSON, such as `relevance-report.json`, is passed over silently, like any non-CSV file)."""
    suffix = f.suffix.lower()
    return suffix == ".csv" or (suffix == ".json" and is_transcript_json(f))


def find_inputs(paths: Iterable[str | Path]) -> Found:
    """Transcript files (with their split), YouTube metadata lists and companion CSVs under
    `paths`. Folders are searched recursively, hidden entries skipped; a file reached twice is
    read once; a file given by itself is always read (a .json one as a transcript JSON); the
    order is sorted so that imports are deterministic."""
    transcripts: list[tuple[Path, str | None]] = []
    lists: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and _candidate(f)
            )
            root: Path | None = p
        elif p.exists():
            found, root = [p], None
        else:
            raise InputError(p, None, "no such file or folder")
        for f in found:
            if f.resolve() in seen:
                continue
            seen.add(f.resolve())
            if f.name == YOUTUBE_LIST:
                lists.append(f)
            else:
                transcripts.append((f, _split(f, root)))
    def key(f: Path) -> tuple[Path, str]:
        return f.resolve().parent, f.stem

    jsons = {key(f): f for f, _ in transcripts if f.suffix.lower() == ".json"}
    companions = {jsons[key(f)]: f for f, _ in transcripts
                  if f.suffix.lower() == ".csv" and key(f) in jsons}
    kept = set(companions.values())
    return Found([t for t in transcripts if t[0] not in kept], lists, companions)


def discover(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, str | None]], list[Path]]:
    """(transcript file, split) pairs and YouTube metadata lists under `paths` (companion CSVs
    left out; see `find_inputs`)."""
    found = find_inputs(paths)
    return found.transcripts, found.lists


def read_any(path: Path, split: str | None = None) -> ReadResult:
    """Read a transcript file with the reader its suffix calls for."""
    if path.suffix.lower() == ".json":
        return read_json_transcript(path, split=split)
    return read_transcript(path, split=split)


def import_transcripts(
    paths: Sequence[str | Path],
    *,
    strict: bool = False,
    metadata: Sequence[str | Path] = (),
    resolve_roles: bool = True,
    role_model: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Scenario], ImportSummary]:
    """Read every transcript under `paths` into scenarios with speaker roles resolved.

    `metadata`: extra YouTube video lists to join (lists found inside `paths` are used too).
    `progress(done, total)` is called after each file. With `strict`, the first problem of
    any kind raises `InputError`.
    """
    files, lists, companions = find_inputs(paths)
    summary = ImportSummary()
    youtube: dict[str, dict] = {}
    for lst in [*lists, *map(Path, metadata)]:
        try:
            youtube.update(load_youtube_list(lst))
        except InputError as e:
            if strict:
                raise
            summary.add(Problem(str(lst), e.line, "file", e.message))
            continue
        summary.metadata_files.append(str(lst))

    scenarios: list[Scenario] = []
    with gc_paused():
        extra = _read_all(files, companions, scenarios, summary, youtube, strict, progress)
        if resolve_roles and scenarios:
            from deescalwild.corpus.roles.resolve import resolve_corpus

            resolve_corpus(scenarios, model_path=role_model)
    summary.files = len(files) + extra
    summary.scenarios = len(scenarios)
    summary.turns = sum(len(s.turns) for s in scenarios)
    return scenarios, summary


def _read_all(
    files: list[tuple[Path, str | None]],
    companions: dict[Path, Path],
    scenarios: list[Scenario],
    summary: ImportSummary,
    youtube: dict[str, dict],
    strict: bool,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Read every file into `scenarios`; returns how many companion CSVs had to be read
    because their JSON could not be."""
    used: set[str] = set()
    fallbacks = 0
    for i, (f, split) in enumerate(files, start=1):
        result = read_any(f, split=split)
        if f in companions:
            if result.scenario is None and not strict:  # a broken JSON: its CSV still counts
                for problem in result.problems:
                    summary.add(problem if problem.kind != "file" else Problem(
                        problem.path, problem.line, "file",
                        f"{problem.message}; read {companions[f].name} instead"))
                f = companions[f]
                result = read_transcript(f, split=split)
                fallbacks += 1
            else:
                summary.companions += 1
        for problem in result.problems:
            if strict:
                raise InputError(problem.path, problem.line, problem.message)
            summary.add(problem)
        sc = result.scenario
        if sc is not None:
            if sc.id in youtube:
                sc.meta.update(youtube[sc.id])
            if sc.id in used:  # the same file name in two folders: keep both, ids stay unique
                n = 2
                while f"{sc.id}~{n}" in used:
                    n += 1
                msg = (f"scenario id {sc.id!r} already used by another file; imported as "
                       f"'{sc.id}~{n}'")
                if strict:
                    raise InputError(f, None, msg)
                summary.warnings.append(Problem(str(f), None, "warning", msg))
                sc.id = f"{sc.id}~{n}"
            used.add(sc.id)
            scenarios.append(sc)
        if progress:
            progress(i, len(files))
    return fallbacks


def import_to_file(
    paths: Sequence[str | Path],
    output: str | Path,
    **options,
) -> ImportSummary:
    """`import_transcripts` then `write_corpus`, the whole `corpus import` command.

    The collector stays paused throughout: the corpus is a million small acyclic objects that
    it would otherwise rescan several times over. Raises `DeescalwildError` (nothing written)
    when no transcript could be imported.
    """
    with gc_paused():
        scenarios, summary = import_transcripts(paths, **options)
        if not scenarios:
            first = (summary.skipped_files or summary.skipped_rows)[:1]
            hint = f" (first problem: {first[0]})" if first else ""
            raise DeescalwildError(f"no transcript could be imported; nothing written{hint}")
        write_corpus(output, scenarios)
        del scenarios  # freed by reference counting, before the collector wakes up
    return summary
