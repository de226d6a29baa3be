"""Structured personal data in transcript text, masked with typed placeholders.

Body-camera talk is full of numbers that identify people: a phone number given to dispatch, a
date of birth read back at a traffic stop, a plate run over the radio, a home address, a name
spelled out letter by letter or in the radio alphabet. Each kind becomes a placeholder that keeps
the sentence readable and says what was there: `[PHONE]`, `[EMAIL]`, `[ADDRESS]`, `[PLATE]`,
`[DOB]`, `[SSN]`, `[SPELLED]`.

Precision matters as much as recall: transcripts are also full of harmless numbers (radio codes
"10-4", times "10:30", money "$1,250", years "2019", case and badge numbers) that must survive.
So the ambiguous kinds are masked only after the words that introduce them, in the same turn or
at the end of the turn before (the officer asks "date of birth?", the next turn answers): a
plate after "plate" or "tag", a date after "date of birth" or "DOB", nine bare digits after
"social"; a bare run of digits is a phone number only after a phone word ("call", "cell", "my
number"), while a number written like one ("(415) 555-2671", "415-555-2671") is masked wherever
it stands. Rules and their limits: docs/privacy.md.

Speed: a turn with no digit and no "@" (94% of them) costs three regex searches (spelled
letters, the radio alphabet, a digit); phonenumbers (about 40 µs a call) runs only on text with
at least seven digits and a phone-shaped group.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

import phonenumbers

PLACEHOLDERS = {
    "phone": "[PHONE]",
    "email": "[EMAIL]",
    "address": "[ADDRESS]",
    "plate": "[PLATE]",
    "dob": "[DOB]",
    "ssn": "[SSN]",
    "spelled": "[SPELLED]",
}

_DIGITS = "0123456789"
_DIGIT = re.compile(r"\d")

_EMAIL = re.compile(
    r"\b[A-Za-z0-9][\w.+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
    # spoken, as transcribers write it: "jdoe at gmail dot com"
    r"|(?i:\b[a-z0-9][\w.]* at (?:[a-z0-9-]+ )?[a-z0-9-]+ dot (?:com|net|org|edu|gov|us)\b)"
)

# 123-45-6789 and 123 45 6789 anywhere; nine bare digits only after "social"/"SSN".
_SSN_CUE = r"(?:social(?: security)?(?: number)?|ssn|s\.s\.n\.?)"
_SSN = re.compile(
    r"(?<![\d-])\d{3}(?P<sep>[- ])\d{2}(?P=sep)\d{4}(?![\d-])"
    rf"|(?i:\b{_SSN_CUE}[\s:,#]*(?:is |was |of )?)(?P<bare>\d{{9}})\b"
)
_BARE_SSN = re.compile(r"(?<![\d-])\d{9}(?![\d-])")

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_DATE = (r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})"  # 03/14/1990, 3-14-90
         r"|\d{1,2} \d{1,2} (?:19|20)\d{2}"  # 03 14 1990
         rf"|{_MONTH} {_DAY}(?:,? (?:19|20)?\d{{2}})?"  # March 14th, 1990 / March 14th
         rf"|(?:the )?{_DAY} (?:of )?{_MONTH}(?:,? (?:19|20)?\d{{2}})?)"  # 14th of March 1990
         r"(?![\w/-])")
_DOB_CUE = r"(?:date of birth|birth ?date|d\.?o\.?b\b\.?|born on|born|birthday(?: is|'s)?)"
_DOB = re.compile(rf"\b{_DOB_CUE}(?: is| was| of)?[\s:,]*(?:on )?(?P<date>{_DATE})", re.I)
_DOB_ANSWER = re.compile(rf"^\W{{0,3}}(?:(?:it's|it is|uh|um|my)\W+){{0,3}}(?P<date>{_DATE})",
                         re.I)

# Plates only where introduced: a bare "7XYZ123" could be anything. 4-8 letters and digits with
# at least one of each, as one token ("7xyz123") or as up to three upper-case groups
# ("ABC 1234", "ABC-123").
_PLATE = re.compile(
    r"(?i:\b(?:licen[cs]e plate|plates?|tags?)(?: number| no\.?| #)?"
    r"(?: is| was| reads| of| shows)?[\s:,#]*)"
    r"(?P<plate>[A-Za-z0-9]{1,8}(?:[ -][A-Z0-9]{1,4}){0,2})\b"
)

_SUFFIX = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Drive|Dr|Lane|Ln|Court|Ct|Way|"
           r"Place|Pl|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Terrace|Ter|Trail|Trl|Loop|Pike|"
           r"Square|Sq)")
# "123 Main Street", "4500 N Elm Ave", "12 West 35th St": a house number, an optional
# direction, one to three capitalised (or ordinal) words, a capitalised street type. Capitals
# keep "21 across the street" and "an Article 3 Federal court" out; "10-37 Hill Avenue" is a
# radio code before a street.
_ADDRESS = re.compile(
    r"(?<![\d,.$-])\b\d{1,6}(?:-?[A-Za-z])? (?:(?:[NSEW]\.?|North|South|East|West|Northeast|"
    r"Northwest|Southeast|Southwest) )?(?:(?:[A-Z][a-z'-]+|\d+(?:st|nd|rd|th)) ){1,3}"
    rf"{_SUFFIX}\b(?: (?:N|S|E|W|NE|NW|SE|SW)\b)?"
)

# A bare digit run is a phone number only when a phone word stands shortly before it.
_PHONE_CUE = re.compile(
    r"(?i:\b(?:phone|cell|cellphone|mobile|call(?:ed|ing)?|text|reach|contact|dial|"
    r"callback|(?:my|your|his|her|their|the) number)\b)[^.?!]{0,40}$"
)
# How a US number is written: "(415) 555-2671", "415.555.2671", "+1 415 555 2671", "4155552671",
# "555-2671". `sep` is set when it is written with separators, which a case number rarely is.
_NANP = re.compile(r"(?:\+?1[-. ]?)?(?:\((?P<area>\d{3})\) ?|(?P<area2>\d{3})(?P<sep>[-. ])?)?"
                   r"\d{3}(?(sep)[-. ]|[-. ]?)\d{4}")
_PHONE_SHAPE = re.compile(r"\d{3}[-. ]?\d{4}")  # what every shape above ends with
_LOCAL_PHONE = re.compile(r"(?<![\d-])\d{3}-\d{4}(?![\d-])")  # 555-1234

# The end of a turn that asks for one of these ("What's your date of birth?").
_ASKED = re.compile(
    rf"(?i:\b(?:(?P<dob>{_DOB_CUE})|(?P<ssn>{_SSN_CUE})|(?P<phone>phone(?: number)?|cell"
    r"(?: number)?|contact number|(?:a|your|good) number))\b)[^.!?]{0,25}[.?!]?\W*$"
)

# Spelling: four or more single capital letters ("L E E" is three, kept), or three or more
# words of the radio alphabets (NATO and the APCO alphabet US police use: "Adam, Boy,
# Charles"), matched on the lower-cased turn.
_SPELLED_LETTERS = re.compile(r"[A-Z](?<![\w'][A-Z])(?:(?:[ ,.-]|, )[A-Z]\b){3,}")
_RADIO_WORDS = sorted(
    "alpha alfa bravo charlie delta echo foxtrot golf hotel india juliet juliett kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey whisky x-ray xray "
    "yankee zulu adam boy charles david edward frank george henry ida john king lincoln mary "
    "nora ocean paul queen robert sam tom union william young zebra baker yellow".split())


def _alternation_by_initial(words: list[str]) -> str:
    """"a(?:dam|lpha)|b(?:oy|ravo)|...": one branch per first letter, which the regex engine
    tries far faster than a flat list of 55 words."""
    by_initial: dict[str, list[str]] = {}
    for w in words:
        by_initial.setdefault(w[0], []).append(re.escape(w[1:]))
    return "|".join(f"{k}(?:{'|'.join(sorted(v, key=len, reverse=True))})"
                    for k, v in sorted(by_initial.items()))


_RADIO = _alternation_by_initial(_RADIO_WORDS)
# a plate read over the radio ends in digits: "Alpha Delta Bravo 68"
_SPELLED_RADIO = re.compile(rf"(?<![a-z])(?:{_RADIO})(?:[ ,.-]+(?:{_RADIO})){{2,}}\b"
                            r"(?: \d{1,4}\b)?")


def _masked(text: str, spans: list[tuple[int, int]], kind: str, counts: Counter) -> str:
    """`text` with each (start, end) span replaced by the placeholder of `kind`."""
    if not spans:
        return text
    parts, last = [], 0
    for start, end in spans:
        parts += [text[last:start], PLACEHOLDERS[kind]]
        last = end
    parts.append(text[last:])
    counts[kind] += len(spans)
    return "".join(parts)


def _mask_group(pattern: re.Pattern, text: str, kind: str, counts: Counter, group: str = ""
                ) -> str:
    """Mask each match of `pattern`, or only its `group` when that group took part: the words
    that introduced it ("date of birth") stay."""
    spans = [m.span(group if group and m.start(group) >= 0 else 0)
             for m in pattern.finditer(text)]
    return _masked(text, spans, kind, counts)


def _is_plate(s: str) -> bool:
    alnum = s.replace(" ", "").replace("-", "")
    return (4 <= len(alnum) <= 8 and any(c.isdigit() for c in alnum)
            and any(c.isalpha() for c in alnum))


def _plate_span(m: re.Match) -> tuple[int, int] | None:
    """The longest leading run of groups that looks like a plate ("ABC 1234", not "on the
    2nd")."""
    start = m.start("plate")
    groups = re.split(r"(?=[ -])", m.group("plate"))
    for n in range(len(groups), 0, -1):
        s = "".join(groups[:n])
        if _is_plate(s) and (n == 1 or s.upper() == s):
            return start, start + len(s)
    return None


def _mask_plates(text: str, counts: Counter) -> str:
    spans = [sp for sp in map(_plate_span, _PLATE.finditer(text)) if sp is not None]
    return _masked(text, spans, "plate", counts)


def _mask_phones(text: str, counts: Counter, asked: bool) -> str:
    """Phone numbers by phonenumbers: formatted ones anywhere, bare digit runs after a cue."""
    spans = []
    for m in phonenumbers.PhoneNumberMatcher(text, "US",
                                             leniency=phonenumbers.Leniency.POSSIBLE):
        shape = _NANP.fullmatch(m.raw_string)
        if shape is None:  # "2018-101829", "0.14. 0.141": not written like a US number
            continue
        formatted = shape.group("area") or shape.group("sep")  # "(415) 555-…", "415-555-…"
        if formatted or asked or _PHONE_CUE.search(text, 0, m.start) is not None:
            spans.append((m.start, m.end))
    text = _masked(text, spans, "phone", counts)
    # seven-digit "555-1234" (phonenumbers wants an area code), after a cue
    spans = [m.span() for m in _LOCAL_PHONE.finditer(text)
             if asked or _PHONE_CUE.search(text, 0, m.start()) is not None]
    return _masked(text, spans, "phone", counts)


def _spelling(run: str) -> bool:
    """A spelled-out word, not a stutter ("I I I I", "young, young, young") nor the alphabet
    recited in a sobriety test ("L M N O P")."""
    units = re.findall(r"x-ray|[a-z]+", run.lower())
    if max(Counter(units).values()) > 0.75 * len(units):  # "I I I ... I V" too
        return False
    steps = [ord(b[0]) - ord(a[0]) == 1 for a, b in itertools.pairwise(units) if len(a) == 1]
    return not (len(steps) >= 3 and sum(steps) >= 0.75 * len(steps))


def _mask_spelled(text: str, counts: Counter) -> str:
    spans = [m.span() for m in _SPELLED_LETTERS.finditer(text) if _spelling(m.group(0))]
    low = text.lower()
    if len(low) == len(text):  # lower() kept every offset (true for all but a few scripts)
        spans += [m.span() for m in _SPELLED_RADIO.finditer(low) if _spelling(m.group(0))]
        spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return _masked(text, merged, "spelled", counts)


def mask_into(text: str, counts: Counter, previous: str = "") -> str:
    """`mask_pii` that adds to `counts` (one Counter for a whole corpus, not one per turn).
    `previous` is the turn before, whose question ("your date of birth?") can introduce an
    answer that carries no cue of its own."""
    text = _mask_spelled(text, counts)
    if "@" in text or " dot " in text:
        text = _mask_group(_EMAIL, text, "email", counts)
    if _DIGIT.search(text) is None:
        return text
    asked = _ASKED.search(previous[-80:]) if previous else None
    text = _mask_group(_SSN, text, "ssn", counts, "bare")
    text = _mask_group(_DOB, text, "dob", counts, "date")
    if asked is not None and asked.lastgroup == "dob":
        text = _mask_group(_DOB_ANSWER, text, "dob", counts, "date")
    elif asked is not None and asked.lastgroup == "ssn":
        text = _mask_group(_BARE_SSN, text, "ssn", counts)
    text = _mask_plates(text, counts)
    text = _mask_group(_ADDRESS, text, "address", counts)
    if sum(map(text.count, _DIGITS)) >= 7 and _PHONE_SHAPE.search(text) is not None:
        text = _mask_phones(text, counts, asked is not None and asked.lastgroup == "phone")
    return text


def mask_pii(text: str, previous: str = "") -> tuple[str, Counter[str]]:
    """Mask phone numbers, e-mail addresses, street addresses, licence plates, dates of birth,
    social security numbers and spelled-out words in `text`; return the new text and the
    count of each kind masked."""
    counts: Counter[str] = Counter()
    return mask_into(text, counts, previous), counts
