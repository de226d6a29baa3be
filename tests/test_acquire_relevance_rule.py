"""The relevance taxonomy and the selection rule: the issue's 30 features in 5 groups, a rule
language that executes nothing, and reasons that name what failed with its values."""

from __future__ import annotations

import itertools
import random

import pytest

from deescalwild.acquire.relevance import judge as judge_mod
from deescalwild.acquire.relevance.rule import (
    DEFAULT_RULE,
    RuleError,
    compile_rule,
    evaluate,
    failed_parts,
)
from deescalwild.acquire.relevance.taxonomy import (
    BY_GROUP,
    FEATURE_NAMES,
    FEATURES,
    GROUPS,
    exclusion_flags,
    group_scores,
)
from deescalwild.acquire.tasks import DEFAULT_RULE as TASKS_RULE

# the issue's list, verbatim, group by group
ISSUE = {
    "police": ["police_identified_by_role", "police_commands_present", "id_request_event",
               "legal_procedure_language", "police_explaining_actions",
               "civilian_questioning_police"],
    "interaction": ["conversation_present", "verbal_disagreement_detected",
                    "compliance_discussion", "instruction_clarification_dialogue",
                    "negotiation_attempts", "conflict_resolution_attempt"],
    "escalation": ["raised_threat_language", "noncompliance_resistance_language",
                   "accusatory_language", "police_warning_language",
                   "emotional_intensity_spike", "crowd_escalation_factors",
                   "use_of_force_transition_signals"],
    "deescalation": ["calming_language_used_by_officer", "empathetic_statements",
                     "clear_explanations_given", "tone_softening_cues",
                     "conflict_deescalation_success", "agreement_reached"],
    "exclusions": ["no_police_presence", "no_conversation_detected",
                   "advertisement_content_detected", "training_range_context",
                   "non_relevant_crime_only_context"],
}


def feats(*on: str) -> dict[str, bool]:
    f = dict.fromkeys(FEATURE_NAMES, False)
    for n in on:
        assert n in f, n
        f[n] = True
    return f


def with_counts(police=0, interaction=0, escalation=0, deescalation=0, exclusions=0):
    counts = {"police": police, "interaction": interaction, "escalation": escalation,
              "deescalation": deescalation, "exclusions": exclusions}
    return feats(*(n for g, k in counts.items() for n in BY_GROUP[g][:k]))


# --- taxonomy ------------------------------------------------------------------------------
def test_taxonomy_is_the_issues_30_features_in_5_groups():
    assert {g: list(v) for g, v in BY_GROUP.items()} == ISSUE
    assert list(GROUPS) == ["police", "interaction", "escalation", "deescalation", "exclusions"]
    assert [len(v) for v in BY_GROUP.values()] == [6, 6, 7, 6, 5]
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 30
    assert not set(GROUPS) & set(FEATURE_NAMES)  # a rule variable is never ambiguous


def test_every_feature_has_a_one_sentence_definition():
    for f in FEATURES:
        d = f.definition
        assert 40 <= len(d) <= 260, f.name
        assert d[0].isupper() and d.endswith((".", '."', '".')), f.name
        assert f.name not in d  # says what it means, not its name again
    training = next(f for f in FEATURES if f.name == "training_range_context")
    assert "training" in training.definition and "real encounter" in training.definition


def test_group_scores_and_flags():
    f = feats("police_commands_present", "id_request_event", "training_range_context",
              "no_police_presence", "agreement_reached")
    assert group_scores(f) == {"police": 2, "interaction": 0, "escalation": 0,
                               "deescalation": 1, "exclusions": 2}
    assert exclusion_flags(f) == ["no_police_presence", "training_range_context"]


def test_prompt_version_covers_definitions_and_template(monkeypatch):
    v = judge_mod.PROMPT_VERSION
    assert v.startswith("v1-") and v == judge_mod.prompt_version()
    prompt = judge_mod.judge_prompt("{TEXT}")
    for f in FEATURES:  # every definition is in what the version hashes
        assert f"- {f.name}: {f.definition}" in prompt
    # one definition reworded -> another version
    from deescalwild.acquire.relevance import taxonomy

    f0 = taxonomy.FEATURES[0]
    changed = (taxonomy.Feature(f0.name, f0.group, f0.definition + " Reworded."),
               *taxonomy.FEATURES[1:])
    monkeypatch.setattr(judge_mod, "FEATURES", changed)
    assert judge_mod.prompt_version() != v
    monkeypatch.undo()
    assert judge_mod.prompt_version("another system prompt") != v


# --- the rule: the paper's default ---------------------------------------------------------
def test_default_rule_is_the_contracts_and_the_papers():
    assert DEFAULT_RULE == TASKS_RULE
    assert evaluate(DEFAULT_RULE, with_counts(police=2, escalation=3))[0]
    assert evaluate(DEFAULT_RULE, with_counts(police=2, deescalation=3))[0]
    assert not evaluate(DEFAULT_RULE, with_counts(police=1, escalation=7))[0]
    assert not evaluate(DEFAULT_RULE, with_counts(police=6, escalation=2, deescalation=2))[0]
    assert not evaluate(DEFAULT_RULE, with_counts(police=6, escalation=7, exclusions=1))[0]


def test_default_rule_matches_the_papers_formula_on_random_videos():
    rng = random.Random(7)
    for _ in range(500):
        f = {n: rng.random() < 0.4 for n in FEATURE_NAMES}
        s = group_scores(f)
        paper = s["exclusions"] == 0 and s["police"] >= 2 and (
            s["escalation"] >= 3 or s["deescalation"] >= 3)
        assert evaluate(DEFAULT_RULE, f)[0] is paper


def test_rejection_reason_names_every_failing_part_with_values():
    f = feats("training_range_context", "police_commands_present", "raised_threat_language",
              "accusatory_language", "empathetic_statements")
    ok, reason = evaluate(DEFAULT_RULE, f)
    assert not ok
    assert reason == ("exclusions == 0 failed: training_range_context; "
                      "police >= 2 failed: police = 1; "
                      "escalation >= 3 or deescalation >= 3 failed: escalation = 2, "
                      "deescalation = 1")
    assert failed_parts(reason) == ["exclusions == 0", "police >= 2",
                                    "escalation >= 3 or deescalation >= 3"]


def test_rejection_names_only_the_parts_that_failed():
    ok, reason = evaluate(DEFAULT_RULE, with_counts(police=1, escalation=4))
    assert not ok and reason == "police >= 2 failed: police = 1"
    ok, reason = evaluate(DEFAULT_RULE, with_counts(police=3, exclusions=2))
    assert reason.startswith("exclusions == 0 failed: no_police_presence, "
                             "no_conversation_detected; escalation >= 3 or")


def test_acceptance_reason_names_the_parts_that_held():
    ok, reason = evaluate(DEFAULT_RULE, with_counts(police=3, escalation=1, deescalation=4))
    assert ok
    assert reason == ("exclusions == 0 held: exclusions = 0; police >= 2 held: police = 3; "
                      "deescalation >= 3 held: deescalation = 4")
    assert failed_parts(reason) == []


# --- the rule language ----------------------------------------------------------------------
@pytest.mark.parametrize("rule, counts, expected", [
    ("police >= 2 or escalation >= 3 and deescalation >= 3", dict(police=2), True),  # and binds
    ("(police >= 2 or escalation >= 3) and deescalation >= 3", dict(police=2), False),
    ("not police >= 2", dict(police=1), True),
    ("not (police >= 2 or escalation >= 1)", dict(police=1), True),
    ("not not police == 3", dict(police=3), True),
    ("1 <= police <= 3", dict(police=4), False),  # chained comparison, as in Python
    ("1 <= police <= 3", dict(police=2), True),
    ("3 > police", dict(police=2), True),
    ("police != 2", dict(police=2), False),
    ("interaction == 0.0", dict(), True),
    ("police_identified_by_role and not training_range_context", dict(police=1), True),
    ("police_identified_by_role == 1", dict(), False),
    ("police >= 1 and 0", dict(police=1), None),  # a bare number is not a condition
])
def test_rule_semantics(rule, counts, expected):
    if expected is None:
        with pytest.raises(RuleError):
            compile_rule(rule)
        return
    assert evaluate(rule, with_counts(**counts))[0] is expected


def test_rule_agrees_with_python_on_all_small_combinations():
    """Short-circuit `and`/`or` and `not` give Python's truth value on every combination."""
    rule = "not (police >= 2 and escalation >= 3) or deescalation == 1 and exclusions < 1"
    for p, e, d, x in itertools.product(range(4), range(5), range(3), range(3)):
        want = not (p >= 2 and e >= 3) or (d == 1 and x < 1)  # the rule relies on precedence
        got = evaluate(rule, with_counts(police=p, escalation=e, deescalation=d,
                                         exclusions=x))[0]
        assert got is want, (p, e, d, x)


@pytest.mark.parametrize("rule, column, fragment", [
    ("__import__('os')", 1, "a function call is not allowed"),
    ("__import__('os').system('true') or police >= 2", 1, "not allowed"),
    ("police.real >= 2", 1, "attribute access is not allowed"),
    ("police >= 2 and escalation.bit_length() > 0", 17, "not allowed"),
    ("police[0] >= 2", 1, "a subscript is not allowed"),
    ("police + escalation >= 4", 1, "arithmetic ('+') is not allowed"),
    ("police >= 'a'", 11, "the constant 'a' is not allowed"),
    ("police in (1, 2)", 1, "operator 'in' is not allowed"),
    ("police is 2", 1, "operator 'is' is not allowed"),
    ("(lambda: 1)() == 1", 1, "not allowed"),
    ("[x for x in ()] == 1", 1, "a comprehension is not allowed"),
    ("police", 1, "'police' is a count: compare it, e.g. police >= 2"),
    ("True", 1, "the constant True is not allowed"),
    ("exclusions == 0 and polise >= 2", 21, "unknown name 'polise' (did you mean 'police'?)"),
    ("exclusions == 0 and deescalaton >= 3", 21, "did you mean 'deescalation'?"),
    ("Police >= 2", 1, "did you mean 'police'?"),
    ("training_range_contxt", 1, "did you mean 'training_range_context'?"),
    ("zzz >= 1", 1, "unknown name 'zzz' (allowed:"),
    ("police = 2", 8, "(use == to compare)"),
    ("police >= 2 && escalation >= 3", 14, "(write and / or)"),
    ("police >= 2 and", 16, "the rule ends too early"),
])
def test_rule_errors_are_one_line_with_the_column(rule, column, fragment):
    with pytest.raises(RuleError) as err:
        compile_rule(rule)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"rule {rule!r}: column {column}: "), msg
    assert fragment in msg


def test_rule_never_executes_anything(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.chdir(tmp_path)
    for rule in (f"__import__('pathlib').Path('{marker}').touch() or 1",
                 "open('pwned', 'w') == 1"):
        with pytest.raises(RuleError):
            evaluate(rule, feats())
    assert not marker.exists() and not (tmp_path / "pwned").exists()


def test_rule_edge_cases():
    with pytest.raises(RuleError, match="rule is empty"):
        compile_rule("   ")
    with pytest.raises(RuleError, match="line 2, column 2: unknown name 'polce'"):
        compile_rule("(exclusions == 0 and\n polce > 1)")
    assert compile_rule("  police >= 2 ").text == "police >= 2"
    with pytest.raises(ValueError, match="features missing: agreement_reached"):
        evaluate("police >= 1", {n: 1 for n in FEATURE_NAMES if n != "agreement_reached"})
    # 0/1 integers work like booleans
    assert evaluate("police == 6", {n: 1 for n in FEATURE_NAMES})[0]
