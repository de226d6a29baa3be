"""The 30 binary features of DeEscalWild's relevance taxonomy, in 5 groups, each with a
definition the judge reads.

The reference implementation gave the LLM bare feature names; a name like
`non_relevant_crime_only_context` leaves the model to guess where the line is. Each definition
here says in one sentence what counts and, where the name invites confusion, what does not.
Changing a definition changes the judge's prompt and therefore its version
(`judge.PROMPT_VERSION` is a hash over the prompt and these definitions), so cached judgements
made with the old wording are not reused.

Group names are the variables of the selection rule (`rule.py`): `police`, `interaction`,
`escalation`, `deescalation`, `exclusions`, each the number of its features judged present.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BY_GROUP", "FEATURES", "FEATURE_NAMES", "GROUPS", "Feature", "exclusion_flags",
           "group_scores"]


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    group: str  # a key of GROUPS
    definition: str


# rule variable -> heading shown to the judge and in reports
GROUPS: dict[str, str] = {
    "police": "Police presence",
    "interaction": "Interaction",
    "escalation": "Escalation",
    "deescalation": "De-escalation",
    "exclusions": "Exclusions",
}

_DEFINITIONS: dict[str, list[tuple[str, str]]] = {
    "police": [
        ("police_identified_by_role",
         "A speaker in the encounter is recognisably a police officer (introduces or is "
         "addressed as an officer, deputy or trooper, or speaks as one on duty); a narrator or "
         "civilian merely talking about the police does not count."),
        ("police_commands_present",
         "An officer gives someone a direct order such as \"step out of the car\", \"hands where "
         "I can see them\" or \"stop\"; polite requests phrased as orders count."),
        ("id_request_event",
         "An officer asks someone for identification: ID, name, date of birth, driver's "
         "licence, registration or proof of insurance."),
        ("legal_procedure_language",
         "Legal or procedural terms are used in the encounter, such as arrest, warrant, "
         "Miranda rights, citation, probable cause, being detained, charges or a trespass "
         "warning."),
        ("police_explaining_actions",
         "An officer tells someone why they were stopped or contacted, or what the officer is "
         "doing or about to do."),
        ("civilian_questioning_police",
         "A civilian questions or challenges the officer's actions or authority, e.g. \"why "
         "are you stopping me?\", \"am I being detained?\" or \"what's your badge number?\"."),
    ],
    "interaction": [
        ("conversation_present",
         "At least two people speak to each other in a back-and-forth exchange; a monologue, "
         "narration or orders that get no spoken reply do not count."),
        ("verbal_disagreement_detected",
         "Participants openly disagree or argue about facts, the stop, or what should happen "
         "next."),
        ("compliance_discussion",
         "Whether someone will or must comply is talked about: an order is repeated or "
         "refused, someone asks whether they have to, or consequences of not complying are "
         "discussed."),
        ("instruction_clarification_dialogue",
         "Someone asks what an instruction means or how to follow it, or an officer restates "
         "or clarifies an instruction so it can be followed."),
        ("negotiation_attempts",
         "A participant proposes a deal, an alternative or a compromise, e.g. \"put the knife "
         "down and we can talk\" or \"can I call my mom first?\"."),
        ("conflict_resolution_attempt",
         "Someone tries to settle the dispute (proposes a way out, apologises, mediates between "
         "others), whether or not it works."),
    ],
    "escalation": [
        ("raised_threat_language",
         "Someone threatens violence or harm against another person, e.g. \"I'll kill you\"; an "
         "officer's conditional warning of lawful force belongs to police_warning_language "
         "instead."),
        ("noncompliance_resistance_language",
         "A civilian refuses an order or says they will not cooperate or are resisting, e.g. "
         "\"I'm not getting out\" or \"you can't make me\"."),
        ("accusatory_language",
         "Someone accuses another of wrongdoing, lying, racism, harassment or abuse of power, "
         "e.g. \"you're lying\" or \"you're only stopping me because...\"."),
        ("police_warning_language",
         "An officer warns of consequences if behaviour continues: arrest, jail, a taser, a "
         "dog, force or charges, e.g. \"get out or you're going to jail\"."),
        ("emotional_intensity_spike",
         "Speech turns sharply more emotional: shouting, screaming, crying, bursts of swearing "
         "at someone, panic or desperate repeated pleas."),
        ("crowd_escalation_factors",
         "Bystanders or a crowd add to the tension: yelling at or taunting officers, "
         "interfering, or gathering around the encounter."),
        ("use_of_force_transition_signals",
         "Speech shows physical force starting or under way, e.g. \"stop resisting\", \"get on "
         "the ground\", \"taser!\", \"shots fired\" or a struggle being described."),
    ],
    "deescalation": [
        ("calming_language_used_by_officer",
         "An officer tries to calm someone, e.g. \"relax\", \"take a deep breath\" or "
         "\"nobody is going to hurt you\"; a shouted \"calm down!\" used as an order does not "
         "count."),
        ("empathetic_statements",
         "Someone, usually an officer, acknowledges another person's feelings or situation, "
         "e.g. \"I understand you're scared\" or \"I'd be frustrated too\"."),
        ("clear_explanations_given",
         "Someone explains concretely and understandably what is happening, why, or what will "
         "happen next, including the person's options."),
        ("tone_softening_cues",
         "A speaker shifts to a softer, more polite or more respectful tone after tension, "
         "e.g. please and thank you, an apology, or humour that eases the mood."),
        ("conflict_deescalation_success",
         "Tension drops within the encounter: an agitated person calms down, cooperates "
         "voluntarily, or a confrontation ends without force."),
        ("agreement_reached",
         "The participants explicitly agree on an outcome or next step, e.g. the person agrees "
         "to go with officers or accepts a citation, or a proposed deal is accepted."),
    ],
    "exclusions": [
        ("no_police_presence",
         "No police officer takes part in the recorded encounter (only civilians, security "
         "guards or others, or police merely mentioned)."),
        ("no_conversation_detected",
         "There is no dialogue to learn from: music, silence, a single narrator or monologue, "
         "or speech too fragmentary to follow."),
        ("advertisement_content_detected",
         "The video is mainly an advertisement, sponsor read or channel promotion rather than "
         "footage of an encounter; a short sponsor segment inside real footage does not count."),
        ("training_range_context",
         "The footage is a training exercise, firing range, scripted scenario or simulation "
         "rather than a real encounter."),
        ("non_relevant_crime_only_context",
         "The video shows or reports a crime (news report, narrated case summary, "
         "surveillance footage, court hearing) without a live police-civilian encounter to "
         "learn from."),
    ],
}

FEATURES: tuple[Feature, ...] = tuple(
    Feature(name, group, definition)
    for group, items in _DEFINITIONS.items() for name, definition in items)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
BY_GROUP: dict[str, tuple[str, ...]] = {
    g: tuple(f.name for f in FEATURES if f.group == g) for g in GROUPS}


def group_scores(features: Mapping[str, bool | int]) -> dict[str, int]:
    """Number of features present in each group (the rule's variables)."""
    return {g: sum(1 for n in names if features[n]) for g, names in BY_GROUP.items()}


def exclusion_flags(features: Mapping[str, bool | int]) -> list[str]:
    """The exclusion features that are set, in taxonomy order."""
    return [n for n in BY_GROUP["exclusions"] if features.get(n)]
