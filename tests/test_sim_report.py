"""After-action reports (sim/report.py) from hand-made sessions: the score by hand, counts, the
moments, suggestions that quote the trainee, escaping, span highlighting, SVG, files, PNG."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from deescalwild.errors import DeescalwildError
from deescalwild.sim.records import SessionRecord, TurnRecord, Verdict
from deescalwild.sim.report import (
    REPORT_SCHEMA,
    SCORE_FORMULA,
    build_report,
    highlight,
    level_of,
    timeline_png,
    timeline_svg,
    to_html,
    to_markdown,
    write_report,
)
from deescalwild.sim.taxonomy import DEESCALATION, ESCALATION

SVG = "{http://www.w3.org/2000/svg}"


def v(tactic: str, kind: str, text: str, words: str, effect: float) -> Verdict:
    """A verdict whose evidence is `words`, found in the trainee's `text` (span computed)."""
    a = text.index(words)
    return Verdict(tactic, kind, [words], [(a, a + len(words))], why=f"rule for {tactic}",
                   effect=effect)


def turn(i: int, text: str, verdicts: list[tuple[str, str, str, float]], before: float,
         after: float, latency: float, reply: str = "Whatever.") -> TurnRecord:
    return TurnRecord(i, text, reply, [v(t, k, text, w, e) for t, k, w, e in verdicts],
                      before, after, latency, first_token_s=latency / 2, at=1000.0 + 10 * i)


DE, ESC = "deescalation", "escalation"
T0 = "Hi, I'm Officer Lee with city police. What's going on tonight?"
T1 = "Calm down! Calm down or you're going to jail."
T2 = "I can see you're scared. Would you rather talk here or by the car?"
T3 = "So you're worried about your son. I'm sorry this happened."
T4 = "You're safe, but you're acting like an idiot."


def mixed_session() -> SessionRecord:
    """Start 70, end 65; five turns with calm tactics, a threat + shout, and a mixed turn."""
    turns = [
        turn(0, T0, [("introduction", DE, "I'm Officer Lee with city police", -3.0),
                     ("open_question", DE, "What's going on tonight?", -4.0)], 70, 63, 0.01),
        turn(1, T1, [("shouted_command", ESC, "Calm down!", 6.0),
                     ("threat", ESC, "or you're going to jail", 10.0)], 63, 79, 0.02),
        turn(2, T2, [("empathy", DE, "I can see you're scared", -5.0),
                     ("offering_choices", DE, "Would you rather talk here or by the car?", -4.0)],
             79, 70, 0.03),
        turn(3, T3, [("active_listening", DE, "So you're worried about your son", -4.0),
                     ("empathy", DE, "I'm sorry this happened", -3.0)], 70, 63, 0.04),
        # reassurance mixed with an insult: the insult costs, the reassurance earns nothing
        turn(4, T4, [("reassurance", DE, "You're safe", -2.0),
                     ("insult", ESC, "you're acting like an idiot", 7.0)], 63, 65, 0.5),
    ]
    return SessionRecord("s1", "traffic_stop", "Traffic stop at night", "retrieval", "rules",
                         70.0, 1000.0, opening="What do you want?", turns=turns,
                         ended_at=1100.0, meta={"client": "test"})


CARD = SimpleNamespace(id="traffic_stop", title="Traffic stop at night",
                       learning_objectives=["Introduce yourself", "Explain the stop"],
                       persona=SimpleNamespace(name="Dana Whitfield"))


def test_score_by_hand():
    r = build_report(mixed_session(), CARD)
    assert r["schema"] == REPORT_SCHEMA
    # 50 + 0.5*(70-65) + 4*5 (introduction, open_question, empathy, offering_choices,
    # active_listening; reassurance was in the insult turn) - 8*3 (shout, threat, insult)
    # = 50 + 2.5 + 20 - 24 = 48.5 -> 49 (half up; Python's round() would give 48)
    s = r["score"]
    assert s["value"] == 49
    assert s["formula"] == SCORE_FORMULA
    assert "min(distinct de-escalation tactics, 6)" in s["formula"]
    p = s["parts"]
    assert p["agitation_points"] == 2.5 and p["tactic_points"] == 20
    assert p["distinct_deescalation"] == ["introduction", "empathy", "active_listening",
                                          "open_question", "offering_choices"]
    assert p["escalation_occurrences"] == 3 and p["escalation_points"] == -24
    assert p["raw"] == 48.5


def test_score_is_hard_to_game_and_clamped():
    # one tactic said over and over earns it once; seven distinct tactics earn six
    said = [turn(i, "I understand.", [("empathy", DE, "I understand", -1.0)], 50, 50, 0.01)
            for i in range(10)]
    s = build_report(SessionRecord("a", "c", "t", "r", "rules", 50.0, 0.0, turns=said))["score"]
    assert s["parts"]["tactic_points"] == 4 and s["value"] == 54
    text = "x" * 10
    many = [turn(0, text, [(t, DE, "x", -1.0) for t in DEESCALATION[:7]], 50, 50, 0.01)]
    s = build_report(SessionRecord("b", "c", "t", "r", "rules", 50.0, 0.0, turns=many))["score"]
    assert len(s["parts"]["distinct_deescalation"]) == 7 and s["parts"]["tactic_points"] == 24
    # two verdicts of one escalation in one turn are one occurrence; 8 threats -> clamped at 0
    threats = [TurnRecord(i, "I'll tase you, I'll tase you", "no", [
        Verdict("threat", ESC, ["I'll tase you"], [(0, 13)], effect=5.0),
        Verdict("threat", ESC, ["I'll tase you"], [(15, 28)], effect=0.0)], 50, 50, 0.01)
        for i in range(8)]
    s = build_report(SessionRecord("c", "c", "t", "r", "rules", 50.0, 0.0, turns=threats))
    assert s["counts"]["escalation"]["threat"] == 8
    assert s["score"]["parts"]["escalation_occurrences"] == 8
    assert s["score"]["parts"]["raw"] == -14 and s["score"]["value"] == 0


def test_zero_turn_session():
    rec = SessionRecord("z", "welfare", "Welfare check", "retrieval", "rules", 55.0, 10.0,
                        opening="Who's there?", ended_at=12.5)
    r = build_report(rec)
    assert r["score"]["value"] is None and "no turns" in r["score"]["reason"]
    assert r["timeline"] == [{"step": 0, "turn": None, "agitation": 55.0, "delta": 0.0,
                              "level": "upset"}]
    assert r["suggestions"] == [] and r["moments"] == {"up": [], "down": []}
    assert r["latency"]["turns"] == 0 and r["latency"]["p50_s"] is None
    assert r["duration_s"] == 2.5
    assert "Score: none" in to_markdown(r) and "n/a" in to_html(r)
    root = ET.fromstring(timeline_svg(r))
    assert len([c for c in root.iter(f"{SVG}circle") if c.get("class") == "point"]) == 1


def test_counts_include_every_id_with_zeros():
    c = build_report(mixed_session())["counts"]
    assert list(c["deescalation"]) == list(DEESCALATION)
    assert list(c["escalation"]) == list(ESCALATION)
    assert c["deescalation"]["empathy"] == 2  # two turns
    assert c["deescalation"]["reassurance"] == 1  # counted, though it earned no score
    assert c["deescalation"]["name_use"] == 0 and c["deescalation"]["calm_request"] == 0
    assert c["escalation"] == {"threat": 1, "shouted_command": 1, "repeated_command": 0,
                               "insult": 1, "dismissive": 0, "profanity": 0, "ultimatum": 0}
    assert c["persona"] == {"persona_trigger": 0, "persona_calm": 0}
    assert "other" not in c


def test_timeline_moments_and_latency():
    r = build_report(mixed_session())
    assert [p["agitation"] for p in r["timeline"]] == [70, 63, 79, 70, 63, 65]
    assert [p["turn"] for p in r["timeline"]] == [None, 0, 1, 2, 3, 4]
    assert [p["level"] for p in r["timeline"]][:3] == ["agitated", "agitated", "agitated"]
    up, down = r["moments"]["up"], r["moments"]["down"]
    assert [(m["turn"], m["delta"]) for m in up] == [(1, 16.0), (4, 2.0)]
    assert [(m["turn"], m["delta"]) for m in down] == [(2, -9.0), (0, -7.0), (3, -7.0)]
    assert [x["tactic"] for x in up[0]["verdicts"]] == ["threat", "shouted_command"]
    assert [x["tactic"] for x in up[1]["verdicts"]] == ["insult"]  # the verdict that raised it
    assert up[1]["other"] == -3.0  # +2 overall: +7 insult, -2 reassurance, -3 unexplained
    lat = r["latency"]
    assert lat["turns"] == 5 and lat["p50_s"] == pytest.approx(0.03)
    assert lat["p95_s"] == pytest.approx(0.04 + 0.8 * 0.46) and lat["max_s"] == 0.5
    assert r["agitation"] == {"start": 70, "end": 65, "min": 63, "max": 79,
                              "start_level": "agitated", "end_level": "agitated"}


def test_suggestions_quote_the_trainee_worst_first():
    r = build_report(mixed_session(), CARD)
    rules = [s["rule"] for s in r["suggestions"]]
    # escalations by the agitation they added (threat 10, insult 7, shout 6); introduced in
    # turn 1, so no introduction rule; then unused tactics in their order; at most six
    assert rules == ["escalation:threat", "escalation:insult", "escalation:shouted_command",
                     "unused:name_use", "unused:explanation", "unused:calm_request"]
    threat = r["suggestions"][0]
    assert "turn 2: \"or you're going to jail\"" in threat["text"] and threat["turns"] == [1]
    assert '"you\'re acting like an idiot"' in r["suggestions"][1]["text"]
    assert "Dana," in r["suggestions"][3]["text"]  # the card's persona name, first name only
    # empathy -8 over two turns; then -4 each, ties by name
    assert [(s["tactic"], s["effect"]) for s in r["strengths"]] == [
        ("empathy", -8.0), ("active_listening", -4.0), ("offering_choices", -4.0)]


def test_suggestions_late_introduction_ended_higher_and_persona_trigger():
    t0 = "Step out of the car. Now."
    t1 = "Whatever, I don't care about your excuses, buddy."
    turns = [turn(0, t0, [], 40, 44, 0.01),
             turn(1, t1, [("dismissive", ESC, "I don't care about your excuses", 8.0),
                          ("persona_trigger", ESC, "buddy", 5.0)], 44, 57, 0.01)]
    rec = SessionRecord("s2", "noise", "Noise complaint", "retrieval", "rules", 40.0, 0.0,
                        turns=turns)
    r = build_report(rec)  # no card
    assert r["card"] == {"id": "noise", "title": "Noise complaint", "objectives": [],
                         "persona": None, "available": False}
    rules = [s["rule"] for s in r["suggestions"]]
    assert rules[:4] == ["ended_above_start", "escalation:dismissive",
                         "escalation:persona_trigger", "no_early_introduction"]
    assert len(rules) == 6
    first = r["suggestions"][0]["text"]
    assert "(40 -> 57)" in first and "turn 2 (+13)" in first
    assert '"buddy"' in r["suggestions"][2]["text"]
    assert r["counts"]["persona"]["persona_trigger"] == 1
    assert r["score"]["parts"]["escalation_occurrences"] == 2  # persona triggers cost too
    # 50 + 0.5*(40-57) + 0 - 16 = 25.5 -> 26
    assert r["score"]["value"] == 26


def test_html_escapes_every_text():
    bad = "<script>alert(1)</script>"
    text = f"Hello {bad} please sit"
    t = turn(0, text, [("calm_request", DE, "please sit", -2.0),
                       ("insult", ESC, bad, 3.0)], 50, 51, 0.01, reply=f"No! {bad}")
    rec = SessionRecord("x", "c1", bad, f"const:{bad}", "rules", 50.0, 0.0, opening=bad,
                        turns=[t], meta={"client": bad})
    card = SimpleNamespace(title=bad, learning_objectives=[bad],
                           persona=SimpleNamespace(name=bad))
    for r in (build_report(rec), build_report(rec, card)):
        page = to_html(r)
        assert "<script" not in page.lower()
        assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6  # title x2, opening,
        # trainee (inside a mark), reply, chip, suggestion ...
        assert '<mark class="esc" title="Insult">&lt;script&gt;alert(1)&lt;/script&gt;</mark>' \
            in page
        assert "Intended use" in page and "automated decisions" in page
        assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        md = to_markdown(r)
        assert "<script>" not in md and "\\<script\\>" in md
        assert "<script" not in timeline_svg(r)


def test_highlight_overlapping_spans():
    text = "I hear <you> & I get it"
    verdicts = [{"tactic": "empathy", "kind": DE, "spans": [[0, 12]]},
                {"tactic": "active_listening", "kind": DE, "spans": [[7, 23]]},
                {"tactic": "insult", "kind": ESC, "spans": [[99, 120], [5, 5]]}]  # ignored
    assert highlight(text, verdicts) == (
        '<mark class="de" title="Empathy / validation">I hear </mark>'
        '<mark class="de" title="Empathy / validation, Active listening / reflection">'
        "&lt;you&gt;</mark>"
        '<mark class="de" title="Active listening / reflection"> &amp; I get it</mark>')
    mixed = [{"tactic": "empathy", "kind": DE, "spans": [[0, 6]]},
             {"tactic": "threat", "kind": ESC, "spans": [[2, 12]]}]
    assert highlight(text, mixed) == (
        '<mark class="de" title="Empathy / validation">I </mark>'
        '<mark class="mix" title="Empathy / validation, Threat">hear</mark>'
        '<mark class="esc" title="Threat"> &lt;you&gt;</mark> &amp; I get it')
    assert highlight("a<b", []) == "a&lt;b"


def test_svg_is_valid_xml_with_one_point_per_step():
    r = build_report(mixed_session())
    root = ET.fromstring(timeline_svg(r))
    assert root.tag == f"{SVG}svg" and root.get("viewBox") == "0 0 640 240"
    points = [c for c in root.iter(f"{SVG}circle") if c.get("class") == "point"]
    assert len(points) == 6  # start + 5 turns
    tips = [c.find(f"{SVG}title").text for c in points]
    assert tips[0] == "Start: agitation 70 (agitated)"
    assert tips[2] == "Turn 2: 63 -> 79 (+16.0, agitated)"
    bands = [b for b in root.iter(f"{SVG}rect") if b.get("class") == "band"]
    assert len(bands) == 5
    ys = [float(c.get("cy")) for c in points]
    assert ys[2] < ys[0] < ys[1]  # higher agitation is drawn higher: 79 > 70 > 63
    assert level_of(19.9) == "calm" and level_of(20) == "wary" and level_of(100) == "explosive"


def test_provenance_in_meta_and_store_round_trip():
    rec = mixed_session()
    r = build_report(rec)
    assert "deescalwild" in r["meta"]["versions"] and "git_commit" in r["meta"]
    assert r["meta"]["session"] == {"client": "test"}
    again = build_report(SessionRecord.from_dict(json.loads(json.dumps(rec.to_dict()))))
    for rep in (r, again):
        rep["meta"].pop("generated_at")
    assert again == r


def test_write_report_files_round_trip(tmp_path):
    r = build_report(mixed_session(), CARD)
    files = write_report(r, tmp_path / "out")
    assert set(files) == {"json", "md", "html", "svg", "png"}
    assert json.loads(files["json"].read_text(encoding="utf-8")) == r
    assert files["md"].read_text(encoding="utf-8").startswith("# After-action report")
    assert "[threat: \"or you're going to jail\"] +10.0" in files["md"].read_text()
    ET.parse(files["svg"])
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_png_without_matplotlib(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    r = build_report(mixed_session())
    with pytest.raises(DeescalwildError, match=r"deescalwild\[plot\]"):
        timeline_png(r, tmp_path / "t.png")
    files = write_report(r, tmp_path)
    assert "png" not in files and not (tmp_path / "timeline.png").exists()
    assert files["html"].exists() and "timeline.png skipped" in caplog.text


def test_long_session_and_dollar_title(tmp_path):
    """45 turns: every point drawn, axis labels thinned; a "$" in the title is not TeX."""
    turns = [turn(i, "Okay.", [], 50 + (i % 3), 50 + ((i + 1) % 3), 0.01) for i in range(45)]
    rec = SessionRecord("L", "c", "Fine of $5 and $10", "r", "rules", 50.0, 0.0, turns=turns)
    r = build_report(rec)
    root = ET.fromstring(timeline_svg(r))
    assert len([c for c in root.iter(f"{SVG}circle") if c.get("class") == "point"]) == 46
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "middle"]
    assert 10 < len(labels) <= 25 and labels[0] == "start" and "45" in labels
    assert timeline_png(r, tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
