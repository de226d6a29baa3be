from deescalwild.core import Role
from deescalwild.corpus.csv_transcripts import platform_of, read_transcript, split_of

GOOD = """start_time,speaker_label,transcript
00:01,[Police Officer],"Hi, I'm Officer Reyes."
00:04,Marcus,Why did you stop me?
00:04,Marcus,Why did you stop me?
1:05,[Officer],"Licence, please."
"""


def test_every_row_becomes_a_turn_verbatim(write_csv):
    res = read_transcript(write_csv("train/youtube_42.csv", GOOD))
    sc = res.scenario
    assert res.problems == []
    assert (sc.id, sc.platform, sc.split) == ("youtube_42", "youtube", "train")
    assert [t.speaker for t in sc.turns] == ["[Police Officer]", "Marcus", "Marcus", "[Officer]"]
    assert sc.turns[0].text == "Hi, I'm Officer Reyes."  # quotes removed, comma kept
    assert [t.start for t in sc.turns] == [1.0, 4.0, 4.0, 65.0]
    assert [t.line for t in sc.turns] == [2, 3, 4, 5]
    assert [t.index for t in sc.turns] == [0, 1, 2, 3]
    assert all(t.role is Role.UNKNOWN for t in sc.turns)  # roles come later
    assert len(sc.meta["sha256"]) == 64
    assert sc.meta["rows"] == 4


def test_quoted_newlines_keep_true_line_numbers(write_csv):
    text = 'start_time,speaker_label,transcript\n00:01,A,"one\ntwo"\n00:02,B,three\n'
    sc = read_transcript(write_csv("x.csv", text)).scenario
    assert sc.turns[0].text == "one\r\ntwo"  # the file's own line ending inside the field
    assert [t.line for t in sc.turns] == [2, 4]


def test_bad_timestamp_is_null_with_a_warning(write_csv):
    res = read_transcript(write_csv("x.csv", "start_time,speaker_label,transcript\nsoon,A,hi\n"))
    assert res.scenario.turns[0].start is None
    (w,) = res.problems
    assert (w.kind, w.line) == ("warning", 2)
    assert "'soon'" in w.message
    assert res.scenario.meta["warnings"][0]["field"] == "start_time"


def test_wrong_field_count_skips_that_row_only(write_csv):
    text = "start_time,speaker_label,transcript\n00:01,A,hi\n00:02,B\n00:03,C,x,y\n00:04,D,ok\n"
    res = read_transcript(write_csv("x.csv", text))
    assert [t.speaker for t in res.scenario.turns] == ["A", "D"]
    assert [r["raw"] for r in res.scenario.meta["skipped_rows"]] == ["00:02,B", "00:03,C,x,y"]
    assert [(p.kind, p.line) for p in res.problems] == [("row", 3), ("row", 4)]
    assert "expected 3 fields" in res.problems[0].message
    assert "found 2" in res.problems[0].message


def test_wrong_header_names_the_file_and_what_was_expected(write_csv):
    res = read_transcript(write_csv("x.csv", "time,who,what\n00:01,A,hi\n"))
    assert res.scenario is None
    (p,) = res.problems
    assert (p.kind, p.line) == ("file", 1)
    assert "expected header 'start_time,speaker_label,transcript'" in p.message
    assert "time,who,what" in p.message


def test_reordered_header_columns_are_accepted(write_csv):
    res = read_transcript(write_csv("x.csv", "speaker_label,transcript,start_time\nA,hi,00:03\n"))
    t = res.scenario.turns[0]
    assert (t.speaker, t.text, t.start) == ("A", "hi", 3.0)


def test_empty_binary_and_non_utf8_files(write_csv):
    empty = read_transcript(write_csv("e.csv", b""))
    assert empty.scenario is None and "empty file" in empty.problems[0].message
    header_only = read_transcript(write_csv("h.csv", "start_time,speaker_label,transcript\n"))
    assert header_only.scenario is None and "no rows" in header_only.problems[0].message
    binary = read_transcript(write_csv("b.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00"))
    assert "binary file" in binary.problems[0].message
    utf16 = read_transcript(write_csv("u.csv", "start_time,speaker_label,transcript\n"
                                      .encode("utf-16")))
    assert "UTF-16" in utf16.problems[0].message
    latin1 = "start_time,speaker_label,transcript\n00:01,A,ok\n00:02,José,hola\n".encode("latin-1")
    bad = read_transcript(write_csv("l.csv", latin1))
    assert bad.scenario is None
    assert bad.problems[0].line == 3 and "not UTF-8" in bad.problems[0].message


def test_bom_lf_and_non_ascii_names(write_csv):
    text = "\ufeffstart_time,speaker_label,transcript\n00:01,Zoë Ñúñez,¿Qué pasa?\n"
    res = read_transcript(write_csv("test/tiktok_0924_police_fypシ_ab.csv", text, crlf=False))
    sc = res.scenario
    assert sc.id == "tiktok_0924_police_fypシ_ab"
    assert (sc.platform, sc.split) == ("tiktok", "test")
    assert sc.turns[0].speaker == "Zoë Ñúñez"


def test_unterminated_quote_keeps_rows_before_it_and_the_skipped_text(write_csv):
    text = 'start_time,speaker_label,transcript\n00:01,A,fine\n00:02,B,"never closed\n00:03,C,x\n'
    res = read_transcript(write_csv("x.csv", text))
    assert [t.speaker for t in res.scenario.turns] == ["A"]
    assert res.problems[0].kind == "row" and res.problems[0].line == 3
    (skipped,) = res.scenario.meta["skipped_rows"]
    assert skipped["line"] == 3 and skipped["raw"] == '00:02,B,"never closed\n00:03,C,x'


def test_a_bad_quote_skips_only_its_own_line(write_csv):
    text = ('start_time,speaker_label,transcript\n00:01,A,one\n00:02,B,"bad"quote\n'
            '00:03,C,"two\nlines"\n\n00:04,D,four\n')
    res = read_transcript(write_csv("x.csv", text))
    assert [(t.speaker, t.line) for t in res.scenario.turns] == [("A", 2), ("C", 4), ("D", 7)]
    assert [(p.kind, p.line) for p in res.problems] == [("row", 3)]
    assert res.scenario.meta["skipped_rows"][0]["raw"] == '00:02,B,"bad"quote'


def test_repeated_header_and_spreadsheet_empty_columns(write_csv):
    text = ("start_time,speaker_label,transcript,,\n00:01,A,one,,\n"
            "start_time,speaker_label,transcript,,\n00:02,B,two\n00:03,C,three,,oops\n")
    res = read_transcript(write_csv("x.csv", text))
    assert [t.speaker for t in res.scenario.turns] == ["A", "B"]
    reasons = {p.line: p.message for p in res.problems}
    assert reasons[3] == "repeated header row"
    assert reasons[5].startswith("expected 3 fields")


def test_backwards_timestamps_are_kept_and_counted(write_csv):
    text = "start_time,speaker_label,transcript\n00:05,A,a\n00:03,B,b\n00:04,C,c\n"
    sc = read_transcript(write_csv("x.csv", text)).scenario
    assert [t.start for t in sc.turns] == [5.0, 3.0, 4.0]
    assert sc.meta["timestamps_backwards"] == 1


def test_platform_and_split_from_path(tmp_path):
    assert platform_of(tmp_path / "facebook_123.csv") == "facebook"
    assert platform_of(tmp_path / "youtube.csv") is None
    assert platform_of(tmp_path / "myvideo_1.csv") is None
    assert split_of(tmp_path / "train" / "a.csv") == "train"
    assert split_of(tmp_path / "validation" / "a.csv") == "dev"
    assert split_of(tmp_path / "other" / "a.csv") is None
