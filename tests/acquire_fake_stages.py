"""Stage functions for runner tests: they write small files like real stages do, and record
each call in `<workdir>/calls.log` (one line per call, appended with O_APPEND) so a test can
count how often a stage really ran, across processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from deescalwild.acquire.tasks import StageError, StageOutcome, StageTask, output_path
from deescalwild.atomic import atomic_write


def _log(task: StageTask) -> None:
    path = Path(task.settings.workdir, "calls.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{task.stage} {task.video.id}\n".encode())
    finally:
        os.close(fd)


def write_stage(task: StageTask) -> StageOutcome:
    """Writes `<stage>/<id>.txt` holding the inputs it was given."""
    _log(task)
    out = output_path(task.settings, task.stage, task.video.id, ".txt")
    with atomic_write(out) as fh:
        fh.write(f"{task.stage} {task.video.id} {sorted(task.inputs)}\n")
    return StageOutcome(outputs={"txt": str(out)}, detail={"attempt": task.attempt},
                        meta={f"{task.stage}_seen": True})


def flaky_stage(task: StageTask) -> StageOutcome:
    """Fails on videos whose title says "bad"; skips "long" ones; else like write_stage."""
    title = task.video.meta.get("title", "")
    if "bad" in title:
        _log(task)
        raise StageError(f"HTTP Error 503 for {task.video.id}", retryable=True)
    if "long" in title:
        _log(task)
        return StageOutcome.skipped("longer than 10 s")
    return write_stage(task)


def slow_stage(task: StageTask) -> StageOutcome:
    time.sleep(float(os.environ.get("FAKE_STAGE_SLEEP", "0.2")))
    return write_stage(task)


def crashing_stage(task: StageTask) -> StageOutcome:
    raise ZeroDivisionError("division by zero in a library")


def dying_stage(task: StageTask) -> StageOutcome:
    """Kills its own worker process (a segfault in a native library)."""
    os._exit(3)


def secret_leaking_stage(task: StageTask) -> StageOutcome:
    """Fails with a message that carries an API key (as a proxy might echo it)."""
    raise RuntimeError(os.environ["FAKE_ERROR"])


def resolving_stage(task: StageTask) -> StageOutcome:
    """A metadata stage whose video page is `meta["resolves_to"]` (a short link's target)."""
    _log(task)
    return StageOutcome(meta={"webpage_url": task.video.meta.get("resolves_to",
                                                                 task.video.url)})


def ruled_stage(task: StageTask) -> StageOutcome:
    """Like write_stage; as relevance, records the rule it applied (as the real stage does)."""
    outcome = write_stage(task)
    if task.stage == "relevance":
        outcome.detail = {"accepted": True, "reason": "", "rule": task.settings.rule}
    return outcome


def pid_stage(task: StageTask) -> StageOutcome:
    """Leaves its process id in `<workdir>/pids/`, then works slowly (FAKE_STAGE_SLEEP)."""
    pids = Path(task.settings.workdir, "pids")
    pids.mkdir(parents=True, exist_ok=True)
    (pids / str(os.getpid())).touch()
    return slow_stage(task)
