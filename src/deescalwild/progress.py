"""A progress bar for long stages: drawn on a terminal, silent when stderr is not one.

Used as a context manager that yields a `progress(done, total)` callback (or None), so the
stages themselves never import rich.
"""

from __future__ import annotations

from collections.abc import Callable


class ProgressBar:
    def __init__(self, console, what: str) -> None:
        self.console, self.what, self.bar = console, what, None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not self.console.is_terminal:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(TextColumn(self.what), BarColumn(), MofNCompleteColumn(),
                            console=self.console, transient=True)
        self.bar.start()
        task = self.bar.add_task(self.what, total=None)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
