"""The retrieval responder's agitation preference: among replies to matching officer lines, the
one whose estimated intensity is nearest the civilian's agitation wins; without an agitation
nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from deescalwild.core import Case
from deescalwild.responders.base import Request
from deescalwild.responders.intensity import intensity
from deescalwild.responders.retrieval import RetrievalOptions, RetrievalResponder

CALM = "Okay, okay. Yes sir, I'm getting out, thank you."
NEUTRAL = "Why? I was just driving home from work."
ANGRY = "No! Get the fuck off me, I didn't do anything! Leave me alone!"


def case(scenario: str, officer: str, reply: str) -> Case:
    return Case(f"{scenario}#1", scenario, "", [{"role": "user", "content": officer}], reply)


TRAIN = [
    case("a", "Step out of the car for me.", CALM),
    case("b", "Step out of the car.", NEUTRAL),
    case("c", "Step out of the car right now.", ANGRY),
    # the angriest line of all, but to an unrelated officer line: never a candidate
    case("d", "Is this your dog?", "FUCK YOU! FUCK YOU! Get away from me! Help! Help!"),
    case("e", "Do you have any weapons on you?", "No sir, nothing."),
]


def ask(r: RetrievalResponder, text: str, **extra) -> str:
    req = Request(context="", history=[{"role": "user", "content": text}], id="sim:x#0",
                  extra=extra)
    return r.respond(req).text


def test_same_officer_line_calm_versus_angry_civilian():
    assert intensity(CALM) < intensity(NEUTRAL) < intensity(ANGRY)
    r = RetrievalResponder.from_cases(TRAIN)
    line = "Step out of the car, please."
    assert ask(r, line, agitation=10.0) == CALM
    assert ask(r, line, agitation=90.0) == ANGRY
    assert ask(r, line, agitation=40) == NEUTRAL
    # the officer's words still choose the kind of reply: no agitation makes a dog reply fit
    assert ask(r, "Do you have a weapon?", agitation=100.0) == "No sir, nothing."


def test_without_agitation_nothing_changes():
    r = RetrievalResponder.from_cases(TRAIN)
    for line in ("Step out of the car, please.", "Do you have a weapon?", "Is that your dog?"):
        req = Request(context="", history=[{"role": "user", "content": line}], id="q#1")
        best = r.index.search(req.history, 1)[0]
        assert r.choose(req) == best  # plain BM25 top 1, as before
        assert ask(r, line) == ask(r, line, agitation=None)
    assert np.isnan(r.index._intensity).all()  # and no intensity was computed


def test_weight_zero_is_plain_bm25_and_intensities_are_cached_lazily():
    r = RetrievalResponder.from_cases(TRAIN, agitation_weight=0.0)
    plain = RetrievalResponder.from_cases(TRAIN)
    line = "Step out of the car right now."
    assert ask(r, line, agitation=0.0) == ask(plain, line) == ANGRY
    assert np.isnan(r.index._intensity).all()  # weight 0: nothing estimated at all
    weighted = RetrievalResponder.from_cases(TRAIN)
    ask(weighted, line, agitation=50.0)
    # the percentile sample is the whole of a small index, estimated once
    assert not np.isnan(weighted.index._intensity).any()
    assert weighted.index.intensity_of(2) == intensity(ANGRY)
    pct = weighted.index.intensity_percentiles([0, 2])
    assert pct[1] > pct[0]


def test_agitation_is_matched_on_the_percentile_scale():
    # five replies whose raw intensities all sit low: agitation 90 must still pick the
    # most intense, agitation 10 the least, 50 the middle one
    replies = ["Okay. Thank you, sir.", "Okay.", "What? Why?", "Why? What did I do?",
               "No! Why are you doing this?"]
    r = RetrievalResponder.from_cases([case(f"s{i}", "Step out of the car.", t)
                                       for i, t in enumerate(replies)], agitation_weight=0.9)
    ranked = sorted(replies, key=intensity)
    assert ask(r, "Step out of the car.", agitation=95) == ranked[-1]
    assert ask(r, "Step out of the car.", agitation=5) == ranked[0]


def test_strong_words_beat_a_better_intensity_match_at_low_weight():
    r = RetrievalResponder.from_cases(TRAIN, agitation_weight=0.05)
    assert ask(r, "Step out of the car right now.", agitation=0.0) == ANGRY
    r = RetrievalResponder.from_cases(TRAIN, agitation_weight=0.9)
    assert ask(r, "Step out of the car right now.", agitation=0.0) == CALM


def test_option_is_validated():
    with pytest.raises(ValidationError):
        RetrievalOptions(agitation_weight=1.5)
    assert RetrievalOptions().agitation_weight == 0.5


def test_lines_already_said_are_not_repeated_while_another_candidate_is_left():
    r = RetrievalResponder.from_cases(TRAIN)
    first = ask(r, "Step out of the car.", agitation=50)
    second = ask(r, "Step out of the car.", agitation=50, avoid=[first])
    assert second != first and second in (CALM, NEUTRAL, ANGRY)
    # every candidate said already: repeating beats going silent
    assert ask(r, "Step out of the car.", agitation=50, avoid=[CALM, NEUTRAL, ANGRY]) in (
        CALM, NEUTRAL, ANGRY)
