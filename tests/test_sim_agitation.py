"""The agitation rule: calm tactics bring agitation down, threats push it up, every verdict's
effect is accounted for, and the rule's factors (persona, repetition, headroom, drift, clamp)
do what docs/tactics-and-agitation.md says."""

from __future__ import annotations

import itertools

import pytest

from deescalwild.sim import agitation as ag
from deescalwild.sim.cards import Card, Persona, Triggers
from deescalwild.sim.records import TurnRecord, Verdict
from deescalwild.sim.tactics import RuleAnalyser


def card(calm_tactics=(), up_tactics=(), calm_phrases=(), up_phrases=()) -> Card:
    persona = Persona(name="Renata Solis", age=41, emotional_state="exhausted",
                      speaking_style="clipped", background="double shift",
                      escalated_by=Triggers(tactics=list(up_tactics), phrases=list(up_phrases)),
                      calmed_by=Triggers(tactics=list(calm_tactics), phrases=list(calm_phrases)))
    return Card(id="test-stop", title="Stop", call_type="traffic-stop", setting="A road.",
                dispatch="None.", persona=persona, agitation_start=70,
                learning_objectives=["Practise."])


PLAIN = card()


def play(lines: list[str], start: float, c: Card = PLAIN) -> list[TurnRecord]:
    """Run the rule analyser and the agitation rule over a session, as the engine does."""
    rules, turns, a = RuleAnalyser(), [], start
    for line in lines:
        verdicts = rules.analyse(line, c, [t.trainee for t in turns])
        step = ag.step(a, verdicts, c, turns)
        assert step.after == ag.update(a, [Verdict.from_dict(v.to_dict()) for v in verdicts],
                                       c, turns)
        # effects and drift account for the whole change, to the cent
        assert sum(v.effect for v in verdicts) + step.drift == pytest.approx(step.after - a,
                                                                              abs=1e-9)
        assert 0.0 <= step.after <= 100.0 and step.after == round(step.after, 1)
        turns.append(TurnRecord(index=len(turns), trainee=line, reply="", verdicts=verdicts,
                                agitation_before=a, agitation_after=step.after, latency_s=0.0))
        a = step.after
    return turns


CALM = ["I'm Officer Reyes with the state patrol. The reason I stopped you is your tail light.",
        "Renata, I can see you're exhausted. What's going on tonight?",
        "That sounds really hard. So you're coming off a double shift?",
        "You're not in trouble. Would you rather wait in the car or stretch your legs?",
        "Thank you for telling me. Here's what happens next: I'll write a warning."]
THREATS = ["License and registration.",
           "Give me your license. Now!",
           "I said GIVE ME YOUR LICENSE",
           "Step out of the car or I'll arrest you. Last warning.",
           "You're going to jail, you idiot."]


def test_calm_tactics_lower_agitation_step_by_step():
    turns = play(CALM, 70)
    path = [70] + [t.agitation_after for t in turns]
    assert all(b < a for a, b in itertools.pairwise(path)), path
    assert path[-1] < 40 and ag.level(path[-1]) in ("calm", "wary")
    # every turn had de-escalation verdicts, each with a negative effect
    assert all(v.effect < 0 for t in turns for v in t.verdicts if v.kind == "deescalation")


def test_threats_raise_agitation_step_by_step():
    turns = play(THREATS, 40)
    path = [40] + [t.agitation_after for t in turns]
    assert all(b >= a for a, b in itertools.pairwise(path)), path
    assert path[-1] > 85 and ag.level(path[-1]) == "explosive"
    biggest = max((v for t in turns for v in t.verdicts), key=lambda v: v.effect)
    assert biggest.tactic == "threat"


def test_a_neutral_turn_drifts_up_only_when_upset():
    assert play(["License and registration."], 70)[0].agitation_after == 72.0
    assert play(["License and registration."], 40)[0].agitation_after == 40.0
    # a calming word stops the drift
    assert play(["License and registration, please."], 70)[0].agitation_after < 70


def test_clamp_scales_effects_to_the_real_change():
    turns = play(["You're going to jail, you idiot. This is your last warning."], 97)
    t = turns[0]
    assert t.agitation_after == 100.0
    # a threat alone is worth ~6 points at 97: scaled down with the others to fit the 3 left
    assert all(0 < v.effect < 3 for v in t.verdicts)
    assert 0 < sum(v.effect for v in t.verdicts) <= 3.0
    # the floor: calming at 0 changes nothing and does not go negative
    assert play(["I understand. You're safe."], 0)[0].agitation_after == 0.0


def test_headroom_never_sticks_at_the_ends():
    # at 100 calming still works; at 0 a threat still moves agitation up
    assert play(["I understand, that sounds frustrating."], 100)[0].agitation_after < 95
    assert play(["I'll arrest you."], 0)[0].agitation_after > 5
    # and the same words weigh differently by the headroom left
    low, high = (play(["I'll arrest you."], a)[0].verdicts[0].effect for a in (20, 90))
    assert low > high > 0
    low, high = (play(["I understand."], a)[0].verdicts[0].effect for a in (10, 90))
    assert high < low < 0


def test_repeating_a_stock_phrase_stops_working():
    # the same words again count nothing, however long the session
    turns = play(["I understand."] * 80, 100)
    assert [v.effect for t in turns[1:] for v in t.verdicts] == [0.0] * 79
    assert min(t.agitation_after for t in turns) >= 94  # only the first one calmed
    # rotating three stock phrases is no better
    turns = play(["I understand.", "What happened?", "You're safe."] * 9, 100)
    assert all(v.effect == 0 for t in turns[3:] for v in t.verdicts)
    assert min(t.agitation_after for t in turns) > 80
    # new words for the same tactic count x0.7 per earlier turn that used it, session-wide
    lines = ["I understand.", "Whatever.", "Whatever.", "That sounds frustrating.",
             "Whatever.", "I hear you."]
    turns = play(lines, 60)
    b, c = (turns[i].verdicts[0] for i in (3, 5))
    assert b.tactic == c.tactic == "empathy"
    assert ag.repetition(b, turns[:3]) == pytest.approx(0.7)
    assert ag.repetition(c, turns[:5]) == pytest.approx(0.49)
    # escalation is never damped
    turns = play(["I'll arrest you."] * 3, 20)
    assert [t.delta for t in turns] == sorted(t.delta for t in turns)[::-1]  # only headroom


def test_a_varied_genuine_session_still_calms():
    lines = [*CALM, "I hear you. Tell me more about your boss.",
             "It makes sense that you'd be frustrated after a double shift.",
             "If I understand you correctly, you can't afford to be late again?",
             "How are you getting home after this?",
             "We'll figure this out. It's your call whether you phone your supervisor."]
    path = [90] + [t.agitation_after for t in play(lines, 90)]
    assert all(b < a for a, b in itertools.pairwise(path)), path
    assert path[-1] < 40


def test_kind_words_beside_a_threat_insult_or_ultimatum_count_nothing():
    text = ("I'm Officer Lee with city police, I understand you're upset, what happened? "
            "Please, you're not in trouble, it's up to you, because it's the tail light. "
            "You're a moron and I'll tase you.")
    verdicts = RuleAnalyser().analyse(text, PLAIN, [])
    step = ag.step(80, verdicts, PLAIN, [])
    assert step.after > 80  # was 80 -> 61: six calming tactics outweighed the threat
    assert all(v.effect == 0 for v in verdicts if v.kind == "deescalation")
    assert step.drift == 2.0  # nothing calming counted: the drift applies
    for hostile in ("Last warning.", "I'll arrest you.", "You idiot."):
        turn = play([f"I understand you're scared. {hostile}"], 60)[0]
        assert turn.agitation_after > 60, hostile
    # other escalations leave the kind words their effect: acknowledging, then repeating an
    # order calmly is what academies teach
    turn = play(["I understand you're scared. Step out of the car, please."], 60)[0]
    assert turn.agitation_after < 60
    turn = play(["Step out of the car.", "I understand you're scared. I need you to step out "
                 "of the car."], 60)[1]
    assert {v.tactic for v in turn.verdicts} >= {"empathy", "repeated_command"}
    assert [v.effect < 0 for v in turn.verdicts if v.tactic == "empathy"] == [True]


def test_effects_add_up_to_the_change_exactly_over_random_turns():
    import math
    import random

    rng = random.Random(20240611)
    tactics = list(ag.BASE)
    c = card(calm_tactics=["empathy", "explanation"], up_tactics=["dismissive", "reassurance"])
    for _ in range(3000):
        turns = [TurnRecord(i, "", "", [Verdict(t, "", [f"w{rng.randrange(4)}"], [(0, 2)])
                                        for t in rng.sample(tactics, rng.randrange(3))],
                            50, 50, 0.0) for i in range(rng.randrange(4))]
        verdicts = [Verdict(t, "", [f"w{rng.randrange(4)}"] * rng.randrange(1, 4), [(0, 2)])
                    for t in rng.sample(tactics, rng.randrange(0, 6))]
        a = rng.choice([rng.uniform(0, 100), round(rng.uniform(0, 100), 1), 0.0, 100.0])
        step = ag.step(a, verdicts, c, turns)
        total = sum(v.effect for v in verdicts) + step.drift
        assert abs(total - (step.after - step.before)) < 1e-9, (a, verdicts, step)
        assert all(v.effect == round(v.effect, 2) for v in verdicts)
        assert all(math.copysign(1, x) > 0 for x in [step.drift] + [v.effect for v in verdicts]
                   if x == 0)  # never -0.0


def test_drift_and_effects_are_never_negative_zero():
    verdicts = RuleAnalyser().analyse("I understand.", PLAIN, [])
    step = ag.step(0.0, verdicts, PLAIN, [])
    assert step.after == 0.0
    assert f"{step.drift}" == "0.0" and f"{verdicts[0].effect}" == "0.0"


def raw(line: str, a: float, c: Card = PLAIN) -> float:
    """The first verdict's effect before the clamp and the rounding."""
    v = RuleAnalyser().analyse(line, c, [])[0]
    return ag.raw_effect(v, a, c, [])


def test_persona_multipliers():
    plain = raw("I understand.", 60)
    assert plain == pytest.approx(-6.0 * (0.4 + 0.6 * 0.6))  # base x headroom, as documented
    assert raw("I understand.", 60, card(calm_tactics=["empathy"])) == pytest.approx(1.5 * plain)
    assert raw("I understand.", 60, card(up_tactics=["empathy"])) == pytest.approx(0.5 * plain)
    plain = raw("Whatever.", 40)
    assert plain > 0
    assert raw("Whatever.", 40, card(up_tactics=["dismissive"])) == pytest.approx(1.5 * plain)


def test_card_phrases_move_agitation():
    c = card(up_phrases=["attitude"], calm_phrases=["a warning"])
    up = play(["Lose the attitude."], 50, c)[0]
    assert up.agitation_after > 50 and up.verdicts[-1].tactic == "persona_trigger"
    down = play(["It's just a warning."], 50, c)[0]
    assert down.agitation_after < 50 and down.verdicts[-1].effect < 0


def test_two_threats_weigh_more_than_one():
    assert raw("I'll arrest you. I'll tase you.", 30) == pytest.approx(1.5 * raw("I'll arrest "
                                                                               "you.", 30))
    assert raw("I'll arrest you. I'll tase you. I'll shoot you. I'll hurt you.", 30) == \
        pytest.approx(2.0 * raw("I'll arrest you.", 30))  # at most x2


def test_levels_and_state_text():
    assert [ag.level(a) for a in (0, 19.9, 20, 45, 60, 79.9, 80, 100)] == \
        ["calm", "calm", "wary", "upset", "agitated", "agitated", "explosive", "explosive"]
    texts = {ag.state_text(a, PLAIN) for a in (10, 30, 50, 70, 90)}
    assert len(texts) == 5  # a different instruction per band
    text = ag.state_text(72.4, PLAIN)
    assert text.startswith("Your agitation right now is 72/100 (agitated): ")
    assert "Renata Solis" in text and "never mention this number" in text


def test_update_without_verdicts_keeps_a_calm_person_calm():
    assert ag.update(30.0, [], PLAIN, []) == 30.0
    assert ag.update(150.0, [], PLAIN, []) == 100.0  # out-of-range input is clamped
