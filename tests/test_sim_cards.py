"""Scenario cards: the shipped ones are valid and cover the common calls; bad cards fail with the
file, the line and the field; ids, overrides and user folders behave as documented."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deescalwild.errors import InputError
from deescalwild.sim.cards import (
    CONTEXT_LIMIT,
    Card,
    CardLibrary,
    builtin_dir,
    load_card,
    validate,
)
from deescalwild.sim.errors import NotFound
from deescalwild.sim.taxonomy import TACTICS

CALL_TYPES = {"traffic-stop", "mental-health-crisis", "intoxicated-person", "trespass",
              "domestic-dispute", "shoplifting", "welfare-check", "noise-complaint"}

GOOD = """\
schema: deescalwild.card/1
id: test-card
title: A test card
call_type: test-call
setting: A quiet car park at noon.
dispatch: Caller reports a person shouting at a parking machine.
persona:
  name: Robin Test
  age: 40
  emotional_state: annoyed
  speaking_style: short sentences
  background: Lost a parking ticket.
  escalated_by:
    tactics: [threat, shouted_command]
    phrases: ["calm down"]
  calmed_by:
    tactics: [empathy]
    phrases: ["ticket"]
agitation_start: 35
learning_objectives:
  - Introduce yourself.
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(text: str, needle: str, last: bool = False) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return lines[-1] if last else lines[0]


def only_error(path: Path) -> InputError:
    problems = validate([path])
    assert len(problems) == 1, [str(p) for p in problems]
    with pytest.raises(InputError) as info:
        load_card(path)
    assert str(info.value) == str(problems[0])
    return problems[0]


# --- the shipped cards ----------------------------------------------------------------------

def test_shipped_cards_validate_with_unique_ids_and_cover_the_common_calls():
    assert validate([builtin_dir()]) == []
    files = sorted(builtin_dir().glob("*.yaml"))
    lib = CardLibrary.load()
    assert len(lib) == len(files) >= 8
    assert lib.ids == sorted(lib.ids)  # iteration in id order
    assert [c.id for c in lib] == lib.ids
    assert {c.call_type for c in lib} >= CALL_TYPES
    assert len({c.persona.name for c in lib}) == len(lib)  # each card its own person
    assert len({c.agitation_start for c in lib}) >= 5  # starting points vary
    for card in lib:
        assert card.path is not None and card.path.parent == builtin_dir()
        assert 1 <= len(card.learning_objectives) <= 4
        assert card.persona.escalated_by.tactics and card.persona.calmed_by.tactics
        assert card.persona.escalated_by.phrases and card.persona.calmed_by.phrases
        assert card.opening


def test_context_holds_the_scene_and_persona_but_not_the_agitation():
    for card in CardLibrary.load():
        text = card.context()
        assert len(text) <= CONTEXT_LIMIT
        assert card.persona.name in text and str(card.persona.age) in text
        assert " ".join(card.dispatch.split()).rstrip(".") in text
        assert " ".join(card.setting.split()).rstrip(".") in text
        for phrase in card.persona.escalated_by.phrases + card.persona.calmed_by.phrases:
            assert f'"{phrase}"' in text
        assert "agitation" not in text.lower()
        for tactic in TACTICS:  # tactics are described in words, not by id
            assert tactic not in text or "_" not in tactic


def test_summary_is_what_the_card_picker_lists():
    card = CardLibrary.load().get("welfare-check-walter")
    s = card.summary()
    assert s["id"] == "welfare-check-walter" and s["agitation_start"] == 30
    assert s["persona"] == {"name": "Walter Brandt", "age": 81,
                            "emotional_state": card.persona.emotional_state}
    assert s["learning_objectives"] == card.learning_objectives
    assert "path" not in card.model_dump() and "background" not in str(s)


def test_get_unknown_id_lists_known_ids():
    lib = CardLibrary.load()
    with pytest.raises(NotFound) as info:
        lib.get("no-such-card")
    assert "'no-such-card'" in str(info.value)
    assert "welfare-check-walter" in str(info.value) and "traffic-stop-night-shift" in str(
        info.value)
    assert info.value.status == 404
    assert "welfare-check-walter" in lib and "no-such-card" not in lib


# --- errors name the file, the line, the field --------------------------------------------

def test_good_card_loads_and_schema_key_is_optional(tmp_path):
    card = load_card(write(tmp_path, "a.yaml", GOOD))
    assert card.id == "test-card" and card.persona.age == 40
    assert card.path == tmp_path / "a.yaml"
    no_schema = load_card(write(tmp_path, "b.yaml", GOOD.replace(
        "schema: deescalwild.card/1\n", "")))
    assert no_schema.model_dump() == card.model_dump()


def test_unknown_trigger_tactic_names_field_line_and_valid_ids(tmp_path):
    text = GOOD.replace("[threat, shouted_command]", "[threat,\n      shouting]")
    err = only_error(write(tmp_path, "c.yaml", text))
    assert err.line == line_of(text, "      shouting]")
    assert "persona.escalated_by.tactics[1]" in err.message and "'shouting'" in err.message
    assert "shouted_command" in err.message and "empathy" in err.message  # lists valid ids


def test_wrong_type_names_field_line_and_expectation(tmp_path):
    text = GOOD.replace("age: 40", "age: forty")
    err = only_error(write(tmp_path, "c.yaml", text))
    assert err.path == str(tmp_path / "c.yaml")
    assert err.line == line_of(text, "age: forty")
    assert err.message == "persona.age: expected an integer 0-120, got 'forty'"
    for bad in ("age: yes", "age: 40.5", "age: 130"):
        text = GOOD.replace("age: 40", bad)
        err = only_error(write(tmp_path, "d.yaml", text))
        assert err.line == line_of(text, bad) and "expected an integer 0-120" in err.message


def test_agitation_out_of_range(tmp_path):
    text = GOOD.replace("agitation_start: 35", "agitation_start: 101")
    err = only_error(write(tmp_path, "c.yaml", text))
    assert err.line == line_of(text, "agitation_start")
    assert err.message == "agitation_start: expected an integer 0-100, got 101"


def test_malformed_yaml_names_the_line(tmp_path):
    text = GOOD.replace("title: A test card", "title: [A test card")
    err = only_error(write(tmp_path, "c.yaml", text))
    assert "not valid YAML" in err.message
    assert line_of(text, "title:") <= err.line <= line_of(text, "title:") + 2


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path):
    text = GOOD.replace("agitation_start: 35", "agitaton_start: 35")
    problems = validate([write(tmp_path, "c.yaml", text)])
    msgs = {p.message.split(":")[0]: p for p in problems}
    assert set(msgs) == {"agitaton_start", "agitation_start"}  # the typo and the missing key
    assert msgs["agitaton_start"].line == line_of(text, "agitaton_start")
    assert "did you mean 'agitation_start'" in msgs["agitaton_start"].message
    text = GOOD.replace("  age: 40", "  age: 40\n  favourite_colour: green")
    err = only_error(write(tmp_path, "d.yaml", text))
    assert err.line == line_of(text, "favourite_colour")
    assert err.message.startswith("persona.favourite_colour: unknown key")
    # `path` is set by the loader, never by the file
    err = only_error(write(tmp_path, "e.yaml", GOOD + "path: /etc/passwd\n"))
    assert err.message.startswith("path: unknown key")


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    text = (GOOD.replace("age: 40", "age: forty").replace("id: test-card", "id: Test Card")
            .replace("  - Introduce yourself.", "  []").replace("learning_objectives:\n",
                                                                 "learning_objectives:"))
    problems = validate([write(tmp_path, "c.yaml", text)])
    fields = sorted(p.message.split(":")[0] for p in problems)
    assert fields == ["id", "learning_objectives", "persona.age"], [str(p) for p in problems]
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert all(p.line is not None for p in problems)


def test_other_bad_values(tmp_path):
    cases = {
        "schema: deescalwild.card/1": ("schema: deescalwild.card/9", "schema: expected"),
        "  background: Lost a parking ticket.": ("  background: '  '",
                                                 "persona.background: expected non-empty"),
        '    phrases: ["ticket"]': ('    phrases: ["calm down"]',
                                   "persona.calmed_by.phrases: 'calm down' is also in"),
        "    tactics: [empathy]": ("    tactics: [threat]",
                                   "persona.calmed_by.tactics: 'threat' is also in"),
    }
    for old, (new, expected) in cases.items():
        text = GOOD.replace(old, new)
        problems = validate([write(tmp_path, "c.yaml", text)])
        assert len(problems) == 1 and problems[0].message.startswith(expected), problems
        assert problems[0].line == line_of(text, new, last=True)
    text = GOOD.replace("persona:\n", "persona: just text\nold_persona:\n")
    problems = validate([write(tmp_path, "c.yaml", text)])
    assert [(p.line, p.message.split(",")[0]) for p in problems] == [
        (line_of(text, "persona: just"), "persona: expected a mapping of keys"),
        (line_of(text, "old_persona"),
         "old_persona: unknown key (did you mean 'persona'?); known: schema")]


def test_duplicate_yaml_key_is_an_error(tmp_path):
    text = GOOD.replace("title: A test card", "title: A test card\ntitle: Another")
    err = only_error(write(tmp_path, "c.yaml", text))
    assert err.line == line_of(text, "title: Another") and "duplicate key" in err.message


def test_empty_file_and_non_mapping(tmp_path):
    assert "empty file" in only_error(write(tmp_path, "a.yaml", "")).message
    assert "got a list" in only_error(write(tmp_path, "b.yaml", "- a\n- b\n")).message


def test_long_scene_text_is_refused_naming_the_longest_field(tmp_path):
    long = "Grew up by the sea. " * 60
    text = GOOD.replace("background: Lost a parking ticket.", f"background: {long}")
    err = only_error(write(tmp_path, "c.yaml", text))
    assert err.line == line_of(text, "background:")
    assert "persona.background" in err.message and f"{CONTEXT_LIMIT:,}" in err.message


def test_blank_optional_keys_take_their_defaults(tmp_path):
    text = GOOD.replace('    phrases: ["ticket"]', "    phrases:") + "opening:\n"
    card = load_card(write(tmp_path, "c.yaml", text))
    assert card.opening == "" and card.persona.calmed_by.phrases == []


# --- folders, ids and overrides --------------------------------------------------------------

def test_user_folder_adds_cards_and_may_override_a_builtin(tmp_path):
    user = tmp_path / "mine"
    write(user, "extra.yaml", GOOD)
    override = GOOD.replace("id: test-card", "id: welfare-check-walter").replace(
        "Robin Test", "Robin Override")
    write(user / "sub", "override.yml", override)
    write(user / ".hidden", "ignored.yaml", "not: a card")
    builtin = CardLibrary.load()
    lib = CardLibrary.load([user])
    assert len(lib) == len(builtin) + 1
    assert lib.get("test-card").path == user / "extra.yaml"
    assert lib.get("welfare-check-walter").persona.name == "Robin Override"
    assert lib.overrides == {"welfare-check-walter": builtin_dir() / "welfare-check-walter.yaml"}
    assert builtin.overrides == {}
    only_user = CardLibrary.load([user], builtin=False)
    assert only_user.ids == ["test-card", "welfare-check-walter"]
    assert CardLibrary.load([user / "extra.yaml"], builtin=False).ids == ["test-card"]


def test_duplicate_id_across_user_files_names_both(tmp_path):
    a = write(tmp_path / "one", "a.yaml", GOOD)
    b = write(tmp_path / "two", "b.yaml", "# a copy\n" + GOOD)
    problems = validate([tmp_path / "one", tmp_path / "two"])
    assert len(problems) == 1
    assert problems[0].path == str(b) and problems[0].line == line_of(GOOD, "id:") + 1
    assert "duplicate card id 'test-card'" in problems[0].message
    assert f"{a}:{line_of(GOOD, 'id:')}" in problems[0].message
    with pytest.raises(InputError, match="duplicate card id"):
        CardLibrary.load([tmp_path / "one", tmp_path / "two"])
    # the same folder twice is not a duplicate
    assert CardLibrary.load([a.parent, a.parent], builtin=False).ids == ["test-card"]


def test_load_raises_first_problem_and_counts_the_rest(tmp_path):
    write(tmp_path, "a.yaml", GOOD.replace("age: 40", "age: x"))
    write(tmp_path, "b.yaml", GOOD.replace("id: test-card", "id: other").replace(
        "agitation_start: 35", "agitation_start: -1"))
    with pytest.raises(InputError) as info:
        CardLibrary.load([tmp_path])
    assert info.value.path == str(tmp_path / "a.yaml") and "persona.age" in info.value.message
    assert "and 1 more problem" in info.value.message


def test_missing_or_empty_folders_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    problems = validate([tmp_path / "nope", tmp_path / "empty"])
    assert [Path(p.path).name for p in problems] == ["nope", "empty"]
    assert "no such file or folder" in problems[0].message
    assert "no card files" in problems[1].message
    with pytest.raises(InputError, match="no such file"):
        CardLibrary.load([tmp_path / "nope"])


def test_persona_names_for_name_use():
    card = CardLibrary.load().get("welfare-check-walter")
    assert card.persona.names[:3] == ["Walter Brandt", "Walter", "Brandt"]
    assert "Mr. Brandt" in card.persona.names
    assert isinstance(card, Card)
