"""The sample corpus shipped inside the package: 16 fictional transcripts in the DeEscalWild CSV
format (train/ and test/), written for this project so every stage has something real-shaped to
run on out of the box. Its README lists the scenarios."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).with_name("sample_data")


def sample_path() -> Path:
    return SAMPLE_DIR
