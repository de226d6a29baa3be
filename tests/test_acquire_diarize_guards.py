"""The diarizer's guards on their own (pure functions): JSON extraction, timestamps, the reply's
schema, and the degenerate-repetition thresholds (a shouted "Stop! Stop! Stop!" is speech, a
decoding loop is not)."""

from __future__ import annotations

import pytest

from deescalwild.acquire.diarize.guards import (
    MIN_BLOCK_REPEATS,
    MIN_LONG_BLOCK_REPEATS,
    MIN_LONG_LOOP_REPEATS,
    GuardError,
    json_object,
    parse_timestamp,
    period_runs,
    repeated_block,
    repetition,
    validate_reply,
    word_loop,
)


def reply(segments, voices=None):
    voices = voices if voices is not None else [
        {"id": "V1", "role_hint": "police officer", "name": "", "description": "calm"},
        {"id": "V2", "role_hint": "civilian", "name": "", "description": "upset"}]
    return {"voices": voices, "segments": segments}


# --- JSON ----------------------------------------------------------------------------------
def test_json_object_tolerates_fences_and_prose():
    assert json_object('```json\n{"a": 1}\n```') == {"a": 1}
    assert json_object('Sure! Here it is: {"a": [1, 2]} Hope that helps.') == {"a": [1, 2]}


@pytest.mark.parametrize("text, expect", [
    ("", "empty reply"),
    ("   \n", "empty reply"),
    ("I cannot help with that.", "no JSON object"),
    ('{"voices": [{"id": "V1", "role_hint": "police', "malformed JSON"),  # truncated
    ('{"a": 1,}', "malformed JSON"),
])
def test_json_object_failures_name_the_problem(text, expect):
    with pytest.raises(GuardError, match=expect):
        json_object(text)


# --- timestamps ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [
    ("00:00", 0.0), ("0:07", 7.0), ("01:05", 65.0), ("75:30", 4530.0), ("1:02:03", 3723.0),
    ("00:04.5", 4.5), (" 02:10 ", 130.0),
])
def test_parse_timestamp(text, seconds):
    assert parse_timestamp(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5", "1:2:3:4", "00:61", "1:75:00", "-0:05",
                                  "5 minutes"])
def test_parse_timestamp_rejects(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


# --- schema ----------------------------------------------------------------------------------
def test_validate_reply_returns_starts_and_drops_blank_segments():
    r, starts = validate_reply(reply([
        {"start": "00:01", "voice": "V1", "text": "Step out of the car."},
        {"start": "00:03", "voice": "V2", "text": "   "},
        {"start": "00:04", "voice": " V2 ", "text": "Why?", "confidence": 0.9}]), 10.0)
    assert [s.text for s in r.segments] == ["Step out of the car.", "Why?"]
    assert [s.voice for s in r.segments] == ["V1", "V2"]
    assert starts == [1.0, 4.0]


@pytest.mark.parametrize("data, expect", [
    ({"segments": []}, r"voices: Field required"),
    ([], "schema violation"),
    (reply([{"start": "00:01", "text": "hi"}]), r"segments\.0\.voice: Field required"),
    (reply([{"start": "00:01", "voice": "V9", "text": "hi"}]),
     r"segments\[0\]\.voice 'V9' is not a declared voice \(declared: V1, V2\)"),
    (reply([{"start": "soon", "voice": "V1", "text": "hi"}]), r"segments\[0\]\.start"),
    (reply([{"start": "09:00", "voice": "V1", "text": "hi"}]), "past the end of the audio"),
    (reply([], voices=[{"id": "V1"}, {"id": "V1"}]), "declared twice: V1"),
    (reply([{"start": 5, "voice": "V1", "text": "hi"}]), r"segments\.0\.start"),
])
def test_validate_reply_schema_violations(data, expect):
    with pytest.raises(GuardError, match=expect):
        validate_reply(data, 60.0)


def test_timestamps_may_overrun_by_the_slack_only():
    ok = reply([{"start": "01:09", "voice": "V1", "text": "hi"}])
    validate_reply(ok, 60.0)  # 9 s past a 60 s file: within the 10 s slack
    with pytest.raises(GuardError, match="past the end"):
        validate_reply(reply([{"start": "01:11", "voice": "V1", "text": "hi"}]), 60.0)
    # on long audio the slack is 2% of it: 72 s on an hour
    validate_reply(reply([{"start": "1:01:10", "voice": "V1", "text": "hi"}]), 3600.0)


# --- repetition ------------------------------------------------------------------------------
def test_period_runs():
    assert period_runs(list("abababx"), 2) == [(3, 0)]
    assert period_runs(list("xaaab"), 1) == [(3, 1)]
    assert period_runs(list("aba"), 2) == []  # the block never came back whole


@pytest.mark.parametrize("text", [
    "Stop! Stop! Stop!",
    "Stop resisting! Stop resisting! Stop resisting! Stop resisting! Stop resisting!",
    " ".join(["No!"] * 20),
    "Get on the ground! " * 11,
    "Hands up, hands up, show me your hands, hands up, hands up!",
])
def test_shouting_is_not_a_loop(text):
    assert word_loop(text) is None


@pytest.mark.parametrize("text, phrase", [
    (" ".join(["no"] * 40), "'no' x40"),
    ("I said " + "get on the ground " * 12 + "okay", "'get on the ground' x12"),
    ("and then he " + "went to the store and " * 30, "x30"),
])
def test_loops_inside_a_segment_are_caught(text, phrase):
    found = word_loop(text)
    assert found is not None and phrase in found


def test_repeated_segments():
    line = "Sir, I need you to step out of the vehicle."
    assert repeated_block([line] * (MIN_BLOCK_REPEATS - 1)) is None
    found = repeated_block(["Hello."] + [line] * MIN_BLOCK_REPEATS)
    assert found is not None and f"x{MIN_BLOCK_REPEATS}" in found and "segments 1-10" in found
    # an exchange of two lines played over and over
    pair = ["Why are you doing this to me?", "Because you are under arrest."]
    assert "x10" in repeated_block(pair * 10)
    # short lines need three times as many: ten "No." in a row can be a scuffle
    assert repeated_block(["No."] * 12) is None
    assert repeated_block(["[inaudible]"] * 29) is None
    assert repeated_block(["[inaudible]"] * 30) is not None


def test_repetition_reports_the_segment():
    texts = ["Hello officer.", "What seems to be the problem " * 20]
    assert repetition(texts).startswith("segment 1 loops")
    assert repetition(["Hi.", "Stop! Stop! Stop!", "Okay."]) is None


LONG = "I need you to step out of the vehicle right now and put both your hands up. "  # 17 words
NINE = "Drop the knife and get down on the ground! "  # 9 words


def test_long_sentence_loops():
    assert len(LONG.split()) == 17 and len(NINE.split()) == 9
    found = repetition([LONG * 50])
    assert found is not None and "segment 0 loops" in found and "x50" in found
    assert word_loop(LONG * MIN_LONG_LOOP_REPEATS) is not None
    assert word_loop(LONG * (MIN_LONG_LOOP_REPEATS - 1)) is None
    # people repeat themselves, not like that
    assert repetition([LONG * 2]) is None
    assert repetition(["Hey! " + NINE * 4 + "Now!"]) is None
    assert repetition([NINE * 11]) is None  # a short sentence keeps the short rule's count
    assert repetition([NINE * 12]) is not None


def test_long_exchange_loops():
    block = ["Sir, step out of the car.", "Why?", "Because I said so.", "I did nothing.",
             "Step out now."]
    found = repetition(block * 20)
    assert found is not None and "segments 0-99" in found and "x20" in found
    assert repeated_block(["Hello."] + block * MIN_LONG_BLOCK_REPEATS) is not None
    assert repeated_block(block * (MIN_LONG_BLOCK_REPEATS - 1)) is None
    assert repeated_block(block * 2) is None


def test_short_lines_do_not_slip_under_the_long_block_count():
    """"No." / "Stop." alternating is a two-line block of short lines (30 repeats needed),
    even though two of them make a four-segment block of four words (10 needed) and three a
    six-segment block of six words (5 needed)."""
    assert repeated_block(["No.", "Stop."] * 15) is None
    assert repeated_block(["No.", "Stop."] * 29) is None
    assert "'no / stop' x30" in repeated_block(["No.", "Stop."] * 30)
