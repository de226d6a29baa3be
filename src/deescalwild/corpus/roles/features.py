"""What the role classifier sees of one speaker: their words, the words around them, and how
they sit in the conversation.

A speaker is one label in one scenario. Three views, all computed the same way for a speaker
whose label says its role (training) and for one whose label does not (prediction), so that
the corpus can label itself:
- `own`: what the speaker says;
- `around`: what the other speakers say right before and after them (how they are addressed:
  "license and registration", "yes officer", "thank you for calling 911");
- `numbers`: share of the talk, turn length, position, and the roles of the speakers they
  alternate with (a civilian mostly answers officers).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from deescalwild.core import Role, Scenario

ROLE_ORDER = (Role.OFFICER, Role.CIVILIAN, Role.BYSTANDER, Role.DISPATCHER, Role.NARRATOR)
OWN_CHARS = 3000
AROUND_CHARS = 1500
NUMERIC_NAMES = (  # shape_features, then neighbour_features
    "share_turns", "share_chars", "log_chars_per_turn", "first_turn_pos", "log_speakers",
    "question_rate", "self_follow_rate", "addresses_audience",
    *(f"next_to_{r.value}" for r in ROLE_ORDER), "next_to_unresolved",
    "scenario_has_officer", "scenario_has_civilian",
)
AUDIENCE = re.compile(  # talk to the video's audience, not to anyone in the scene
    r"\b(?:(?:hi|hey|hello)(?: there)?,? (?:everyone|everybody|folks)"
    r"|welcome(?: back)? to (?:the|my|our|this) (?:channel|show|stream|video|podcast|episode)"
    r"|subscribe|(?:in this|today'?s) (?:video|episode)"
    r"|brought to (?:you|us)(?: in part)? by|(?:on|to) (?:this|the|my|our) channel"
    r"|for watching|(?:our|today'?s) sponsor"
    r"|get you (?:right )?back to (?:that|the) (?:body ?cam|video|footage))\b"
)
# Words without which the pattern above cannot match: a substring test is far cheaper than a
# regex scan, and most speakers have none of them.
_AUDIENCE_KEYS = ("everyone", "everybody", "folks", "welcome", "subscribe", "this video",
                  "this episode", "today's", "todays", "brought to", "channel", "for watching",
                  "sponsor", "right back to", "get you back to")


def addresses_audience(own: str) -> bool:
    """Does the speaker talk to the video's audience (see `AUDIENCE`)?"""
    low = own.lower()
    return any(k in low for k in _AUDIENCE_KEYS) and bool(AUDIENCE.search(low))


@dataclass(slots=True)
class Speaker:
    """One label in one scenario and the indices of its turns."""

    scenario: Scenario
    label: str
    turns: list[int]


def speakers_of(sc: Scenario) -> list[Speaker]:
    """Speakers in order of first appearance."""
    by_label: dict[str, list[int]] = {}
    for i, t in enumerate(sc.turns):  # positions, not t.index: curation may drop turns
        by_label.setdefault(t.speaker, []).append(i)
    return [Speaker(sc, label, idx) for label, idx in by_label.items()]


def _capped_join(texts: list[str], cap: int) -> str:
    """Join texts up to `cap` characters, sampling evenly across the list so that a long
    speaker is represented from start to end, not just by their first minute."""
    total = sum(len(t) for t in texts)
    if cap <= 0:
        return ""
    if total <= cap:
        return " ".join(texts)
    out, used = [], 0
    step = max(1, round(total / cap))
    for t in texts[::step] if step > 1 else texts:
        out.append(t[: cap - used])
        used += len(out[-1])
        if used >= cap:
            break
    return " ".join(out)


def own_text(sp: Speaker) -> str:
    turns = sp.scenario.turns
    return _capped_join([turns[i].text for i in sp.turns], OWN_CHARS)


def around_text(sp: Speaker) -> str:
    """Other speakers' turns adjacent to this speaker's turns."""
    turns = sp.scenario.turns
    mine = set(sp.turns)
    picked: list[int] = []
    seen: set[int] = set()
    for i in sp.turns:
        for j in (i - 1, i + 1):
            if 0 <= j < len(turns) and j not in mine and j not in seen:
                seen.add(j)
                picked.append(j)
    return _capped_join([turns[j].text for j in picked], AROUND_CHARS)


def scenario_chars(sc: Scenario) -> int:
    """Characters of talk in a scenario (lengths are what can be summed at C speed)."""
    return sum(map(len, [t.text for t in sc.turns]))


def shape_features(sp: Speaker, total_chars: int, n_speakers: int, audience: bool
                   ) -> np.ndarray:
    """The part of the numeric features that does not depend on other speakers' roles.
    `total_chars` is `scenario_chars(scenario)`; `audience` is `addresses_audience(own)`."""
    turns = sp.scenario.turns
    n = len(turns) or 1
    chars = sum(len(turns[i].text) for i in sp.turns)
    self_follow = sum(1 for i in sp.turns if i > 0 and turns[i - 1].speaker == sp.label)
    return np.asarray([
        len(sp.turns) / n,
        chars / max(1, total_chars),
        math.log1p(chars / len(sp.turns)) / 7,
        sp.turns[0] / n,
        math.log1p(n_speakers) / 3,
        sum("?" in turns[i].text for i in sp.turns) / len(sp.turns),
        self_follow / len(sp.turns),
        float(audience),
    ], dtype=np.float32)


def neighbour_labels(sp: Speaker) -> list[str]:
    """The label of every other speaker's turn adjacent to one of this speaker's turns."""
    turns = sp.scenario.turns
    out = []
    for i in sp.turns:
        for j in (i - 1, i + 1):
            if 0 <= j < len(turns) and turns[j].speaker != sp.label:
                out.append(turns[j].speaker)
    return out


def neighbour_features(label: str, neighbours: list[str], known: dict[str, Role | None]
                       ) -> np.ndarray:
    """Roles of the speakers this one alternates with. `known` maps each label of the scenario
    to the role its label (or an earlier pass) gave it, None when unresolved."""
    counts = dict.fromkeys([*ROLE_ORDER, None], 0)
    for lab in neighbours:
        role = known.get(lab)
        counts[role if role in counts else None] += 1
    n = max(1, len(neighbours))
    others = {r for lab, r in known.items() if lab != label}
    return np.asarray([
        *(counts[r] / n for r in ROLE_ORDER),
        counts[None] / n,
        float(Role.OFFICER in others),
        float(Role.CIVILIAN in others),
    ], dtype=np.float32)
