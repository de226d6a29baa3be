"""Curation and splits on the 1,147 published transcripts (needs DEESCALWILD_REAL_DATA).

The known cases below were found by reading the corpus (docs/curation.md): recogniser loops,
a two-line loop hundreds of rows long, fabricated talk shows, and re-uploads that the published
split puts in both train and test. The floors are the measured counts, as regression guards.
"""

import pytest
from conftest import needs_real_data, real_data

from deescalwild.core import read_corpus, write_corpus

DATA = real_data()
pytestmark = [pytest.mark.realdata, pytest.mark.slow, needs_real_data]


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    from deescalwild.corpus.importer import import_transcripts
    from deescalwild.curate.annotate import curate_file

    scenarios, _ = import_transcripts([DATA])
    d = tmp_path_factory.mktemp("cur")
    write_corpus(d / "corpus.jsonl", scenarios)
    report = curate_file(d / "corpus.jsonl", d / "curated.jsonl")
    return d, report, {s.id: s for s in read_corpus(d / "curated.jsonl")}


def test_known_loops_are_flagged(curated):
    _, report, by_id = curated
    assert "repetition_loop" in by_id["youtube_2024"].turns[11].flags  # 241,384 characters
    assert "repetition_loop" in by_id["youtube_654"].turns[0].flags  # "oh, oh, oh, ..."
    assert sum("alternating_loop" in t.flags for t in by_id["youtube_302"].turns) > 600
    assert report["turn_flags"]["repetition_loop"]["turns"] >= 50


def test_known_off_domain_videos_are_flagged(curated):
    _, _, by_id = curated
    for sid in ("youtube_2190", "tiktok_0922_interrogation_jcsi_95fc0aa4",
                "tiktok_1231_interrogation_jcsi_5e069089",
                "tiktok_0215_Evil_Teens_Think_The_e24cc6c3",
                "tiktok_0929_岐阜県の廃道先にマツコが怖いと言っている_ca44b407"):
        assert "off_domain" in by_id[sid].flags, sid


def test_cross_split_reuploads_are_found(curated):
    _, report, _ = curated
    across = [c for c in report["near_duplicates"]["clusters"] if len(c["splits"]) > 1]
    members = {m for c in across for m in c["members"]}
    assert {"tiktok_1004_Woman_Discovers_Her_9d98a83b", "tiktok_0418_Woman_Discovers_Her_5f3eb2d7",
            "tiktok_1008_A_Detective_Realizes_340b1c12",
            "tiktok_0620_A_Detective_Realizes_15d290d4"} <= members


def test_clean_split_has_no_spanning_cluster_and_is_reproducible(curated):
    from deescalwild.curate.splits import split_file

    d, _, _ = curated
    r1 = split_file(d / "curated.jsonl", d / "a.jsonl", strategy="clean", seed=5)
    split_file(d / "curated.jsonl", d / "b.jsonl", strategy="clean", seed=5)
    assert (d / "a.jsonl").read_bytes() == (d / "b.jsonl").read_bytes()
    cross = r1["cross_split"]
    assert cross["groups_spanning_splits"] == 0 and cross["near_duplicate_pairs_across"] == 0
    assert cross["max_jaccard"] < 0.2
    paper = split_file(d / "curated.jsonl", d / "p.jsonl", strategy="paper", seed=5)
    assert paper["cross_split"]["near_duplicate_pairs_across"] >= 2  # the published leak
