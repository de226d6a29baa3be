"""`acquire run`: schedule every video's pending stages on an executor and record what they did.

The runner is the manifest's only writer. For each video it asks the plan for the next step,
marks the stage running (counting the attempt), hands the task to the executor, and records the
outcome when it comes back, in one transaction; then it asks for the video's next step. A
video has at most one stage in flight, so its stages run in order; videos run in parallel.

Stopping: Ctrl-C stops handing out work, puts the stages in flight back to pending and ends the
run as `interrupted`. `kill -9` gives no such chance: the stages it left `running` go back to
pending when the next run starts (the run lock guarantees no other run owns them). Either way a
stage whose file was written but not recorded simply runs again and replaces its file.

`--rate R` spaces the starts of stages that talk to a remote host (metadata, audio, diarize,
relevance) to at most R per second across all workers; each request inside a stage retries with
exponential backoff and jitter on 429, 5xx, timeouts and dropped connections.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from deescalwild.acquire.executors import Executor, make_executor
from deescalwild.acquire.manifest import Manifest, StageRow
from deescalwild.acquire.plan import next_step, satisfied
from deescalwild.acquire.tasks import (
    NETWORK_STAGES,
    STAGES,
    Settings,
    StageOutcome,
    StageTask,
    VideoRef,
)
from deescalwild.errors import DeescalwildError

__all__ = ["Pacer", "RunSummary", "run_stages"]

Progress = Callable[[int, int, str], None]


@dataclass
class RunSummary:
    run_id: int
    status: str = "finished"  # finished | interrupted
    seconds: float = 0.0
    recovered: int = 0  # stages a killed run had left running
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> status -> n
    failures: list[dict[str, str]] = field(default_factory=list)  # first 20: id, stage, error

    def count(self, stage: str, status: str) -> None:
        per = self.outcomes.setdefault(stage, {"done": 0, "failed": 0, "skipped": 0})
        per[status] = per.get(status, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "seconds": round(self.seconds, 2),
                "recovered": self.recovered, "outcomes": self.outcomes,
                "failures": self.failures}


class Pacer:
    """At most `rate` starts per second (None: unlimited), evenly spaced."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self.next_at = 0.0

    def wait_s(self) -> float:
        return max(0.0, self.next_at - self.clock())

    def take(self) -> None:
        self.next_at = max(self.next_at, self.clock()) + self.interval


def run_stages(
    manifest: Manifest,
    settings: Settings,
    *,
    stages: Collection[str] = STAGES,
    executor: str | Executor = "local",
    workers: int | None = None,
    address: str | None = None,
    rate: float | None = None,
    functions: Mapping[str, str] | None = None,
    command: str = "acquire run",
    progress: Progress | None = None,
    provenance: dict[str, Any] | None = None,
) -> RunSummary:
    """Run the `stages` of every video that has them pending. `functions` replaces stage
    functions ("module:name"; tests, plug-ins). Raises `ManifestBusy` if another run holds
    the manifest; KeyboardInterrupt propagates after the run is recorded as interrupted."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise DeescalwildError(f"unknown stage {unknown[0]!r}; expected some of "
                               f"{', '.join(STAGES)}")
    if provenance is None:
        from deescalwild.provenance import git_commit, versions

        provenance = {"versions": versions("yt-dlp", "faster-whisper", "google-genai",
                                           "openai", "ray"), "commit": git_commit()}
    ex = executor if isinstance(executor, Executor) else make_executor(executor, workers,
                                                                       address)
    owned = not isinstance(executor, Executor)
    try:
        manifest.acquire()
    except BaseException:
        if owned:
            ex.shutdown()
        raise
    t0 = time.perf_counter()
    summary = RunSummary(run_id=0)
    try:
        summary.recovered = manifest.reset_interrupted()
        # temporary folders of stages a killed run left behind (downloads): nobody else owns them
        shutil.rmtree(settings.path("tmp"), ignore_errors=True)
        summary.run_id = manifest.start_run(command, settings.to_dict(), provenance)
        _Loop(manifest, settings, set(stages), ex, Pacer(rate), dict(functions or {}),
              summary.run_id, summary, progress).run()
    except BaseException:
        summary.status = "interrupted"
        raise
    finally:
        try:
            if owned:
                ex.shutdown()  # stops stages still running before the lock is released
            summary.seconds = time.perf_counter() - t0
            if summary.run_id:
                manifest.finish_run(summary.run_id, summary.status, summary.to_dict())
        finally:
            manifest.release()
    return summary


class _Loop:
    def __init__(self, manifest: Manifest, settings: Settings, selected: set[str],
                 ex: Executor, pacer: Pacer, functions: dict[str, str], run_id: int,
                 summary: RunSummary, progress: Progress | None) -> None:
        self.m, self.settings, self.selected, self.ex = manifest, settings, selected, ex
        self.pacer, self.functions, self.run_id = pacer, functions, run_id
        self.summary, self.progress = summary, progress
        self.videos = {v.id: v for v in manifest.videos()}
        self.rows: dict[str, dict[str, StageRow]] = {}
        for row in manifest.stage_rows():
            self.rows.setdefault(row.video_id, {})[row.stage] = row
        if "relevance" in selected:
            self._rejudge_under_new_rule()
        self.total = sum(1 for per in self.rows.values() for s, r in per.items()
                         if s in selected and r.status == "pending")
        self.finished = 0
        self.in_flight: dict[Any, tuple[str, str]] = {}

    def run(self) -> None:
        ready = deque(self.videos)
        held: deque[tuple[str, str]] = deque()  # (video, stage) waiting for the pacer
        try:
            while ready or held or self.in_flight:
                while (ready or held) and len(self.in_flight) < self.ex.capacity:
                    if held and self.pacer.wait_s() == 0:
                        self.pacer.take()
                        self._start(*held.popleft())
                        continue
                    if not ready:
                        break
                    vid = ready.popleft()
                    stage = self._next(vid)
                    if stage is None:
                        continue
                    if stage in NETWORK_STAGES and self.pacer.interval:
                        held.append((vid, stage))
                    else:
                        self._start(vid, stage)
                if not self.in_flight:
                    if held:
                        time.sleep(self.pacer.wait_s())
                    continue
                room = len(self.in_flight) < self.ex.capacity
                timeout = min(0.5, self.pacer.wait_s()) if held and room else 0.5
                for handle, outcome in self.ex.wait(list(self.in_flight), max(timeout, 0.01)):
                    vid, stage = self.in_flight.pop(handle)
                    self._record(vid, stage, outcome)
                    ready.append(vid)
        except BaseException:
            self._abandon()
            raise

    def _next(self, vid: str) -> str | None:
        """Record skips until the video's next stage to run (None: nothing now)."""
        rows = self.rows[vid]
        while True:
            step = next_step(rows, self.selected, self.settings)
            if step.kind == "wait":
                return None
            assert step.stage is not None
            if step.kind == "skip":
                detail = {"passthrough": True} if step.passthrough else {}
                self._record(vid, step.stage, StageOutcome(status="skipped", error=step.reason,
                                                           detail=detail))
                continue
            missing = self._missing_inputs(vid, step.stage)
            if missing is None:
                return step.stage

    def _missing_inputs(self, vid: str, stage: str) -> str | None:
        """An earlier stage whose recorded file is gone or changed size goes back to pending
        (it runs again if selected); returns that stage, or None when all is in place."""
        for name, row in self.rows[vid].items():
            if STAGES.index(name) >= STAGES.index(stage) or not satisfied(row):
                continue
            for out in row.outputs.values():
                p = self.m.resolve(out["path"])
                if not p.is_file() or ("bytes" in out and p.stat().st_size != out["bytes"]):
                    error = f"output {out['path']} is missing or changed; redo"
                    self.m.set_stage(vid, name, "pending", error=error)
                    row.status, row.last_error, row.outputs = "pending", error, {}
                    return name
        return None

    def _rejudge_under_new_rule(self) -> None:
        """Verdicts made under another rule are made again (the judge's features come from
        the cache; nothing is asked twice), and so is the export that followed them."""
        for vid, rows in self.rows.items():
            rel = rows["relevance"]
            if rel.status != "done" or rel.detail.get("rule") in (None, self.settings.rule):
                continue
            why = f"rule changed from {rel.detail['rule']!r}; judged again"
            for stage in ("relevance", "export"):
                if rows[stage].status in ("done", "skipped", "failed"):
                    self.m.set_stage(vid, stage, "pending", error=why)
                    rows[stage].status, rows[stage].last_error = "pending", why

    def _duplicate_of(self, vid: str, outcome: StageOutcome) -> str | None:
        """After metadata: the page a short link (vm.tiktok.com, fb.watch, ...) resolved to.
        When another video of the manifest is that page, this one is its duplicate; otherwise
        the page's URL becomes an alias, so adding it later is recognised."""
        from deescalwild.acquire.sources import video_key

        page = outcome.meta.get("webpage_url")
        if outcome.status != "done" or not isinstance(page, str) or not page:
            return None
        try:
            key, canonical, _ = video_key(page)
        except (ValueError, TypeError):
            return None
        other = key if key != vid and self.m.video(key) is not None else None
        owner = self.m.add_alias(canonical, other or vid)
        if other is None and owner != vid:
            other = owner
        return other if other != vid else None

    def _task(self, vid: str, stage: str, attempt: int) -> StageTask:
        v = self.videos[vid]
        inputs, details = {}, {}
        for name, row in self.rows[vid].items():
            if satisfied(row) and STAGES.index(name) < STAGES.index(stage):
                details[name] = row.detail
                for out, info in row.outputs.items():
                    inputs[f"{name}.{out}"] = str(self.m.resolve(info["path"]))
        return StageTask(VideoRef(v.id, v.url, v.platform, dict(v.meta)), stage, self.settings,
                         inputs, details, attempt, self.run_id)

    def _start(self, vid: str, stage: str) -> None:
        attempt = self.m.mark_running(vid, stage, self.run_id)
        row = self.rows[vid][stage]
        row.status, row.attempts = "running", attempt
        handle = self.ex.submit(self._task(vid, stage, attempt), self.functions.get(stage))
        self.in_flight[handle] = (vid, stage)

    def _record(self, vid: str, stage: str, outcome: StageOutcome) -> None:
        if stage == "metadata":
            other = self._duplicate_of(vid, outcome)
            if other is not None:  # the later stages cascade as skipped, naming the original
                outcome.status, outcome.error = "skipped", f"duplicate of {other}"
                outcome.detail = {**outcome.detail, "duplicate_of": other}
        outcome.outputs = {k: self.m.stored_path(v) for k, v in outcome.outputs.items()}
        self.m.record(vid, stage, outcome)
        row = self.rows[vid][stage]
        row.status, row.last_error, row.detail = outcome.status, outcome.error, outcome.detail
        row.outputs = {k: {"path": p, **outcome.hashes.get(k, {})}
                       for k, p in outcome.outputs.items()}
        if outcome.meta:
            self.videos[vid].meta.update(outcome.meta)
        self.summary.count(stage, outcome.status)
        if outcome.status == "failed" and len(self.summary.failures) < 20:
            self.summary.failures.append({"id": vid, "stage": stage,
                                          "error": outcome.error or ""})
        self.finished += 1
        if self.progress:
            self.progress(self.finished, max(self.total, self.finished), f"{stage} {vid}")

    def _abandon(self) -> None:
        """Ctrl-C: stages in flight go back to pending at once (not left for the next run)."""
        for vid, stage in self.in_flight.values():
            self.m.set_stage(vid, stage, "pending",
                             error=f"interrupted: run {self.run_id} was stopped")
        self.in_flight.clear()
