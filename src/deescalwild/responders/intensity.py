"""How agitated does a civilian line sound? A transparent estimate, 0 (calm) to 100 (explosive).

The simulator keeps the civilian's agitation as a number (`sim/agitation.py`); the retrieval
responder has only real replies to choose from, so it prefers replies whose *estimated* intensity
is close to that number (`responders/retrieval.py`). The estimate must be cheap (it runs on the
candidates of every turn), explainable, and work on speech-to-text transcripts, which have few
exclamation marks or capitals: most of the signal is in the words.

The score starts at a neutral 25 and adds capped contributions (`CUES`, weights in points):

| cue                                        | each | cap  |
|--------------------------------------------|------|------|
| `!` (a run of them counts once)            | +8   | +24  |
| an ALL-CAPS word (2+ letters, not `ID`...) | +6   | +24  |
| profanity (`profanity_spans`, masked too)  | +10  | +30  |
| hostile phrase ("leave me alone", ...)     | +9   | +36  |
| fear / pain ("you're hurting me", "help")  | +7   | +21  |
| a word said again at once ("no, no, no")   | +6   | +18  |
| a sentence said again ("I'm not a...")     | +8   | +16  |
| calm marker ("okay", "yes sir", "thanks")  | -7   | -21  |

then clamps to 0..100 (one decimal). So "Yes sir, thank you." scores 11, "It's in the glovebox."
25, "Get the fuck off me! Leave me alone!" 60. Known limits: English only; no tone of
voice; sarcasm ("oh, thanks a lot") reads calm; a long rant collects more cues than a short
one of the same heat (the caps keep that bounded). `docs/tactics-and-agitation.md` has the
lexicons' rationale and a check on the published transcripts.

`profanity_spans` is shared with the trainee-side analyser (`sim/tactics.py`), so "profanity" means
the same words on both sides.
"""

from __future__ import annotations

import functools
import itertools
import re

__all__ = ["CUES", "NEUTRAL", "cue_counts", "intensity", "profanity_spans"]

NEUTRAL = 25.0
# cue -> (points per occurrence, cap on the total); the table in the module docstring
CUES: dict[str, tuple[float, float]] = {
    "exclamation": (8.0, 24.0),
    "caps_word": (6.0, 24.0),
    "profanity": (10.0, 30.0),
    "hostile": (9.0, 36.0),
    "distress": (7.0, 21.0),
    "repeated_word": (6.0, 18.0),
    "repeated_sentence": (8.0, 16.0),
    "calm": (-7.0, -21.0),
}

# --- profanity ---------------------------------------------------------------------------------
# Base words, matched whole with their usual endings; "hell" only in swearing phrases ("what the
# hell", not "Hell's Kitchen"), "ass" as a word and in compounds. Minced oaths (freaking, heck,
# darn) are not profanity.
_PROFANE_WORDS = (
    r"(?:mother)?f+u+c+k+(?:s|ed|er|ers|in'?|ing|face|head|wit|off)?|fuckin|fucken|effing"
    r"|(?:bull|horse|dip)?shit(?:s|ty|ted|ting|head|heads|show|hole)?|shite"
    r"|god ?damn(?:ed|it)?|goddam+it|dam+it|damn(?:ed)?"
    r"|(?:dumb|jack|smart|kick|bad|hard|lazy|fat)?ass(?:es|hole|holes|hat|wipe)?|arse(?:hole)?"
    r"|bitch(?:es|ing|y)?|son of a bitch|bastards?|crap(?:py)?|dick(?:s|head|heads)?"
    r"|piss(?:ed|ing)?|cunts?|pricks?|wtf|stfu|screw you|go to hell|the hell|hell no|hell yeah"
    r"|as hell|to hell")
_PROFANE_RE = re.compile(rf"(?<![\w*#@$%])(?:{_PROFANE_WORDS})(?![\w*#@$%])", re.IGNORECASE)
# masked forms: f***, f*ck, sh*t, $hit, b!tch is too rare to be worth a "!" ambiguity
_MASK = "*#@$%"
_MASKED_TOKEN = re.compile(r"(?<![\w*#@$%])[a-z]*[*#@$%][a-z*#@$%]*(?![\w*#@$%])", re.IGNORECASE)
_MASKED_BASES = ("ass", "fuck", "fucking", "fucker", "motherfucker", "shit", "bullshit", "bitch",
                 "asshole", "damn", "cunt", "dick", "bastard", "piss", "pissed", "fucked")
_SUFFIXES = ("", "s", "ed", "er", "ing", "in", "y", "ty")


def _masked_match(token: str) -> bool:
    t = token.lower()
    if not any(c.isalpha() for c in t):
        return False
    for base in _MASKED_BASES:
        for suf in _SUFFIXES:
            word = base + suf
            if len(word) == len(t) and all(a == b or (a in _MASK and i > 0) or
                                           (i == 0 and a in "$@" and b in "sa")
                                           for i, (a, b) in enumerate(zip(t, word))):
                return True
    return False


def profanity_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every swear word in `text`, masked forms (f***, sh*t) included, in order."""
    spans = [m.span() for m in _PROFANE_RE.finditer(text)]
    spans += [m.span() for m in _MASKED_TOKEN.finditer(text) if _masked_match(m.group())]
    return sorted(set(spans))


# --- phrase lexicons ---------------------------------------------------------------------------
def _phrases(*items: str) -> re.Pattern[str]:
    """One word-bounded, case-insensitive pattern for phrases (a space matches any blank or
    comma run; an apostrophe is optional, since transcripts drop them)."""
    alts = []
    for p in items:
        p = re.escape(p).replace(r"\ ", r"[\s,]+").replace("'", "'?")
        alts.append(p)
    return re.compile(r"(?<!\w)(?:" + "|".join(sorted(alts, key=len, reverse=True)) + r")(?!\w)",
                      re.IGNORECASE)


# Hostile or defiant: refusing, accusing, pushing the officer away. Chosen from how civilians
# in the published transcripts push back (`docs/tactics-and-agitation.md`).
_HOSTILE = _phrases(
    "leave me alone", "get off me", "get off of me", "get away from me", "get your hands off",
    "don't touch me", "do not touch me", "back off", "back up", "let me go", "let go of me",
    "shut up", "i don't give a", "harass", "harassing", "harassment", "racist", "pig", "pigs",
    "liar", "you're lying", "you can't do this", "you can't do that", "i know my rights",
    "my rights", "violating", "i didn't do anything", "i didn't do nothing", "i ain't do nothing",
    "i ain't did nothing", "what did i do", "for what", "this is ridiculous", "ridiculous",
    "hate", "sick of", "tired of this", "kill you", "i'm not a criminal", "screw you", "stupid",
    "idiot", "get out of my face", "get out of my house", "get the hell", "go away",
    "no way", "i'm not going", "i ain't going", "i'm not doing", "i ain't doing", "stop it",
    "mind your business", "what's your problem", "are you serious", "angry", "mad", "furious",
    "bullshit", "you people", "y'all always", "why are you doing this", "why you", "badge number",
    "lawyer", "sue", "i'm done", "get off", "stop", "threatening",
)
# Fear, pain, pleading: as loud as anger for the agitation a reply expresses.
_DISTRESS = _phrases(
    "help", "help me", "scared", "afraid", "terrified", "you're hurting me", "it hurts", "hurts",
    "hurting", "can't breathe", "please don't", "oh my god", "oh god", "oh no", "crying",
    "panic", "i'm going to die", "don't shoot", "ouch", "please stop", "i'm begging",
    "bleeding",
)
_SCREAM = re.compile(r"(?<!\w)(?:a+h+|o+w+|ugh)\s*!", re.IGNORECASE)  # "Ah!", "Ow!"
_CALM = _phrases(
    "okay", "ok", "alright", "all right", "yes sir", "yes ma'am", "yes officer", "no sir",
    "no ma'am", "thank you", "thanks", "sure", "no problem", "of course", "i understand",
    "sorry", "my apologies", "yeah", "yep", "yes", "that's fine", "no worries", "i appreciate",
    "have a good", "you too", "gotcha", "got it", "fair enough", "understood", "will do",
)
_ACRONYMS = frozenset(("OK", "ID", "DUI", "DWI", "TV", "US", "USA", "FBI", "DMV", "PD", "ER",
                       "GPS", "AC", "ATM", "CPR", "AM", "PM", "EMS", "EMT", "CCW", "SUV", "OJ",
                       "II", "III", "IV", "UK", "NYPD", "LAPD", "ICE", "DA", "OMG"))
_CAPS_WORD = re.compile(r"\b[A-Z][A-Z']*[A-Z]\b")
_BANGS = re.compile(r"!+")
_WORD = re.compile(r"[a-z']+")
_SENTENCES = re.compile(r"[^.!?]+")
# ASR stutters ("I I", "we we", "my my my") are nervousness at most, not shouting
_STUTTER_OK = frozenset(("i", "we", "the", "a", "my", "to", "it", "he", "she", "they", "you",
                         "and", "uh", "um", "that", "is", "in", "of", "so", "like", "but"))


def _count(pattern: re.Pattern[str], text: str) -> int:
    return sum(1 for _ in pattern.finditer(text))


def cue_counts(text: str) -> dict[str, int]:
    """How many times each cue of `CUES` occurs in `text` (what `intensity` adds up)."""
    words = _WORD.findall(text.lower())
    repeated = sum(1 for a, b in itertools.pairwise(words) if a == b and a not in _STUTTER_OK)
    sentences = [" ".join(_WORD.findall(s.lower())) for s in _SENTENCES.findall(text)]
    sentences = [s for s in sentences if len(s.split()) >= 2]
    return {
        "exclamation": _count(_BANGS, text),
        "caps_word": sum(1 for m in _CAPS_WORD.finditer(text) if m.group() not in _ACRONYMS),
        "profanity": len(profanity_spans(text)),
        "hostile": _count(_HOSTILE, text),
        "distress": _count(_DISTRESS, text) + _count(_SCREAM, text),
        "repeated_word": repeated,
        "repeated_sentence": len(sentences) - len(set(sentences)),
        "calm": _count(_CALM, text),
    }


@functools.lru_cache(maxsize=4096)
def intensity(text: str) -> float:
    """Estimated emotional intensity of a civilian line, 0..100 (module docstring: the rule)."""
    score = NEUTRAL
    for cue, n in cue_counts(text).items():
        if n:
            each, cap = CUES[cue]
            total = each * n
            score += max(total, cap) if cap < 0 else min(total, cap)
    return round(min(100.0, max(0.0, score)), 1)
