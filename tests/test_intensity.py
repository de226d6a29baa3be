"""The civilian-line intensity estimate: ordered calm < neutral < angry, bounded, explainable,
and (with the published transcripts) pointing the right way on real speech."""

from __future__ import annotations

import statistics

import pytest
from conftest import needs_real_data, real_data

from deescalwild.responders.intensity import CUES, NEUTRAL, cue_counts, intensity, profanity_spans

TRIPLES = [  # (calm, neutral, angry) replies to the same officer line
    ("Yes sir, here you go. Thank you.", "It's in the glovebox.",
     "Get the fuck off me! Leave me alone!"),
    ("Okay, sure, no problem.", "I was driving home from work.",
     "I didn't do anything! This is harassment!"),
    ("Alright, I understand.", "He's my brother.", "NO! You're hurting me! Stop, stop, stop!"),
    ("Thanks, officer, I appreciate it.", "Why? What did I do?",
     "Are you serious? This is bullshit, I know my rights!"),
]


@pytest.mark.parametrize("calm,neutral,angry", TRIPLES)
def test_calm_below_neutral_below_angry(calm, neutral, angry):
    assert intensity(calm) < intensity(neutral) < intensity(angry)


def test_bands_on_plain_examples():
    assert intensity("It's in the glovebox.") == NEUTRAL  # no cue: neutral
    assert intensity("Yes sir, thank you.") < 15
    assert intensity("Get the fuck off me! Leave me alone!") >= 60
    assert 0.0 <= intensity("") <= 100.0


def test_caps_bound_the_score():
    rant = "FUCK YOU! " * 50 + "Leave me alone! Get off me! Help! " * 20
    assert intensity(rant) == 100.0
    # the calmest line sits at the calm cap, above 0: calm words do not add up forever
    assert intensity("okay thank you yes sir sure alright " * 20) == NEUTRAL + CUES["calm"][1]
    # each cue saturates at its cap: a hundred "!" count no more than three
    assert intensity("No!!! " * 100) - intensity("No! No! No!") < 10


def test_cue_counts_explain_the_score():
    counts = cue_counts("NO! Get the f*** off me, I didn't do anything!")
    assert counts["exclamation"] == 2 and counts["profanity"] == 1 and counts["caps_word"] == 1
    assert counts["calm"] == 0
    total = NEUTRAL + sum(min(CUES[c][0] * n, CUES[c][1]) for c, n in counts.items()
                          if CUES[c][0] > 0)
    assert intensity("NO! Get the f*** off me, I didn't do anything!") == min(100.0, total)
    # acronyms are not shouting; a speech-to-text stutter is not a repetition
    assert cue_counts("My ID and the DUI paper")["caps_word"] == 0
    assert cue_counts("I I was, we we drove")["repeated_word"] == 0
    assert cue_counts("No, no, no.")["repeated_word"] == 2


def test_profanity_spans_masked_and_word_bounded():
    text = "What the hell, f***ing sh*t, $hit and a**hole, but class, assess, Scunthorpe, hello."
    found = [text[a:b] for a, b in profanity_spans(text)]
    assert found == ["the hell", "f***ing", "sh*t", "$hit", "a**hole"]
    assert profanity_spans("Heck, darn it, freaking cold.") == []


@pytest.mark.realdata
@needs_real_data
def test_on_the_published_transcripts():
    """Civilian replies to officer lines the rule analyser reads as escalating (threats, shouted
    orders, profanity) score higher than replies to de-escalating ones: the two modules, built
    separately from word lists, agree on 50k real exchanges. And the scores spread enough for
    the retrieval re-rank to have a choice."""
    from deescalwild.core import Role
    from deescalwild.corpus.importer import import_transcripts
    from deescalwild.sim.cards import CardLibrary
    from deescalwild.sim.tactics import RuleAnalyser

    scenarios, _ = import_transcripts([real_data()])
    card, rules = next(iter(CardLibrary.load())), RuleAnalyser()
    after: dict[str, list[float]] = {"escalation": [], "deescalation": []}
    civilian: list[float] = []
    for s in scenarios:
        for a, b in zip(s.turns, s.turns[1:]):
            if b.role != Role.CIVILIAN:
                continue
            civilian.append(intensity(b.text))
            if a.role == Role.OFFICER:
                kinds = {v.kind for v in rules.analyse(a.text, card, []) if v.source == "rules"}
                if len(kinds) == 1:
                    after[kinds.pop()].append(civilian[-1])
    assert len(after["escalation"]) > 500 and len(after["deescalation"]) > 5000
    esc, de = statistics.mean(after["escalation"]), statistics.mean(after["deescalation"])
    assert esc > de + 1.5, (esc, de)
    q = statistics.quantiles(civilian, n=10)
    assert q[0] <= 18 and q[-1] >= 32, q  # not all lines look alike
