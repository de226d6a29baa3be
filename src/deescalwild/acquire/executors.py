"""Where stage tasks run: this process, a local process pool, or a Ray cluster.

All three have the same small interface (`submit`, `wait`, `shutdown`) and return the same
`StageOutcome`s, so the runner, the only writer of the manifest, does not know which one it
drives: the manifest means the same thing whichever ran the work. A worker that dies (a
segfault in a native library, a Ray node lost) becomes a failed, retryable outcome for the
tasks it held, never a stopped run.

Ray: tasks go through `ray.remote` with `max_retries=0`, so every attempt is counted by the
manifest rather than retried out of sight. Ray Data's streaming `map` would also work, but the
runner schedules each video's next stage when the previous one finishes, which a task per stage
expresses directly. On a cluster, the work folder and the output folder must be on storage
every node sees, and workers need the API keys in their own environment.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
from collections.abc import Iterable
from typing import Any

from deescalwild.acquire.tasks import StageOutcome, StageTask
from deescalwild.acquire.worker import execute
from deescalwild.errors import DeescalwildError

__all__ = ["EXECUTORS", "Executor", "InlineExecutor", "LocalExecutor", "RayExecutor",
           "make_executor"]

EXECUTORS = ("local", "ray", "inline")


class Executor:
    """`submit` returns a handle; `wait` returns (handle, outcome) pairs that have finished."""

    capacity: int = 1

    def submit(self, task: StageTask, function: str | None = None) -> Any:
        raise NotImplementedError

    def wait(self, handles: Iterable[Any], timeout: float) -> list[tuple[Any, StageOutcome]]:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass


def _died(what: str, exc: BaseException) -> StageOutcome:
    from deescalwild.acquire.worker import secrets
    from deescalwild.responders.retry import one_line

    return StageOutcome(status="failed", error=f"{what}: {one_line(exc, secrets())}",
                        retryable=True)


class InlineExecutor(Executor):
    """Runs each task in this process when it is waited for (debugging; `--executor inline`)."""

    def __init__(self) -> None:
        self._queue: dict[int, tuple[StageTask, str | None]] = {}
        self._n = 0

    def submit(self, task: StageTask, function: str | None = None) -> int:
        self._n += 1
        self._queue[self._n] = (task, function)
        return self._n

    def wait(self, handles: Iterable[Any], timeout: float) -> list[tuple[Any, StageOutcome]]:
        for h in handles:
            task, function = self._queue.pop(h)
            return [(h, execute(task, function))]
        return []


def _die_with_parent() -> None:
    """Pool initializer: a worker must not outlive the runner. After a `kill -9` of the runner
    the run lock is gone, and an orphan still writing files would race the next run. Linux
    delivers SIGKILL when the parent dies (PR_SET_PDEATHSIG); elsewhere a thread watches the
    parent's pid."""
    import os
    import signal
    import threading
    import time

    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


class LocalExecutor(Executor):
    """A pool of `workers` processes (spawned, not forked: a fork would copy the runner's
    threads and open SQLite connection). Models stay loaded in a worker between tasks. Workers
    die with the runner, and `shutdown` stops the ones still working: a stage in flight never
    outlives the run lock."""

    def __init__(self, workers: int) -> None:
        self.capacity = max(1, workers)
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.capacity,
                                      mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_die_with_parent)

    def submit(self, task: StageTask, function: str | None = None) -> cf.Future:
        try:
            return self._pool.submit(execute, task, function)
        except cf.process.BrokenProcessPool:
            self._pool = self._new_pool()
            return self._pool.submit(execute, task, function)

    def wait(self, handles: Iterable[Any], timeout: float) -> list[tuple[Any, StageOutcome]]:
        done, _ = cf.wait(list(handles), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for f in done:
            try:
                out.append((f, f.result()))
            except cf.process.BrokenProcessPool as e:
                out.append((f, _died("worker process died (a crash in this stage or one "
                                             "running beside it)", e)))
            except Exception as e:  # an outcome that could not be pickled back, ...
                out.append((f, _died("worker failed", e)))
        return out

    def shutdown(self) -> None:
        processes = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:  # tasks still running (Ctrl-C): stop them before the lock goes
            if p.is_alive():
                p.terminate()
        for p in processes:
            p.join(timeout=10)


class RayExecutor(Executor):
    """Ray tasks, one CPU each. `address`: an existing cluster ("auto", "ray://host:10001");
    None starts a local Ray instance for this run (and stops it after)."""

    def __init__(self, workers: int | None, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as e:
            raise DeescalwildError("--executor ray needs Ray: pip install 'deescalwild[ray]'"
                                   ) from e
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            elif workers:
                kwargs["num_cpus"] = workers
            ray.init(**kwargs)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = max(1, workers or cpus)
        self._remote = ray.remote(execute).options(num_cpus=1, max_retries=0)
        self._refs: set[Any] = set()

    def submit(self, task: StageTask, function: str | None = None) -> Any:
        ref = self._remote.remote(task, function)
        self._refs.add(ref)
        return ref

    def wait(self, handles: Iterable[Any], timeout: float) -> list[tuple[Any, StageOutcome]]:
        refs = list(handles)
        if not refs:
            return []
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # collect everything else that is already finished too
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        out = []
        for ref in ready:
            self._refs.discard(ref)
            try:
                out.append((ref, self._ray.get(ref)))
            except Exception as e:  # RayTaskError, WorkerCrashedError, node lost
                out.append((ref, _died("ray task failed", e)))
        return out

    def shutdown(self) -> None:
        for ref in self._refs:  # tasks still in flight (Ctrl-C) must not outlive the run
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._owned:
            self._ray.shutdown()


def make_executor(kind: str, workers: int | None, address: str | None = None) -> Executor:
    if kind == "local":
        import os

        return LocalExecutor(workers or os.cpu_count() or 1)
    if kind == "ray":
        return RayExecutor(workers, address)
    if kind == "inline":
        return InlineExecutor()
    raise DeescalwildError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTORS)}")
