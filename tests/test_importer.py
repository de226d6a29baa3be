import pytest

from deescalwild.core import read_corpus, write_corpus
from deescalwild.corpus.importer import import_transcripts
from deescalwild.errors import InputError

ROWS = "start_time,speaker_label,transcript\n00:01,[Officer],Step out of the car.\n00:02,Sam,Why?\n"


def test_folders_are_searched_recursively_and_problems_listed(write_csv, tmp_path):
    write_csv("data/train/youtube_1.csv", ROWS)
    write_csv("data/test/deep/tiktok_2.csv", ROWS)
    write_csv("data/train/broken.csv", "a,b,c\n1,2,3\n")
    write_csv("data/train/rows.csv", ROWS + "00:03,Sam\n")
    write_csv("data/.hidden/youtube_9.csv", ROWS)
    write_csv("data/notes.txt", "not a transcript")
    scenarios, summary = import_transcripts([tmp_path / "data"], resolve_roles=False)
    assert sorted(s.id for s in scenarios) == ["rows", "tiktok_2", "youtube_1"]
    splits = {s.id: s.split for s in scenarios}
    assert splits == {"rows": "train", "tiktok_2": "test", "youtube_1": "train"}  # test/deep/
    assert summary.files == 4 and summary.scenarios == 3 and summary.turns == 6
    assert [p.path.endswith("broken.csv") for p in summary.skipped_files] == [True]
    assert [(p.path.endswith("rows.csv"), p.line) for p in summary.skipped_rows] == [(True, 4)]
    d = summary.to_dict()
    assert d["skipped_rows"][0]["reason"].startswith("expected 3 fields")


def test_strict_stops_at_the_first_problem(write_csv, tmp_path):
    write_csv("d/a.csv", ROWS)
    write_csv("d/b.csv", ROWS + "00:03,Sam\n")
    with pytest.raises(InputError) as e:
        import_transcripts([tmp_path / "d"], strict=True, resolve_roles=False)
    assert "b.csv:4" in str(e.value) and "expected 3 fields" in str(e.value)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        import_transcripts([tmp_path / "nope"])


def test_same_file_name_in_two_folders_keeps_both(write_csv, tmp_path):
    write_csv("d/a/youtube_1.csv", ROWS)
    write_csv("d/b/youtube_1.csv", ROWS)
    write_csv("d/youtube_1~2.csv", ROWS)  # a name the renaming would otherwise collide with
    scenarios, summary = import_transcripts([tmp_path / "d"], resolve_roles=False)
    ids = [s.id for s in scenarios]
    assert ids == ["youtube_1", "youtube_1~2", "youtube_1~2~2"] and len(set(ids)) == 3
    assert "already used" in summary.warnings[0].message


def test_a_file_reached_twice_is_read_once(write_csv, tmp_path):
    f = write_csv("d/youtube_1.csv", ROWS)
    scenarios, _ = import_transcripts([tmp_path / "d", f], resolve_roles=False)
    assert [s.id for s in scenarios] == ["youtube_1"]


def test_strict_fails_on_a_timestamp_warning(write_csv, tmp_path):
    write_csv("d/a.csv", "start_time,speaker_label,transcript\nlater,A,hi\n")
    assert import_transcripts([tmp_path / "d"], resolve_roles=False)[1].warnings
    with pytest.raises(InputError, match=r"a\.csv:2: start_time 'later'"):
        import_transcripts([tmp_path / "d"], strict=True, resolve_roles=False)


def test_a_broken_video_list_is_skipped_not_fatal(write_csv, tmp_path):
    write_csv("d/youtube_7.csv", ROWS)
    write_csv("d/raw_youtube_video_list.csv", "id,Title\n7,A Stop\n")
    (sc,), summary = import_transcripts([tmp_path / "d"], resolve_roles=False)
    assert "title" not in sc.meta
    assert "missing" in summary.skipped_files[0].message
    with pytest.raises(InputError, match="missing"):
        import_transcripts([tmp_path / "d"], strict=True, resolve_roles=False)


def test_metadata_option_joins_a_list_kept_elsewhere(write_csv, tmp_path):
    write_csv("d/youtube_7.csv", ROWS)
    lst = write_csv("lists/videos.csv",
                    "id,Index,Title,URL,Uploader,Views,Upload Date,Duration (sec),Description,"
                    "Transcript,channel_name\n7,8,A Stop,https://y/7,Chan,100,20250101,60,d,,c\n")
    (sc,), _ = import_transcripts([tmp_path / "d"], metadata=[lst], resolve_roles=False)
    assert sc.meta["url"] == "https://y/7"


def test_youtube_video_list_is_joined(write_csv, tmp_path):
    write_csv("d/train/youtube_7.csv", ROWS)
    write_csv("d/raw_youtube_video_list.csv",
              "id,Index,Title,URL,Uploader,Views,Upload Date,Duration (sec),Description,"
              "Transcript,channel_name\n7,8,A Stop,https://y/7,Chan,100,20250101,60,d,,chan\n")
    (sc,), summary = import_transcripts([tmp_path / "d"], resolve_roles=False)
    assert sc.meta["title"] == "A Stop" and sc.meta["uploader"] == "Chan"
    assert sc.meta["duration_s"] == 60
    assert summary.metadata_files[0].endswith("raw_youtube_video_list.csv")


def test_import_then_write_then_read_is_lossless(write_csv, tmp_path):
    write_csv("d/youtube_1.csv", ROWS + '00:09,"Zoë, the ""witness""",Ça va?\n')
    scenarios, _ = import_transcripts([tmp_path / "d"])
    out = tmp_path / "c.jsonl"
    assert write_corpus(out, scenarios) == 1
    (back,) = read_corpus(out)
    assert back == scenarios[0]
    assert back.turns[2].speaker == 'Zoë, the "witness"'
    assert set(back.speakers) == {"[Officer]", "Sam", 'Zoë, the "witness"'}
