"""The export stage: the DeEscalWild CSV byte for byte, its JSON twin, and both read back by
`corpus import` with the roles the labels were made from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deescalwild.acquire.export import format_timestamp, run_export, voice_labels
from deescalwild.acquire.formats import (
    TRANSCRIPT_SCHEMA,
    Segment,
    Transcript,
    Voice,
    Word,
    write_segments,
)
from deescalwild.acquire.tasks import Settings, StageError, StageTask, VideoRef
from deescalwild.core import Role
from deescalwild.corpus.csv_transcripts import read_transcript
from deescalwild.corpus.importer import import_transcripts
from deescalwild.corpus.roles.lexicon import classify_label
from deescalwild.corpus.timestamps import parse_timestamp

VID = "youtube_abc123"
NAME = "Quist"  # known to the pipeline only as a private fact; must reach no exported file
ACCEPTED = {"accepted": True, "reason": "police 3, escalation 4", "cached": False,
            "scores": {"police": 3, "interaction": 2, "escalation": 4, "deescalation": 1,
                       "exclusions": 0}}


def _video() -> VideoRef:
    return VideoRef(VID, "https://www.youtube.com/watch?v=abc123", "youtube", {
        "title": "Traffic stop on Main Street", "uploader": "Bodycam Archive",
        "channel": "bodycamarchive", "upload_date": "20250101", "duration_s": 4000.0,
        "description": "A long description that the export leaves out.",
        "private": {"names": {"B": f"Jonathan {NAME}"}},
    })


def _diarized() -> Transcript:
    voices = {
        "A": Voice("A", "officer", "label", 0.98, "label says 'officer'", "deep male voice"),
        "B": Voice("B", "civilian", "context", 0.9, "answers the officer", "driver, calm"),
        "C": Voice("C", "officer", "label", 0.97, "label says 'deputy'", "second officer"),
        "D": Voice("D", "narrator", "label", 0.95, "addresses the audience", "studio voice"),
        "E": Voice("E", "unknown", "model", 0.4, "", "faint"),
        "F": Voice("F", "bystander", "context", 0.8, "comments from the side", "woman"),
        "G": Voice("G", "dispatcher", "label", 0.97, "radio", "radio voice"),
        "H": Voice("H", "civilian", "label", 0.9, "", "never speaks"),
    }
    words = [Word(0.0, 0.4, " Sir,", 0.91), Word(0.45, 0.7, " step", 0.88)]
    segments = [
        Segment(0.0, 2.0, ' Sir, step "out" of the car.', "A", words),
        Segment(2.5, 3.1, "Why?", "B"),
        Segment(3.9, 5.0, "Hands where I can see them.", "C"),
        Segment(6.0, 7.0, "I said step out.", "A"),
        Segment(8.0, 9.0, "   ", "B"),  # nothing said: not exported
        Segment(10.2, 12.0, "This happened in March.", "D"),
        Segment(13.0, 13.5, "mumbling", "E"),
        Segment(14.0, 15.0, "They're arresting him!", "F"),
        Segment(16.0, 17.0, "Unit 4, copy.", "G"),
        Segment(18.0, 19.0, "Okay, okay.", None),
        Segment(3725.4, 3727.0, "Still here an hour later.", "B"),
    ]
    return Transcript("gemini", segments, voices, "en", 3800.0,
                      {"model": "gemini-2.5-flash", "whisper_model": "tiny",
                       "private": {"names": {"B": f"Jonathan {NAME}"}}})


def _task(tmp_path: Path, inputs: dict[str, str] | None = None,
          relevance: dict | None = ACCEPTED) -> StageTask:
    settings = Settings(workdir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"))
    if inputs is None:
        src = write_segments(settings.path("diarize", f"{VID}.json"), _diarized())
        inputs = {"diarize.json": str(src)}
    details = {"relevance": relevance} if relevance is not None else {}
    return StageTask(_video(), "export", settings, inputs, details)


EXPECTED_CSV = (
    "start_time,speaker_label,transcript\r\n"
    '00:00,[Police Officer 1],"Sir, step ""out"" of the car."\r\n'
    "00:02,[Civilian 1],Why?\r\n"
    "00:03,[Police Officer 2],Hands where I can see them.\r\n"
    "00:06,[Police Officer 1],I said step out.\r\n"
    "00:10,[Narrator],This happened in March.\r\n"
    "00:13,[Voice 1],mumbling\r\n"
    "00:14,[Bystander 1],They're arresting him!\r\n"
    "00:16,[Dispatcher],\"Unit 4, copy.\"\r\n"
    '00:18,[Unidentified speaker],"Okay, okay."\r\n'
    "1:02:05,[Civilian 1],Still here an hour later.\r\n"
)


def test_csv_is_the_published_format_byte_for_byte(tmp_path):
    outcome = run_export(_task(tmp_path))
    assert outcome.status == "done"
    csv_path = Path(outcome.outputs["csv"])
    assert csv_path == tmp_path / "out" / f"{VID}.csv"
    assert csv_path.read_bytes() == EXPECTED_CSV.encode("utf-8")  # no BOM, CRLF, minimal quotes
    assert outcome.detail["rows"] == 10 and outcome.detail["voices"] == 7
    assert outcome.detail["roles"] == {"officer": 2, "civilian": 1, "narrator": 1,
                                       "unknown": 1, "bystander": 1, "dispatcher": 1}
    assert outcome.detail["empty_segments"] == 1
    assert outcome.detail["unattributed_segments"] == 1
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind


def test_csv_reads_back_with_the_same_texts_and_starts(tmp_path):
    outcome = run_export(_task(tmp_path))
    result = read_transcript(outcome.outputs["csv"])
    assert result.problems == []
    kept = [s for s in _diarized().segments if s.text.strip()]
    assert [t.text for t in result.scenario.turns] == [s.text.strip() for s in kept]
    assert [t.start for t in result.scenario.turns] == [float(int(s.start)) for s in kept]


def test_json_carries_words_voices_video_relevance_and_provenance(tmp_path):
    outcome = run_export(_task(tmp_path))
    data = json.loads(Path(outcome.outputs["json"]).read_text("utf-8"))
    assert data["schema"] == TRANSCRIPT_SCHEMA and data["source"] == "gemini"
    assert data["segments"][0]["words"][1] == {"start": 0.45, "end": 0.7, "text": " step",
                                               "p": 0.88}
    assert data["segments"][0]["text"] == 'Sir, step "out" of the car.'  # stripped, as in CSV
    assert len(data["segments"]) == 10 and data["segments"][8].get("voice") is None
    assert {v: d["label"] for v, d in data["voices"].items()} == {
        "A": "[Police Officer 1]", "B": "[Civilian 1]", "C": "[Police Officer 2]",
        "D": "[Narrator]", "E": "[Voice 1]", "F": "[Bystander 1]", "G": "[Dispatcher]"}
    assert data["voices"]["A"]["role"] == "officer"  # "H" never speaks: left out
    assert data["video"] == {"id": VID, "platform": "youtube",
                             "url": "https://www.youtube.com/watch?v=abc123",
                             "title": "Traffic stop on Main Street",
                             "uploader": "Bodycam Archive", "channel": "bodycamarchive",
                             "upload_date": "20250101", "duration_s": 4000.0}
    assert data["relevance"] == {k: ACCEPTED[k] for k in ("accepted", "reason", "scores")}
    prov = data["provenance"]
    assert prov["diarizer"] == "gemini"
    assert prov["models"] == {"model": "gemini-2.5-flash", "whisper_model": "tiny"}
    assert prov["input"]["name"] == "diarize.json" and len(prov["input"]["sha256"]) == 64


def test_no_name_reaches_either_file(tmp_path):
    outcome = run_export(_task(tmp_path))
    for name in ("csv", "json"):
        text = Path(outcome.outputs[name]).read_text("utf-8")
        assert NAME not in text and "private" not in text
    assert "long description" not in Path(outcome.outputs["json"]).read_text("utf-8")


@pytest.mark.parametrize(("roles", "expected"), [
    (["officer"], ["[Police Officer 1]"]),
    (["officer", "officer", "civilian"], ["[Police Officer 1]", "[Police Officer 2]",
                                         "[Civilian 1]"]),
    (["civilian", "civilian"], ["[Civilian 1]", "[Civilian 2]"]),
    (["bystander"], ["[Bystander 1]"]),
    (["narrator"], ["[Narrator]"]),
    (["narrator", "narrator"], ["[Narrator 1]", "[Narrator 2]"]),
    (["dispatcher"], ["[Dispatcher]"]),
    (["dispatcher", "dispatcher"], ["[Dispatcher 1]", "[Dispatcher 2]"]),
    (["unknown", "unknown"], ["[Voice 1]", "[Voice 2]"]),
    (["not-a-role"], ["[Voice 1]"]),
])
def test_each_label_resolves_to_the_role_it_was_made_from(roles, expected):
    voices = {f"v{i}": Voice(f"v{i}", r) for i, r in enumerate(roles)}
    labels = voice_labels(voices, list(voices))
    assert list(labels.values()) == expected
    for vid, label in labels.items():
        verdict = classify_label(label)
        if voices[vid].role in ("unknown", "not-a-role"):
            assert verdict.role is None  # a generic label: the label says nothing
        else:
            assert verdict.decisive and verdict.role == Role(voices[vid].role), label


def test_corpus_import_reads_the_export_with_roles_and_metadata(tmp_path):
    outcome = run_export(_task(tmp_path))
    (sc,), summary = import_transcripts([tmp_path / "out"])
    assert summary.files == 1 and summary.companions == 1 and summary.skipped_files == []
    assert sc.id == VID and sc.platform == "youtube" and sc.source == outcome.outputs["json"]
    assert sc.meta["title"] == "Traffic stop on Main Street" and sc.meta["acquired"] is True
    assert sc.meta["duration_s"] == 4000.0 and sc.meta["diarizer"] == "gemini"
    roles = {label: (r.role.value, r.evidence.value) for label, r in sc.speakers.items()}
    assert {k: v for k, v in roles.items() if v[1] == "label"} == {
        "[Police Officer 1]": ("officer", "label"), "[Civilian 1]": ("civilian", "label"),
        "[Police Officer 2]": ("officer", "label"), "[Narrator]": ("narrator", "label"),
        "[Bystander 1]": ("bystander", "label"), "[Dispatcher]": ("dispatcher", "label")}
    assert roles["[Voice 1]"][1] != "label" and roles["[Unidentified speaker]"][1] != "label"
    kept = [s for s in _diarized().segments if s.text.strip()]
    assert [t.start for t in sc.turns] == [s.start for s in kept]  # exact, from the JSON
    assert sc.turns[-1].start == 3725.4 and sc.turns[0].role == Role.OFFICER


def test_hour_long_timestamps_round_trip():
    for seconds, text in [(0.0, "00:00"), (59.99, "00:59"), (754.2, "12:34"),
                          (3599.9, "59:59"), (3600.0, "1:00:00"), (3723.9, "1:02:03"),
                          (36000.0, "10:00:00")]:
        assert format_timestamp(seconds) == text
        assert parse_timestamp(text) == float(int(seconds))
    assert format_timestamp(None) == "" and format_timestamp(float("nan")) == ""


def test_rejected_video_is_skipped_and_an_earlier_export_withdrawn(tmp_path):
    run_export(_task(tmp_path))
    assert len(list((tmp_path / "out").iterdir())) == 2
    outcome = run_export(_task(tmp_path, relevance={"accepted": False,
                                                    "reason": "exclusion: training_range"}))
    assert outcome.status == "skipped" and outcome.error == "rejected: exclusion: training_range"
    assert outcome.outputs == {} and outcome.detail == {"withdrawn": True}
    assert list((tmp_path / "out").iterdir()) == []
    again = run_export(_task(tmp_path / "fresh", relevance={"accepted": False, "reason": "x"}))
    assert again.status == "skipped" and not (tmp_path / "fresh" / "out").exists()


def test_a_csv_of_someone_else_is_not_withdrawn(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{VID}.csv").write_text("start_time,speaker_label,transcript\n")
    run_export(_task(tmp_path, relevance={"accepted": False, "reason": "x"}))
    assert (out / f"{VID}.csv").exists()


def test_missing_inputs_are_failures_with_their_reason(tmp_path):
    with pytest.raises(StageError, match="relevance stage must run"):
        run_export(_task(tmp_path, relevance=None))
    with pytest.raises(StageError, match="no diarized transcript"):
        run_export(_task(tmp_path, inputs={}))
    undiarized = write_segments(tmp_path / "t.json", Transcript("whisper", [Segment(0, 1, "hi")]))
    with pytest.raises(StageError, match="no voices"):
        run_export(_task(tmp_path, inputs={"diarize.json": str(undiarized)}))
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other/1"}')
    with pytest.raises(StageError, match=r"bad\.json.*expected \"schema\""):
        run_export(_task(tmp_path, inputs={"diarize.json": str(bad)}))
    assert not (tmp_path / "out").exists()


ATTACHED = (
    "start_time,speaker_label,transcript\r\n"
    "00:00,[Police Officer],\"Good evening, license please.\"\r\n"
    "00:04,Marcus,Here you go.\r\n"
    "00:09,[Police Officer],Wait here.\r\n"
    "00:12,Marcus,\r\n"
    "00:15,[Dispatcher],Copy that.\r\n"
)


def test_attached_csv_is_copied_as_it_is_and_its_json_built_from_it(tmp_path):
    src = tmp_path / "lists" / f"{VID}.csv"
    src.parent.mkdir()
    src.write_bytes(ATTACHED.encode())
    outcome = run_export(_task(tmp_path, inputs={"diarize.csv": str(src)}))
    assert Path(outcome.outputs["csv"]).read_bytes() == src.read_bytes()
    data = json.loads(Path(outcome.outputs["json"]).read_text("utf-8"))
    assert data["source"] == "attached" and data["provenance"]["input"]["name"] == "diarize.csv"
    roles = {v["label"]: v["role"] for v in data["voices"].values()}
    assert list(roles) == ["[Police Officer]", "Marcus", "[Dispatcher]"]  # labels as published
    assert (roles["[Police Officer]"], roles["[Dispatcher]"]) == ("officer", "dispatcher")
    assert [s["text"] for s in data["segments"]] == [
        "Good evening, license please.", "Here you go.", "Wait here.", "Copy that."]
    assert outcome.detail["rows"] == 5 and outcome.detail["empty_segments"] == 1

    (from_json,), summary = import_transcripts([tmp_path / "out"])
    (from_csv,), _ = import_transcripts([src])
    assert summary.companions == 1
    nonempty = [t for t in from_csv.turns if t.text.strip()]
    assert [(t.start, t.speaker, t.text) for t in from_json.turns] == [
        (t.start, t.speaker, t.text) for t in nonempty]
    assert {k: v.role for k, v in from_json.speakers.items()} == {
        k: v.role for k, v in from_csv.speakers.items()}


def test_an_unreadable_attached_csv_fails(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("who,what\nA,B\n")
    with pytest.raises(StageError, match=r"not a DeEscalWild transcript.*expected header"):
        run_export(_task(tmp_path, inputs={"diarize.csv": str(src)}))
