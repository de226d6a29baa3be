"""The user directory: caches (generations, NLTK data, retrieval indexes), never results.

`DEESCALWILD_HOME` chooses it (tests point it at a temporary folder); the default follows the
XDG convention, `$XDG_CACHE_HOME/deescalwild` or `~/.cache/deescalwild`.
"""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    env = os.environ.get("DEESCALWILD_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "deescalwild"


def cache_dir(*parts: str) -> Path:
    """A folder under the user directory, created on demand."""
    p = home_dir().joinpath("cache", *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
