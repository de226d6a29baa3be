"""Privacy: structured PII masking and role-keeping pseudonyms (docs/privacy.md).

Every name here is invented. The last tests run on the published transcripts when
DEESCALWILD_REAL_DATA points at them.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import needs_real_data, real_data

from deescalwild.core import Evidence, Role, Scenario, SpeakerRole, Turn
from deescalwild.corpus.roles.lexicon import classify_label
from deescalwild.curate.pii import mask_into, mask_pii
from deescalwild.curate.privacy import (
    SCHEMA,
    PrivacyCounts,
    is_common_word,
    is_given_name,
    label_names,
    pseudonymize,
)

# --------------------------------------------------------------------------------------------
# PII


@pytest.mark.parametrize(("text", "expected", "kind"), [
    ("call me at 212-555-1234 ok", "call me at [PHONE] ok", "phone"),
    ("Reach us at (415) 555-2671.", "Reach us at [PHONE].", "phone"),
    ("It's 415.555.2671 or +1 415 555 2671", "It's [PHONE] or [PHONE]", "phone"),
    ("my number is 2125551234", "my number is [PHONE]", "phone"),
    ("My cell is 555-1234.", "My cell is [PHONE].", "phone"),
    ("email me at jdoe@example.com now", "email me at [EMAIL] now", "email"),
    ("it's jdoe at gmail dot com", "it's [EMAIL]", "email"),
    ("He lives at 123 Main Street.", "He lives at [ADDRESS].", "address"),
    ("Units to 4500 N Elm Ave, code 3", "Units to [ADDRESS], code 3", "address"),
    ("respond to 2385 Southwest 66th Terrace", "respond to [ADDRESS]", "address"),
    ("plate ABC 1234 please", "plate [PLATE] please", "plate"),
    ("license plate number is 7XYZ123.", "license plate number is [PLATE].", "plate"),
    ("Date of birth 03/14/1990.", "Date of birth [DOB].", "dob"),
    ("DOB: March 14th, 1990", "DOB: [DOB]", "dob"),
    ("I was born on 3-14-90", "I was born on [DOB]", "dob"),
    ("my birthday is March 14th", "my birthday is [DOB]", "dob"),
    ("SSN 123-45-6789", "SSN [SSN]", "ssn"),
    ("it's 123 45 6789", "it's [SSN]", "ssn"),
    ("My social is 123456789", "My social is [SSN]", "ssn"),
    ("Spell it: K O W A L S K I.", "Spell it: [SPELLED].", "spelled"),
    ("Last of Mendez, Mary, Edward, Nora, David.", "Last of Mendez, [SPELLED].", "spelled"),
    ("Plate is whiskey Delta Kilo 110.", "Plate is [SPELLED].", "spelled"),
])
def test_masks_each_kind(text, expected, kind):
    masked, counts = mask_pii(text)
    assert masked == expected
    assert counts == Counter({kind: expected.count("[")})


@pytest.mark.parametrize("text", [
    "It was 10:30 and he owed $1,250 since 2019.",
    "10-4, I'm 10-12. 1026, 1027, 1028.",
    "Route 17 at 17,000 West, the 2,200 block of South Avenue East.",
    "$1,250,000 in cash, badge 12345678",
    # a bare ten-digit run that phonenumbers accepts, but no phone word before it: decided
    # to be a case or report number, kept
    "case number 2125551234",
    "Bay County case number 2018-101829.",
    "case 123456789",  # nine digits without "social"
    "3 blocks down the street",
    "signed by an Article 3 Federal court",
    "tag light out on the 2nd",  # "plate"/"tag" without a plate after it
    "tags expired in 2019",
    "7XYZ123 was parked there",  # a plate-like token without "plate"
    "On March 14th, 1990 officers responded.",  # a date, but not a date of birth
    "I I I I don't know",  # a stutter, not a spelling
    "I I I I I I I I V",
    "Say A B C D E F G for me",  # the alphabet test
    "Spell it: L E E.",  # three letters: too short to tell from an acronym
    "Tom and Mary went home with young Sam",
    "10-4, 10-37 Hill Avenue for 85.",  # a radio code before a street, no house number
])
def test_leaves_harmless_text_alone(text):
    assert mask_pii(text) == (text, Counter())


def test_previous_turn_introduces_the_answer():
    assert mask_pii("March 14th, 1990.", previous="What's your date of birth?")[0] == "[DOB]."
    assert mask_pii("2125551234", previous="A good phone number for you?")[0] == "[PHONE]"
    assert mask_pii("123456789", previous="And your social?")[0] == "[SSN]"
    assert mask_pii("2125551234", previous="What's your case number?")[0] == "2125551234"


def test_mask_into_adds_to_one_counter():
    counts: Counter[str] = Counter()
    mask_into("call 212-555-1234", counts)
    mask_into("or 415-555-2671, jdoe@example.com", counts)
    assert counts == Counter(phone=2, email=1)


# --------------------------------------------------------------------------------------------
# Labels


@pytest.mark.parametrize(("label", "own", "others"), [
    ("Barrett Robbinson", ("Barrett Robbinson",), ()),
    ("Jessyle", ("Jessyle",), ()),
    ("Shy", ("Shy",), ()),  # a bare label is a name even when it is also a word
    ("Mr. Atwell", ("Atwell",), ()),
    ("Dr. Sarah Kellerman", ("Sarah Kellerman",), ()),
    ("Bobby R. Kingsley Jr.", ("Bobby Kingsley",), ()),
    ("Artisha 'Tish' Polkner", ("Artisha Tish Polkner",), ()),
    ("Officer Greggson", ("Greggson",), ()),
    ("Deputy Willsey", ("Willsey",), ()),
    ("Sgt. Robertsen", ("Robertsen",), ()),
    ("Officer 79 Bakerson", ("Bakerson",), ()),
    ("[Chloe's boyfriend]", (), ("Chloe",)),
    ("[Amberly Archer's Father]", (), ("Amberly Archer",)),
    ("[Partner of Deputy Wilkerson]", (), ("Wilkerson",)),
    ("[Person checking Moralez' vitals]", (), ("Moralez",)),
    ("[Food delivery person, assisting Jonah]", (), ("Jonah",)),
    ("Joseph Staff", ("Joseph",), ()),
    ("[Leroy Kennedale]", ("Leroy Kennedale",), ()),
    # never names: numbers, single letters, role words, descriptions
    ("Officer 2", (), ()),
    ("Officer A", (), ()),
    ("Civilian A", (), ()),
    ("[Police Officer]", (), ()),
    ("[Dog]", (), ()),
    ("[Caregiver]", (), ()),
    ("Walmart Employee", (), ()),
    ("[Individual speaking in Spanish.]", (), ()),
    ("[Aggressive individual involved in a dispute]", (), ()),
    ("Key holder", (), ()),
    ("[DCFS Worker]", (), ()),
    ("[Officer asking about injuries]", (), ()),  # a `titled_name` to the lexicon
])
def test_label_names(label, own, others):
    names = label_names(label)
    assert (names.own, names.others) == (own, others)


def test_word_lists():
    assert is_common_word("will") and is_common_word("Hope") and not is_common_word("Robbinson")
    assert is_given_name("Will") and is_given_name("hope") and not is_given_name("Pastor")


# --------------------------------------------------------------------------------------------
# Pseudonyms


def _scenario(rows: list[tuple[str, str]], roles: dict[str, Role],
              meta: dict | None = None) -> Scenario:
    turns = [Turn(i, float(i), who, roles.get(who, Role.UNKNOWN), text)
             for i, (who, text) in enumerate(rows)]
    speakers = {who: SpeakerRole(role, Evidence.LABEL, 0.9, f"label '{who}'")
                for who, role in roles.items()}
    return Scenario("sc1", "youtube", "train", "train/sc1.csv", turns, speakers,
                    meta if meta is not None else {})


O, C, B = Role.OFFICER, Role.CIVILIAN, Role.BYSTANDER


@pytest.fixture
def stop():
    return _scenario([
        ("[Police Officer]", "Hi, I'm Officer Greggson. What's your name?"),
        ("Barrett Robbinson", "Barrett. Barrett Robbinson."),
        ("Officer Greggson", "Mr. Robbinson, step out. Deputy Willsey is on his way."),
        ("Deputy Willsey", "Greggson, I've got ROBBINSON's license. robbinson with two b's."),
        ("[Chloe's boyfriend]", "Leave him alone! Chloe, call Officer Brunetti."),
        ("Barrett Robbinson", "My name is Jessamyn, not Barrett. Officer Down! I'm Sorry."),
        ("Officer Greggson", "Willsey's car is here. Thank you, Sergeant Robertsen."),
    ], {"[Police Officer]": O, "Barrett Robbinson": C, "Officer Greggson": O,
        "Deputy Willsey": O, "[Chloe's boyfriend]": B},
        meta={"title": "Barrett Robbinson Arrested by Officer Greggson",
              "url": "https://www.youtube.com/watch?v=abc",
              "skipped_rows": [{"line": 9, "reason": "no text",
                                "raw": "00:12,Barrett Robbinson,"}]})


def test_labels_get_role_keeping_pseudonyms(stop):
    counts = pseudonymize(stop)
    assert [t.speaker for t in stop.turns] == [
        "[Police Officer]", "Civilian A", "Officer A", "Officer B", "Bystander A", "Civilian A",
        "Officer A"]
    assert list(stop.speakers) == ["[Police Officer]", "Civilian A", "Officer A", "Officer B",
                                   "Bystander A"]
    assert [sr.role for sr in stop.speakers.values()] == [O, C, O, O, B]
    assert [t.role for t in stop.turns] == [O, C, O, O, B, C, O]
    assert counts.pseudonyms == 4


def test_names_replaced_consistently(stop):
    pseudonymize(stop)
    texts = [t.text for t in stop.turns]
    assert texts == [
        "Hi, I'm Officer A. What's your name?",
        "Civilian A. Civilian A.",
        "Civilian A, step out. Officer B is on his way.",
        "Officer A, I've got Civilian A's license. Civilian A with two b's.",
        "Leave him alone! [NAME A], call Officer [NAME B].",
        "My name is [NAME C], not Civilian A. Officer Down! I'm Sorry.",
        "Officer B's car is here. Thank you, Sergeant [NAME D].",
    ]
    assert stop.meta["title"] == "Civilian A Arrested by Officer A"
    assert stop.meta["skipped_rows"][0]["raw"] == "00:12,Civilian A,"
    assert stop.meta["url"] == "https://www.youtube.com/watch?v=abc"  # an identifier, kept
    assert stop.speakers["Officer A"].why == "label 'Officer A'"


def test_privacy_record_never_holds_a_name(stop):
    counts = pseudonymize(stop)
    record = stop.meta["privacy"]
    assert record == {"schema": SCHEMA, "pseudonyms": 4,
                      "names_replaced": counts.names_replaced, "pii": {}}
    assert counts.names_replaced >= 18
    dumped = json.dumps(stop.to_dict())
    for name in ("Barrett", "Robbinson", "Greggson", "Willsey", "Chloe", "Brunetti",
                 "Jessamyn", "Robertsen"):
        assert re.search(name, dumped, re.I) is None, name


def test_common_word_names_only_where_capitalised():
    sc = _scenario([("Will", "I will go, I will."), ("[Officer]", "Will, come here. WILL!"),
                    ("Hope", "I hope so."), ("[Officer]", "Hope, sit down.")],
                   {"Will": C, "[Officer]": O, "Hope": B})
    pseudonymize(sc)
    assert [t.text for t in sc.turns] == ["I will go, I will.", "Civilian A, come here. "
                                          "Civilian A!", "I hope so.", "Bystander A, sit down."]


def test_parts_of_one_name_become_one_pseudonym():
    sc = _scenario([("Darian Noel Quill", "hi"), ("[Officer]", "Darian Quill? Darian, Quill.")],
                   {"Darian Noel Quill": C, "[Officer]": O})
    pseudonymize(sc)
    assert sc.turns[1].text == "Civilian A? Civilian A, Civilian A."


def test_a_title_ending_a_sentence_names_nobody():
    text = "Be an officer. Give me a chance. Thanks, officer. Turn around."
    sc = _scenario([("[Suspect]", text)], {"[Suspect]": C})
    pseudonymize(sc)
    assert sc.turns[0].text == text


def test_uncommon_names_in_any_case():
    sc = _scenario([("Jessyle", "hi"), ("[Officer]", "jessyle? JESSYLE! Jessyle's bag.")],
                   {"Jessyle": C, "[Officer]": O})
    pseudonymize(sc)
    assert sc.turns[1].text == "Civilian A? Civilian A! Civilian A's bag."


def test_letters_skip_existing_labels_and_follow_first_appearance():
    sc = _scenario([("Civilian A", "hi"), ("Zora Quill", "hello"), ("Amos Pell", "hey"),
                    ("Officer Tandy", "stop"), ("Speaker A", "what")],
                   {"Civilian A": C, "Zora Quill": C, "Amos Pell": C, "Officer Tandy": O,
                    "Speaker A": Role.UNKNOWN})
    pseudonymize(sc)
    assert [t.speaker for t in sc.turns] == ["Civilian A", "Civilian B", "Civilian C",
                                             "Officer A", "Speaker A"]


def test_unknown_role_and_narrator_keep_their_word():
    sc = _scenario([("Quinlan Marsh", "welcome back"), ("Odessa Vale", "hmm")],
                   {"Quinlan Marsh": Role.NARRATOR, "Odessa Vale": Role.UNKNOWN})
    pseudonymize(sc)
    assert list(sc.speakers) == ["Narrator A", "Speaker A"]


def test_text_mentions_need_a_real_name():
    sc = _scenario([("[Officer]", "Officer Involved Shooting. I'm Fine. This is Florida. "
                                  "I'm Dana Whitlock. "
                                  "This is Dana. Officer Oxford Police Department. Officer PD. "
                                  "Mr. O'Brannigan and officer Brown said so.")],
                   {"[Officer]": O})
    pseudonymize(sc)
    assert sc.turns[0].text == (
        "Officer Involved Shooting. I'm Fine. This is Florida. I'm [NAME A]. This is [NAME A]. "
        "Officer Oxford "
        "Police Department. Officer PD. Mr. [NAME B] and officer [NAME C] said so.")


def test_pii_in_turns_and_meta_is_counted():
    sc = _scenario([("[Officer]", "Date of birth?"), ("Tobiah Renn", "3/14/1990."),
                    ("Tobiah Renn", "Call 212-555-1234.")],
                   {"[Officer]": O, "Tobiah Renn": C},
                   meta={"title": "Tobiah Renn at 123 Main Street"})
    counts = pseudonymize(sc)
    assert [t.text for t in sc.turns] == ["Date of birth?", "[DOB].", "Call [PHONE]."]
    assert sc.meta["title"] == "Civilian A at [ADDRESS]"
    assert counts.pii == Counter(dob=1, phone=1, address=1)
    assert sc.meta["privacy"]["pii"] == {"address": 1, "dob": 1, "phone": 1}


def test_second_run_changes_nothing(stop):
    pseudonymize(stop)
    before = json.dumps(stop.to_dict())
    counts = pseudonymize(stop)
    assert counts.pseudonyms == 0 and counts.names_replaced == 0
    after = stop.to_dict()
    after["meta"]["privacy"] = json.loads(before)["meta"]["privacy"]
    assert json.dumps(after) == before


def test_counts_add():
    total = PrivacyCounts()
    total.add(PrivacyCounts(2, 5, Counter(phone=1)))
    total.add(PrivacyCounts(1, 3, Counter(phone=2, dob=1)))
    assert total == PrivacyCounts(3, 8, Counter(phone=3, dob=1))


_DETERMINISM = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_privacy import _scenario, O, C, B
from deescalwild.curate.privacy import pseudonymize
rows = [("Nadia Fenn", "Nadia? Officer Kell says Mr. Oakes and Mrs. Pryce left."),
        ("Officer Kell", "Deputy Sorrel, Nadia Fenn and Luca Fenn are here."),
        ("Luca Fenn", "My name is Ilse. I'm Marta Quade."), ("Deputy Sorrel", "Fenn!")]
sc = _scenario(rows, {"Nadia Fenn": C, "Officer Kell": O, "Luca Fenn": C, "Deputy Sorrel": O})
pseudonymize(sc)
print(json.dumps(sc.to_dict()))
"""


def test_same_output_under_any_hash_seed():
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", _DETERMINISM,
                              os.path.dirname(__file__)],
                             capture_output=True, text=True, env=env, check=True)
        outs.append(run.stdout)
    assert outs[0] == outs[1]
    assert "Fenn" not in outs[0] and "[NAME" in outs[0]


# --------------------------------------------------------------------------------------------
# The published transcripts

DATA = real_data()
_SKIP_WORDS = {"mr", "mrs", "ms", "miss", "mister", "dr", "doctor", "jr", "sr", "ii", "iii",
               "iv", "senior", "junior", "van", "de", "la", "del", "mac", "st"}


def _label_name_tokens(label: str) -> set[str]:
    """Name tokens of a speaker label, read independently of privacy.py: the capitalised words
    after the title of a `titled_name`; the words of an unbracketed, all-capitalised `name` label
    (bracketed ones are the transcriber's descriptions, docs/privacy.md); possessors in any
    label."""
    text = label.replace("’", "'")
    words = re.findall(r"[^\W\d_][\w'-]*", text)
    kind = classify_label(label).kind
    out: set[str] = set()
    if kind == "titled_name":  # capitalised: "[Officer asking about injuries]" names nobody
        after = words[2:] if text.lower().startswith(("police officer", "special agent")) \
            else words[1:]
        out = {w for w in after if w[0].isupper() or text == text.lower()}
    elif kind == "name" and not text.lstrip().startswith("["):
        upto = next((i for i, w in enumerate(words) if w.endswith(("'s", "s'"))), None)
        kept = words if upto is None else words[:upto + 1]  # "X's Nephew": the nephew is no name
        if all(w[0].isupper() for w in kept):
            out = set(kept)
    out |= {w[:-2] for w in re.findall(r"\b[A-Z][^\W\d_-]*'s\b", text)  # not "[Suspect's Mother]"
            if classify_label(w[:-2]).kind == "name"}
    out = {w.rstrip("'") for w in out}
    return {w for w in out if len(w) >= 2 and not any(c.isdigit() for c in w)  # "K9 Rico"
            and w.lower() not in _SKIP_WORDS}


def _strings(sc: Scenario) -> list[str]:
    out = [t.text for t in sc.turns] + [t.speaker for t in sc.turns] + list(sc.speakers)
    out += [sr.why for sr in sc.speakers.values()]

    def walk(o):
        if isinstance(o, str):
            out.append(o)
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(sc.meta)
    return out


@pytest.fixture(scope="module")
def real_pair():
    from deescalwild.corpus.importer import import_transcripts

    originals, _ = import_transcripts([DATA])
    scenarios, _ = import_transcripts([DATA])
    t0 = time.perf_counter()
    total = PrivacyCounts()
    for sc in scenarios:
        total.add(pseudonymize(sc))
    print(f"\npseudonymized {len(scenarios)} scenarios in {time.perf_counter() - t0:.2f} s: "
          f"{total}")
    return originals, scenarios


@pytest.mark.realdata
@needs_real_data
def test_no_label_name_survives(real_pair):
    originals, scenarios = real_pair
    survivors: Counter[str] = Counter()
    for orig, sc in zip(originals, scenarios, strict=True):
        tokens = set().union(*(_label_name_tokens(lab) for lab in orig.speakers))
        if not tokens:
            continue
        blob = "\n".join(_strings(sc))
        for tok in sorted(tokens):
            flags = 0 if is_common_word(tok) else re.I
            n = len(re.findall(rf"(?<!\w){re.escape(tok)}(?!\w)", blob, flags))
            if n:
                survivors[f"{sc.id}: {tok}"] += n
    print(f"label names surviving: {sum(survivors.values())} "
          f"({len(survivors)} scenario-name pairs)", survivors.most_common(20))
    assert not survivors


@pytest.mark.realdata
@needs_real_data
def test_print_a_sample_for_hand_checking(real_pair):
    """Not an assertion of precision: prints 30 turns with names replaced and 30 PII masks
    beside the original, for a person to judge (figures in docs/privacy.md)."""
    originals, scenarios = real_pair
    named, masked = [], []
    for orig, sc in zip(originals, scenarios, strict=True):
        for a, b in zip(orig.turns, sc.turns, strict=True):
            if a.text != b.text:
                bucket = masked if re.search(r"\[(?:PHONE|EMAIL|ADDRESS|PLATE|DOB|SSN|"
                                             r"SPELLED)\]", b.text) else named
                bucket.append((a.text[:160], b.text[:160]))
    rng = random.Random(0)
    for title, pairs in (("names", named), ("pii", masked)):
        print(f"\n== {title}: {len(pairs)} turns changed")
        for a, b in rng.sample(pairs, min(30, len(pairs))):
            print(f"  - {a}\n  + {b}")
    assert named and masked
