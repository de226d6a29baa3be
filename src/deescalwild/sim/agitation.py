"""The civilian's agitation (0 calm .. 100 explosive) and how each trainee turn moves it.

The rule is a short, documented formula so a trainee can be shown exactly which of their words
moved the civilian and by how much (each verdict's `effect`), and a trainer can argue with it.
For a turn, with `a` the agitation before it:

    effect(v) = base[v.tactic] x persona(v) x repetition(v) x multiplicity(v) x headroom(v, a)
                x hostility(v)
    drift     = +2 when no de-escalation effect counted and a > 50, else 0
    after     = clamp(a + sum(effect) + drift, 0, 100), rounded to 0.1

- **base** (`BASE`): de-escalation negative, escalation positive; threats (+15) and insults
  (+12) are the largest, empathy, reassurance and choices (-6) the largest calming ones (trust
  is slower to build than to break); a card's trigger phrases (`persona_trigger` +8,
  `persona_calm` -6) come from the card's own words.
- **persona**: x1.5 when the tactic is in the card's `escalated_by.tactics` (escalation) or
  `calmed_by.tactics` (de-escalation): this person reacts more to it; x0.5 when a de-escalation
  tactic is in `escalated_by` or an escalation one in `calmed_by` (reacts less). No sign flips.
- **repetition** (de-escalation only): x0.7 for each earlier turn of the session that used the
  tactic, and x0 when every piece of the verdict's evidence was already said for that tactic
  earlier in the session (compared as words: case and punctuation do not make it new). So
  "I understand." said again counts nothing, rotating three stock lines stops working after
  the first round, while new words for a tactic still count (1, 0.7, 0.49...): a genuine,
  varied conversation keeps calming. Escalation is never damped: the tenth threat hurts like
  the first.
- **hostility** (de-escalation only): x0 in a turn with a threat, an insult or an ultimatum
  (`HOSTILE`). "I understand you're upset ... you're a moron and I'll tase you" calms nothing:
  the kind words read as a set-up for the force, as the report's score refuses them credit.
  Other escalations (a shouted or repeated order, swearing, a brush-off, a card's trigger
  phrase) cost their own points but leave the kind words their effect: acknowledging the
  feeling and then repeating an order is what academies teach.
- **multiplicity** (escalation only): two threats in one turn are worse than one: x(1 + 0.5 per
  extra piece of evidence), at most x2. Saying "please" twice does not calm twice.
- **headroom**: calming works less when already calm, escalation less near the top:
  x(0.4 + 0.6 a/100) for de-escalation, x(0.4 + 0.6 (1 - a/100)) for escalation. The floor of
  0.4 keeps both directions alive at the ends, so the scale never sticks at 0 or 100.
- **drift**: unaddressed agitation grows: a turn in which no de-escalation counted (none was
  used, or all of it was repeated or beside a threat) nudges an upset person (above 50) up by
  2 points, even when nothing in it was hostile.
- **clamp**: when the sum would leave 0..100, every effect and the drift are scaled by the same
  factor so that they still add up to the change actually made; so a report can always say
  "these words moved agitation by exactly this much". Effects and drift are rounded to 2
  decimals first, `after` to 0.1, and the residual goes to the largest effect (to the drift
  when there is none), so `sum(effects) + drift == after - before` to the cent (and the input
  agitation is taken to one decimal).

`level` names the band (calm < 20 <= wary < 40 <= upset < 60 <= agitated < 80 <= explosive) and
`state_text` is the instruction LLM civilians get (`request.extra["state"]`). Worked example and
rationale: `docs/tactics-and-agitation.md`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deescalwild.sim.records import TurnRecord, Verdict
from deescalwild.sim.taxonomy import PERSONA_CALM, PERSONA_TRIGGER

if TYPE_CHECKING:
    from deescalwild.sim.cards import Card

__all__ = ["BANDS", "BASE", "HOSTILE", "Step", "hostile", "level", "raw_effect", "repetition",
           "state_text", "step", "update"]

BASE: dict[str, float] = {
    "introduction": -3.0, "name_use": -3.0, "empathy": -6.0, "active_listening": -5.0,
    "open_question": -3.0, "explanation": -5.0, "offering_choices": -6.0, "calm_request": -2.0,
    "reassurance": -6.0, PERSONA_CALM: -6.0,
    "threat": 15.0, "shouted_command": 8.0, "repeated_command": 6.0, "insult": 12.0,
    "dismissive": 7.0, "profanity": 5.0, "ultimatum": 10.0, PERSONA_TRIGGER: 8.0,
}
PERSONA_MORE = 1.5  # the card says this tactic matters more to this person
PERSONA_LESS = 0.5  # the card lists it on the other side
REPEAT_DAMPING = 0.7  # per earlier turn of the session that used the tactic
HOSTILE = frozenset(("threat", "insult", "ultimatum"))  # de-escalation beside them counts 0
EXTRA_EVIDENCE = 0.5  # escalation: per extra piece of evidence, up to MAX_MULTIPLICITY
MAX_MULTIPLICITY = 2.0
HEADROOM_FLOOR = 0.4
DRIFT = 2.0
DRIFT_ABOVE = 50.0

# (upper bound, name, how the civilian behaves) — lower bound inclusive
BANDS: tuple[tuple[float, str, str], ...] = (
    (20.0, "calm", "you are calm and cooperative; you speak in full sentences, answer questions "
     "and can be friendly or thank the officer"),
    (40.0, "wary", "you are guarded and unsure of the officer; you answer briefly, ask why, and "
     "watch for signs of trouble, but you are willing to talk"),
    (60.0, "upset", "you are upset and defensive; you argue, complain, repeat your point and "
     "need to feel heard before you cooperate"),
    (80.0, "agitated", "you are angry or frightened and hard to reason with; short sentences, "
     "interruptions, a raised voice, refusals; you cooperate only if something the officer says "
     "really lands"),
    (float("inf"), "explosive", "you are at breaking point: shouting, swearing or panicking, "
     "barely listening; you refuse orders and speak a few words or one sentence at a time"),
)


@dataclass(slots=True)
class Step:
    """One turn's agitation change, itemised: `after - before == sum(effects) + drift`."""

    before: float
    after: float
    drift: float
    scale: float  # < 1 when the clamp cut the change (effects and drift were scaled by it)


def _kind(v: Verdict) -> str:
    return v.kind if v.kind in ("deescalation", "escalation") else (
        "escalation" if BASE.get(v.tactic, 0.0) > 0 else "deescalation")


def _persona_factor(v: Verdict, card: Card | None) -> float:
    if card is None or v.tactic in (PERSONA_TRIGGER, PERSONA_CALM):
        return 1.0
    p = card.persona
    up, down = v.tactic in p.escalated_by.tactics, v.tactic in p.calmed_by.tactics
    f = 1.0
    if _kind(v) == "escalation":
        f *= PERSONA_MORE if up else 1.0
        f *= PERSONA_LESS if down else 1.0
    else:
        f *= PERSONA_MORE if down else 1.0
        f *= PERSONA_LESS if up else 1.0
    return f


def _headroom(kind: str, a: float) -> float:
    x = a / 100.0 if kind == "deescalation" else 1.0 - a / 100.0
    return HEADROOM_FLOOR + (1.0 - HEADROOM_FLOOR) * min(1.0, max(0.0, x))


def _words(evidence: str) -> str:
    """Evidence compared as words: case, punctuation and spacing do not make it new."""
    return " ".join(_WORD.findall(evidence.casefold()))


_WORD = re.compile(r"[^\W_]+")


def repetition(v: Verdict, turns: Sequence[TurnRecord]) -> float:
    """x0.5 per earlier turn of the session that used the tactic; 0 when every piece of the
    evidence was already said for it earlier in the session (the same words again)."""
    used = [u for t in turns for u in t.verdicts if u.tactic == v.tactic]
    said = {_words(e) for u in used for e in u.evidence}
    if v.evidence and all(_words(e) in said for e in v.evidence):
        return 0.0
    earlier = sum(1 for t in turns if any(u.tactic == v.tactic for u in t.verdicts))
    return REPEAT_DAMPING ** earlier


def hostile(verdicts: Sequence[Verdict]) -> bool:
    """A threat, an insult or an ultimatum in the turn: its de-escalation counts nothing."""
    return any(v.tactic in HOSTILE for v in verdicts)


def raw_effect(v: Verdict, a: float, card: Card | None, turns: Sequence[TurnRecord],
               verdicts: Sequence[Verdict] = ()) -> float:
    """The verdict's effect before the clamp (module docstring: the factors). `verdicts`: the
    whole turn's verdicts (a hostile one cancels the de-escalation)."""
    base = BASE.get(v.tactic, 0.0)
    kind = _kind(v)
    f = _persona_factor(v, card) * _headroom(kind, a)
    if kind == "deescalation":
        f *= 0.0 if hostile(verdicts) else repetition(v, turns)
    else:
        f *= min(MAX_MULTIPLICITY, 1.0 + EXTRA_EVIDENCE * max(0, len(v.evidence) - 1))
    return base * f + 0.0


def step(agitation: float, verdicts: list[Verdict], card: Card | None,
         turns: Sequence[TurnRecord] = ()) -> Step:
    """Apply the rule to one turn's verdicts: sets each verdict's `effect`, returns the `Step`."""
    a = round(min(100.0, max(0.0, float(agitation))), 1)  # agitation has one decimal
    effects = [raw_effect(v, a, card, turns, verdicts) for v in verdicts]
    calming = any(_kind(v) == "deescalation" and e != 0.0 for v, e in zip(verdicts, effects))
    drift = DRIFT if not calming and a > DRIFT_ABOVE else 0.0
    total = sum(effects) + drift
    after = min(100.0, max(0.0, a + total))
    scale = (after - a) / total if total and after != a + total else 1.0
    after = round(after, 1)
    # round every part first, then give the residual to the largest effect (or to the drift
    # when there is none), so `sum(effects) + drift == after - before` to the cent
    rounded = [round(e * scale, 2) for e in effects]
    drift = round(drift * scale, 2)
    residual = round((after - a) - (sum(rounded) + drift), 2)
    if rounded:
        big = max(range(len(rounded)), key=lambda i: abs(rounded[i]))
        rounded[big] = round(rounded[big] + residual, 2)
    else:
        drift = round(drift + residual, 2)
    for v, e in zip(verdicts, rounded):
        v.effect = e + 0.0  # never -0.0
    return Step(before=a, after=after, drift=drift + 0.0, scale=scale)


def update(agitation: float, verdicts: list[Verdict], card: Card | None,
           turns: Sequence[TurnRecord] = ()) -> float:
    """The agitation after a turn (0..100, one decimal); sets each verdict's `effect`. `turns`
    are the session's earlier turns (their verdicts drive the repetition damping)."""
    return step(agitation, verdicts, card, turns).after


def level(agitation: float) -> str:
    """The band's name: calm, wary, upset, agitated or explosive."""
    return _band(agitation)[1]


def _band(agitation: float) -> tuple[float, str, str]:
    return next(b for b in BANDS if agitation < b[0])


def state_text(agitation: float, card: Card | None = None) -> str:
    """The instruction an LLM civilian gets with each turn (appended to its system prompt)."""
    _, name, how = _band(agitation)
    who = f"Stay in character as {card.persona.name}. " if card is not None else ""
    return (f"Your agitation right now is {agitation:.0f}/100 ({name}): {how}. {who}Let what the "
            "officer just said show in how you answer, and never mention this number.")
