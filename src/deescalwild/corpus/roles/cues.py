"""Conversational cues that settle the role of a speaker whose label does not.

A classifier cannot learn these from the corpus (in the role-labelled part only officers' labels
carry names), but a careful reader uses them first: someone the others call "Officer Bruno" or
"Deputy Brammer" is an officer, and so is "Bruno" when another label of the same video is
"Officer Bruno"; someone the others call "Mr. Robbins" is not; a name the video's title gives
with a police title is an officer, without one it is the person the video is about. And someone
who greets the video's audience or reads its sponsor is a narrator, whatever the label says.
Cues that disagree cancel out and leave the decision to the classifier. Cue-settled speakers are
also training examples for the classifier: they show what named speakers of each role sound like.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from dataclasses import dataclass

from deescalwild.core import Role
from deescalwild.corpus.roles.features import AUDIENCE
from deescalwild.corpus.roles.lexicon import OFFICER_TITLES, TITLE_ABBREVIATIONS

_TITLE = "(?i:" + "|".join(sorted(OFFICER_TITLES | TITLE_ABBREVIATIONS)) + r")\.?"
_TITLED = re.compile(rf"\b({_TITLE})[ \t]+((?:[A-Z][\w'-]+[ \t]+)?[A-Z][\w'-]+)")
_TITLED_LABEL = re.compile(rf"^\[?({_TITLE})\s+([^\]]+?)\]?$")
_TITLE_WORDS = OFFICER_TITLES | TITLE_ABBREVIATIONS
_HONORIFICS = frozenset(["mr", "mrs", "ms", "miss", "mister"])
_ABBREVIATIONS = TITLE_ABBREVIATIONS | {"mr", "mrs", "ms"}
_SELF_INTRO = re.compile(r"\b(?:i'?m|i am|this is|my name is|name's|it's)(?: a| an)?$")
# Tokens too common as words (or too generic) to be matched as a name.
_NOT_NAMES = frozenset([
    "the", "and", "man", "woman", "male", "female", "guy", "lady", "speaker", "voice",
    "unknown", "person", "sir", "maam", "mom", "dad", "son", "jr", "sr", "mr", "mrs", "ms",
    "miss", "dr", "will", "mark", "bill", "rose", "grant", "hunter", "chase", "joy", "hope",
    "may", "june", "april", "summer", "drew", "ray", "dean", "faith", "king", "young", "long",
    "white", "black", "brown", "green", "gray", "grey", "wood", "love", "page", "price", "rich",
    "hall", "hill", "lane", "case", "pat", "sky", "art", "don", "jack",
])


@dataclass(frozen=True, slots=True)
class Cue:
    role: Role
    why: str


def name_tokens(label: str) -> list[str]:
    """Name-like tokens of a plain-name label in order, capitalised as names are written
    ("sam brammer" → ["Sam", "Brammer"])."""
    toks = re.findall(r"[^\W\d_][\w'-]+", label)
    keep = [t[0].upper() + t[1:] for t in toks if len(t) >= 3 and t.lower() not in _NOT_NAMES]
    return list(dict.fromkeys(keep))


def _title_key(word: str) -> str:
    """"Officer" → "officer", "Sgt." → "sgt"; "officer," or "officer." (a sentence ends,
    the name starts a new one) → "" so that it is not taken for a title."""
    w = word.lower()
    if w.endswith("."):
        return w[:-1] if w[:-1] in _ABBREVIATIONS else ""
    return "" if not w[-1:].isalpha() else w


@dataclass(slots=True)
class Naming:
    """How a speaker's name appears in a scenario with a title or honorific."""

    titled: str | None = None  # "Officer Bruno", said by someone else
    honored: str | None = None  # "Mr. Robbins", said by someone else
    introduced: str | None = None  # "Sergeant Roberts" after "I'm", said by the speaker


class Mentions:
    """Finds where a scenario's speakers name someone with a police title or an honorific.

    Searching for a few name tokens with `str.find` and looking just before each hit is far
    faster than scanning every turn with a title regex (role resolution runs on every import).
    """

    def __init__(self, turns) -> None:
        self.turns = turns
        texts = [t.text for t in turns]
        self.text = "\n".join(texts)
        # where each turn ends in the joined text, separator included (all at C speed)
        self.ends = list(itertools.accumulate(map(operator.add, map(len, texts),
                                                  itertools.repeat(1))))

    def named(self, tokens: list[str], label: str) -> Naming:
        """How `label`'s name tokens are used with a title or an honorific in the scenario.
        Tokens are tried in order, so the answer does not depend on hashing."""
        found = Naming()
        text = self.text
        for tok in tokens:
            i = text.find(tok)
            while i != -1:
                end = i + len(tok)
                bounded = (i == 0 or not text[i - 1].isalnum()) and (
                    end == len(text) or not text[end].isalnum())
                if bounded:
                    self._look_before(i, tok, label, found)
                i = text.find(tok, end)
        return found

    def _look_before(self, i: int, tok: str, label: str, found: Naming) -> None:
        # the one or two words before the name, within the same turn: "Officer Bruno",
        # "Sgt. Sam Brammer"
        k = bisect.bisect_right(self.ends, i)
        turn_start = self.ends[k - 1] if k else 0
        before = self.text[max(turn_start, i - 60):i]
        words = before.rsplit(None, 2)[-2:]
        keys = [_title_key(w) for w in words]
        last = keys[-1] if keys else ""
        honorific = last in _HONORIFICS
        title = last in _TITLE_WORDS or (
            len(keys) == 2 and keys[0] in _TITLE_WORDS and words[1][:1].isupper())
        if not (title or honorific):
            return
        near = words[-1:] if (honorific or last in _TITLE_WORDS) else words
        said = " ".join([*near, tok])
        if self.turns[k].speaker != label:
            if title and found.titled is None:
                found.titled = said
            if honorific and found.honored is None:
                found.honored = said
        elif title and found.introduced is None:
            # "I'm Sergeant Roberts", in Roberts's own words
            parts = before.rsplit(None, len(near))
            lead = parts[0] if len(parts) > len(near) else ""
            if _SELF_INTRO.search(lead.lower().rstrip(" ,")):
                found.introduced = said


def named_cues(label: str, mentions: Mentions, other_labels: list[str],
               video_title: str | None) -> list[Cue]:
    """Cues from how the others, the other labels and the video's title name this speaker."""
    toks = name_tokens(label)
    if not toks:
        return []
    folded = {t.casefold() for t in toks}
    naming = mentions.named(toks, label)
    cues: list[Cue] = []
    if naming.titled:
        cues.append(Cue(Role.OFFICER, f"others say '{naming.titled}'"))
    if naming.introduced:
        cues.append(Cue(Role.OFFICER, f"introduces themself as '{naming.introduced}'"))
    for lab in other_labels:
        m = _TITLED_LABEL.match(lab)
        if m and folded.intersection(m.group(2).casefold().split()):
            cues.append(Cue(Role.OFFICER, f"same name as the label '{lab}'"))
            break
    if naming.honored:
        cues.append(Cue(Role.CIVILIAN, f"others say '{naming.honored}'"))
    if video_title:
        m = next((m for m in _TITLED.finditer(video_title)
                  if folded.intersection(m.group(2).casefold().split())), None)
        if m:
            cues.append(Cue(Role.OFFICER, f"video title says '{m.group(0)}'"))
        elif len(toks) > 1 and toks[-1].casefold() in re.findall(r"[\w'-]+",
                                                                 video_title.casefold()):
            cues.append(Cue(Role.CIVILIAN, "the video's title is about them"))
    return cues


def audience_cue(own: str) -> Cue | None:
    """Someone who greets or thanks the video's audience, or reads its sponsor, is narrating."""
    m = AUDIENCE.search(own.lower())
    return Cue(Role.NARRATOR, f"talks to the audience: '{m.group(0)}'") if m else None


def decide(cues: list[Cue]) -> Cue | None:
    """The cue's verdict when all cues agree, else None."""
    return cues[0] if cues and len({c.role for c in cues}) == 1 else None
