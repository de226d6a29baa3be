"""Where a result came from: package versions and the git commit of the code that made it."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def git_commit() -> str | None:
    """The commit of the deescalwild source tree, with `+dirty` when it has local changes;
    None when the package is not running from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here,
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        if Path(top).resolve() / "src" / "deescalwild" != here:  # installed inside another repo
            return None
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def versions(*packages: str) -> dict[str, str | None]:
    """Python's and each named distribution's version (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("deescalwild", *packages):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
