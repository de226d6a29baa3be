"""The relevance report: counts, prevalence, histograms, reasons, every video with its reason
in Markdown and CSV, and re-scoring under another rule from the stored features."""

from __future__ import annotations

import csv
import io
import json

import orjson
import pytest

from deescalwild.acquire.relevance.report import (
    CSV_COLUMNS,
    REPORT_SCHEMA,
    build_report,
    rescore,
    workdir_loader,
    write_report,
)
from deescalwild.acquire.relevance.rule import DEFAULT_RULE, evaluate
from deescalwild.acquire.relevance.taxonomy import (
    BY_GROUP,
    FEATURE_NAMES,
    exclusion_flags,
    group_scores,
)


def feats(**counts: int) -> dict[str, bool]:
    on = {n for g, k in counts.items() for n in BY_GROUP[g][:k]}
    return {n: n in on for n in FEATURE_NAMES}


def done_row(vid: str, title: str, f: dict[str, bool], with_features: bool = True) -> dict:
    accepted, reason = evaluate(DEFAULT_RULE, f)
    row = {"id": vid, "title": title, "url": f"https://www.youtube.com/watch?v={vid}",
           "status": "done", "error": None,
           "detail": {"accepted": accepted, "reason": reason, "scores": group_scores(f),
                      "cached": False, "flags": exclusion_flags(f)}}
    if with_features:
        row["features"] = f
    return row


@pytest.fixture
def rows():
    return [
        done_row("youtube_a", "Traffic stop | gets [heated]", feats(police=3, escalation=4)),
        done_row("youtube_b", "Calm talk-down", feats(police=2, deescalation=5, interaction=2)),
        done_row("youtube_c", "Range day", feats(police=4, escalation=3, exclusions=4)),
        done_row("youtube_d", "Dashcam only", feats(police=1, escalation=1)),
        done_row("youtube_e", "Argument", feats(police=1, escalation=2, deescalation=1)),
        {"id": "tiktok_f", "title": "Judge broke", "url": "https://tiktok.com/@x/video/1",
         "status": "failed", "detail": {}, "error": "judge reply invalid: no JSON object"},
        {"id": "tiktok_g", "title": "Silent clip", "url": "https://tiktok.com/@x/video/2",
         "status": "skipped", "detail": {}, "error": "empty transcript: nothing to judge"},
        {"id": "facebook_h", "title": "Not yet", "url": "https://facebook.com/v/3",
         "status": None, "detail": None, "error": None},
        {"id": "facebook_i", "title": "Queued", "url": "https://facebook.com/v/4",
         "status": "pending", "detail": {}, "error": None},
    ]


def test_counts_prevalence_histograms_and_top_reasons(rows):
    r = build_report(rows, DEFAULT_RULE)
    assert r["schema"] == REPORT_SCHEMA and r["rule"] == DEFAULT_RULE
    assert r["counts"] == {"videos": 9, "accepted": 2, "rejected": 3, "failed": 1,
                           "skipped": 1, "not_run": 2}
    assert [e["id"] for e in r["accepted"]] == ["youtube_a", "youtube_b"]
    assert [e["id"] for e in r["rejected"]] == ["youtube_c", "youtube_d", "youtube_e"]
    assert r["failed"][0]["reason"] == "judge reply invalid: no JSON object"
    assert r["skipped"][0]["reason"] == "empty transcript: nothing to judge"
    assert [e["id"] for e in r["not_run"]] == ["facebook_h", "facebook_i"]

    pos = r["features"]["positives"]
    assert r["features"]["judged_with_features"] == 5
    assert pos["police_identified_by_role"] == 5  # every judged video has police >= 1
    assert pos["police_explaining_actions"] == 0  # 5th police feature: nobody has police >= 5
    assert pos["no_police_presence"] == 1 and pos["non_relevant_crime_only_context"] == 0
    assert r["score_histograms"]["police"] == {"0": 0, "1": 2, "2": 1, "3": 1, "4": 1,
                                               "5": 0, "6": 0}
    assert r["score_histograms"]["escalation"]["7"] == 0
    assert sum(r["score_histograms"]["exclusions"].values()) == 5
    assert r["top_rejection_reasons"] == [
        {"part": "police >= 2", "videos": 2},
        {"part": "escalation >= 3 or deescalation >= 3", "videos": 2},
        {"part": "exclusions == 0", "videos": 1},
    ]


def test_markdown_lists_every_video_with_its_reason(rows, tmp_path):
    paths = write_report(build_report(rows, DEFAULT_RULE), tmp_path / "rep")
    assert [p.name for p in paths] == ["relevance-report.json", "relevance-report.md",
                                       "relevance-report.csv"]
    md = paths[1].read_text()
    assert "| 9 | 2 | 3 | 1 | 1 | 2 |" in md
    assert "## Accepted (2)" in md and "## Rejected (3)" in md and "## Failed (1)" in md
    assert "| Escalation | `use_of_force_transition_signals` | 0 | 0.0% |" in md
    assert "| Police presence | `police_identified_by_role` | 5 | 100.0% |" in md
    for row in rows:
        line = next((ln for ln in md.splitlines() if f"(`{row['id']}`)" in ln), None)
        assert line is not None, row["id"]
        if row["status"] == "done":
            assert line.endswith(row["detail"]["reason"]), line
        elif row["error"]:
            assert line.endswith(row["error"])
    # a title with Markdown syntax cannot break the link or a table
    assert ("- [Traffic stop \\| gets \\[heated\\]](https://www.youtube.com/watch?v=youtube_a)"
            in md)
    assert "exclusions == 0 failed: no_police_presence, no_conversation_detected, " \
           "advertisement_content_detected, training_range_context" in md
    assert json.loads(paths[0].read_text())["schema"] == REPORT_SCHEMA
    assert not list((tmp_path / "rep").glob(".*.tmp"))


def test_csv_parses_back_one_row_per_video(rows, tmp_path):
    paths = write_report(build_report(rows, DEFAULT_RULE), tmp_path)
    back = list(csv.DictReader(io.StringIO(paths[2].read_text(encoding="utf-8"), newline="")))
    assert tuple(back[0]) == CSV_COLUMNS
    assert len(back) == len(rows)
    by = {r["id"]: r for r in back}
    assert by["youtube_a"]["verdict"] == "accepted"
    assert by["youtube_a"]["title"] == "Traffic stop | gets [heated]"
    assert by["youtube_c"]["verdict"] == "rejected"
    assert by["youtube_c"]["flags"] == ("no_police_presence;no_conversation_detected;"
                                        "advertisement_content_detected;training_range_context")
    assert (by["youtube_c"]["police"], by["youtube_c"]["exclusions"]) == ("4", "4")
    assert by["youtube_d"]["reason"] == rows[3]["detail"]["reason"]
    assert by["tiktok_f"]["verdict"] == "failed" and by["tiktok_f"]["police"] == ""
    assert by["facebook_h"]["verdict"] == "not run"


def test_rescore_applies_another_rule_from_stored_features(rows):
    looser = "exclusions == 0 and police >= 1"
    new = rescore(rows, looser)
    r = build_report(new, looser)
    assert [e["id"] for e in r["accepted"]] == ["youtube_a", "youtube_b", "youtube_d",
                                                "youtube_e"]
    assert r["rejected"][0]["reason"].startswith("exclusions == 0 failed: no_police_presence")
    assert rows[3]["detail"]["accepted"] is False  # the input rows are not changed
    assert [x["status"] for x in new[5:]] == ["failed", "skipped", None, "pending"]


def test_features_load_from_the_workdir_when_rows_lack_them(rows, tmp_path):
    for row in rows[:5]:
        f = row.pop("features")
        if row["id"] != "youtube_e":  # one relevance file is missing
            (tmp_path / "relevance").mkdir(exist_ok=True)
            (tmp_path / "relevance" / f"{row['id']}.json").write_bytes(
                orjson.dumps({"schema": "deescalwild.relevance/1", "features": f}))
    load = workdir_loader(tmp_path)
    r = build_report(rows, DEFAULT_RULE, load)
    assert r["features"]["judged_with_features"] == 4
    assert r["counts"]["rejected"] == 3  # verdicts come from the details, not the files
    assert build_report(rows, DEFAULT_RULE)["features"]["judged_with_features"] == 0

    new = rescore(rows, "police >= 1", load)
    e = next(x for x in new if x["id"] == "youtube_e")
    assert e["status"] == "failed" and "no stored features" in e["error"]
    assert sum(1 for x in new if x["status"] == "done") == 4
