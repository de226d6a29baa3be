"""Shared fixtures: hermetic environment, the sample corpus imported once, a transcript writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DATA = HERE / "data"


@pytest.fixture(scope="session")
def _session_home(tmp_path_factory):
    return tmp_path_factory.mktemp("deescalwild_home")


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch, _session_home):
    """Offline hub, and a user directory (caches, NLTK data) that is not the real one. The
    directory is shared by the session so WordNet is prepared once; tests that need an empty
    cache set DEESCALWILD_HOME themselves."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DEESCALWILD_HOME", str(_session_home))


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny-model tests (`pytestmark = pytest.mark.usefixtures(...)`): tiny
    matrices gain nothing from threads, and on a busy 2-core machine torch's spinning intra-op
    threads make each generate call 10-20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sample_corpus():
    """The shipped sample corpus, imported with roles resolved (shared; do not mutate)."""
    from deescalwild.corpus.importer import import_transcripts
    from deescalwild.corpus.sample import sample_path

    scenarios, _ = import_transcripts([sample_path()])
    return scenarios


@pytest.fixture
def write_csv(tmp_path):
    """Write a transcript file (bytes or text) under tmp_path and return its path."""

    def _write(name: str, content: str | bytes, crlf: bool = True) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            if crlf:
                content = content.replace("\n", "\r\n")
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path

    return _write


def real_data() -> Path | None:
    value = os.environ.get("DEESCALWILD_REAL_DATA")
    return Path(value) if value else None


# Tests on the published transcripts are skipped, with a hint, when the data is absent.
needs_real_data = pytest.mark.skipif(
    real_data() is None, reason="set DEESCALWILD_REAL_DATA to the published DeEscalWild "
    "transcripts (e.g. ../shared/data/deescalwild) to run")
