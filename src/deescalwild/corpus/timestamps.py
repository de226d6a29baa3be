"""Transcript timestamps to seconds.

The published transcripts mix `M:SS`, `MM:SS`, `H:MM:SS` and SRT-style `MM:SS,mmm`; we also
accept a dot before the milliseconds and `H:MM:SS,mmm`. Anything else is not guessed at: the
caller keeps it as null and records a warning.
"""

from __future__ import annotations

import re

_TS = re.compile(
    r"""
    \s*
    (?:(?P<h>\d{1,2}):(?=\d{2}:))?   # optional hours, only when minutes and seconds follow
    (?P<m>\d{1,3}):(?P<s>\d{2})
    (?:[,.](?P<ms>\d{1,3}))?
    \s*
    """,
    re.VERBOSE,
)


_CACHE: dict[str, float | None] = {}


def parse_timestamp(value: str) -> float | None:
    """Seconds from the start of the video, or None when `value` is not a known style.

    Memoised: a corpus has a few thousand distinct values over hundreds of thousands of rows.

    >>> parse_timestamp("1:05"), parse_timestamp("01:02:03"), parse_timestamp("00:07,500")
    (65.0, 3723.0, 7.5)
    """
    try:
        return _CACHE[value]
    except KeyError:
        pass
    seconds = _parse(value)
    if len(_CACHE) < 100_000:
        _CACHE[value] = seconds
    return seconds


def _parse(value: str) -> float | None:
    m = _TS.fullmatch(value)
    if not m:
        return None
    hours = int(m["h"]) if m["h"] else 0
    minutes, seconds = int(m["m"]), int(m["s"])
    if seconds >= 60 or (m["h"] and minutes >= 60):
        return None
    total = hours * 3600 + minutes * 60 + seconds
    if m["ms"]:
        total += int(m["ms"].ljust(3, "0")) / 1000
    return float(total)
