"""Which stage of a video runs next, given what the manifest says and how the run is set up.

Stages run in `STAGES` order. A stage runs when what it reads is there; which inputs that is
depends on the settings (Gemini diarizes from the audio, the local backend from the
transcription). Three outcomes besides "run it":

- **not needed** under these settings (the transcription when Gemini diarizes): recorded as
  `skipped` with `detail.passthrough`, so the stages after it are not skipped too (they read
  other inputs); when later settings need it after all, it runs;
- **blocked**: something it needs is pending, running or failed; it waits (a later run, or
  `acquire retry`, unblocks it), and is not counted as an attempt;
- **skipped after an upstream skip** (audio skipped because the video is too long: nothing
  downstream can run): recorded as skipped, naming the stage and reason upstream.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from deescalwild.acquire.manifest import StageRow
from deescalwild.acquire.tasks import STAGES, Settings

__all__ = ["Step", "next_step", "not_needed", "requirements"]


def not_needed(stage: str, settings: Settings) -> str | None:
    """Why `stage` has nothing to do under `settings`, or None when it has."""
    if stage == "audio" and settings.transcriber == "captions" and settings.diarizer == "local":
        return "not needed: captions are transcribed and diarized without audio"
    if stage == "transcribe" and settings.diarizer == "gemini":
        return "not needed: gemini transcribes the audio itself"
    return None


def requirements(stage: str, settings: Settings) -> list[tuple[str, ...]]:
    """Alternatives of stage sets: `stage` may run when every stage of one alternative is
    satisfied (done, or skipped as a pass-through)."""
    if stage == "metadata":
        return [()]
    if stage == "audio":
        return [("metadata",)]
    if stage == "transcribe":
        return [("audio",)] if settings.transcriber == "whisper" else [("metadata",)]
    if stage == "diarize":
        return {"gemini": [("audio",)], "local": [("transcribe",)],
                "pyannote": [("audio", "transcribe")]}[settings.diarizer]
    if stage == "relevance":
        return [("diarize",), ("transcribe",)]
    if stage == "export":
        return [("relevance", "diarize")]
    raise ValueError(f"unknown stage {stage!r}")


def satisfied(row: StageRow) -> bool:
    """A stage another may read from: done, with its files. A pass-through skip satisfies
    nothing (it has no file); it only keeps the stages after it from being skipped."""
    return row.status == "done"


def _reopened(row: StageRow, stage: str, settings: Settings) -> bool:
    """A pass-through skip made under other settings (transcription skipped for Gemini, now
    diarizing locally) is needed again. Skips because a transcript was attached stay."""
    return (row.status == "skipped" and bool(row.detail.get("passthrough"))
            and row.detail.get("source") != "attached" and not_needed(stage, settings) is None)


@dataclass
class Step:
    """What to do for one video now. `kind`: run (the stage), skip (record `reason`),
    or wait (nothing can run now)."""

    kind: str
    stage: str | None = None
    reason: str | None = None
    passthrough: bool = False


def next_step(rows: Mapping[str, StageRow], selected: Collection[str],
              settings: Settings) -> Step:
    """The next thing to do for a video whose stage rows are `rows`, running only `selected`
    stages. Call again after recording a skip: skips cascade one stage at a time."""
    for stage in STAGES:
        row = rows.get(stage)
        if row is None or stage not in selected:
            continue
        if row.status != "pending" and not _reopened(row, stage, settings):
            continue
        reason = not_needed(stage, settings)
        if reason:
            return Step("skip", stage, reason, passthrough=True)
        alternatives = requirements(stage, settings)
        if stage == "relevance" and "diarize" in selected and rows["diarize"].status in (
                "pending", "running", "failed"):
            # in a run that diarizes, judge the diarized transcript, not the raw one
            alternatives = [("diarize",)]
        for needs in alternatives:
            if all(satisfied(rows[n]) for n in needs):
                return Step("run", stage)
        upstream = _dead_end(rows, alternatives)
        if upstream is not None:
            up = rows[upstream]
            return Step("skip", stage, f"after {upstream}: {up.last_error or 'skipped'}")
    return Step("wait")


def _dead_end(rows: Mapping[str, StageRow], alternatives: list[tuple[str, ...]]) -> str | None:
    """The upstream stage whose (non pass-through) skip makes every alternative impossible."""
    culprit = None
    for needs in alternatives:
        dead = [n for n in needs if rows[n].status == "skipped"
                and not rows[n].detail.get("passthrough")]
        if not dead:
            return None
        culprit = culprit or dead[0]
    return culprit
