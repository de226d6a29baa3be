import pytest

from deescalwild.core import Role
from deescalwild.corpus.roles.lexicon import DECISIVE, classify_label

O, C, B, D, N, U = (Role.OFFICER, Role.CIVILIAN, Role.BYSTANDER, Role.DISPATCHER, Role.NARRATOR,
                    Role.UNKNOWN)


@pytest.mark.parametrize(
    ("label", "role"),
    [
        ("[Police Officer]", O), ("[Officer]", O), ("Officer", O), ("[Deputy]", O),
        ("Deputy Wills", O), ("Officer 2", O), ("Sergeant Stage", O), ("Detective John", O),
        ("Officer ?", O), ("[Trooper]", O), ("[Law Enforcement Officer]", O),
        ("[Interrogator/Police Officer]", O), ("[K9 Officer]", O), ("[School Resource Officer]", O),
        ("[Police officer giving commands to suspect]", O), ("[Air Unit]", O),
        ("[Sheriff's Office Representative]", O), ("Calhoun County Sheriff's Office Deputy", O),
        ("[Officer's Partner]", O), ("[Second police officer]", O),
        ("[Suspect]", C), ("Suspect", C), ("[Driver]", C), ("[Detainee]", C), ("[Civilian]", C),
        ("[Caller, mother of the suspect]", C), ("[911 Caller]", C), ("[Victim]", C),
        ("[Woman in orange shirt, arrested]", C), ("[Person being questioned by police]", C),
        ("[Robber]", C),
        ("[Bystander]", B), ("[Witness]", B), ("[Eyewitness]", B), ("[Neighbor]", B),
        ("[Bystander shouting commands]", B), ("[Tow Truck Driver]", B),
        ("[Asset Protection Officer]", B), ("[Loss Prevention Officer]", B),
        ("[Dispatcher]", D), ("Dispatch", D), ("[Police Dispatcher]", D), ("[911 Operator]", D),
        ("[Emergency services dispatcher]", D), ("[Dispatch Officer]", D),
        ("[Narrator]", N), ("Narrator", N), ("[News Anchor]", N), ("[Narrator/Commentator]", N),
        ("[Sponsor]", N), ("Midwest Crime Host", N),
        ("[Automated voice]", U), ("[GPS voice]", U), ("[Airport announcement]", U),
        ("[Background music]", U),
    ],
)
def test_role_words_settle_the_role(label, role):
    v = classify_label(label)
    assert v.role is role, v
    assert v.confidence >= DECISIVE and v.decisive


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("John", "name"), ("Sam Brammer", "name"), ("Barrett Robbins", "name"), ("Zoë", "name"),
        ("[Voice 2]", "generic"), ("[Man]", "generic"), ("[Unidentified speaker]", "generic"),
        ("[Speaker 1]", "generic"), ("Unknown", "generic"), ("Male 2", "generic"), ("", "generic"),
    ],
)
def test_names_and_generic_labels_get_no_role_from_the_label(label, kind):
    v = classify_label(label)
    assert (v.kind, v.decisive) == (kind, False)
    assert v.role is None


@pytest.mark.parametrize(
    ("label", "role"),
    [
        ("[Mother]", B), ("[Friend of the suspect]", B), ("[Amber Archuleta's Brother]", B),
        ("[Employee]", B), ("[Homeowner]", C), ("[Interviewer]", O),
        ("[Bystander or another officer]", B), ("Mr. Wilkins", C),
        ("[Mother of the children, being interviewed by police]", C),
    ],
)
def test_weak_labels_are_only_a_prior(label, role):
    v = classify_label(label)
    assert v.role is role
    assert not v.decisive  # the conversation can overturn these
