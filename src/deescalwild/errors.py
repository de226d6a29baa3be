"""Errors that reach the user as one clear line: which file, which line, what was expected."""

from __future__ import annotations

from pathlib import Path


class DeescalwildError(Exception):
    """Base class: the CLI prints these as one line (a traceback only with --debug)."""


class InputError(DeescalwildError):
    """Bad input: names the file, the line when known, and what was expected."""

    def __init__(self, path: str | Path | None, line: int | None, message: str) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"
