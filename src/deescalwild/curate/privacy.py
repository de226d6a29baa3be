"""Pseudonymisation: the people of a scenario get stable pseudonyms that keep their role.

The published transcripts name real people, often in the worst moment of their lives. Before a
corpus is released, every person named by a speaker label ("Barrett Robbins", "Deputy Wills",
"[Chloe's boyfriend]") becomes `Civilian A`, `Officer B`, ... everywhere in the scenario: on
the turns, in `speakers` and their `why`, in every turn's text and in the metadata. People named
in the text with a title ("Officer Bruno", "Mr. Johnson") or introducing themselves ("my name
is Jessica") become `[NAME A]`, `[NAME B]`, ... keeping the title ("Officer [NAME A]").
Structured data (phone numbers, addresses, ...) is masked by `pii`. Rules, format and limits:
docs/privacy.md.

Deterministic: people are numbered in order of first appearance (turns, then metadata, then the
`why` strings); nothing depends on set order or the hash seed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deescalwild.core import Role, Scenario
from deescalwild.corpus.roles.lexicon import OFFICER_TITLES, TITLE_ABBREVIATIONS, classify_label
from deescalwild.curate.pii import mask_into

SCHEMA = "deescalwild.privacy/1"
ROLE_WORDS = {Role.OFFICER: "Officer", Role.CIVILIAN: "Civilian", Role.BYSTANDER: "Bystander",
              Role.DISPATCHER: "Dispatcher", Role.NARRATOR: "Narrator", Role.UNKNOWN: "Speaker"}
MENTIONED = "[NAME {}]"  # a person named only in the text, never a speaker
# Identifiers, not prose: rewriting them would break provenance (the URL is the source's).
_META_KEPT = frozenset({"privacy", "url", "sha256"})
_HERE = Path(__file__).parent


@functools.cache
def _word_list(name: str) -> frozenset[str]:
    with (_HERE / name).open(encoding="utf-8") as fh:
        return frozenset(w for w in map(str.strip, fh) if w and not w.startswith("#"))


def is_common_word(word: str) -> bool:
    """An English word among the ~11,000 most common (SCOWL 10+20): "will", "hope", "grant".
    A name that is one is replaced only where written with a capital or in capitals."""
    return word.lower() in _word_list("common_words.txt")


def is_given_name(word: str) -> bool:
    """A given name of the 1990 US census lists (5,163 names): "Hope" and "Will" are, "Dog"
    and "Pastor" are not."""
    return word.lower() in _word_list("first_names.txt")


@dataclass(slots=True)
class PrivacyCounts:
    """What pseudonymisation did, per scenario or summed over a corpus; never a name."""

    pseudonyms: int = 0  # speaker labels renamed
    names_replaced: int = 0  # name occurrences replaced in text, labels kept, meta and why
    pii: Counter[str] = field(default_factory=Counter)

    def add(self, other: PrivacyCounts) -> None:
        self.pseudonyms += other.pseudonyms
        self.names_replaced += other.names_replaced
        self.pii.update(other.pii)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "pseudonyms": self.pseudonyms,
                "names_replaced": self.names_replaced, "pii": dict(sorted(self.pii.items()))}


# ---------------------------------------------------------------------------------------------
# What counts as a name

_TITLE_WORDS = OFFICER_TITLES | TITLE_ABBREVIATIONS
_HONORIFICS = frozenset(["mr", "mrs", "ms", "miss", "mister", "dr", "doctor", "lady", "madam"])
_SUFFIXES = frozenset(["jr", "sr", "ii", "iii", "iv", "senior", "junior"])
# Too short or too common to stand alone as a name; kept inside a full name ("Van Wardenberg").
_PARTICLES = frozenset(["de", "la", "le", "van", "von", "der", "den", "del", "della", "da", "di",
                        "du", "st", "bin", "mac"])
# Words that follow a title or "I'm" without being a name ("Officer Down", "I'm Sorry").
_NOT_NAMES = frozenset("""
a an the and or but nor if so to of in on at by for with from up down out off over into onto
about as than then there here now yes yeah yep no nope not okay ok please thank thanks sorry sir
maam ma'am hey hi hello bye goodbye excuse stop wait listen look come go get got let put hold
just what who whom whose why how when where which is are was were be been being am do does did
have has had will would shall should can could may might must i you he she we they it me him
her us them my your his our their its this that these those all any some every each both either
neither one two three four five six seven eight nine ten involved shooting shoots shot said says
told asks asked arrests arrested arrest gets got confronts tases pulls stops calls says
responds right left good fine sure well oh uh um mhm hmm police department county city state
""".split())
_FUNCTION_WORDS = frozenset(["a", "an", "the", "and", "or", "of", "in", "on", "at", "to", "for",
                            "from", "with", "by", "who", "whose", "that", "is", "was"])
_PLACE_WORDS = frozenset(["in", "at", "from", "on", "near", "into", "outside", "inside", "to"])

_QUOTED = re.compile(r"(?<!\w)['\"]([^'\"]+)['\"](?!\w)")  # nicknames: Artisha 'Tisha' Polk
_LABEL_WORD = re.compile(r"[^\W_][\w'-]*\.?")
_HEAD_END = re.compile(r"[,(;]| - ")


def _clean(label: str) -> str:
    s = unicodedata.normalize("NFKC", label).replace("’", "'").replace("‘", "'")
    s = _QUOTED.sub(r" \1 ", s.replace("[", " ").replace("]", " "))
    return re.sub(r"\s+", " ", s).strip()


@functools.lru_cache(maxsize=8192)
def _role_or_generic(word: str) -> bool:
    return classify_label(word).kind in ("role_word", "generic")


def _name_word(tok: str) -> bool:
    """Could stand for a person's name: letters (with ' or -), two or more, not a title,
    honorific, suffix, function word, role word or generic word."""
    low = tok.lower().rstrip(".")
    return (len(low) >= 2 and low.replace("'", "").replace("-", "").isalpha()
            and low not in _TITLE_WORDS and low not in _HONORIFICS and low not in _SUFFIXES
            and low not in _FUNCTION_WORDS and not _role_or_generic(tok))


def _standalone(tok: str) -> bool:
    """May be replaced on its own, not only inside the full name."""
    return tok.lower() not in _PARTICLES


def _possessive(tok: str) -> str | None:
    """"Chloe's" → "Chloe", "Morales'" → "Morales"."""
    if tok.endswith("'s") and len(tok) > 3:
        return tok[:-2]
    if tok.endswith("'") and len(tok) > 2:
        return tok[:-1]
    return None


@dataclass(frozen=True, slots=True)
class LabelNames:
    """The names a speaker label holds: its speaker's own, and other people's."""

    own: tuple[str, ...] = ()  # "Sam Brammer"
    others: tuple[str, ...] = ()  # "Chloe" in "[Chloe's boyfriend]"

    def __bool__(self) -> bool:
        return bool(self.own or self.others)


@functools.lru_cache(maxsize=16384)
def label_names(label: str) -> LabelNames:
    """Read the names in one speaker label.

    `name` labels ("Barrett Robbins", "Mr. Atkins", "Shy") name their speaker when every word
    is capitalised; in brackets, which mark a transcriber's description, only when a word is a
    given name ("[Leroy Kennedy]", but not "[Dog]" nor "[Caregiver]"). `titled_name`
    labels name their speaker after the title ("Deputy Wills"; numbers and single letters are
    not names: "Officer 2", "Officer A").
    Any label may name others: a possessive ("[Chloe's boyfriend]"), a name after a title or a
    verb ("[Partner of Deputy Wilson]", "[Person attempting to wake up Morales]").
    """
    verdict = classify_label(label)
    s = _clean(label)
    words = _LABEL_WORD.findall(s)
    if verdict.kind == "titled_name":
        n_title = 2 if s.lower().startswith(("police officer", "special agent")) else 1
        lower_label = s == s.lower()  # "officer greg"; else names are capitalised, and
        # "[Officer asking about injuries]" names nobody
        toks = [w.rstrip(".") for w in words[n_title:]
                if _name_word(w) and (w[0].isupper() or lower_label)]
        toks = [t[0].upper() + t[1:] for t in toks]
        return LabelNames(own=(" ".join(toks),)) if toks else LabelNames()
    while words and words[0].lower().rstrip(".") in _HONORIFICS:
        words = words[1:]
    content = [w.rstrip(".") for w in words
               if w.lower().rstrip(".") not in _SUFFIXES and len(w.rstrip(".")) > 1]
    if verdict.kind == "name" and content and len(content) <= 6:
        lower_label = s == s.lower()
        plain = all((w[0].isupper() or lower_label) and _name_word(w) and not _possessive(w)
                    for w in content)
        # brackets mark the transcriber's descriptions ("[Caregiver]"); a bare label is a name
        # even when its word is also an English word ("Shy", "Smith", "Lay")
        described = label.lstrip().startswith("[")
        if plain and (not described or any(is_given_name(w) for w in content)):
            return LabelNames(own=(" ".join(w[0].upper() + w[1:] for w in content),))
    return _names_in_description(s)


def _names_in_description(s: str) -> LabelNames:
    """Names inside a descriptive label: "[Amber Archuleta's Father]", "Joseph Staff",
    "[Wife of Christopher Schultz]". A run of capitalised name words is a name when it is
    possessive, follows a title, holds a given name, or is an uncommon word that neither opens
    the label ("Walmart Employee") nor follows a place word ("[Individual speaking in
    Spanish]"). It is the speaker's own name when it opens the label's head ("Joseph Staff",
    "Father Fidel Rodriguez"), someone else's otherwise."""
    head_end = m.start() if (m := _HEAD_END.search(s)) else len(s)
    own: list[str] = []
    others: list[str] = []
    run: list[str] = []
    start, ok, prev, owned = 0, False, "", False

    def flush(possessive: bool = False) -> None:
        nonlocal run, ok
        if run and (ok or possessive):
            opens_head = start < head_end and not any(
                w[:1].islower() for w in _LABEL_WORD.findall(s[:start]))
            (own if opens_head and not possessive else others).append(" ".join(run))
        run, ok = [], False

    for m in _LABEL_WORD.finditer(s):
        w = m.group(0).rstrip(".")
        base = _possessive(w)
        tok = base or w
        acronym = tok.isupper() and len(tok) > 1 and not base  # "[DCFS Worker]"
        if owned and tok[:1].isupper():  # "Elijah Lewis's Nephew": what is owned is no name
            prev = w
            continue
        owned = False
        if tok[:1].isupper() and not acronym and _name_word(tok):
            if not run:
                start = m.start()
                ok = prev.lower() in _TITLE_WORDS or (
                    start > 0 and not is_common_word(tok) and prev.lower() not in _PLACE_WORDS)
            run.append(tok)
            ok = ok or is_given_name(tok)
            if base:
                flush(possessive=True)
                owned = True
        else:
            flush()
        prev = w
    flush()
    return LabelNames(tuple(dict.fromkeys(own)),
                      tuple(dict.fromkeys(o for o in others if o not in own)))


def _tokens(name: str) -> list[str]:
    """The parts of a name that may stand alone ("Bree-Ann Smith" → Bree-Ann, Bree, Ann,
    Smith)."""
    out: list[str] = []
    for w in name.split():
        parts = [w, *w.split("-")] if "-" in w else [w]
        out += [p for p in parts if len(p) >= 2 and _standalone(p)]
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------------------------------------
# Names in the text

_NAME = r"[A-Z][\w'-]*[^\W_]"
# A full title takes no full stop ("officer. Give me" is two sentences); an abbreviation may.
_POLICE_TITLE = ("(?i:" + "|".join(sorted(OFFICER_TITLES, key=lambda t: (-len(t), t)))
                 + r")(?![.\w])|(?i:" + "|".join(sorted(TITLE_ABBREVIATIONS)) + r")\.?")
_HONORIFIC = r"(?:Mr|Mrs|Ms|Dr|MR|MRS|MS|DR|mr|mrs|ms|dr)\.?|(?:Mister|Miss|Madam)(?![.\w])"
_TITLE = rf"(?:{_POLICE_TITLE}|{_HONORIFIC})"
_MENTION = re.compile(
    rf"(?<!\w)(?<!\w')(?P<title>{_TITLE})[ \t]+(?P<name>{_NAME}(?:[ \t]+{_NAME}){{0,2}})")
_NEXT_WORD = re.compile(r"[ \t]+(\w+)")
_AGENCY_WORDS = frozenset(["police", "pd", "department", "dept", "county", "sheriff",
                           "sheriff's", "city", "state", "highway", "fire", "patrol", "unit"])
_APOSTROPHE_NAME = re.compile(r"[A-Z]'[A-Z][a-z]+")  # O'Brien, D'Angelo
_INTRO = re.compile(
    rf"(?<!\w)(?<!\w')(?P<cue>(?i:my name is|my name's|name's|call me|i'm|i am|this is))[ \t,]+"
    rf"(?P<name>{_NAME}(?:[ \t]+{_NAME})?)")
_SURE_INTRO = frozenset(["my name is", "my name's", "name's", "call me"])
# Given names in the census lists that are also places: "This is Florida", "I'm Georgia"?
_STATES = frozenset("""
alabama alaska arizona arkansas california colorado connecticut delaware florida georgia hawaii
idaho illinois indiana iowa kansas kentucky louisiana maine maryland massachusetts michigan
minnesota mississippi missouri montana nebraska nevada ohio oklahoma oregon pennsylvania
tennessee texas utah vermont virginia washington wisconsin wyoming carolina dakota jersey
""".split())
_TITLE_BEFORE = re.compile(rf"(?<!\w)(?<!\w')(?:{_TITLE})[ \t]+\Z")
# What a mention starts with, lower-cased: found with str.find, which is far faster than
# running the two regexes above over every turn.
_MENTION_STARTS = tuple(sorted(_TITLE_WORDS | {"mr", "mrs", "ms", "dr", "mister", "miss",
                                                "madam"}))
_INTRO_STARTS = ("my name", "name's", "call me", "i'm", "i am", "this is")


def mentions(text: str) -> list[tuple[int, str]]:
    """(offset, name) for each name `text` gives with a title or in an introduction, in order."""
    low = text.lower()
    if len(low) != len(text):  # lower() moved offsets (rare scripts): the plain regex way
        found = [(m, False) for m in _MENTION.finditer(text)]
        found += [(m, True) for m in _INTRO.finditer(text)]
    else:
        found = []
        for starts, pattern, intro in ((_MENTION_STARTS, _MENTION, False),
                                       (_INTRO_STARTS, _INTRO, True)):
            for w in starts:
                i = low.find(w)
                while i != -1:
                    if (m := pattern.match(text, i)) is not None:
                        found.append((m, intro))
                    i = low.find(w, i + 1)
    out = [(m.start(), name) for m, intro in found
           if (name := _mentioned(m, intro)) is not None]
    return sorted(set(out))


def _text_name_word(tok: str) -> bool:
    """A capitalised word of running text that may be a name: not "I'm", "I've" nor "Down"
    ("O'Brien" is)."""
    return (_name_word(tok) and tok.lower() not in _NOT_NAMES
            and not (tok.isupper() and len(tok) <= 3)  # "Officer PD"
            and ("'" not in tok or _APOSTROPHE_NAME.fullmatch(tok) is not None))


def _mentioned(m: re.Match, intro: bool) -> str | None:
    """The name a title or an introduction points at, or None when the capitalised words are
    not a name ("Officer Down", "I'm Sorry", "Deputy Shoots Man" in a title-case headline)."""
    toks = [_possessive(t) or t for t in m.group("name").split()]  # "Officer Jimmet's"
    while toks and toks[0].lower().rstrip(".") in _TITLE_WORDS:  # "Deputy Chief Smith"
        toks = toks[1:]
    if not toks or not _text_name_word(toks[0]):
        return None
    first = toks[0]
    after = _NEXT_WORD.match(m.string, m.end())
    nxt = toks[1] if len(toks) > 1 else (after.group(1) if after else "")
    if nxt.lower() in _AGENCY_WORDS:  # "Officer Oxford Police Department": a place
        return None
    if intro and m.group("cue").lower() not in _SURE_INTRO:
        # "I'm Dana", "this is Dana": only a given name that is not also a word or a state
        if not is_given_name(first) or is_common_word(first) or first.lower() in _STATES:
            return None
    elif is_common_word(first) and not is_given_name(first) and nxt[:1].isupper():
        return None  # "Officer Brown" in running text, but not "Officer Involved Shooting"
    name = [first]
    for t in toks[1:]:
        if not _text_name_word(t) or (is_common_word(t) and not is_given_name(first)):
            break
        name.append(t)
    return " ".join(name)


# ---------------------------------------------------------------------------------------------
# Pseudonyms


def _letters(n: int) -> str:
    """0 → A, 25 → Z, 26 → AA: as many people as a scenario has."""
    s = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


_TAKEN = re.compile(r"^\[?(officer|civilian|bystander|dispatcher|narrator|speaker)\s+([a-z]{1,2})"
                    r"\]?$", re.I)
_TAKEN_MENTION = re.compile(r"\[NAME ([A-Z]{1,2})\]")


class _Namer:
    """Hands out the next free letter per prefix ("Civilian B" when a label "Civilian A"
    already exists)."""

    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = set(taken)
        self.next: dict[str, int] = {}

    def name(self, fmt: str) -> str:
        """The next free `fmt` ("Civilian {}", "[NAME {}]") with letters in it."""
        i = self.next.get(fmt, 0)
        while (candidate := fmt.format(_letters(i))) in self.taken:
            i += 1
        self.next[fmt] = i + 1
        self.taken.add(candidate)
        return candidate


@dataclass(slots=True)
class _Person:
    pseudonym: str
    speaker: bool  # a speaker's pseudonym replaces its title too: "Deputy Wills" → "Officer B"


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


class _NameMap:
    """Every name of a scenario and who it belongs to; the first owner of a word keeps it."""

    def __init__(self) -> None:
        self.people: dict[str, _Person] = {}  # casefolded name or token → person
        self.spelling: dict[str, str] = {}  # casefolded → as written in a label or text

    def add(self, name: str, person: _Person) -> None:
        for part in dict.fromkeys([name, *_tokens(name)]):
            k = _key(part)
            if k not in self.people:
                self.people[k] = person
                self.spelling[k] = " ".join(part.split())

    def knows(self, name: str) -> bool:
        return _key(name) in self.people

    def replacer(self) -> Callable[[str], tuple[str, int]] | None:
        """A function that replaces every name in a string and says how many it replaced.

        One regex for all names, longest first. It lists the ways a name is written (as in the
        label, Capitalised, ALL CAPS, and lower case unless every word is a common word)
        instead of matching case-insensitively: literal alternatives are four times faster.
        A title before a speaker's name goes with it ("Deputy Wills" → "Officer B"); a
        mentioned person keeps it ("Officer [NAME A]").
        """
        if not self.people:
            return None
        alts: list[str] = []
        for k in sorted(self.people, key=lambda k: (-len(k), k)):
            alts += [re.escape(f).replace(r"\ ", r"[ \t]+") for f in _forms(self.spelling[k])]
        pattern = re.compile(rf"(?<!\w)(?<!\w')(?:{'|'.join(alts)})(?!\w)")
        people = self.people

        def replace(text: str) -> tuple[str, int]:
            parts: list[str] = []
            last, n = 0, 0
            for m in pattern.finditer(text):
                person = people[_key(m.group(0))]
                start = m.start()
                n += 1
                if parts and parts[-1] == person.pseudonym and not text[last:start].strip(" \t"):
                    last = m.end()  # "Darian Rose" of "Darian Noel Rose": one pseudonym, not two
                    continue
                if person.speaker and (t := _TITLE_BEFORE.search(text, max(last, start - 24),
                                                                  start)):
                    start = t.start()
                parts += [text[last:start], person.pseudonym]
                last = m.end()
            if not parts:
                return text, 0
            parts.append(text[last:])
            return "".join(parts), n

        return replace


def _forms(written: str) -> list[str]:
    """How a name may be written: as given, Capitalised, ALL CAPS and, unless every word of it
    is a common word ("Will", "Grant Price"), lower case."""
    words = written.split()
    forms = [written, " ".join(w[:1].upper() + w[1:] for w in words),
             " ".join(w.capitalize() for w in words), written.upper()]
    if not all(is_common_word(w) for w in words):
        forms.append(written.lower())
    return list(dict.fromkeys(forms))


# ---------------------------------------------------------------------------------------------
# The scenario


def _walk_strings(obj: Any, f: Callable[[str], str]) -> Any:
    """`obj` with `f` applied to every string inside it (dicts, lists), keys untouched."""
    if isinstance(obj, str):
        return f(obj)
    if isinstance(obj, dict):
        return {k: v if k in _META_KEPT else _walk_strings(v, f) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_walk_strings(v, f) for v in obj]
    return obj


def _meta_strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k not in _META_KEPT:
                yield from _meta_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _meta_strings(v)


def _labels_in_order(sc: Scenario) -> list[str]:
    """Speaker labels by first turn, then labels that have no turn, in `speakers` order."""
    return list(dict.fromkeys([t.speaker for t in sc.turns] + list(sc.speakers)))


def pseudonymize(sc: Scenario) -> PrivacyCounts:
    """Replace the names of the people in `sc` by pseudonyms and mask structured personal data,
    in place; record the counts (never a name) in `sc.meta["privacy"]`."""
    counts = PrivacyCounts()
    pii = counts.pii

    # 1. structured data first: an e-mail or a spelled-out name is masked whole
    previous = ""
    for t in sc.turns:
        text, t.text = t.text, mask_into(t.text, pii, previous)
        previous = text
    sc.meta = _walk_strings(sc.meta, lambda s: mask_into(s, pii))
    for sr in sc.speakers.values():
        sr.why = mask_into(sr.why, pii)

    # 2. who is named: speaker labels, then titles and introductions in the text
    labels = _labels_in_order(sc)
    texts = [t.text for t in sc.turns]
    meta_texts = list(_meta_strings(sc.meta))
    namer = _Namer([f"{m.group(1).title()} {m.group(2).upper()}"
                    for lab in labels if (m := _TAKEN.match(lab.strip()))]
                   + [MENTIONED.format(x) for s in texts if "[NAME " in s
                      for x in _TAKEN_MENTION.findall(s)])
    names = _NameMap()
    renamed: dict[str, str] = {}
    found = {lab: label_names(lab) for lab in labels}
    for lab in labels:
        if not found[lab]:
            continue
        sr = sc.speakers.get(lab)
        role = sr.role if sr else next((t.role for t in sc.turns if t.speaker == lab),
                                       Role.UNKNOWN)
        renamed[lab] = namer.name(ROLE_WORDS[role] + " {}")
        for own in found[lab].own:
            names.add(own, _Person(renamed[lab], speaker=True))

    def mention(name: str) -> None:
        if not names.knows(name):
            names.add(name, _Person(namer.name(MENTIONED), speaker=False))

    for lab in labels:
        for other in found[lab].others:
            mention(other)
    everything = "\n".join([*texts, *meta_texts, *(sr.why for sr in sc.speakers.values())])
    for _, name in mentions(everything):
        mention(name)

    # 3. replace: one regex for the whole scenario
    replace = names.replacer()
    if replace is not None:

        def sub(s: str) -> str:
            new, n = replace(s)
            counts.names_replaced += n
            return new

        for t in sc.turns:
            t.text = sub(t.text)
        sc.meta = _walk_strings(sc.meta, sub)
        for sr in sc.speakers.values():
            sr.why = sub(sr.why)
        for lab in labels:
            if lab not in renamed and (new := sub(lab)) != lab:
                clash = new in labels or new in renamed.values()
                renamed[lab] = namer.name("Speaker {}") if clash else new
    if renamed:
        for t in sc.turns:
            t.speaker = renamed.get(t.speaker, t.speaker)
        sc.speakers = {renamed.get(k, k): v for k, v in sc.speakers.items()}
        counts.pseudonyms = sum(1 for lab in renamed if found[lab])
    sc.meta["privacy"] = counts.to_dict()
    return counts
