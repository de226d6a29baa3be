"""Reading `deescalwild.transcript/1` JSON: problems that name the file and the segment, and how
`corpus import` finds these files beside their CSVs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deescalwild.cli import main
from deescalwild.core import Role
from deescalwild.corpus.importer import discover, import_transcripts
from deescalwild.corpus.json_transcripts import (
    SNIFF_BYTES,
    UNATTRIBUTED,
    is_transcript_json,
    read_json_transcript,
)
from deescalwild.errors import InputError

CSV = ("start_time,speaker_label,transcript\r\n00:01,[Police Officer 1],Step out.\r\n"
       "00:02,[Civilian 1],Why?\r\n")


def _doc(**changes) -> dict:
    doc = {
        "schema": "deescalwild.transcript/1", "source": "local", "language": "en",
        "duration_s": 30.0, "meta": {},
        "voices": {"a": {"id": "a", "role": "officer", "label": "[Police Officer 1]"},
                   "b": {"id": "b", "role": "civilian", "label": "[Civilian 1]"}},
        "segments": [{"start": 1.25, "end": 2.0, "text": "Step out.", "voice": "a",
                      "words": [{"start": 1.25, "end": 1.6, "text": "Step"}]},
                     {"start": 2.5, "end": 3.0, "text": "Why?", "voice": "b"}],
        "video": {"id": "tiktok_77", "platform": "tiktok", "url": "https://t/77",
                  "title": "Stop", "uploader": "u", "channel": None, "upload_date": "20240102",
                  "duration_s": 30.0},
        "relevance": {"accepted": True, "reason": "ok", "scores": {"police": 2}},
    }
    doc.update(changes)
    return doc


def _write(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) if not isinstance(doc, str) else doc)
    return path


def test_a_transcript_json_becomes_a_scenario(tmp_path):
    f = _write(tmp_path / "test" / "tiktok_77.json", _doc())
    result = read_json_transcript(f)
    sc = result.scenario
    assert result.problems == []
    assert (sc.id, sc.platform, sc.split, sc.source) == ("tiktok_77", "tiktok", "test", str(f))
    assert [(t.index, t.start, t.speaker, t.text) for t in sc.turns] == [
        (0, 1.25, "[Police Officer 1]", "Step out."), (1, 2.5, "[Civilian 1]", "Why?")]
    assert sc.meta["title"] == "Stop" and sc.meta["url"] == "https://t/77"
    assert "channel" not in sc.meta  # null fields are not copied
    assert sc.meta["acquired"] is True and sc.meta["rows"] == 2 and len(sc.meta["sha256"]) == 64
    assert sc.meta["relevance"] == {"accepted": True, "reason": "ok", "scores": {"police": 2}}


def test_platform_falls_back_to_the_file_name(tmp_path):
    doc = _doc()
    del doc["video"]
    sc = read_json_transcript(_write(tmp_path / "youtube_9.json", doc)).scenario
    assert sc.platform == "youtube" and "title" not in sc.meta


@pytest.mark.parametrize(("content", "expected"), [
    (_doc(schema="deescalwild.segments/1"),
     "schema: expected \"deescalwild.transcript/1\", found 'deescalwild.segments/1'"),
    ("{not json", "not JSON"),
    ([1, 2], "expected a JSON object"),
    (_doc(segments={"0": {}}), "segments: expected a list"),
    (_doc(voices=["a"]), "voices: expected an object"),
    (_doc(segments=[{"start": 0, "text": " "}]), "no segment with text"),
])
def test_whole_file_problems_skip_the_file_and_name_it(tmp_path, content, expected):
    f = _write(tmp_path / "x.json", content)
    result = read_json_transcript(f)
    assert result.scenario is None
    file_problems = [p for p in result.problems if p.kind == "file"]
    assert len(file_problems) == 1 and file_problems[0].path == str(f)
    assert expected in file_problems[0].message


def test_segment_problems_name_the_file_and_the_segment(tmp_path):
    segments = [{"start": 0.0, "text": "One.", "voice": "a"},
                {"start": 1.0, "voice": "b"},  # no text
                {"start": "1:05", "text": "Three.", "voice": "b"},  # a string, not seconds
                {"start": 4.0, "text": "Four.", "voice": "zz"},  # not a voice
                "five",
                {"start": 6.0, "text": "Six.", "voice": None}]
    f = _write(tmp_path / "x.json", _doc(segments=segments))
    result = read_json_transcript(f)
    sc = result.scenario
    assert [t.text for t in sc.turns] == ["One.", "Three.", "Four.", "Six."]
    assert [t.index for t in sc.turns] == [0, 1, 2, 3]
    assert sc.turns[1].start is None and sc.turns[2].speaker == UNATTRIBUTED
    assert sc.turns[3].speaker == UNATTRIBUTED
    got = [(p.kind, str(p)) for p in result.problems]
    assert got == [
        ("row", f"{f}: segments[1]: no text (expected a non-empty string); segment skipped"),
        ("warning", f"{f}: segments[2].start: expected seconds (a number >= 0) or null, "
                    "found '1:05'; kept as null"),
        ("warning", f"{f}: segments[3].voice: 'zz' is not a key of voices; speaker "
                    f"'{UNATTRIBUTED}'"),
        ("row", f"{f}: segments[4]: expected an object, found str"),
    ]
    assert [s["segment"] for s in sc.meta["skipped_rows"]] == [1, 4]
    assert json.loads(sc.meta["skipped_rows"][0]["raw"]) == {"start": 1.0, "voice": "b"}
    assert [w["field"] for w in sc.meta["warnings"]] == ["start", "voice"]


def test_a_voice_without_label_gets_a_generic_one(tmp_path):
    doc = _doc()
    del doc["voices"]["b"]["label"]
    result = read_json_transcript(_write(tmp_path / "x.json", doc))
    assert result.scenario.turns[1].speaker == "[Speaker b]"
    assert "voices.b.label: missing" in result.problems[0].message


def test_sniffing_reads_only_the_head(tmp_path):
    assert is_transcript_json(_write(tmp_path / "a.json", _doc()))
    late = {"padding": "x" * SNIFF_BYTES, **_doc()}  # the schema past the sniffed head
    assert not is_transcript_json(_write(tmp_path / "late.json", late))
    assert not is_transcript_json(_write(tmp_path / "r.json", {"schema": "other", "v": 1}))
    assert not is_transcript_json(tmp_path / "missing.json")
    mention = {"schema": "deescalwild.relevance-report/1", "reads": "deescalwild.transcript/1"}
    assert not is_transcript_json(_write(tmp_path / "m.json", mention))
    compact = _write(tmp_path / "c.json", json.dumps(_doc(), separators=(",", ":")))
    assert is_transcript_json(compact)


def test_the_json_is_read_and_its_csv_counted_as_a_companion(tmp_path):
    d = tmp_path / "out"
    _write(d / "tiktok_77.json", _doc())
    (d / "tiktok_77.csv").write_text(CSV)
    (d / "youtube_5.csv").write_text(CSV)  # alone: read as usual
    _write(d / "relevance-report.json", {"schema": "deescalwild.relevance-report/1",
                                         "videos": [{"id": i} for i in range(3000)]})
    _write(d / "info.json", {"title": "yt-dlp info"})
    scenarios, summary = import_transcripts([d])
    assert [s.source for s in scenarios] == [str(d / "tiktok_77.json"), str(d / "youtube_5.csv")]
    assert summary.files == 2 and summary.companions == 1
    assert summary.skipped_files == [] and summary.warnings == []
    assert summary.to_dict()["companions"] == 1
    assert scenarios[0].speakers["[Police Officer 1]"].role == Role.OFFICER
    assert scenarios[0].speakers["[Civilian 1]"].role == Role.CIVILIAN
    files, _ = discover([d])
    assert [f.name for f, _ in files] == ["tiktok_77.json", "youtube_5.csv"]


def test_a_broken_json_falls_back_to_its_csv(tmp_path):
    d = tmp_path / "out"
    _write(d / "x.json", '{"schema": "deescalwild.transcript/1", "segments": [')
    (d / "x.csv").write_text(CSV)
    (sc,), summary = import_transcripts([d], resolve_roles=False)
    assert sc.source == str(d / "x.csv") and len(sc.turns) == 2
    assert summary.files == 2 and summary.companions == 0
    (problem,) = summary.skipped_files
    assert problem.path == str(d / "x.json") and "read x.csv instead" in problem.message


def test_strict_stops_at_a_segment_problem(tmp_path):
    _write(tmp_path / "d" / "x.json", _doc(segments=[{"start": 0, "text": ""}, *_doc()[
        "segments"]]))
    with pytest.raises(InputError, match=r"x\.json: segments\[0\]: no text"):
        import_transcripts([tmp_path / "d"], strict=True, resolve_roles=False)


def test_a_json_given_by_name_is_never_ignored_silently(tmp_path):
    f = _write(tmp_path / "report.json", {"schema": "other/1"})
    (tmp_path / "d").mkdir()
    scenarios, summary = import_transcripts([f, tmp_path / "d"], resolve_roles=False)
    assert scenarios == [] and summary.skipped_files[0].path == str(f)


def test_cli_import_summary_counts_companions(tmp_path, capsys):
    d = tmp_path / "out"
    _write(d / "tiktok_77.json", _doc())
    (d / "tiktok_77.csv").write_text(CSV)
    code = main(["corpus", "import", str(d), "-o", str(tmp_path / "c.jsonl"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["schema"] == "deescalwild.import-summary/1"
    assert (summary["files"], summary["scenarios"], summary["companions"]) == (1, 1, 1)
