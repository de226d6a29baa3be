"""SFT examples: windows that fit the budget, every civilian reply trained exactly once, the
test split never written, bad files refused with file and line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deescalwild.cli import cli
from deescalwild.core import Evidence as Ev
from deescalwild.core import Role, Scenario, SpeakerRole, Turn, write_corpus
from deescalwild.errors import InputError
from deescalwild.train.sft import (
    estimate_tokens,
    make_sft,
    plan_windows,
    read_sft,
    scenario_examples,
)


def _scenario(n_exchanges: int, split: str = "train", sid: str = "youtube_1",
              words: int = 6, lead: bool = False) -> Scenario:
    turns, i = [], 0
    if lead:
        turns.append(Turn(i, 0.0, "B", Role.CIVILIAN, "What do you want from me now"))
        i += 1
    for k in range(n_exchanges):
        turns.append(Turn(i, float(i), "A", Role.OFFICER, " ".join([f"officer{k}"] * words)))
        turns.append(Turn(i + 1, float(i + 1), "B", Role.CIVILIAN,
                          " ".join([f"civilian{k}"] * words)))
        i += 2
    speakers = {"A": SpeakerRole(Role.OFFICER, Ev.LABEL, 0.9),
                "B": SpeakerRole(Role.CIVILIAN, Ev.LABEL, 0.9)}
    return Scenario(sid, "youtube", split, "test", turns, speakers, meta={"title": "Stop"})


def _targets(examples):
    return [m["content"] for ex in examples for m in ex["messages"]
            if m["role"] == "assistant" and m.get("train", True)]


def test_plan_windows_covers_every_exchange_once_within_budget():
    costs = [30, 50, 20, 70, 10, 40, 60, 25]
    ws = plan_windows(costs, budget=100, overlap=30)
    targets = [k for w in ws for k in range(w.train_from, w.end)]
    assert targets == list(range(len(costs)))
    for w in ws:
        assert sum(costs[w.start:w.end]) <= 100
        assert w.start <= w.train_from < w.end
        assert sum(costs[w.start:w.train_from]) <= 30
    assert any(w.start < w.train_from for w in ws)  # some window does carry context


def test_plan_windows_oversize_exchange_gets_its_own_window():
    ws = plan_windows([10, 500, 10], budget=100, overlap=20)
    assert [(w.train_from, w.end, w.oversize) for w in ws] == [(0, 1, False), (1, 2, True),
                                                              (2, 3, False)]


def test_long_scenario_is_windowed_not_truncated():
    sc = _scenario(40, words=6)
    exs = list(scenario_examples(sc, max_tokens=300))
    assert len(exs) > 3
    civilian = [" ".join(["civilian" + str(k)] * 6) for k in range(40)]
    assert _targets(exs) == civilian  # every reply exactly once, in order
    for ex in exs:
        msgs = ex["messages"]
        assert msgs[0]["role"] == "system" and "You are the civilian" in msgs[0]["content"]
        assert "YouTube" in msgs[0]["content"]
        assert [m["role"] for m in msgs[1:]] == ["user", "assistant"] * ((len(msgs) - 1) // 2)
        assert ex["meta"]["est_tokens"] <= 300
        assert sum(estimate_tokens(m["content"]) for m in msgs) <= 300
    # windows after the first repeat earlier exchanges as context, marked not trained
    assert any(m.get("train") is False for ex in exs[1:] for m in ex["messages"])


def test_short_scenario_is_one_example_and_persona_reaches_the_prompt():
    sc = _scenario(3)
    sc.meta["civilian_persona"] = "a tired delivery driver in his forties"
    (ex,) = scenario_examples(sc)
    assert ex["id"] == "youtube_1#w0" and ex["split"] == "train"
    assert "The civilian: a tired delivery driver in his forties." in ex["messages"][0]["content"]
    assert len(_targets([ex])) == 3


def test_leading_civilian_line_and_excluded_scenarios(tmp_path):
    lead = _scenario(2, lead=True, sid="youtube_2")
    excluded = _scenario(2, sid="youtube_3")
    excluded.meta["curation"] = {"excluded": True, "reasons": ["too_short"]}
    test = _scenario(2, split="test", sid="youtube_4")
    dev = _scenario(2, split="dev", sid="youtube_5")
    write_corpus(tmp_path / "s.jsonl", [lead, excluded, test, dev])
    summary = make_sft(tmp_path / "s.jsonl", tmp_path / "sft.jsonl")
    recs = [json.loads(x) for x in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert {r["scenario_id"] for r in recs} == {"youtube_2", "youtube_5"}
    assert summary.leading_civilian == 1 and summary.other_splits["test"] == 1
    assert summary.targets == {"train": 2, "dev": 2}
    first_user = recs[0]["messages"][1]
    assert first_user["role"] == "user" and first_user["content"].startswith("officer0")


def test_test_split_is_refused_and_empty_output_is_an_error(tmp_path):
    write_corpus(tmp_path / "s.jsonl", [_scenario(2, split="test")])
    with pytest.raises(InputError, match="test split"):
        make_sft(tmp_path / "s.jsonl", tmp_path / "o.jsonl", splits=["train", "test"])
    with pytest.raises(InputError, match="nothing to train on"):
        make_sft(tmp_path / "s.jsonl", tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()


def test_read_sft_validates_roles_and_needs_a_trained_reply(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "a"}]}) + "\n"
                   + json.dumps({"messages": [{"role": "assistant", "content": "x"}]}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: message 0: expected role 'user'"):
        read_sft(bad)
    none = tmp_path / "none.jsonl"
    none.write_text(json.dumps({"messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "train": False}]}) + "\n")
    with pytest.raises(InputError, match="no assistant"):
        read_sft(none)


def test_sft_cli(tmp_path):
    write_corpus(tmp_path / "s.jsonl", [_scenario(30, words=10), _scenario(2, split="dev",
                                                                           sid="youtube_9")])
    res = CliRunner().invoke(cli, ["sft", str(tmp_path / "s.jsonl"), "-o",
                                   str(tmp_path / "o.jsonl"), "--max-tokens", "200", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["targets"] == {"train": 30, "dev": 2}
    assert d["examples"]["train"] > 1 and d["windowed_scenarios"] == 1
