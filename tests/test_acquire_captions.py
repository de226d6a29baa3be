"""Caption parsing (acquire/captions.py): WebVTT, SRT and json3 as the sites serve them, tags and
entities removed, YouTube's rolling automatic captions kept once each, word timings read."""

from __future__ import annotations

import json

import pytest

from deescalwild.acquire.captions import parse_captions, parse_json3, parse_srt, parse_vtt
from deescalwild.errors import InputError


def _timed(first: str, *rest: tuple[str, str]) -> str:
    """A line of YouTube's word-timed captions: `first<00:00:00.400><c> word</c>...`."""
    return first + "".join(f"<{t}><c> {w}</c>" for t, w in rest)


# A YouTube automatic-caption file as yt-dlp downloads it: a line of one space above the text,
# each cue repeating the previous line, 10 ms cues repeating the finished line.
YOUTUBE_AUTO = "\n".join([
    "WEBVTT", "Kind: captions", "Language: en", "",
    "00:00:00.000 --> 00:00:02.990 align:start position:0%", " ",
    _timed("license", ("00:00:00.400", "and"), ("00:00:00.719", "registration"),
           ("00:00:01.280", "please")), "",
    "00:00:02.990 --> 00:00:03.000 align:start position:0%",
    "license and registration please", " ", "",
    "00:00:03.000 --> 00:00:05.120 align:start position:0%",
    "license and registration please",
    _timed("why", ("00:00:03.360", "did"), ("00:00:03.520", "you"), ("00:00:03.840", "stop"),
           ("00:00:04.100", "me")), "",
    "00:00:05.120 --> 00:00:05.130 align:start position:0%", "why did you stop me", " ", "",
    "00:00:05.130 --> 00:00:07.000 align:start position:0%", "why did you stop me",
    _timed("you", ("00:00:05.400", "were"), ("00:00:05.600", "going"), ("00:00:05.900", "55"),
           ("00:00:06.300", "in"), ("00:00:06.400", "a"), ("00:00:06.500", "35")), ""])

MANUAL_VTT = """\ufeffWEBVTT
Kind: captions
Language: en

STYLE
::cue { color: yellow; }

NOTE This note spans
two lines; parsers skip it

1
00:00:00.000 --> 00:00:01.500 line:90%
<v Officer>Good evening, I&#39;m Officer Vega.</v>

intro-2
00:01.500 --> 00:03.000
<i>Why</i> did you stop me?
Is there &amp; a problem?

00:00:03.000 --> 00:00:04.000
&nbsp;

00:00:04.000 --> 00:00:05.250
<c.colorE5E5E5>Step&nbsp;out</c> of the car &lt;now&gt;.
"""

SRT = """1\r
00:00:00,000 --> 00:00:01,500\r
<font color="#ffffff">Good evening.</font>\r
\r
2\r
00:00:01,500 --> 00:00:03,000\r
{\\an8}Why did you\r
stop me?\r
\r
3\r
01:02:03,040 --> 01:02:04,000\r
Later.\r
"""


def test_youtube_auto_captions_keep_each_line_once_with_word_timings():
    segs = parse_vtt(YOUTUBE_AUTO)
    assert [s.text for s in segs] == ["license and registration please", "why did you stop me",
                                      "you were going 55 in a 35"]
    assert [(s.start, s.end) for s in segs] == [(0.0, 2.99), (3.0, 5.12), (5.13, 7.0)]
    first = segs[0].words
    assert [w.text for w in first] == ["license", "and", "registration", "please"]
    assert [(w.start, w.end) for w in first] == [(0.0, 0.4), (0.4, 0.719), (0.719, 1.28),
                                                 (1.28, 2.99)]
    for s in segs:
        assert " ".join(w.text for w in s.words) == s.text
        starts = [w.start for w in s.words]
        assert starts == sorted(starts) and s.start <= starts[0] and s.words[-1].end == s.end


def test_manual_vtt_strips_tags_entities_and_skips_header_blocks():
    segs = parse_vtt(MANUAL_VTT)
    assert [s.text for s in segs] == ["Good evening, I'm Officer Vega.",
                                      "Why did you stop me? Is there & a problem?",
                                      "Step out of the car <now>."]
    assert [(s.start, s.end) for s in segs] == [(0.0, 1.5), (1.5, 3.0), (4.0, 5.25)]
    assert all(s.words == [] for s in segs)  # no inline timestamps: no word timings


def test_manual_captions_that_repeat_a_line_once_are_not_collapsed():
    vtt = ("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nNo.\n\n00:00:01.000 --> 00:00:02.000\n"
           "No.\n\n00:00:02.000 --> 00:00:03.000\nGet out of the car.\n\n"
           "00:00:03.000 --> 00:00:04.000\nI said no.\n")
    assert [s.text for s in parse_vtt(vtt)] == ["No.", "No.", "Get out of the car.", "I said no."]


def test_rolling_captions_without_word_timings_are_deduplicated():
    vtt = ("WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nhands on the wheel\n\n"
           "00:00:02.000 --> 00:00:04.000\nhands on the wheel\nokay okay\n\n"
           "00:00:04.000 --> 00:00:06.000\nokay okay\nwhat is this about\n\n"
           "00:00:06.000 --> 00:00:08.000\nwhat is this about\nyour taillight\n")
    segs = parse_vtt(vtt)
    assert [(s.start, s.text) for s in segs] == [
        (0.0, "hands on the wheel"), (2.0, "okay okay"), (4.0, "what is this about"),
        (6.0, "your taillight")]


def test_srt_with_crlf_numbers_and_ass_tags():
    segs = parse_srt(SRT)
    assert [s.text for s in segs] == ["Good evening.", "Why did you stop me?", "Later."]
    assert segs[2].start == pytest.approx(3723.04) and segs[2].end == pytest.approx(3724.0)


def test_json3_manual_and_automatic():
    manual = {"events": [
        {"tStartMs": 0, "dDurationMs": 1500, "segs": [{"utf8": "Good evening."}]},
        {"tStartMs": 1500, "dDurationMs": 1500, "segs": [{"utf8": "Why did you\nstop me?"}]}]}
    segs = parse_json3(json.dumps(manual))
    assert [(s.start, s.end, s.text) for s in segs] == [(0.0, 1.5, "Good evening."),
                                                         (1.5, 3.0, "Why did you stop me?")]
    assert segs[0].words == []
    auto = {"wireMagic": "pb3", "events": [
        {"tStartMs": 0, "dDurationMs": 6000, "id": 1, "wpWinPosId": 1},
        {"tStartMs": 200, "dDurationMs": 4000, "wWinId": 1, "segs": [
            {"utf8": "step"}, {"utf8": " out", "tOffsetMs": 400},
            {"utf8": " now", "tOffsetMs": 900}]},
        {"tStartMs": 2500, "dDurationMs": 10, "aAppend": 1, "wWinId": 1,
         "segs": [{"utf8": "\n"}]},
        {"tStartMs": 2600, "dDurationMs": 3000, "wWinId": 1, "segs": [
            {"utf8": "why"}, {"utf8": " sir", "tOffsetMs": 300}]}]}
    segs = parse_captions(json.dumps(auto), "json3")
    assert [s.text for s in segs] == ["step out now", "why sir"]
    assert segs[0].end == 2.6  # the overlapping window is cut where the next line starts
    assert [(w.text, w.start, w.end) for w in segs[0].words] == [
        ("step", 0.2, 0.6), ("out", 0.6, 1.1), ("now", 1.1, 2.6)]


def test_sniffing_and_bad_input():
    assert parse_captions(MANUAL_VTT)[0].text.startswith("Good evening")
    assert parse_captions(SRT)[0].text == "Good evening."
    assert parse_captions("WEBVTT\n\n") == []
    with pytest.raises(InputError, match=r"clip\.vtt:1: expected a WebVTT"):
        parse_vtt("00:00:00.000 --> 00:00:01.000\nhi\n", "clip.vtt")
    with pytest.raises(InputError, match=r"clip\.srt:2: cue ends"):
        parse_srt("1\n00:00:05,000 --> 00:00:01,000\nbackwards\n", "clip.srt")
    with pytest.raises(InputError, match="json3"):
        parse_captions("{not json", "json3", "c.json3")
    with pytest.raises(InputError, match="not a caption file"):
        parse_captions("<html>hello</html>", None, "page.html")


ANNOTATIONS_VTT = """WEBVTT

00:00:00.000 --> 00:00:02.000
[Music]

00:00:02.000 --> 00:00:03.000
♪ ♪

00:00:03.000 --> 00:00:04.000
(laughs)

00:00:04.000 --> 00:00:05.000
<i>[Applause]</i>
"""


def test_cues_of_sound_annotations_only_are_not_speech():
    assert parse_vtt(ANNOTATIONS_VTT) == []
    srt = "1\n00:00:00,000 --> 00:00:02,000\n[MUSIC PLAYING]\n\n2\n00:00:02,000 --> " \
          "00:00:03,000\n♪\n"
    assert parse_srt(srt) == []
    auto = {"events": [{"tStartMs": 0, "dDurationMs": 1000, "segs": [{"utf8": "[Music]"}]}]}
    assert parse_json3(json.dumps(auto)) == []
    mixed = ANNOTATIONS_VTT + "\n00:00:05.000 --> 00:00:06.000\n[Music] Step out of the car.\n"
    assert [s.text for s in parse_vtt(mixed)] == ["[Music] Step out of the car."]
