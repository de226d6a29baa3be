"""Integration test on the 1,147 published DeEscalWild transcripts.

Runs when DEESCALWILD_REAL_DATA points at them (CI sets it to ../shared/data/deescalwild when
that folder exists); skipped otherwise. The data is never copied into this repository.
"""

from pathlib import Path

import pytest
from conftest import needs_real_data, real_data

from deescalwild.core import read_corpus, write_corpus
from deescalwild.corpus.roles.check import check_roles, read_gold
from deescalwild.corpus.stats import compute_stats

DATA = real_data()
GOLD = Path(__file__).parent / "data" / "real_roles_gold.jsonl"
pytestmark = [pytest.mark.realdata, needs_real_data]


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory):
    from deescalwild.corpus.importer import import_transcripts

    scenarios, summary = import_transcripts([DATA])
    out = tmp_path_factory.mktemp("real") / "corpus.jsonl"
    write_corpus(out, scenarios)
    return out, summary


def test_imports_every_file_and_row(real_corpus):
    out, summary = real_corpus
    assert summary.skipped_files == [] and summary.skipped_rows == []
    stats = compute_stats(read_corpus(out))
    assert stats["scenarios"] == 1147
    assert stats["turns"] == 218608
    assert stats["speakers"] == 2382
    assert stats["platforms"] == {"youtube": 866, "tiktok": 249, "facebook": 32}
    assert stats["splits"] == {"train": 1097, "test": 50}
    assert 2_700_000 < stats["words"] < 2_850_000


def test_role_counts_make_sense(real_corpus):
    stats = compute_stats(read_corpus(real_corpus[0]))
    roles = stats["roles"]
    # officers and civilians carry the dialogue; narrators are a minority; few are unknown
    assert roles["officer"] > roles["civilian"] > roles["narrator"] > roles["dispatcher"]
    assert roles["officer"] + roles["civilian"] > 0.7 * stats["turns"]
    assert roles["unknown"] < 0.03 * stats["turns"]
    assert stats["resolution"]["label"] > stats["resolution"]["model"] > \
        stats["resolution"]["context"] > 0


def test_hand_labelled_speakers(real_corpus):
    """420 (file, label) pairs labelled by reading the transcripts (docs/roles.md)."""
    report = check_roles(list(read_corpus(real_corpus[0])), read_gold(GOLD))
    assert report["missing"] == 0 and report["pairs"] == 420
    assert report["accuracy"]["role_word"] >= 0.97
    assert report["accuracy_name_or_generic"] >= 0.80
