"""Cases: who is user and who is assistant, what the history may contain, what is left out."""

from __future__ import annotations

import pytest
from test_curate import scenario

from deescalwild.bench.cases import cases_from_corpus, make_cases, scenario_cases
from deescalwild.core import (
    CASES_SCHEMA,
    Evidence,
    Role,
    Scenario,
    SpeakerRole,
    Turn,
    read_cases,
    write_corpus,
)
from deescalwild.dialogue import messages, scene_context
from deescalwild.errors import InputError


def mixed() -> Scenario:
    """An encounter with every kind of speaker, consecutive rows and a flagged turn."""
    rows = [
        ("Narrator", "Officers respond to a call about a man in a parking lot.", Role.NARRATOR),
        ("Officer 1", "Hey man, how's it going? I'm Officer Diaz.", Role.OFFICER),
        ("Officer 1", "What's going on tonight?", Role.OFFICER),
        ("Man", "Nothing. I'm just waiting for my ride.", Role.CIVILIAN),
        ("Woman", "He's been out here for hours yelling.", Role.BYSTANDER),
        ("Man", "That's a lie!", Role.CIVILIAN),
        ("Dispatch", "Unit 12, caller says he has a bat.", Role.DISPATCHER),
        ("Officer 2", "Do you have anything on you?", Role.OFFICER),
        ("Voice", "Huh.", Role.UNKNOWN),
        ("Man", "No. Search me if you want.", Role.CIVILIAN),
        ("Man", "I got nothing.", Role.CIVILIAN),
        ("Officer 1", "Thanks for being straight with us.", Role.OFFICER),
        ("Man", "Subscribe to the channel for more videos!", Role.CIVILIAN),
    ]
    turns = [Turn(i, float(i), s, r, x) for i, (s, x, r) in enumerate(rows)]
    speakers = {s: SpeakerRole(r, Evidence.LABEL, 0.97) for s, _, r in rows}
    meta = {"title": "Man in a parking lot", "curation": {"excluded": False,
                                                          "excluded_turns": [12]}}
    return Scenario("youtube_9", "youtube", "test", "youtube_9.csv", turns, speakers, meta)


def test_messages_fold_other_speakers_and_merge_same_side():
    ms = messages(mixed())
    assert [m.role for m in ms] == ["user", "assistant", "user", "assistant", "user",
                                    "assistant", "user"]
    # narrator (0) and unknown (8) are left out; the flagged ad (12) too
    assert all(8 not in m.turn_indices and 0 not in m.turn_indices and 12 not in m.turn_indices
               for m in ms)
    # same speaker: joined with a space; different speakers: a newline
    assert ms[0].content == "Hey man, how's it going? I'm Officer Diaz. What's going on tonight?"
    assert ms[2].content == "[bystander] He's been out here for hours yelling."
    assert not ms[2].has_officer
    assert ms[4].content == ("[dispatcher] Unit 12, caller says he has a bat.\n"
                             "Do you have anything on you?")
    assert ms[4].has_officer
    assert ms[5].content == "No. Search me if you want. I got nothing."


def test_a_case_per_civilian_reply_to_an_officer_and_the_reference_never_in_history():
    cs = list(scenario_cases(mixed(), history=12))
    # "That's a lie!" answers the bystander, not an officer: no case for it
    assert [c.reference for c in cs] == ["Nothing. I'm just waiting for my ride.",
                                         "No. Search me if you want. I got nothing."]
    assert [c.id for c in cs] == ["youtube_9#3", "youtube_9#9"]
    for c in cs:
        assert c.history[-1]["role"] == "user"
        assert all(c.reference != m["content"] for m in c.history)
        assert c.context == scene_context(mixed())
    assert "Man in a parking lot" in cs[0].context
    assert cs[1].history[-1]["content"].endswith("Do you have anything on you?")
    assert cs[1].meta["turn_index"] == 9 and cs[1].meta["split"] == "test"


def test_history_keeps_the_last_n_messages_and_ids_do_not_depend_on_it():
    full = list(scenario_cases(mixed(), history=0))
    short = list(scenario_cases(mixed(), history=3))
    even = list(scenario_cases(mixed(), history=2))
    assert [c.id for c in full] == [c.id for c in short] == [c.id for c in even]
    assert len(full[1].history) == 5 and len(short[1].history) == 3
    assert short[1].history == full[1].history[-3:]
    # a window never opens on the civilian's side (strict chat templates refuse it)
    assert even[1].history == full[1].history[-1:]
    assert all(c.history[0]["role"] == "user" for n in (1, 2, 3, 4, 12)
               for c in scenario_cases(mixed(), history=n))


def test_excluded_scenarios_give_no_cases():
    sc = mixed()
    sc.meta["curation"]["excluded"] = True
    assert list(scenario_cases(sc)) == []


def test_cases_file_round_trip_and_schema_check(tmp_path):
    corpus = tmp_path / "split.jsonl"
    stop = scenario("youtube_1", [("Officer", "License please."), ("Driver", "Here."),
                                  ("Officer", "Thanks."), ("Driver", "Sure.")], split="test")
    write_corpus(corpus, [mixed(), stop, scenario("youtube_2", [("Officer", "Hi."),
                                                               ("Driver", "Hey.")])])
    out = tmp_path / "cases.jsonl"
    s = make_cases(corpus, out, split="test")
    assert s.cases == 4 and s.scenarios == 2 and s.other_splits == {"train": 1}
    cases = list(read_cases(out))
    assert [c.id for c in cases] == ["youtube_9#3", "youtube_9#9", "youtube_1#1", "youtube_1#3"]
    assert cases[3].history == [{"role": "user", "content": "License please."},
                                {"role": "assistant", "content": "Here."},
                                {"role": "user", "content": "Thanks."}]
    # deterministic: the same input gives the same bytes
    again = tmp_path / "again.jsonl"
    make_cases(corpus, again, split="test")
    assert again.read_bytes() == out.read_bytes()
    assert [c.id for c in cases_from_corpus(corpus, split="train")] == ["youtube_2#1"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema": "deescalwild.cases/0", "id": "x"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: expected schema 'deescalwild.cases/1'"):
        list(read_cases(bad))
    with pytest.raises(InputError, match="no cases for split 'dev'"):
        make_cases(corpus, tmp_path / "none.jsonl", split="dev")
    assert CASES_SCHEMA == "deescalwild.cases/1"


def test_sample_corpus_cases(sample_corpus):
    cs = [c for sc in sample_corpus for c in scenario_cases(sc)]
    assert len(cs) > 100
    assert len({c.id for c in cs}) == len(cs)
    assert all(c.history and c.history[-1]["role"] == "user" and c.reference.strip()
               for c in cs)
