"""What a speaker label alone says about the speaker's role.

Diarizers write free text: `[Police Officer]`, `Deputy Wills`, `Officer 2`, `[Friend of the
suspect]`, `[Caller, mother of the suspect]`, `John`. The rules read a label the way a person
does: the head of the phrase decides (`friend` in "friend of the suspect"), a possessor does not
(`brother` in "Amber's brother"), longer phrases beat their parts (`police dispatcher` is a
dispatcher, `tow truck driver` a bystander), and a participle that puts the person on the
receiving end of police action (`being arrested`) makes a civilian. Each verdict has a
confidence: at or above `DECISIVE` the label settles the role; below it the verdict is only a
prior that the conversation may overturn. Plain names and generic labels (`[Voice 2]`, `[Man]`)
get no role here at all.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from deescalwild.core import Role

DECISIVE = 0.9

O, C, B, D, N, U = (Role.OFFICER, Role.CIVILIAN, Role.BYSTANDER, Role.DISPATCHER, Role.NARRATOR,
                    Role.UNKNOWN)

# (pattern, role, confidence). At each position the first pattern in this list wins, so longer
# and more specific phrases come before the words they contain.
_DEVICE = re.compile(  # things that are not people, wherever the word stands
    r"\b(?:automated|gps|voicemail|recording (?:device|system)|music|aed|self-checkout|machine|"
    r"announcement|ringtone|alarm|siren|robot)\b"
)
_RULES: list[tuple[str, Role, float]] = [
    # dispatch before police/officer/emergency
    (r"(?:police |911 |emergency |emergency services |sheriff'?s? )?dispatch(?:er|ers)?"
     r"(?: officer| operator)?|911 operator|emergency operator|call[- ]taker|"
     r"(?:emergency|911) call center", D, 0.97),
    (r"tow truck(?: \w+)?|train operator|airline \w+|airport \w+", B, 0.9),
    (r"(?:police|sheriff'?s?) radio|radio (?:voice|traffic|chatter)|operator", D, 0.75),
    # security is not police
    (r"(?:asset protection|loss prevention|security)(?: \w+)*", B, 0.9),
    (r"guards?|bouncer", B, 0.7),
    (r"retired (?:police )?(?:officer|deputy|cop)|off[- ]duty (?:officer|cop)", B, 0.8),
    (r"(?:officer|deputy|police)'?s? (?:partner|colleague)|(?:partner|colleague) of (?:the )?"
     r"(?:police )?(?:officer|deputy)", O, 0.95),
    (r"(?:insurance|bail bonds?|real estate|travel|ticket) (?:agent|agents|bondsman)|"
     r"bail bonds?man|bail bond client", B, 0.85),
    (r"crime scene (?:investigator|technician|tech)|medical examiner|coroner", O, 0.8),
    (r"fire (?:chief|captain|marshal|lieutenant|department|dept|fighter|rescue|inspector)|"
     r"building inspector|code enforcement(?: \w+)?", B, 0.85),
    (r"(?:prison|jail|detention|correctional|corrections) (?:guard|officer|deputy|staff)", O,
     0.95),
    (r"law enforcement(?: officer)?|sheriff'?s (?:office|department)|police department|"
     r"highway patrol|state patrol|state police|border patrol|military police", O, 0.98),
    (r"(?:police|patrol|k-?9|swat|motor|probation|parole|corrections|correctional|peace|"
     r"school resource|arresting|investigating|pursuing|ground|female|male|second|another)"
     r" (?:officer|officers|cop|deputy|deputies)", O, 0.98),
    (r"officers?|police(?:man|woman)?|cops?|deput(?:y|ies)|sheriff|troopers?|sergeant|sgt\.?|"
     r"lieutenant|lt\.|captain|capt\.|corporal|cpl\.|detectives?|det\.|patrolman|constable|"
     r"marshal|marshals|special agent|federal agent|fbi|dea|atf|agent|investigators?|"
     r"interrogators?|k-?9|swat|bailiff|jailer|jail staff|correctional|game warden|"
     r"park ranger|ranger|chief", O, 0.97),
    (r"inspector", O, 0.7),
    (r"(?:air|ground|helicopter) (?:unit|support|deputy|officer)|helicopter (?:pilot|observer|"
     r"operator)", O, 0.9),
    # narrators: speech to the audience
    (r"narrators?|narration|voice-?over|commentators?|commentary|hosts?|news anchor|anchor|"
     r"presenter|sponsors?|advertis\w*|advertisement|disclaimer|podcast\w*|youtuber|"
     r"(?:news )?reporter|journalist|spokes(?:person|man|woman)", N, 0.95),
    # the party the police deal with
    (r"suspects?|civilians?|detainee|detained(?: \w+)?|arrestee|arrested(?: \w+)?|"
     r"(?:person|man|woman|individual|male|female) (?:being|getting) (?:arrested|detained|"
     r"questioned|interviewed|interrogated|searched|stopped|handcuffed|trespassed|cited|"
     r"confronted|accused|pulled over)|caller|complainant|reporting party|victims?|"
     r"alleged victim|trespasser|shoplifter|burglar|shooter|aggressor|offender|defendant|"
     r"inmate|prisoner|motorist|drivers?|subject|citizen|person of interest|robber|thief|"
     r"gunman|attacker|assailant|carjacker|kidnapper|intruder|fugitive|perpetrator", C, 0.93),
    (r"passengers?|intoxicated \w+|drunk \w+|mentally (?:ill|unstable) \w+|homeless \w+|"
     r"person in crisis|interviewee|juvenile|teenager", C, 0.85),
    (r"homeowner|home owner|car owner|property owner|tenant|resident|customer|student|"
     r"community member|member of the public|reckless \w+", C, 0.55),
    # others present
    (r"bystanders?|eyewitness|witness(?:es)?|onlookers?|passers?-?by|spectators?|crowd|"
     r"neighbou?rs?|nosy \w+", B, 0.93),
    (r"medic|paramedic|emt|ems|nurse|doctor|physician|firefighter|fire fighter|"
     r"medical \w+|first responder|emergency responder|emergency \w+ personnel|rescuer|"
     r"lifeguard", B, 0.8),
    (r"employee|manager|staff(?: member)?|clerk|cashier|worker|bartender|waitress|waiter|server|"
     r"attendant|teller|mechanic|contractor|volunteer|organi[sz]er|chef|stylist|"
     r"judge|attorney|lawyer|social worker|dcfs \w+|principal|teacher|coach|landlord|"
     r"property manager|flight attendant|pilot", B, 0.5),
    (r"friends?|boyfriend|girlfriend|family(?: member)?|relative|mother|mom|father|dad|parent|"
     r"son|daughter|brother|sister|wife|husband|ex-wife|ex-husband|fianc[eé]e?|grandma|"
     r"grandmother|grandfather|grandpa|grandson|granddaughter|grandparent|aunt|uncle|cousin|"
     r"child|kid|baby|roommate|partner|babysitter|guest|visitor", B, 0.45),
]
# One alternation: a regex search finds the leftmost match and, at one position, the first rule
# in list order, which is exactly the precedence described above, in one pass over the label.
_ANY_RULE = re.compile("|".join(rf"(?<![\w'])(?P<r{i}>{p})(?![\w])"
                                for i, (p, _, _) in enumerate(_RULES)))

# Police titles that stand before a name ("Deputy Wills", "Sgt. Brammer"); cues.py uses them too.
OFFICER_TITLES = frozenset([
    "officer", "deputy", "sergeant", "trooper", "detective", "lieutenant", "captain", "corporal",
    "agent", "chief", "sheriff", "patrolman", "constable", "marshal", "inspector", "investigator",
])
TITLE_ABBREVIATIONS = frozenset(["ofc", "dep", "sgt", "tpr", "det", "lt", "capt", "cpl", "insp"])
_TITLES = "|".join(sorted(OFFICER_TITLES | TITLE_ABBREVIATIONS | {"special agent",
                                                                  "police officer"}))
_TITLED_NAME = re.compile(rf"^(?:{_TITLES})\.?\s+(?:[a-z][\w'.-]*|\d+|\?)(?:\s+[a-z][\w'.-]*)*$")
_HONORIFIC = re.compile(r"^(?:mr|mrs|ms|miss|mister)\.?\s+\w")
_CALL_SIGN = re.compile(r"^(?:adam|alpha|baker|bravo|charlie|delta|echo|lincoln|nora|ocean|sierra|"
                        r"tango|victor|unit|car|patrol|traffic)\s*-?\s*\d+$")
_GENERIC = re.compile(
    r"^(?:unidentified|unknown|unnamed|other|another|second|third|first)?\s*(?:speaker|voice|"
    r"person|individual|man|woman|male|female|adult|guy|lady|boy|girl|someone|people|"
    r"interviewer|questioner|speakers)?(?:\s.*)?$"
)
_GENERIC_HEAD = re.compile(
    r"^(?:an? |the )?(?:unidentified |unknown |unnamed |elder |older |young |another |second |"
    r"adult )?(?:speaker|voice|person|individual|man|woman|male|female|adult|guy|lady|boy|girl|"
    r"someone|people|interviewer|questioner)\b"
)
_POLICE_ACTION = re.compile(r"\b(?:giving|shouting|yelling) (?:a |the )?(?:commands?|orders?|"
                            r"instructions?)\b")
_PARTICIPLE_CIVILIAN = re.compile(
    r"\b(?:being|getting) (?:arrested|detained|questioned|interviewed|interrogated|searched|"
    r"stopped|handcuffed|trespassed|cited|confronted|accused|pulled over)|\barrested\b|"
    r"\breceiving (?:a )?welfare check|\breporting\b|\bdriver\b"
)


@dataclass(frozen=True, slots=True)
class LabelVerdict:
    """The label's own say. `kind`: `role_word`, `titled_name`, `generic` or `name`."""

    role: Role | None
    confidence: float
    kind: str
    matched: str = ""

    @property
    def decisive(self) -> bool:
        return self.role is not None and self.confidence >= DECISIVE


def normalize_label(label: str) -> str:
    """Lower-case, brackets, quotes and outer punctuation removed, whitespace collapsed."""
    s = unicodedata.normalize("NFKC", label).lower()
    s = s.replace("’", "'").replace("‘", "'").replace("_", " ")  # SPEAKER_00 -> speaker 00
    s = re.sub(r"[\[\]{}\"]", " ", s)
    s = re.sub(r"\s+", " ", s).strip(" .,:;!-")
    return s


def _head_and_descriptors(s: str) -> tuple[str, list[str]]:
    """Split "caller, mother of the suspect (on phone)" into head "caller" and descriptors
    ("mother of the suspect", "on phone")."""
    asides = re.findall(r"\(([^)]*)\)", s)
    s = re.sub(r"\([^)]*\)", " ", s)
    parts = [p.strip() for p in re.split(r",|;| - ", s) if p.strip()] + asides
    if not parts:
        return "", []
    head = parts[0]
    head = re.split(r"\b(?:of|whose|who|with|for|from|at|to|in)\b", head, maxsplit=1)[0].strip()
    # "amber archuleta's brother" -> "brother"; keep agency phrases like "sheriff's office"
    if not re.search(r"sheriff'?s (?:office|department)|officer'?s (?:partner|colleague)", head):
        head = re.sub(r"^.*'s?\s+", "", head) if "'s " in head or "s' " in head else head
    return head, parts[1:]


def _first_rule(text: str) -> tuple[Role, float, str] | None:
    m = _ANY_RULE.search(text)
    if m is None:
        return None
    _, role, conf = _RULES[int(m.lastgroup[1:])]
    return role, conf, m.group(0)


def _alternatives(head: str) -> list[str]:
    return [a.strip() for a in re.split(r"/| or | and |&", head) if a.strip()]


@lru_cache(maxsize=65536)
def classify_label(label: str) -> LabelVerdict:
    """Read one speaker label. Cached: the same label recurs across thousands of rows."""
    s = normalize_label(label)
    if not s:
        return LabelVerdict(None, 0.0, "generic")
    s_nonum = re.sub(r"\s*#?\d+$", "", s)  # "officer 2", "male 2", "homeowner 1"
    # "Deputy Wills", "Officer 2", but not "Officer Smith's wife" nor "Officer and suspect"
    if _TITLED_NAME.match(s) and "'s " not in s and _first_rule(s.split(None, 1)[1]) is None:
        return LabelVerdict(O, 0.98, "titled_name", s.split()[0])
    if _CALL_SIGN.match(s):
        return LabelVerdict(O, 0.7, "role_word", s)

    m = _DEVICE.search(s)
    if m:
        return LabelVerdict(U, 0.9, "role_word", m.group(0))
    head, descriptors = _head_and_descriptors(s_nonum)
    alts = _alternatives(head) or [head]
    verdicts = [v for v in (_first_rule(a) for a in alts) if v is not None]
    if verdicts:
        role, conf, matched = verdicts[0]
        if any(v[0] != role for v in verdicts):  # "[Bystander or another officer]"
            conf = min(conf, 0.6)
        # a participle describing the head ("mother of the children, being interviewed")
        if role == B and any(_PARTICIPLE_CIVILIAN.search(d) for d in descriptors):
            role, conf, matched = C, 0.8, descriptors[0]
        return LabelVerdict(role, conf, "role_word", matched)

    if _GENERIC_HEAD.match(head) or _GENERIC.fullmatch(s_nonum):
        rest = " ".join([head, *descriptors])
        if _POLICE_ACTION.search(rest):
            return LabelVerdict(O, 0.6, "generic", _POLICE_ACTION.search(rest).group(0))
        m = _PARTICIPLE_CIVILIAN.search(rest)
        if m:  # "[Woman in orange shirt, arrested]": the label does say who this is
            return LabelVerdict(C, 0.9, "role_word", m.group(0))
        v = _first_rule(rest)
        if v is not None:  # "[Unknown male speaking with the officer]" says little: halve it
            return LabelVerdict(v[0], min(v[1], 0.6), "generic", v[2])
        if head.startswith("interviewer") or head.startswith("questioner"):
            return LabelVerdict(O, 0.6, "generic", head)
        return LabelVerdict(None, 0.0, "generic")

    # a name with its role beside it: "John (suspect)", "Mike, the driver"
    v = next((v for v in map(_first_rule, descriptors) if v is not None), None)
    if v is not None:
        return LabelVerdict(v[0], v[1], "role_word", v[2])
    if _HONORIFIC.match(s):
        return LabelVerdict(C, 0.7, "name", s.split()[0])
    return LabelVerdict(None, 0.0, "name")
