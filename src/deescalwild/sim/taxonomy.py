"""The tactics a trainee turn is read for: ids, kinds and one-line definitions.

The ids are a contract: scenario cards name them in their triggers, reports count them, the
judge analyser is asked for them. The rules that detect them live in `sim/tactics.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from deescalwild.sim.records import Kind


@dataclass(frozen=True, slots=True)
class Tactic:
    id: str
    kind: Kind
    label: str
    definition: str


_T = [
    Tactic("introduction", "deescalation", "Introduction",
           "The officer says who they are (name, rank or agency) and why they are here."),
    Tactic("name_use", "deescalation", "Name use",
           "The officer addresses the person by their name or asks what they prefer to be called."),
    Tactic("empathy", "deescalation", "Empathy / validation",
           "The officer acknowledges the person's feelings or situation as understandable."),
    Tactic("active_listening", "deescalation", "Active listening / reflection",
           "The officer reflects back or sums up what the person said, or invites them to go on."),
    Tactic("open_question", "deescalation", "Open question",
           "The officer asks a question that cannot be answered yes or no (what, how, tell me)."),
    Tactic("explanation", "deescalation", "Explaining what and why",
           "The officer explains what is happening, what happens next, or the reason for it."),
    Tactic("offering_choices", "deescalation", "Offering choices",
           "The officer gives the person options or a say in how things go."),
    Tactic("calm_request", "deescalation", "Calm request",
           "The officer asks politely (please, could/would you) instead of giving an order."),
    Tactic("reassurance", "deescalation", "Reassurance",
           "The officer tells the person they are safe, not in trouble, or that help is coming."),
    Tactic("threat", "escalation", "Threat",
           "The officer threatens force, arrest, a weapon or harm."),
    Tactic("shouted_command", "escalation", "Shouted command",
           "An order given in capitals or with exclamation marks."),
    Tactic("repeated_command", "escalation", "Repeated command",
           "The same order as in one of the officer's last turns, given again."),
    Tactic("insult", "escalation", "Insult",
           "The officer calls the person names or demeans them."),
    Tactic("dismissive", "escalation", "Dismissiveness",
           "The officer brushes off the person's words or feelings (I don't care, whatever)."),
    Tactic("profanity", "escalation", "Profanity", "The officer swears."),
    Tactic("ultimatum", "escalation", "Ultimatum",
           "The officer gives a last chance or a countdown (or else, last time, I'm counting)."),
]
TACTICS: dict[str, Tactic] = {t.id: t for t in _T}
DEESCALATION = tuple(t.id for t in _T if t.kind == "deescalation")
ESCALATION = tuple(t.id for t in _T if t.kind == "escalation")
# verdicts from a card's own trigger phrases (source "persona"), not from the taxonomy's rules
PERSONA_TRIGGER = "persona_trigger"  # escalation: the card says these words upset this person
PERSONA_CALM = "persona_calm"  # de-escalation: the card says these words calm this person
PERSONA_LABELS = {PERSONA_TRIGGER: "Personal trigger", PERSONA_CALM: "Calms this person"}


def label(tactic: str) -> str:
    """The human name of a tactic id (taxonomy or persona), for every interface."""
    t = TACTICS.get(tactic)
    return t.label if t else PERSONA_LABELS.get(tactic, tactic.replace("_", " "))
