import os

import pytest

from deescalwild.atomic import atomic_write
from deescalwild.core import (
    CORPUS_SCHEMA,
    Evidence,
    Role,
    Scenario,
    SpeakerRole,
    Turn,
    read_corpus,
    write_corpus,
)
from deescalwild.errors import InputError


def _scenario(i: int = 0) -> Scenario:
    turns = [Turn(0, 1.5, "[Officer]", Role.OFFICER, "Hello", [], 2),
             Turn(1, None, "Sam", Role.CIVILIAN, "Hi", ["empty"], 3)]
    speakers = {"[Officer]": SpeakerRole(Role.OFFICER, Evidence.LABEL, 0.97, "label"),
                "Sam": SpeakerRole(Role.CIVILIAN, Evidence.MODEL, 0.81234, "classifier")}
    return Scenario(f"s{i}", "youtube", "train", "x.csv", turns, speakers, {"k": [1]}, [])


def test_round_trip_and_schema_on_every_line(tmp_path):
    path = tmp_path / "c.jsonl"
    write_corpus(path, [_scenario(0), _scenario(1)])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all(f'"schema":"{CORPUS_SCHEMA}"' in ln for ln in lines)
    back = list(read_corpus(path))
    assert back == [_scenario(0), _scenario(1)]
    assert back[0].speakers["Sam"].confidence == 0.812  # stored rounded


def test_apply_roles_copies_speaker_roles_to_turns():
    sc = _scenario()
    sc.speakers["Sam"] = SpeakerRole(Role.BYSTANDER, Evidence.CONTEXT, 0.9)
    sc.apply_roles()
    assert [t.role for t in sc.turns] == [Role.OFFICER, Role.BYSTANDER]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "expected one JSON object per line"),
        ("[1, 2]", "expected a JSON object"),
        ('{"schema": "other/9", "id": "x"}', "expected schema 'deescalwild.corpus/1'"),
        (f'{{"schema": "{CORPUS_SCHEMA}"}}', "malformed scenario record"),
        (f'{{"schema": "{CORPUS_SCHEMA}", "id": "x", "turns": [{{"index": 0, "speaker": "A", '
         '"text": null}]}', "malformed scenario record"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    write_corpus(path, [_scenario()])
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    with pytest.raises(InputError) as e:
        list(read_corpus(path))
    assert f"c.jsonl:2: {message}" in str(e.value)


def test_atomic_write_leaves_old_file_intact_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(path) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]  # no temporary left behind


def test_atomic_write_uses_normal_permissions(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_write(path) as fh:
        fh.write("x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
