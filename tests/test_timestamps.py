import pytest

from deescalwild.corpus.timestamps import parse_timestamp


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0:07", 7.0),
        ("1:05", 65.0),
        ("12:34", 754.0),
        ("59:59", 3599.0),
        ("123:04", 7384.0),  # long videos written as minutes only
        ("1:02:03", 3723.0),
        ("01:02:03", 3723.0),
        ("00:07,500", 7.5),
        ("00:07,5", 7.5),
        ("00:07.250", 7.25),
        ("1:00:07,100", 3607.1),
        (" 00:10 ", 10.0),
    ],
)
def test_known_styles_parse_to_seconds(value, seconds):
    assert parse_timestamp(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "abc", "7", "00:60", "1:60:00", "00:07,5000", "-0:07", "00:07 PM", "1::07"]
)
def test_anything_else_is_none(value):
    assert parse_timestamp(value) is None


def test_memoised_answers_stay_correct():
    assert parse_timestamp("02:03") == 123.0
    assert parse_timestamp("02:03") == 123.0
    assert parse_timestamp("bad") is None
    assert parse_timestamp("bad") is None
