"""Run one stage of one video, wherever the executor put it (a local process, a Ray worker).

The stage function does the work; this wrapper makes every way it can end an outcome the
runner can record: success with the hashes of its files, a `StageError` with its reason, or any
other exception as a one-line failure with secrets masked. It never raises, so one bad video
cannot take a worker or the run down.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path

from deescalwild.acquire.tasks import (
    STAGE_FUNCTIONS,
    StageError,
    StageOutcome,
    StageTask,
    file_hash,
)
from deescalwild.errors import DeescalwildError

log = logging.getLogger(__name__)

# Environment variables whose values must never appear in an error the manifest keeps.
SECRET_VARIABLES = ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "HF_TOKEN",
                    "HUGGING_FACE_HUB_TOKEN", "ANTHROPIC_API_KEY", "DEESCALWILD_TOKEN")


def secrets() -> tuple[str, ...]:
    return tuple(v for k in SECRET_VARIABLES if (v := os.environ.get(k)) and len(v) >= 4)


def _function(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def execute(task: StageTask, function: str | None = None) -> StageOutcome:
    """Run `task` with the stage's function (`function`, "module:name", overrides the default
    for tests and plug-ins). Returns the outcome with output hashes and the time taken."""
    from deescalwild.responders.retry import one_line

    t0 = time.perf_counter()
    try:
        fn = _function(function or STAGE_FUNCTIONS[task.stage])
        outcome = fn(task)
        if not isinstance(outcome, StageOutcome) or outcome.status not in ("done", "failed",
                                                                          "skipped"):
            raise TypeError(f"stage {task.stage} returned {outcome!r:.80}, expected a "
                            "StageOutcome that is done, failed or skipped")
        for name, path in outcome.outputs.items():
            if not Path(path).is_file():
                raise StageError(f"stage reported output {name!r} but {path} does not exist")
            outcome.hashes[name] = file_hash(path)
    except StageError as e:
        outcome = StageOutcome(status="failed", error=one_line(e.reason, secrets()),
                               retryable=e.retryable, detail=e.detail)
    except (DeescalwildError, OSError) as e:
        outcome = StageOutcome(status="failed", error=one_line(e, secrets()))
    except Exception as e:  # a bug or a library's surprise: recorded, the run goes on
        log.debug("stage %s of %s crashed", task.stage, task.video.id, exc_info=True)
        outcome = StageOutcome(status="failed",
                               error=f"{type(e).__name__}: {one_line(e, secrets())}")
    outcome.seconds = time.perf_counter() - t0
    return outcome
