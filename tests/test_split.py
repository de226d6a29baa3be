"""Splits: clean splits keep related scenarios together, are seeded and byte-identical, and the
report proves there is no leak; paper splits keep the published assignment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from test_curate import scenario

from deescalwild.cli import main
from deescalwild.core import read_corpus, write_corpus
from deescalwild.curate.splits import source_key, split_scenarios
from deescalwild.errors import DeescalwildError


def story(k: int, n: int = 40) -> list[tuple[str, str]]:
    """A conversation of its own: no 5-gram in common with another k."""
    return [("Officer" if i % 2 else "Driver",
             f"case {k} line {i} the {k * 31 + i} blue cars passed gate {k * 17 + i * 3}")
            for i in range(n)]


def corpus(n: int = 40):
    scs = [scenario(f"youtube_{k:03d}", story(k)) for k in range(n)]
    for k, sc in enumerate(scs):
        sc.platform = ("youtube", "tiktok")[k % 2]
    # a re-upload of 0 and a clip of 1: each must share its original's split
    scs.append(scenario("youtube_900", story(0)))
    scs.append(scenario("youtube_901", story(1, 40)[:25]))
    return scs


def test_clean_split_keeps_clusters_together_and_reports_no_leak():
    scs = corpus()
    report = split_scenarios(scs, strategy="clean", seed=3, test_fraction=0.2, dev_fraction=0.1)
    by_id = {s.id: s for s in scs}
    assert by_id["youtube_900"].split == by_id["youtube_000"].split
    assert by_id["youtube_901"].split == by_id["youtube_001"].split
    cross = report["cross_split"]
    assert cross["groups_spanning_splits"] == 0 and cross["near_duplicate_pairs_across"] == 0
    assert cross["max_jaccard"] < 0.2
    counts = Counter(s.split for s in scs)
    assert counts["test"] >= 6 and counts["dev"] >= 3 and counts["train"] > counts["test"]
    # stratified: both platforms reach test
    assert set(report["counts"]["test"]["platforms"]) == {"youtube", "tiktok"}
    assert by_id["youtube_900"].meta["split"]["group"] == by_id["youtube_000"].meta["split"][
        "group"]


def test_seed_changes_the_assignment():
    a, b = corpus(), corpus()
    split_scenarios(a, seed=1)
    split_scenarios(b, seed=2)
    assert [s.split for s in a] != [s.split for s in b]


def test_same_seed_gives_byte_identical_output_across_hash_seeds(tmp_path):
    src = tmp_path / "in.jsonl"
    write_corpus(src, corpus())
    outs = []
    for hash_seed in ("0", "12345"):
        out = tmp_path / f"out{hash_seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-m", "deescalwild", "split", str(src), "-o", str(out),
                        "--seed", "7"], check=True, env=env, capture_output=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_paper_keeps_published_test_and_shows_its_leaks():
    scs = corpus()
    for sc in scs:
        sc.split = "train"
    scs[0].split = "test"  # its re-upload youtube_900 sits in train: the paper's leak
    report = split_scenarios(scs, strategy="paper", dev_fraction=0.1)
    assert scs[0].split == "test" and sum(s.split == "test" for s in scs) == 1
    assert report["cross_split"]["near_duplicate_pairs_across"] == 1
    assert report["cross_split"]["max_jaccard"] > 0.9
    # dev is carved from train, never from a group that touches test
    assert next(s for s in scs if s.id == "youtube_900").split == "train"
    assert sum(s.split == "dev" for s in scs) >= 3


def test_source_key_drops_parts_and_hashtags():
    a = scenario("youtube_1", [("A", "x")], title="Man Fights Deputies (Part 1) | Channel")
    b = scenario("youtube_2", [("A", "x")], title="Man Fights Deputies - Part 2")
    assert source_key(a) == source_key(b) == "youtube:man fights deputies"
    t = scenario("tiktok_1027_bodycam_policebody_aeb62b01", [("A", "x")])
    t.platform, t.meta = "tiktok", {}
    assert source_key(t) is None  # hashtags only
    t.id = "tiktok_1027_Part_1_-_The_WORST_T_8ca5055d"
    assert source_key(t) == "tiktok:the worst t"


@pytest.mark.parametrize("kw", [{"test_fraction": 1.0}, {"dev_fraction": -0.1},
                                {"test_fraction": 0.6, "dev_fraction": 0.5},
                                {"strategy": "random"}])
def test_bad_arguments_are_clear_errors(kw):
    with pytest.raises(DeescalwildError):
        split_scenarios(corpus(4), **kw)


def test_split_command_writes_report(tmp_path, capsys):
    src, out, rep = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "r.json"
    write_corpus(src, corpus())
    assert main(["split", str(src), "-o", str(out), "--report", str(rep), "--seed", "1"]) == 0
    r = json.loads(rep.read_text())
    assert r["schema"] == "deescalwild.split-report/1" and r["seed"] == 1
    assert sum(c["scenarios"] for c in r["counts"].values()) == len(list(read_corpus(out)))
    assert "cross-split max Jaccard" in capsys.readouterr().err
