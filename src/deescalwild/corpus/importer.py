"""Import transcript files and folders into a corpus: find, read, join metadata, resolve roles.

The public entry point is `import_transcripts`. It never stops at a bad file unless asked to
(`strict=True`): every skipped file and row comes back in the summary with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deescalwild.core import Scenario, gc_paused, write_corpus
from deescalwild.corpus.csv_transcripts import SPLITS, Problem, read_transcript, split_of
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
        }


def _split(path: Path, root: Path | None) -> str | None:
    """The split named by the nearest folder between `root` (included) and the file: a file
    under `train/` or `test/deep/` is in that split; above the imported folder nothing counts."""
    if root is None:
        return split_of(path)
    folders = [root.name, *path.relative_to(root).parent.parts]
    return next((SPLITS[f.lower()] for f in reversed(folders) if f.lower() in SPLITS), None)


def discover(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, str | None]], list[Path]]:
    """(transcript file, split) pairs and YouTube metadata lists under `paths`. Folders are
    searched recursively, hidden entries skipped; a file reached twice is read once; the order
    is sorted so that imports are deterministic."""
    transcripts: list[tuple[Path, str | None]] = []
    lists: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() == ".csv"
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
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
    return transcripts, lists


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
    files, lists = discover(paths)
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
        _read_all(files, scenarios, summary, youtube, strict, progress)
        if resolve_roles and scenarios:
            from deescalwild.corpus.roles.resolve import resolve_corpus

            resolve_corpus(scenarios, model_path=role_model)
    summary.files = len(files)
    summary.scenarios = len(scenarios)
    summary.turns = sum(len(s.turns) for s in scenarios)
    return scenarios, summary


def _read_all(
    files: list[tuple[Path, str | None]],
    scenarios: list[Scenario],
    summary: ImportSummary,
    youtube: dict[str, dict],
    strict: bool,
    progress: Callable[[int, int], None] | None,
) -> None:
    used: set[str] = set()
    for i, (f, split) in enumerate(files, start=1):
        result = read_transcript(f, split=split)
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
