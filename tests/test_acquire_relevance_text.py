"""What the relevance judge reads: degenerate repetition collapsed (as in the published
corpus), head and tail kept when the transcript is too long."""

from __future__ import annotations

import time

from deescalwild.acquire.relevance.text import collapse_repeats, cut_middle


def test_phrase_loops_are_collapsed_with_their_count():
    loop = "No, you don't get a choice. " + "Please. " * 19146 + "Okay. All right."
    (line,), removed = collapse_repeats([loop])
    assert line == ("No, you don't get a choice. Please. Please. Please. "
                    "[... repeated 19146 times in all] Okay. All right.")
    assert removed == 1


def test_multi_word_loops_and_normal_repetition():
    text = "I want a lawyer. " * 8 + "Fine."
    (line,), _ = collapse_repeats([text])
    assert line == ("I want a lawyer. I want a lawyer. I want a lawyer. "
                    "[... repeated 8 times in all] Fine.")
    # ordinary emphatic speech is left alone (fewer than 6 in a row)
    speech = ["Stop! Stop! Stop! Stop! Stop!", "whoa, whoa, whoa, whoa, whoa."]
    assert collapse_repeats(speech) == (speech, 0)
    # a unit must be whole words: "na" inside "banana" is not a loop
    assert collapse_repeats(["bananananananana split"]) == (["bananananananana split"], 0)


def test_repeated_rows_are_collapsed_and_counted():
    lines = ["[Witness]: He went that way."] * 4 + ["Officer: Which way?",
                                                   "[Witness]: He went that way."]
    out, removed = collapse_repeats(lines)
    assert out == ["[Witness]: He went that way. [line repeated 4 times in all]",
                   "Officer: Which way?", "[Witness]: He went that way."]
    assert removed == 3
    # rows that repeat a looping row collapse too (loop first, then the row)
    out, removed = collapse_repeats(["Help me. " * 50] * 3)
    assert out == ["Help me. Help me. Help me. [... repeated 50 times in all] "
                   "[line repeated 3 times in all]"]


def test_collapse_is_fast_on_long_text_without_loops():
    words = " ".join(f"w{i % 997}x{i}" for i in range(40000))  # ~400k chars, no loop
    t0 = time.perf_counter()
    out, removed = collapse_repeats([words])
    assert removed == 0 and out == [words]
    assert time.perf_counter() - t0 < 2.0


def test_cut_keeps_head_and_tail_and_counts_what_it_omits():
    lines = [f"line {i:03d} " + "x" * 40 for i in range(200)]
    text = "\n".join(lines)
    cut, truncated = cut_middle(text, 1000)
    assert truncated
    head, rest = cut.split("\n[... ", 1)
    marker, tail = rest.split(" ...]\n", 1)
    omitted = int(marker.split()[0])
    assert marker == f"{omitted} characters omitted"
    assert len(head) + len(tail) + omitted == len(text)
    assert text.startswith(head) and text.endswith(tail)
    assert head.startswith("line 000") and tail.endswith(lines[-1])
    assert head.endswith("x") and tail.startswith("line ")  # whole lines when near a break
    assert 800 <= len(head) + len(tail) <= 1000


def test_cut_leaves_short_text_alone_and_cuts_one_long_line():
    assert cut_middle("short", 100) == ("short", False)
    text = "a" * 500 + "b" * 500
    cut, truncated = cut_middle(text, 100)
    assert truncated and cut.startswith("a" * 50 + "\n[... 900 characters omitted ...]\n")
    assert cut.endswith("b" * 50)
