"""Reading a trainee's turn for de-escalation tactics and escalation behaviours, with evidence.

The simulator moves the civilian's agitation from what the trainee says, and the trainee must be
able to see why: every verdict carries the exact words that triggered it (`evidence`), where they
are (`spans`, character offsets), and a one-line `why` ("'I understand' — acknowledging
feelings"). The rule analyser is therefore a list of readable regular expressions per tactic id of
`sim.taxonomy.TACTICS`, not a model: a trainer can read, test and change every rule. An LLM judge
through any responder is the option for less literal reading (`sim/judge.py`).

Choices, and why (the full rule table and known limits: `docs/tactics-and-agitation.md`):

- **Policing language, not generic sentiment.** Rules name what academies teach: "I'm Officer
  Diaz with the county sheriff" (introduction), the persona's own name (name use, word-bounded,
  case-insensitive; a name that is also a common word, "Will", counts only capitalised and not
  as a sentence's first word unless a comma follows), "I can see you're upset" (empathy), "so
  what you're saying is" (active listening), "the reason I stopped you" (explanation).
- **Accusatory questions are not open questions.** "Why are you being difficult?", "what's
  wrong with you?", "why won't you listen?", "why should I care?" start with a question word
  but blame; they do not invite the person's side, so they never count as open questions
  ("what's wrong with you", "who the hell do you think you are" and "which part of ... don't
  you understand" count as insults: they demean). Nor do statements shaped like questions
  ("What you need to do is get out", "What I need is your license").
- **"Calm down" is dismissive** when given as an order ("calm down", "you need to calm down",
  "please calm down"): academies teach it as an escalator because it dismisses the feeling.
  "Let's both take a breath" is not matched.
- **Politeness inside force does not count.** A calm request, a choice, an open question or
  the person's name in the same sentence as a threat, an ultimatum, an insult, profanity, a
  brush-off or a shouted order ("please get out or I'll tase you", "you can either walk or get
  dragged", "Please, step out of the car!", "tell me what happened, or I'll arrest you") is
  dropped, and so is a name that leads into a shouted order ("MS. SOLIS, GET OUT NOW").
- **Negation, where cheap.** Threat rules need a speaker who will act ("I'll", "I'm going to",
  "you're going to jail", one swear or adverb allowed between: "I'll fucking tase you"), so
  "I'm not going to arrest you" is no threat; it matches the reassurance rules instead. An
  insult is skipped only when the negation sits directly before it ("you're not an idiot",
  "no moron"): "don't move, you idiot" and "I'm not kidding, you idiot" insult. Veiled threats
  ("you don't want to get tased") are threats: the negation there is rhetorical.
- **Friendly uses of force words.** "I'll drop you off at your sister's" and "we'll put you in
  the car and drive you home" are rides, not threats; "Take care!", "Stay safe!", "Don't
  worry!", "Help is coming!" are wishes, not shouted or repeated orders (`_BENIGN`, checked
  before the command verbs).
- **Reported speech.** A threat, insult, ultimatum, brush-off or shouted order inside double
  quotes or after "he said" / "she told you" is the other person's, not the trainee's ('So he
  said "I'm going to hurt you"?').
- **Feelings, not observations.** "I can see/tell" is empathy only with a feeling after it
  ("I can see you're scared", not "I can tell you've been drinking"); "that's hard to
  believe", "tough luck", "a lot of drugs", "that sounds like a lie" are not validation or
  reflection; "I'm sorry (that) you feel that way" is a brush-off, while "I don't care about
  the weed, I care about you" is not.
- **Repeated commands** compare the command clauses (imperatives after stripping "please",
  "I said", "you need to", "sir", the person's name, "now") of this turn with those of the
  trainee's previous two turns; near-equal word sequences (difflib ratio >= 0.8) count, so
  "Step out of the car." then "Get out of the car, now!" is a repetition. Questions and
  invitations ("tell me", "explain") are not commands.
- **Names** are matched in any script ("Ángel Álvarez"), with curly apostrophes made straight
  on both sides ("O’Neil"); the person's name before an order is a lead-in, as "sir" is.
- **Linear time.** Every pattern is written so a 2,000-character turn costs about the same
  whatever it holds (no look-ahead or `$`-anchored group that rescans a long run of spaces
  from every position); a test compares pathological lines with a normal one.
- **The card's own words.** Phrases in a persona's `escalated_by.phrases` / `calmed_by.phrases`
  give `persona_trigger` / `persona_calm` verdicts (`source="persona"`), matched case-insensitively
  on word boundaries. They add to the taxonomy's verdicts: the card says these words matter more
  for this person.
- **One verdict per tactic** per turn, with every matching piece of evidence (spans sorted), in
  taxonomy order then the persona's; English only; no tone of voice (a typed turn has none:
  capitals and "!" stand for shouting).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Protocol

from deescalwild.errors import DeescalwildError
from deescalwild.responders.intensity import profanity_spans
from deescalwild.sim.records import Verdict
from deescalwild.sim.taxonomy import PERSONA_CALM, PERSONA_TRIGGER, TACTICS

if TYPE_CHECKING:
    from deescalwild.sim.cards import Card

__all__ = ["Analyser", "RuleAnalyser", "command_clauses", "load_analyser", "normalise"]

Span = tuple[int, int]


class Analyser(Protocol):
    """Reads one trainee turn. `previous`: the trainee's earlier turns, oldest first."""

    name: str

    def analyse(self, text: str, card: Card, previous: Sequence[str]) -> list[Verdict]: ...


def normalise(text: str) -> str:
    """Curly quotes made straight, same length, so spans found on it index the original."""
    return text.translate(_QUOTES)


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                         "\u02bc": "'"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One pattern for one tactic; `label` says what the words do (the `why` line); `keep`
    is an optional guard on a match (negation, context)."""

    tactic: str
    pattern: re.Pattern[str]
    label: str
    keep: Callable[[str, re.Match[str]], bool] | None = None


# --- building blocks ---------------------------------------------------------------------------
I_M = r"i(?:'?m| am)"
WE_RE = r"we(?:'?re| are)"
YOU_RE = r"you(?:'?re| are)"
GOING = r"(?:going to|gonna)"
WILL = (rf"(?:i(?:'?ll| will| shall|'?m {GOING}| am {GOING})"
        rf"|we(?:'?ll| will|'?re {GOING}| are {GOING}))")
RANK = (r"(?:officer|deputy|sergeant|sgt|detective|det|trooper|corporal|cpl|lieutenant|lt|"
        r"constable|agent|ranger|captain|chief|marshal|investigator|sheriff|patrolman)")
AGENCY = (r"(?:police|sheriff|sheriff's|sheriffs|pd|department|patrol|county|city|state|"
          r"highway|precinct|crisis|mental health|university|transit|campus|security|"
          r"constabulary|metro|office)")
AGENCY_TAIL = (rf"(?:with|from)\s+(?:the\s+)?(?:[\w'-]+\s+){{0,3}}?{AGENCY}(?:'?s)?"
               rf"(?:\s+(?:{AGENCY}|department|office|dept|services|team|unit)(?:'?s)?)*")
FEEL_ADJ = (r"(?:hard|tough|difficult|frustrating|scary|frightening|awful|terrible|rough|"
            r"stressful|upsetting|painful|overwhelming|exhausting|confusing|unfair|"
            r"a lot(?!\s+of\b)|a lot of (?:pressure|stress|weight|pain|worry|responsibility)|"
            r"horrible|sad|heartbreaking|infuriating|annoying|embarrassing|a hard \w+|"
            r"a tough \w+|a long \w+|a rough \w+)")
FEEL_STATE = (r"(?:upset|scared|afraid|frightened|frustrated|angry|mad|worried|stressed|hurt|"
              r"sad|overwhelmed|exhausted|tired|nervous|anxious|confused|embarrassed|shaken|"
              r"in pain|(?:going )?through a lot|having a (?:hard|rough|tough|bad) "
              r"(?:time|day|night))")
# "that's hard to believe", "tough luck": the adjective is not about their feelings
NOT_FEEL = r"(?!\s+(?:to believe|to buy|to swallow|to prove|luck)\b)"
INTENS = r"(?:(?:really|so|very|pretty|incredibly|super|kind of|a little|a bit)\s+)?"
# "drop you off", "throw you a rope", "hit you up": friendly uses of force verbs
HARM_NEEDS_YOU = (r"(?:hurt|cuff|handcuff|drag|hit|punch|slam|spray|force|kill|beat|choke|"
                  r"tackle|smash|drop|throw|break|bite|mace|pepper[- ]?spray|tase|taze|"
                  r"shoot|arrest)\s+you(?!\s+(?:off|up|a|an|some|home|back home|a line)\b)")
# one swear or adverb between "I'll" and the verb still threatens: "I'll fucking tase you"
INTENSIFIER = (r"(?:(?:fucking|freaking|frickin\w*|f[*#@$%]+(?:in\w*|ing)|goddamn|damn|really|"
               r"definitely|just|totally|seriously|absolutely|personally|gladly|happily|"
               r"literally|actually|so|\w+ly)\s+)?")
HARM_FREE = (r"(?:arrest|tase|taze|taser|tazer|shoot|pepper[- ]?spray|lock you up|"
             r"take you (?:down|to jail|in)|(?:pull|drag|yank) you out|"
             r"put you (?:down|on the ground|in (?:cuffs|handcuffs|"
             r"jail|the back|the car))|use force|use (?:my|the) (?:taser|tazer|gun|weapon|baton|"
             r"spray|dog|k-?9)|send (?:in )?the dog|release the dog|have you arrested|"
             r"charge you|book you|make you(?!\s+(?:a|an|some|the|coffee|tea|comfortable|"
             r"feel|more|sure|an offer)\b))")


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _evidence_span(m: re.Match[str]) -> Span:
    """The match, or its `ev`/`ev2` group when the pattern marks the evidence inside context."""
    for g in ("ev", "ev2"):
        if g in m.re.groupindex and m.start(g) >= 0:
            return m.span(g)
    return m.span()


_NEGATED = re.compile(r"(?:\b(?:not|never|no)|n't)\s+(?:calling you\s+)?(?:(?:a|an|such an?|some"
                      r"|being|acting like)\s+)?$", re.IGNORECASE)


def _not_negated(text: str, m: re.Match[str]) -> bool:
    """False when a negation sits directly before the insult ("you're not an idiot", "no
    moron"). Further back it negates something else: "don't move, you idiot", "I'm not
    kidding, you idiot", "no, you're a moron" all insult."""
    return not _NEGATED.search(text[max(0, m.start() - 40):m.start()])


def _not_sorry_you_feel(text: str, m: re.Match[str]) -> bool:
    """"I'm sorry you feel that way" is the classic non-apology: dismissive, not empathy."""
    return not _NON_APOLOGY.search(m.group())


def _not_a_ride(text: str, m: re.Match[str]) -> bool:
    """"We're going to put you in the car and drive you home" is a ride, not an arrest: the
    same sentence says where to."""
    rest = re.split(r"[.!?\n]", text[m.end():m.end() + 120], maxsplit=1)[0]
    return not re.search(r"\b(?:drive|take|bring|get|give|run)\s+you\s+(?:home|a ride|back home|"
                         r"to (?:your|the (?:hospital|shelter|clinic|station to pick)|a (?:shelter|"
                         r"hospital|friend)))\b|\b(?:drop you off|so you can (?:warm up|rest|sit|"
                         r"get warm))\b", rest, re.IGNORECASE)


def _not_caring_instead(text: str, m: re.Match[str]) -> bool:
    """"I don't care about the weed, I care about you" moves the focus to the person: no
    brush-off. The caring has to follow in the same sentence."""
    rest = text[m.end():m.end() + 120]
    rest = re.split(r"[.!?\n]", rest, maxsplit=1)[0]
    return not re.search(r"\b(?:i|we)\s+(?:do\s+|really\s+|just\s+)?care\s+(?:about|that)\b|"
                         r"\b(?:i|we)(?:'?m|'?re| am| are)\s+(?:more\s+|just\s+)?(?:worried|"
                         r"concerned)\s+about\b", rest, re.IGNORECASE)


_NON_APOLOGY = re.compile(r"sorry\s+(?:that\s+|if\s+)?you\s+(?:feel|see it|think)\s+that\s+way",
                         re.IGNORECASE)


# "that sounds like a lie to me" judges, it does not reflect
SOUNDS_NOT = (r"(?!\s+(?:a lie|lies|bullshit|b\.?s\b|crap|an excuse|excuses|a (?:likely |nice |"
              r"good )?story|a you problem|a personal problem|your problem|a load|nonsense))")


R = Rule
_RULES: list[Rule] = [
    # introduction: who, from where, why here
    R("introduction", _re(rf"\b(?:{I_M}|this is|my name is|my name's|name's)\s+{RANK}\.?"
                          r"(?:\s+(?!(?:and|with|from|here|on|of|at|the|a|an|i|just)\b)"
                          rf"[a-z][\w'-]*)?(?:\s*,?\s*{AGENCY_TAIL})?"), "saying who you are"),
    R("introduction", _re(r"\bmy name(?:'s| is)\s+(?!not\b)[a-z][\w'-]*"),
      "giving your name"),
    R("introduction", _re(rf"\b(?:{I_M}|{WE_RE})\s+(?:here\s+)?{AGENCY_TAIL}"),
      "saying who you are with"),
    R("introduction", _re(rf"\b(?:{I_M}|{WE_RE})\s+(?:just\s+)?here\s+(?:because|about|for|"
                          r"to\s+(?:check|see|talk|make sure|find out|figure|look|ask))\b"
                          r"[^.?!,;]{0,40}"), "saying why you are here"),
    R("introduction", _re(rf"\b(?:the reason|why)\s+(?:{I_M}|{WE_RE})\s+here\b|\b(?:we|i)\s+"
                          r"(?:got|received|had) a call\b[^.?!,;]{0,30}"),
      "saying why you are here"),
    # name use (the persona's name is matched per card): asking how to address them
    R("name_use", _re(r"\bwhat (?:should|can|do you want me to|would you like me to) i call you\b"
                      r"|\bwhat do you (?:like|prefer|want) to be called\b|\bwhat(?:'s| is) "
                      r"your (?:first )?name\b|\bcan i (?:get|have) your (?:first )?name\b"),
      "asking what to call them"),
    # empathy / validation
    # "I understand" about facts ("I understand you were at the bar", "...you're over here
    # visiting") is not empathy; about a feeling it is, and the feeling is shown with it
    R("empathy", _re(r"\bi\s+(?:completely\s+|totally\s+|really\s+|can\s+|do\s+|fully\s+)?"
                     r"understand\b(?!\s+(?:that\s+)?(?:you|he|she|they|it)(?:\s+(?:were|was|"
                     rf"have|had|did|got|went|took)\b|(?:'?re| are)\s+(?!{INTENS}{FEEL_STATE}\b)))"
                     rf"(?:\s+(?:how you feel|(?:why |that )?you(?:'?re| are) {INTENS}"
                     rf"{FEEL_STATE}\b))?"), "acknowledging feelings"),
    R("empathy", _re(r"\bi\s+(?:can\s+)?(?:totally\s+)?(?:get|hear)\s+(?:it|you|that)\b"
                     r"(?!\s+(?:out|off|back|in)\b)"), "acknowledging feelings"),
    # "I can see/tell" + a feeling ("I can tell you've been drinking" is an observation)
    R("empathy", _re(rf"\bi\s+can\s+(?:see|tell)\s+(?:that\s+)?(?:(?:{YOU_RE}|you(?:'?ve| have) "
                     rf"been|you feel|you seem|you look)\s+{INTENS}{FEEL_STATE}\b|(?:this|that|"
                     r"it|things)(?:'?s| is| are| has been| have been| must be| must have been|"
                     rf" was)\s+{INTENS}{FEEL_ADJ}\b{NOT_FEEL}|how (?:much|hard|upset|scared|"
                     r"worried|frightened|frustrated|tired|angry|stressed)\b|you (?:really )?"
                     r"(?:care|love|miss)\b)[^.?!,;]{0,40}"),
      "naming what they are going through"),
    R("empathy", _re(rf"\b(?:that|this|it)(?:'?s| is| has been| must be| must have been| sounds|"
                     rf" seems| looks| must feel)\s+{INTENS}{FEEL_ADJ}\b{NOT_FEEL}"),
      "validating"),
    R("empathy", _re(rf"\b(?:{YOU_RE}|you(?:'?ve| have) been|you seem|you look|you sound|you must "
                     rf"be|you must feel|you feel)\s+{INTENS}{FEEL_STATE}\b"),
      "naming the feeling"),
    R("empathy", _re(r"\b(?:it'?s|that'?s|it is|that is)\s+(?:totally\s+|completely\s+|"
                     r"perfectly\s+)?(?:understandable|okay to (?:be|feel)|normal to (?:be|feel)|"
                     r"natural to)\b"
                     r"|\byou have every right to (?:be|feel)\b|\b(?:that|it) makes (?:total |"
                     r"complete )?sense\b"), "validating"),
    R("empathy", _re(rf"\b(?:anyone|anybody|i)\s*(?:would|'d)\s+(?:be|feel)\s+{INTENS}"
                     rf"{FEEL_STATE}\b"), "validating"),
    R("empathy", _re(rf"\b{I_M}\s+(?:so\s+|really\s+|very\s+|truly\s+)?sorry\s+(?:to hear|about|"
                     r"for|that|you|this|it)\b[^.?!,;]{0,30}"), "expressing sympathy",
      _not_sorry_you_feel),
    R("empathy", _re(r"\bi know (?:this|it|that)(?:'s| is| must be| has been| can be| feels)\b"
                     r"[^.?!,;]{0,30}"), "acknowledging feelings"),
    R("empathy", _re(r"\bthank(?:s| you) for (?:telling|sharing|being honest|explaining|talking|"
                     r"letting me know|your patience|waiting|cooperating|working with me)\b"),
      "thanking them"),
    # active listening / reflection
    R("active_listening", _re(r"\bso,? what you(?:'?re| are) saying is\b|\bwhat i(?:'?m| am) "
                              r"hearing (?:is|from you)\b|\bif i (?:understand|heard|hear|got) "
                              r"(?:you|this|that|it)(?: correctly| right)?\b|\blet me make sure"
                              r" i (?:understand|got|have|heard)\b"), "reflecting back"),
    R("active_listening", _re(rf"\b(?:it|that)\s+sounds like\b{SOUNDS_NOT}|(?:^|[.!?,]\s*)"
                              rf"(?P<ev>sounds like\b{SOUNDS_NOT})|\bso you(?:'?re| are) "
                              r"(?:saying|telling me)\b|\byou(?:'?re| are) (?:saying|telling me)"
                              r"(?: that)?\b|\byou (?:said|mentioned|"
                              r"told me)\b"), "reflecting back"),
    R("active_listening", _re(r"(?:^|[.!?,]\s*)(?P<ev>so,?\s+you(?:'re|\s+(?:were|feel|"
                              r"felt|want|wanted|need|needed|think|thought|didn'?t|don'?t|just|"
                              r"came|went|had|have|are))\b)"), "summing up what they said"),
    R("active_listening", _re(r"\bgo on\b(?=\s*(?:[.!?]|$|,?\s*(?:i'?m listening|tell me|what "
                              r"happened)))|\btell me more\b|\bkeep going\b|"
                              r"\bi(?:'?m| am) (?:listening|all ears)\b|"
                              r"\bi want to hear (?:your side|what happened|from you|you out|"
                              r"it)\b|\btake your time\b|\band then what\b|\bwhat happened "
                              r"(?:next|then|after that)\b|\bmm-?hm+\b|\buh-?huh\b"),
      "inviting them to go on"),
    # explanation
    R("explanation", _re(r"\bthe reason (?:why |that )?(?:i|we|you|this|for)\b[^.?!,;]{0,40}(?!\w)|"
                         r"\bwhat(?:'?s| is) "
                         rf"{GOING} happen\b|\bwhat happens (?:now|next)\b|\bhere(?:'?s| is) "
                         r"what\b|\blet me explain\b|\bi(?:'?ll| will| want to| need to) "
                         r"explain\b"), "explaining what happens"),
    R("explanation", _re(r"\b(?:because|'cause|cuz)\b(?!\s+i\s+(?:said|told you)\s+so\b)|\bso "
                         r"that\b|\bthat'?s why\b|\bin order to\b|\bfor (?:your|everyone'?s|my|our"
                         r"|the) (?:own )?safety\b"), "giving the reason"),
    R("explanation", _re(rf"\b(?:{I_M}|{WE_RE})\s+(?:just\s+)?{GOING}\s+(?:run|check|look|ask you|"
                         r"explain|call|write|give you|talk|walk you|get you|grab|let you|read you|"
                         r"take a look|have a look|go over)\b|\byou(?:'?ll| will) be (?:free to go|"
                         r"on your way|out of here)\b"), "saying what happens next"),
    # offering choices
    R("offering_choices", _re(r"\byou can either\b|\beither (?:you|we)\b[^.?!]{1,60}?\bor\b|"
                              r"\bwould you "
                              r"(?:rather|prefer)\b|\b(?:do|would) you (?:want|prefer|wanna|like) "
                              r"to\b[^.?!]{1,60}?\bor\b"), "offering options"),
    R("offering_choices", _re(r"\b(?:it'?s|that'?s|it is|that is)\s+(?:totally\s+|completely\s+|"
                              r"entirely\s+|all\s+)?(?:up to you|your (?:choice|call|decision))\b|"
                              r"(?<!made )(?<!bad )(?<!wrong )(?<!poor )(?<!a )\byour choice\b|"
                              r"\bthe choice is yours\b|(?<!did )(?<!do )(?<!didn't )\byou "
                              r"(?:decide|choose|get to (?:decide|choose|pick))\b(?!\s+(?:to|"
                              r"that|not)\b)|\byou have (?:a|two|some|a few|other) "
                              r"(?:choices?|options?)\b|\bwhich (?:would you prefer|do you prefer|"
                              r"one do you want)\b|\bhow (?:do|would) you (?:want|like) to (?:do|"
                              r"handle|play) this\b|\bif you(?:'?d| would)? (?:like|prefer)\b|"
                              rf"\bwhatever {YOU_RE} comfortable with\b|\bwhen {YOU_RE} ready\b"),
      "giving them a say"),
    # calm request
    R("calm_request", _re(r"(?<!oh )(?<!oh, )(?<!pretty )\bplease\b|\bwould you mind\b|\bdo you "
                          r"mind\b|\b(?:could|would|can) you(?: please)?\b"
                          r"(?!\s+(?:hear|believe|imagine|not|see)\b)(?=\s+\w)|"
                          r"\bif you (?:could|would|don'?t mind)\b|"
                          r"\bi(?:'?d| would) (?:really )?(?:appreciate|like you to|ask you to)\b|"
                          r"\bdo me a favou?r\b|\blet'?s\s+(?!go\b)\w+"), "asking, not ordering"),
    # reassurance
    R("reassurance", _re(rf"\b{YOU_RE}\s+not\s+(?:in\s+(?:any\s+)?trouble|under\s+arrest|{GOING}\s+"
                         r"(?:to\s+)?(?:jail|get in trouble|be arrested|get arrested|be in trouble)"
                         rf"|in any danger|alone)\b|\b{YOU_RE}\s+(?:safe|okay now|alright now|"
                         rf"{GOING} (?:to )?be (?:okay|ok|alright|all right|fine)|free to (?:go|"
                         r"leave)|doing (?:great|fine|good|well|the right thing))\b"),
      "reassuring"),
    R("reassurance", _re(rf"\b(?:nobody|no one|no-one)(?:'?s| is)\s+(?:{GOING}\s+(?:to\s+)?(?:hurt|"
                         r"arrest|take|touch|harm)|in trouble|getting arrested|going to jail|mad"
                         rf"|angry)\b|\b(?:{I_M}|{WE_RE})\s+not\s+(?:{GOING}|here to|trying to)\s+"
                         r"(?:arrest|hurt|tase|taze|shoot|cuff|handcuff|take you|jail|lock|force|"
                         r"harm|judge|get you in trouble)\b|\b(?:i|we)\s+(?:won'?t|will not)\s+"
                         r"(?:arrest|hurt|tase|taze|shoot|cuff|handcuff|take you|let anything "
                         r"happen)\b"), "taking the fear of force away"),
    R("reassurance", _re(rf"\b(?:{I_M}|{WE_RE})\s+(?:just\s+|only\s+)?here\s+to\s+help\b|"
                         rf"\b(?:{I_M}|{WE_RE})\s+on your side\b|\b(?:we|i)"
                         rf"(?:'?ll| will|'?re {GOING}|'?m {GOING})\s+(?:get you (?:some )?help|"
                         r"help you|figure (?:this|it) out|sort (?:this|it) out|work (?:this|it) "
                         r"out|get through this)\b|\bhelp is (?:coming|on (?:the|its) way)\b|\b"
                         rf"(?:it|everything)(?:'?s| is)\s+{GOING}\s+(?:to\s+)?be\s+(?:okay|ok|"
                         r"alright|all right|fine)\b|\bnothing bad is going to happen\b"),
      "promising help"),
    # threat
    R("threat", _re(rf"\b{WILL}\s+{INTENSIFIER}(?:have to\s+|need to\s+|be forced to\s+)?"
                    rf"{INTENSIFIER}(?:{HARM_NEEDS_YOU}|{HARM_FREE})\b(?:\s+you\b)?"),
      "threatening force", _not_a_ride),
    R("threat", _re(rf"\bor\s+(?:else\s+)?(?:i|we)(?:'?ll| will)?\s+{INTENSIFIER}"
                    rf"(?:{HARM_NEEDS_YOU}|{HARM_FREE})\b"), "threatening force", _not_a_ride),
    R("threat", _re(r"\byou(?:'?ll| will|'?re going to| are going to|'?re gonna| are gonna)\s+"
                    r"(?:get|be)\s+(?:hurt|tased|tazed|shot|arrested|sprayed|maced|locked up|"
                    rf"taken down|bitten|thrown)\b|\b{YOU_RE}\s+(?:going|gonna)\s+(?:to\s+)?"
                    r"(?:jail|prison|regret)\b|\byou(?:'?ll| will) regret\b|\b(?:do\s+)?you\s+"
                    r"(?:want|wanna)\s+(?:to\s+)?(?:get|be)\s+(?:tased|tazed|shot|hurt|arrested|"
                    r"sprayed|maced|bit|bitten)\b|\b(?:do\s+)?you\s+(?:want|wanna)\s+(?:to\s+)?go"
                    r"\s+to\s+jail\b|\b(?:someone|somebody)(?:'?s| is)\s+(?:going to|gonna)\s+"
                    r"get\s+hurt\b|\bor\s+(?:you(?:'?ll| will)?\s+)?(?:get|be)\s+(?:dragged|"
                    r"tased|tazed|shot|hurt|sprayed|maced|thrown|taken down|arrested)\b|"
                    r"\bdon'?t\s+make\s+me\s+(?:hurt|tase|taze|shoot|use|pull|draw|"
                    r"come|put|take|drag|make|force|spray)\b"), "threatening consequences"),
    # insult
    R("insult", _re(r"\b(?:idiots?|morons?|losers?|junkies?|crackheads?|scumbags?|dirtbags?|"
                    r"lowlifes?|low-lifes?|imbeciles?|retards?|degenerates?|dumbass|jackass|"
                    r"dipshit|piece of (?:shit|crap|garbage|trash|work|sh\*t)|waste of (?:space|"
                    r"oxygen|air))\b"), "name-calling", _not_negated),
    R("insult", _re(r"\byou(?:'?re| are)?\s+(?:(?:a|an|such an?|little|fucking|stupid|dumb|"
                    r"just)\s+)*(?:punk|clown|animal|trash|freak|psycho|lunatic|nutcase|thug|bum|"
                    r"crazy person)\b"), "name-calling", _not_negated),
    R("insult", _re(r"\byou(?:'?re| are)?\s+(?:(?:being|acting|so|such an?|really|fucking|just|"
                    r"a|an)\s+)*(?:stupid|dumb|pathetic|worthless|crazy|insane|retarded|ignorant|"
                    r"useless|disgusting|ridiculous|nuts)\b|\bare you\s+(?:deaf|stupid|dumb|"
                    r"crazy|slow|an idiot|retarded|insane|nuts)\b"), "demeaning them",
      _not_negated),
    R("insult", _re(r"\bwhat(?:'?s| is| the \S+ is)\s+wrong\s+with\s+you\b|\b(?:what|which) "
                    r"part of\b[^.?!]{1,60}?\bdon'?t you (?:understand|get)\b|\bwhat (?:don'?t|do"
                    r" not) you (?:understand|get) about\b|"
                    r"\bhow (?:stupid|dumb) (?:are you|can you be)\b|"
                    r"\bwho (?:the (?:hell|fuck|heck|f\S*) )?do you think you are\b|\bgrow up\b|"
                    r"\bact your age\b"),
      "demeaning question"),
    # dismissive
    R("dismissive", _re(r"\bi\s+(?:don'?t|do not)\s+(?:really\s+)?care\b"), "brushing them off",
      _not_caring_instead),
    R("dismissive", _re(r"\bi couldn'?t care less\b|\bwho cares\b|(?<!or )(?<!and )\bwhatever\b"
                        r"(?=\s*(?:[.!?,;]|$|man\b|dude\b))|\bnot my "
                        r"problem\b|\bthat'?s your problem\b|\bbecause i (?:said|told you) so\b|"
                        r"\bi don'?t (?:want to|wanna|need to) hear (?:it|that|your)\b|\bsave it\b"
                        r"|\btell it to the judge\b|\b(?:stop|quit) (?:crying|whining|complaining|"
                        r"talking|arguing|being (?:so )?dramatic|making excuses)\b"
                        r"|\bget over it\b|\bshut (?:up|"
                        r"your mouth)\b|\bi don'?t have time for (?:this|you)\b|\bspare me\b|"
                        r"\bcry me a river\b|\bblah,? blah\b|\bsorry (?:that |if )?you "
                        r"(?:feel|see it|think) that way\b|"
                        r"\b(?:sounds|that'?s|that is) (?:like )?(?:a you problem|a personal "
                        r"problem)\b|\bwhy (?:should|would) i care\b|\bso "
                        r"what\b(?=\s*[.!?,]|\s*$)|\bno one (?:cares|asked)\b"),
      "brushing them off"),
    R("dismissive", _re(r"(?:^|[.!?,;:]\s*|\b(?:just|you need to|i need you to|i want you to|you "
                        r"have to|you gotta|you got to|now|hey|please|sir|ma'?am)\s+)"
                        r"(?P<ev>(?:calm|settle)\s+(?:the (?:hell|fuck|heck|f[^\s.!?,;]*) )?down\b)"
                        r"|(?P<ev2>\bchill out\b)"),
      "'calm down' as an order dismisses the feeling"),
    # ultimatum
    R("ultimatum", _re(r"\b(?:this is (?:your|the) )?(?:last|final) (?:chance|warning)\b|\bor "
                       rf"else\b|\b{I_M}\s+(?:{GOING} )?count(?:ing)?\s+(?:to|down from)\s+"
                       r"(?:three|3|five|5|ten|10)\b|\b(?:one|1)\s*(?:\.{2,}|\u2026)\s*(?:two|2)\b|\b(?:i(?:'?m|"
                       rf" am) not|i won'?t|i will not)\s+(?:{GOING} )?(?:ask|tell|say)(?:ing)?\s+"
                       r"(?:you\s+)?(?:this\s+|that\s+|it\s+)?again\b|\b(?:this is the|for the) "
                       r"last time\b|\byou have (?:until|(?:\d+|one|two|three|five|ten|thirty) "
                       r"(?:seconds?|minutes?))\b|\bnow or never\b|\bdon'?t make me (?:ask|tell|"
                       r"say|repeat)\b|\beasy way or (?:the )?hard way\b|\bi(?:'?m| am) (?:done|"
                       r"through) (?:asking|talking|being nice|playing)\b"),
      "giving a last chance"),
]

# --- commands (shouted / repeated) ---------------------------------------------------------------
COMMAND_VERBS = frozenset((
    "get", "put", "drop", "stop", "show", "step", "turn", "open", "come", "move", "sit", "stand",
    "lie", "lay", "give", "let", "freeze", "shut", "listen", "look", "calm", "hurry", "keep",
    "stay", "walk", "face", "roll", "exit", "comply", "back", "relax", "wait", "hold", "take",
    "go", "leave", "answer", "place", "raise", "release", "spread", "cross", "kneel", "unlock",
    "hand", "pull", "sign", "follow", "hang", "grab", "throw", "pick", "clear", "settle", "quit",
    "cooperate", "hands", "down", "quiet", "enough", "unbuckle", "remove", "empty", "lower",
    "don't", "dont", "tell", "explain", "talk", "help", "knock", "cut", "watch"))
INVITATIONS = frozenset(("tell", "explain", "talk", "help"))  # commands, but not repeated orders
# imperatives that wish or offer, not order: "Take care!", "Stay safe!", "Help is coming!";
# checked before the command verbs, so they are never shouted or repeated commands
_BENIGN = re.compile(
    r"(?:take (?:care|it easy|your time|a (?:breath|moment|minute|second))|stay (?:safe|"
    r"warm|dry)|be (?:safe|careful|well)|drive (?:safe|safely|carefully)|get home safe|"
    r"(?:don'?t|do not) (?:worry|hesitate|be (?:afraid|scared|sorry))|help is (?:coming|here|on)|"
    r"let (?:me|us) know|feel free|hang in there|have a (?:good|nice|great|safe)|look after "
    r"yourself|get (?:some rest|well|home safe)|keep warm|go ahead|call (?:me|us) if|sleep well"
    r")\b", re.IGNORECASE)
_LEAD = re.compile(
    r"^(?:\s*(?:hey|yo|ok(?:ay)?|alright|all right|so|and|but|then|now|sir|ma'?am|buddy|bud|man|"
    r"dude|bro|boss|look(?=\s*,)|listen(?=\s*,)|please|just|i said|i told you(?: to)?|i need you "
    r"to|i want you to|you need to|you have to|you gotta|you got to|gotta|can you|could you|would "
    r"you|will you|go ahead and|come on)\b\s*,?)+", re.IGNORECASE)
# fillers at the end of an order; stripped word by word from the end (a regex anchored at `$`
# with a repeated group would rescan long runs of spaces from every position: quadratic)
_TRAIL_WORD = re.compile(r"[\s,](?:right now|now|please|sir|ma'?am|for me|okay|ok|man|buddy|"
                         r"dude|immediately|again)$", re.IGNORECASE)
# a clause ends at punctuation or before " or " ("Get out of the car or I will tase you": the
# command is "get out of the car", whatever threat follows it). The look-ahead is one
# character of space, not `\s+`, so a long run of spaces is not rescanned at every position.
_CLAUSE = re.compile(r"(?:(?!\sor\s)[^.!?;,\n])+", re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_WORDS = re.compile(r"(?:[^\W_]|')+")
_HONORIFIC = r"(?:(?:mr|mrs|ms|miss|dr|mx)\.?\s+)"


def _strip_trail(s: str) -> str:
    while True:
        t = s.rstrip(" \t,")
        m = _TRAIL_WORD.search(t, max(0, len(t) - 16))
        if not m:
            return s
        s = t[:m.start()]


def _is_command(clause: str) -> bool:
    body = clause.lstrip(" \t,")
    if _BENIGN.match(body):
        return False
    words = _WORDS.findall(body.lower())
    if not words:
        return False
    w = words[0]
    if w in ("on", "in") and len(words) >= 3 and words[1] in ("the", "your"):
        return words[2] in ("ground", "knees", "stomach", "floor", "car", "wall")
    return w in COMMAND_VERBS and not (w == "don't" and len(words) == 1)


@functools.lru_cache(maxsize=256)
def _name_lead(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """The person's name (any case, an optional Mr./Ms.) as a lead-in: "Maria, step out",
    "RENATA GET OUT", "MS. SOLIS, GET OUT NOW"."""
    parts = {p for name in names for p in [normalise(name), *_name_parts(name)] if len(p) > 1}
    if not parts:
        return None
    alt = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(parts, key=len,
                                                                       reverse=True))
    return re.compile(rf"\s*{_HONORIFIC}?(?:{alt})(?![\w-])\s*,?", re.IGNORECASE)


def _name_parts(name: str) -> list[str]:
    """The words of a name, honorifics left out ("Ms. O'Neil" -> ["O'Neil"])."""
    return [p for p in re.findall(r"[^\W\d_][\w'-]*", normalise(name))
            if p.lower().rstrip(".") not in ("mr", "mrs", "ms", "miss", "dr", "mx")]


def _strip_lead(s: str, names: tuple[str, ...] = ()) -> str:
    """An order without its lead-ins: "Sir, please, I said ..." and the person's name."""
    lead_name = _name_lead(names) if names else None
    while True:
        lead = _LEAD.match(s)
        if lead and lead.end():
            s = s[lead.end():]
            continue
        m = lead_name.match(s) if lead_name else None
        if m and m.end():
            s = s[m.end():]
            continue
        return s


def command_clauses(text: str, names: Sequence[str] = ()) -> list[tuple[Span, tuple[str, ...]]]:
    """The imperative clauses of a turn: ((start, end) of the clause in `text`, its normalised
    words with lead-ins, fillers and the person's names dropped)."""
    norm = normalise(text)
    names = tuple(names)
    drop = {w for name in names for w in _WORDS.findall(normalise(name).lower())}
    out = []
    for m in _CLAUSE.finditer(norm):
        clause = m.group()
        body = _strip_trail(_strip_lead(clause, names))
        if not _is_command(body):
            continue
        key = tuple(w.replace("'", "") for w in _WORDS.findall(body.lower()) if w not in drop)
        a = m.start() + len(clause) - len(clause.lstrip())
        b = m.start() + len(clause.rstrip())
        out.append(((a, b), key))
    return out


_TOKEN = re.compile(r"[^\W\d_][\w']*")


def _caps_runs(text: str) -> list[Span]:
    """Runs of 2+ words in capitals separated only by spaces or commas ("ÁNGEL, GET OUT")."""
    runs: list[Span] = []
    start = end = -1
    count = 0
    for m in _TOKEN.finditer(text):
        word = m.group()
        upper = word.isupper() and not any(c.islower() or c.isdigit() for c in word)
        if upper and count and not text[end:m.start()].strip(" \t,"):
            end, count = m.end(), count + 1
            continue
        if count >= 2:
            runs.append((start, end))
        start, end, count = (m.start(), m.end(), 1) if upper else (-1, -1, 0)
    if count >= 2:
        runs.append((start, end))
    return runs


_URGE = frozenset(("now", "right", "hey", "sir", "ma'am", "maam", "immediately", "today"))


def _shouted(text: str, names: tuple[str, ...] = ()) -> list[Span]:
    """Commands in capitals (a run of 2+ capitalised words, 6+ letters) or ending in '!' (also
    a command followed by a bare "Now!"). The person's name before the order is a lead-in."""
    spans: list[Span] = []
    for a, b in _caps_runs(text):
        run = text[a:b]
        if sum(c.isalpha() for c in run) >= 6 and _is_command(_strip_lead(run, names)):
            spans.append((a, b))
    last_command: int | None = None  # start of the previous sentence when it was a command
    for m in _SENTENCE.finditer(text):
        s = m.group().rstrip()
        start = m.start() + len(s) - len(s.lstrip())
        end = m.start() + len(s)
        words = _WORDS.findall(s.lower())
        command = _is_command(_strip_lead(s.strip(), names))
        if s.endswith("!"):
            if words and set(words) <= _URGE and last_command is not None:
                spans.append((last_command, end))  # "Give me your license. Now!"
            else:
                # the sentence, or one of its comma-clauses ("Sir, get down!")
                for c in _CLAUSE.finditer(s):
                    if _is_command(_strip_lead(c.group(), names)):
                        a = m.start() + c.start() + len(c.group()) - len(c.group().lstrip())
                        spans.append((a, end))
                        break
        last_command = start if command else None
    return spans


# a statement that starts like a question: "What you need to do is ...", "What I need is ..."
_DECLARATIVE = re.compile(r"(?:what|how|where|when|who|which)\s+(?:i|you|we|he|she|they)\b"
                          r"(?!\s+doing\b)", re.IGNORECASE)
# what follows an invitation is no longer the invitation: "Tell me what happened, or I'll ..."
_OR_CUT = re.compile(r"\s*,\s*or\b|\s+or\s+(?:else|i|we|you'?ll|you will)\b", re.IGNORECASE)


def _open_questions(text: str) -> list[tuple[Span, str]]:
    """Questions that invite the person's side (what/how/why.../tell me/walk me through),
    except accusatory or rhetorical ones."""
    out = []
    for m in _SENTENCE.finditer(text):
        s = m.group()
        lead = re.match(r"\s*(?:(?:ok(?:ay)?|so|and|alright|well|hey|now|then|sir|ma'?am|look|"
                        r"listen)\b\s*,?\s*)*", s, re.IGNORECASE)
        body = s[lead.end():] if lead else s
        low = body.lower().rstrip()
        asked = low.endswith("?")
        question = asked or not (re.search(r"[.!]$", low) or _DECLARATIVE.match(low))
        opener = re.match(r"(?:what|how|why|where|when|who|which)\b", low)
        invite = re.match(r"(?:(?:can|could|would) you (?:please )?)?(?:tell me (?!more\b)|help me "
                          r"understand|walk me through|describe|explain to me|talk to me about)",
                          low)
        if not ((opener and question) or invite) or _NOT_OPEN.match(low):
            continue
        if low.startswith("how about"):
            continue
        a = m.start() + (lead.end() if lead else 0)
        body = body.rstrip()
        cut = _OR_CUT.search(body)
        if cut:
            body = body[:cut.start()]
        if len(body) > 80:  # long questions: show the opening words
            body = body[:80].rsplit(" ", 1)[0]
        out.append(((a, a + len(body)), "inviting their side" if invite else
                    "open question (not a yes/no)"))
    return out


# questions that blame, mock or only reflect: not invitations to tell their side
_NOT_OPEN = re.compile(
    r"why\s+(?:won'?t|can'?t|don'?t|didn'?t|wouldn'?t|couldn'?t|aren'?t|isn'?t|must|would you|do "
    r"you (?:always|keep|have to|insist|even)|are you (?:being|acting|so|always|still|even|"
    r"resisting|fighting|yelling|screaming|making|giving|doing this|like this)|were you (?:being|"
    r"acting|so)|the (?:hell|fuck|heck|f\S*)|is it so hard|(?:should|would) i care)|what\b[^.?!]"
    r"{0,20}\b(?:wrong|the matter) with you|what(?:'?s| is) your (?:problem|deal)|what the (?:hell"
    r"|fuck|heck|f\S*)|what you(?:'?re| are) saying|what i(?:'?m| am) hearing|(?:what|which) part"
    r" of|what (?:don'?t|do not) you (?:understand|get)|what did i (?:just )?(?:say|tell you)|what"
    r" do you think you(?:'?re| are) doing|who (?:the \S+ )?do you think|what,? are you\b|how "
    r"(?:many times|stupid|dumb|hard is it|dare you)",
    re.IGNORECASE)


# --- names and persona phrases -------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _name_pattern(names: tuple[str, ...]
                  ) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """(case-insensitive pattern, case-sensitive pattern for names that are common words).
    Names are matched on normalised text (straight apostrophes: "O’Neil" is "O'Neil"), and a
    name may start with any letter ("Ángel Álvarez")."""
    from deescalwild.curate.privacy import is_common_word

    plain, common = set(), set()
    for name in names:
        name = " ".join(normalise(name).split())
        parts = _name_parts(name)
        for p in ([name] if len(parts) > 1 else []) + parts:
            if len(p) < 2:
                continue
            (common if " " not in p and is_common_word(p) else plain).add(p)

    def alt(items: set[str]) -> str:
        return "|".join(re.escape(x).replace(r"\ ", r"\s+") for x in sorted(items, key=len,
                                                                         reverse=True))
    p1 = (re.compile(rf"(?<![\w-]){_HONORIFIC}?(?:{alt(plain)})(?![\w-])", re.IGNORECASE)
          if plain else None)
    p2 = re.compile(rf"(?<![\w-])(?:{alt({c.capitalize() for c in common})})(?![\w-])"
                    ) if common else None
    return p1, p2


_SENTENCE_START = re.compile(r"(?:^|[.!?])\s*(?=\S)")


def _name_spans(text: str, names: tuple[str, ...]) -> list[Span]:
    p1, p2 = _name_pattern(names)
    spans = [m.span() for m in p1.finditer(text)] if p1 else []
    if p2:
        starts = {m.end() for m in _SENTENCE_START.finditer(text)}
        for m in p2.finditer(text):
            if m.start() not in starts or text[m.end():m.end() + 1] == ",":
                spans.append(m.span())
    return spans


@functools.lru_cache(maxsize=1024)
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    p = re.escape(normalise(phrase.strip())).replace(r"\ ", r"\s+").replace("'", "'?")
    left = r"(?<!\w)" if re.match(r"\w", phrase.strip()) else ""
    right = r"(?!\w)" if re.search(r"\w$", phrase.strip()) else ""
    return re.compile(left + p + right, re.IGNORECASE)


# --- the analyser ------------------------------------------------------------------------------
# escalations that reported speech does not make the trainee's own: 'he said "I'll hurt you"?'
_OWN_WORDS_ONLY = ("threat", "insult", "ultimatum", "dismissive", "shouted_command")


class RuleAnalyser:
    """The transparent rule set (module docstring). Stateless and thread-safe."""

    name = "rules"

    def analyse(self, text: str, card: Card, previous: Sequence[str] = ()) -> list[Verdict]:
        norm = normalise(text)
        found: dict[str, list[tuple[Span, str]]] = {t: [] for t in TACTICS}
        for rule in _RULES:
            for m in rule.pattern.finditer(norm):
                if m.end() > m.start() and (rule.keep is None or rule.keep(norm, m)):
                    found[rule.tactic].append((_evidence_span(m), rule.label))
        names = _persona_names(card)
        shouted = _shouted(norm, names)
        found["name_use"] += [(s, "using their name") for s in _name_spans(norm, names)]
        found["open_question"] += _open_questions(norm)
        found["profanity"] += [(s, "swearing") for s in profanity_spans(norm)]
        found["shouted_command"] += [(s, "an order in capitals or with '!'") for s in shouted]
        found["repeated_command"] += _repeats(norm, previous, names)
        reported = _reported_speech(norm)
        for t in _OWN_WORDS_ONLY:
            found[t] = [(s, why) for s, why in found[t]
                        if not any(x <= s[0] < y for x, y in reported)]
        _drop_hollow(norm, found)
        verdicts = [_verdict(text, t, hits) for t, hits in found.items() if hits]
        verdicts += _persona_verdicts(text, norm, card)
        return verdicts


_SAID = re.compile(r"\b(?:he|she|they|someone|somebody|him|her|them|the \w+|your \w+)\s+(?:said|"
                   r"says|told (?:you|me|her|him|them)|yelled|screamed|shouted|threatened|was "
                   r"like|goes)\b[\s,:]*(?:that\s+)?", re.IGNORECASE)


def _reported_speech(norm: str) -> list[Span]:
    """Where the trainee quotes someone else: inside double quotes, or after "he said" (to the
    end of that sentence)."""
    spans: list[Span] = []
    quote = None
    for i, c in enumerate(norm):
        if c == '"':
            if quote is None:
                quote = i
            else:
                spans.append((quote, i + 1))
                quote = None
    ends = [m.start() for m in re.finditer(r"[.!?\n]", norm)] + [len(norm)]
    for m in _SAID.finditer(norm):
        spans.append((m.end(), ends[bisect.bisect_left(ends, m.end())]))
    return spans


def _persona_names(card: Card) -> tuple[str, ...]:
    p = card.persona
    return tuple(getattr(p, "names", None) or [p.name])


def _repeats(norm: str, previous: Sequence[str], names: tuple[str, ...]
             ) -> list[tuple[Span, str]]:
    earlier = _ago(previous, names)
    out, seen = [], set()
    for span, key in command_clauses(norm, names):
        if not key or key[0] in INVITATIONS or key in seen:
            continue
        for ago, old in earlier:
            if old and (old == key or SequenceMatcher(None, old, key).ratio() >= 0.8):
                seen.add(key)
                when = "your last turn" if ago == 1 else f"{ago} turns ago"
                out.append((span, f"the same order as {when}"))
                break
    return out


def _ago(previous: Sequence[str], names: tuple[str, ...]) -> list[tuple[int, tuple[str, ...]]]:
    """Command keys of the previous two turns, most recent first, with how many turns ago."""
    out = []
    for ago, turn in enumerate(reversed(previous[-2:]), 1):
        out += [(ago, key) for _, key in command_clauses(turn, names)]
    return out


_POLITE = ("calm_request", "offering_choices", "open_question", "name_use")
_FORCE = ("threat", "ultimatum", "insult", "profanity", "dismissive", "shouted_command")


def _drop_hollow(norm: str, found: dict[str, list[tuple[Span, str]]]) -> None:
    """Politeness inside force does not count (module docstring): a polite word, a choice, an
    open question or the person's name in a sentence with a threat, ultimatum, insult,
    swearing, a brush-off or a shouted order is dropped ("Please, step out of the car!",
    "Tell me, or I'll arrest you", "Renata, get out of the car!")."""
    starts = [m.start() for m in _SENTENCE.finditer(norm)]

    def sentence_of(pos: int) -> int:
        return bisect.bisect_right(starts, pos) - 1

    forced = {sentence_of(s[0]) for t in _FORCE for s, _ in found[t]}
    forced |= {sentence_of(s[1] - 1) for t in _FORCE for s, _ in found[t]}
    for t in _POLITE:
        found[t] = [(s, why) for s, why in found[t] if sentence_of(s[0]) not in forced]
    # a name that leads into a shouted order is part of it ("MS. SOLIS, GET OUT NOW")
    shouted = [x for x, _ in found["shouted_command"]]
    found["name_use"] = [(s, why) for s, why in found["name_use"]
                         if not any(x <= s[0] < y or (s[0] < y and x < s[1] + 8
                                                      and not norm[s[1]:x].strip(" ,."))
                                    for x, y in shouted)]


def _verdict(text: str, tactic: str, hits: list[tuple[Span, str]], source: str = "rules"
             ) -> Verdict:
    spans: list[Span] = []
    labels: dict[Span, str] = {}
    for span, label in sorted(hits):
        if spans and span[0] < spans[-1][1]:  # overlapping pieces: keep the longer
            if span[1] - span[0] > spans[-1][1] - spans[-1][0]:
                labels.pop(spans[-1])
                spans[-1] = span
                labels[span] = label
            continue
        spans.append(span)
        labels[span] = label
    evidence = [text[a:b] for a, b in spans]
    parts = [f"'{e}' — {labels[s]}" for e, s in zip(evidence, spans)]
    why = "; ".join(parts[:3]) + (f" (+{len(parts) - 3} more)" if len(parts) > 3 else "")
    kind = TACTICS[tactic].kind if tactic in TACTICS else (
        "escalation" if tactic == PERSONA_TRIGGER else "deescalation")
    return Verdict(tactic=tactic, kind=kind, evidence=evidence, spans=spans, why=why,
                   source=source)


def _persona_verdicts(text: str, norm: str, card: Card) -> list[Verdict]:
    out = []
    p = card.persona
    for tactic, triggers, label in ((PERSONA_TRIGGER, p.escalated_by, "upsets this person"),
                                    (PERSONA_CALM, p.calmed_by, "calms this person")):
        hits = [(m.span(), f"{label} (card)") for phrase in triggers.phrases
                for m in _phrase_pattern(phrase).finditer(norm)]
        if hits:
            out.append(_verdict(text, tactic, hits, source="persona"))
    return out


def load_analyser(spec: str) -> Analyser:
    """`rules` (the default) or `judge:RESPONDER_SPEC` (an LLM judge, `sim/judge.py`)."""
    spec = spec.strip()
    if spec in ("", "rules"):
        return RuleAnalyser()
    if spec.startswith("judge:") and spec[6:].strip():
        from deescalwild.sim.judge import JudgeAnalyser

        return JudgeAnalyser(spec[6:].strip())
    raise DeescalwildError(f"unknown analyser {spec!r}; expected 'rules' or "
                           "'judge:RESPONDER_SPEC' (e.g. judge:openai:http://127.0.0.1:8080/v1)")
