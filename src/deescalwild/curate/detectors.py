"""Quality detectors: each looks at turns or a scenario and says what is wrong and why.

Detectors only report `(flag, reason)`; `curate.annotate` writes flags and the policy decides
what they exclude. Every threshold comes from `Thresholds` and was measured on the published
corpus; docs/curation.md gives the measurements and each detector's hand-checked precision.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from deescalwild.core import Role, Scenario, Turn
from deescalwild.curate.policy import Thresholds

WORD = re.compile(r"[\w']+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens: what repetition, duplicates and shingles compare."""
    return WORD.findall(text.lower())


# --- repetition inside one row ------------------------------------------------------------

def repetition_loop(ws: Sequence[str], th: Thresholds) -> str | None:
    """A unit of 1..`repetition_max_unit` words repeated `repetition_min_repeats` times in a row:
    the signature of a speech recogniser stuck in a loop ("hey, hey, hey, ..." for 80,000
    characters). People repeat themselves ("no, no, no, no, no"), but on the published corpus
    no row has between 13 and 49 repeats: the natural and the degenerate do not overlap.
    """
    k = th.repetition_min_repeats
    n = len(ws)
    if n < k:
        return None
    # every word of a unit repeated k times occurs at least k times: a cheap pre-check
    counts = Counter(ws)
    if counts.most_common(1)[0][1] < k:
        return None
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in ws), dtype=np.int64, count=n)
    best = (0, 0, 0)  # repeats, unit length, start
    for p in range(1, min(th.repetition_max_unit, n // k) + 1):
        eq = np.concatenate(([False], ids[p:] == ids[:-p], [False]))
        edges = np.flatnonzero(np.diff(eq.astype(np.int8)))
        if not len(edges):
            continue
        starts, ends = edges[0::2], edges[1::2]
        j = int(np.argmax(ends - starts))
        repeats = (int(ends[j] - starts[j]) + p) // p
        if repeats > best[0]:
            best = (repeats, p, int(starts[j]))
    repeats, p, start = best
    if repeats < k:
        return None
    unit = " ".join(ws[start:start + p])
    share = repeats * p / n
    return f"'{_clip(unit, 60)}' repeated {repeats:,} times ({share:.0%} of the row's words)"


# --- patterns across rows -----------------------------------------------------------------

def duplicate_of_previous(turns: Sequence[Turn], norm: Sequence[tuple[str, ...]],
                          th: Thresholds) -> dict[int, str]:
    """Rows whose words repeat the row before: when the same speaker says it again, or when it
    is long enough (`duplicate_min_words`) that another speaker echoing it word for word is a
    diarizer artefact rather than talk. "Okay." / "Okay." between two people is talk."""
    out: dict[int, str] = {}
    for i in range(1, len(turns)):
        cur = norm[i]
        if cur and cur == norm[i - 1] and (turns[i].speaker == turns[i - 1].speaker
                                           or len(cur) >= th.duplicate_min_words):
            who = "same speaker" if turns[i].speaker == turns[i - 1].speaker else "other speaker"
            out[i] = f"repeats row {turns[i - 1].index} word for word ({who})"
    return out


def alternating_loops(turns: Sequence[Turn], norm: Sequence[tuple[str, ...]],
                      th: Thresholds) -> dict[int, str]:
    """Runs where two different lines alternate (A, B, A, B, ...) over `alternating_min_rows`
    rows or more. The first A and B are kept; every repetition after them is flagged."""
    out: dict[int, str] = {}
    n = len(turns)
    i = 2
    while i < n:
        if norm[i] and norm[i] == norm[i - 2] and norm[i] != norm[i - 1]:
            j = i
            while j + 1 < n and norm[j + 1] == norm[j - 1] and norm[j + 1] != norm[j]:
                j += 1
            rows = j - i + 3  # the run i-2 .. j
            if rows >= th.alternating_min_rows:
                a, b = " ".join(norm[i - 2]), " ".join(norm[i - 1])
                reason = (f"rows {turns[i - 2].index}-{turns[j].index} alternate "
                          f"'{_clip(a, 40)}' / '{_clip(b, 40)}' ({rows} rows)")
                for k in range(i, j + 1):
                    out[k] = reason
            i = j + 1
        else:
            i += 1
    return out


# --- what a row says ----------------------------------------------------------------------

# One strong cue settles an advertisement; weak cues need company (two different ones).
_AD_STRONG = re.compile(
    r"\b(?:promo(?:tion(?:al)?)? code|discount code|coupon code|use (?:my |our |the )?code\b|"
    r"(?:is|was|are) brought to (?:you|us)(?: in part)? by|brought to you by|"
    r"(?:today'?s|our|this video'?s|this episode'?s) sponsor|sponsor(?:ed)? (?:of|by) "
    r"(?:today'?s|this|our)|(?:partner|sponsor) of (?:our|this|the) (?:\w+ )?channel|"
    r"link (?:is )?in (?:the|my) (?:description|bio)|"
    r"(?:hit|smash|click|press) (?:that|the) (?:subscribe|like|bell)|"
    r"(?:like and|please) subscribe|subscribe (?:to|for) (?:the|my|our|more)|"
    r"notification bell|patreon|merch(?:andise)? (?:store|shop)|\d+ ?% off|percent off|"
    r"free trial|members?[- ]only|become a member|join (?:the|our) channel|"
    r"(?:head|go|visit) (?:over )?to \w+\.(?:com|org|net|io)|\w+\.com/\w+)"
)
_AD_WEAK = re.compile(
    r"\b(?:sponsor\w*|subscribe\w*|merch|discount|coupon|check (?:it|them) out|sign up|"
    r"download (?:the|our) app|qr code|special offer|shop now|support (?:the|our|this) channel|"
    r"\w+\.com)\b"
)


def advertisement(text: str) -> str | None:
    """Sponsor reads, promo codes, calls to subscribe: what a channel says to sell, not to the
    people in the scene."""
    low = text.lower()
    m = _AD_STRONG.search(low)
    if m:
        return f"says '{m.group(0)}'"
    weak = {w.group(0) for w in _AD_WEAK.finditer(low)}
    if len(weak) >= 2:
        return "says " + ", ".join(f"'{w}'" for w in sorted(weak)[:3])
    return None


# Talk to the video's audience. Narrator-labelled speakers narrate by definition; these phrases
# catch narration by speakers the diarizer did not call narrators (a host named "Mark").
_AUDIENCE = re.compile(
    r"\b(?:welcome (?:back )?to (?:the|my|our|another) (?:\w+ )?(?:channel|show|video|"
    r"podcast|episode|edition|stream)|in (?:this|today'?s) (?:video|episode)|"
    r"thanks? (?:you )?(?:so much )?for watching|(?:on|to) (?:this|my|our) channel|"
    r"(?:let'?s|we'?ll|we will) (?:get|go|take you) (?:you )?back to (?:the|that) "
    r"(?:footage|video|body ?cam|dash ?cam|interview|interrogation)|"
    r"(?:body ?cam|dash ?cam|surveillance) (?:footage|video) (?:shows|released|obtained)|"
    r"as you(?:'ll| will| can)? see (?:in|on) (?:the|this) (?:footage|video|clip)|"
    r"(?:hi|hey|hello),? (?:everyone|everybody|guys|folks),? (?:and )?welcome|"
    r"let us know (?:in|down in) the comments|(?:in|down in) the comments below)"
)


def narration(turn: Turn, evidence: str | None = None) -> str | None:
    """Speech to the video's audience: the turn of a speaker whose label or conversational cues
    make them a narrator, or audience phrases in anyone's. A narrator role that the classifier
    alone assigned is not enough: by hand, 16 of 20 such turns were people in the scene."""
    if turn.role is Role.NARRATOR and evidence != "model":
        return "speaker's role is narrator"
    m = _AUDIENCE.search(turn.text.lower())
    return f"talks to the audience: '{m.group(0)}'" if m else None


# --- whole scenarios ----------------------------------------------------------------------

# Words that police-civilian talk uses and other talk rarely does (measured per 1,000 words).
POLICE_TERMS = frozenset("""
officer officers police policeman cop cops deputy deputies sheriff sergeant sarge trooper
troopers detective detectives lieutenant corporal arrest arrested arresting arrests cuff cuffs
cuffed handcuff handcuffs handcuffed warrant warrants license licence registration insurance
dispatch dispatcher 911 suspect resisting patrol badge taser tased jail ticket citation miranda
detained detain detaining custody probable dui breathalyzer sobriety trespass trespassing
trespassed squad precinct ma'am sir id identification vehicle weapon weapons firearm gun search
consent rights attorney lawyer charges charged felony misdemeanor bail probation parole
investigation investigator investigating interview interrogation evidence alibi statement
crime victim homicide station
""".split())

_TITLE_TERMS = POLICE_TERMS | frozenset(
    "bodycam dashcam pursuit chase pit swat k9 nypd lapd policebody cops copsoftiktok".split())

# A talk show's opening: the diarizer's fabricated "podcasts" start like this.
_SHOW = re.compile(
    r"\b(?:welcome (?:back )?to (?:the|our|my|this) (?:latest )?(?:edition of (?:the )?)?"
    r"(?:podcast|show|program|episode|webinar|lecture|class)|i'?m your host|"
    r"(?:i'?m |we'?re )?joined (?:today )?by (?:two|three|my|our|a|an|the) |"
    r"thanks? (?:you )?(?:so much )?for having (?:us|me)|in today'?s (?:lecture|class|lesson)|"
    r"today we'?re going to (?:be )?(?:talking|learning|discussing) about)"
)
_ENGLISH = frozenset("the you i to a and it is that what no yeah okay not your me my we this "
                     "on in of for he she they do don't i'm are was".split())


def off_domain(scenario: Scenario, turn_words: Sequence[Sequence[str]],
               th: Thresholds) -> str | None:
    """Not a police-civilian interaction. Three kinds of evidence, each enough: a talk-show
    opening (two show phrases in the first 30 rows); text that is not English; or almost no
    police vocabulary (none at all under `off_domain_min_words` words) while neither a
    speaker's label nor the video's title mentions police. `turn_words` should leave out loop
    rows, whose thousands of "hey"s would otherwise decide the language and the vocabulary."""
    opening = " ".join(t.text.lower() for t in scenario.turns[:30])
    show = {m.group(0).strip() for m in _SHOW.finditer(opening)}
    if len(show) >= 2:
        return "opens like a talk show: " + ", ".join(f"'{s}'" for s in sorted(show)[:3])
    total = sum(len(w) for w in turn_words)
    if total < 20:  # too little to judge
        return None
    latin = sum(1 for ws in turn_words for w in ws if w.isascii()) / total
    if latin < 0.5:
        return f"not English (only {latin:.0%} of words in Latin script)"
    english = sum(1 for ws in turn_words for w in ws if w in _ENGLISH) / total
    if total >= th.off_domain_min_words and english < 0.05:  # commands alone have few
        return f"not English ({english:.0%} of words are common English words)"
    hits = sum(1 for ws in turn_words for w in ws if w in POLICE_TERMS)
    police = hits * 1000 / total
    # a short clip is judged only when it has no police word at all
    if police >= th.police_terms_min_per_1000 or (total < th.off_domain_min_words and hits):
        return None
    # an officer and a civilian who both talk at length: an interview, whatever its words
    talk = Counter(t.role for t in scenario.turns
                   if (sr := scenario.speakers.get(t.speaker)) and sr.confidence >= 0.85)
    if talk[Role.OFFICER] >= 5 and talk[Role.CIVILIAN] >= 5:
        return None
    if any(sr.role is Role.OFFICER and sr.evidence.value == "label"
           for sr in scenario.speakers.values()):
        return None
    # the title, or a TikTok file name made of its hashtags ("bodycam_policebody")
    named = words(f"{scenario.meta.get('title') or ''} {scenario.id}".replace("_", " "))
    if _TITLE_TERMS.intersection(named):
        return None
    return (f"{police:.1f} police terms per 1,000 words (< {th.police_terms_min_per_1000:g}), "
            "and neither a speaker label nor the title mentions police")


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
