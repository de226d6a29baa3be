"""The after-action report of a simulator session: what happened, what moved the civilian, what to
try next time, and a score whose formula is written in the report itself.

`build_report` turns a `SessionRecord` into one JSON-ready dict (schema
`deescalwild.sim-report/1`); every renderer (`to_markdown`, `to_html`, `timeline_svg`,
`timeline_png`) reads only that dict, so a report stored in SQLite renders the same way years
later, even when its card has been deleted. `docs/after-action-report.md` describes each part.

Choices, and why:

- **The score** is `clamp(50 + 0.5 * (start - end) + 4 * min(distinct de-escalation tactics, 6)
  - 8 * escalation occurrences, 0, 100)`, rounded half up. The agitation the civilian ended at
  carries the most weight because it is the outcome; tactics count once each (saying "I
  understand" ten times earns what saying it once does) and only in turns free of escalation (an
  "I understand, but shut up" earns no empathy credit); every escalation costs, each turn and
  behaviour separately, because a threat is not undone by a kind word later. The parts are
  stored beside the value so a trainer can redo the sum by hand. No turns: no score (None) with
  the reason.
- **Occurrences are per turn.** A tactic counts once per turn it appears in, however many
  verdicts or phrases found it there, so counts and score do not depend on how chatty the
  analyser is (the rules and an LLM judge may split evidence differently).
- **Suggestions are rules, not a model**: each names the turn and quotes the trainee's own words,
  so they can be checked against the transcript; at most six, the outcome and escalations first.
- **No dependencies**: the SVG is written by hand; matplotlib (the `plot` extra) is imported only
  for the PNG, and its absence skips that one file.
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import math
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deescalwild.atomic import atomic_write
from deescalwild.errors import DeescalwildError
from deescalwild.sim.records import SessionRecord, TurnRecord, Verdict
from deescalwild.sim.taxonomy import (
    DEESCALATION,
    ESCALATION,
    PERSONA_CALM,
    PERSONA_LABELS,
    PERSONA_TRIGGER,
    TACTICS,
    label,
)

if TYPE_CHECKING:
    from deescalwild.sim.cards import Card

__all__ = ["LEVELS", "REPORT_SCHEMA", "SCORE_FORMULA", "build_report", "level_of", "timeline_png",
           "timeline_svg", "to_html", "to_markdown", "write_report"]

log = logging.getLogger(__name__)

REPORT_SCHEMA = "deescalwild.sim-report/1"
INTENDED_USE = ("For training people in de-escalation: the score is practice feedback, not a "
                "validated grade. Never for profiling real people or for automated decisions "
                "about anyone (hiring, discipline, certification, dispatch).")
# score weights (docs/after-action-report.md)
BASE, AGITATION_WEIGHT, TACTIC_POINTS, TACTIC_CAP, ESCALATION_POINTS = 50, 0.5, 4, 6, 8
SCORE_FORMULA = (
    f"clamp({BASE} + {AGITATION_WEIGHT} x (agitation_start - agitation_end) "
    f"+ {TACTIC_POINTS} x min(distinct de-escalation tactics, {TACTIC_CAP}) "
    f"- {ESCALATION_POINTS} x escalation occurrences, 0, 100), rounded half up. "
    "A de-escalation tactic counts once, and only in a turn without escalation; an escalation "
    "occurrence is one escalation behaviour (taxonomy or persona trigger) in one turn.")
# agitation bands, upper bounds exclusive; the same cut points as sim/agitation.py's level()
LEVELS: tuple[tuple[str, float, float, str], ...] = (
    ("calm", 0, 20, "#e3f2e6"), ("wary", 20, 40, "#f4f7d9"), ("upset", 40, 60, "#fdf0d5"),
    ("agitated", 60, 80, "#fbdfd3"), ("explosive", 80, 100, "#f6c9c9"))
MAX_SUGGESTIONS, MAX_ESCALATION_SUGGESTIONS = 6, 3
TOP_MOMENTS = 3
# what to say instead of each escalation, and an example of each de-escalation tactic
INSTEAD = {
    "threat": ("say what happens next and why instead of threatening",
               "I need you to step over here so we can sort this out safely. Here's what happens "
               "next."),
    "shouted_command": ("lower your voice and make it a request",
                        "Could you put that down for me, please?"),
    "repeated_command": ("when an instruction is not followed, stop repeating it and ask what is "
                         "in the way", "What's making that hard right now?"),
    "insult": ("talk about the behaviour, never the person",
               "I can see you're frustrated. Let's work this out together."),
    "dismissive": ("acknowledge what they said before moving on",
                   "That sounds really frustrating. Tell me more about it."),
    "profanity": ("keep your language professional; swearing signals loss of control",
                  "I hear you. Let's slow this down."),
    "ultimatum": ("offer a choice instead of a countdown",
                  "You can sit in the car or on the kerb while we talk. Which would you prefer?"),
    PERSONA_TRIGGER: ("this person is set off by these words; find another way to say it",
                      "Help me understand what's going on for you."),
}
EXAMPLES = {
    "introduction": "Hi, I'm Officer <your name> with <your agency>. I'm here because someone "
                    "called about <the reason>.",
    "name_use": "What should I call you?",
    "empathy": "I can see this has been a really hard day.",
    "active_listening": "So what I'm hearing is that nobody has listened to you. Did I get that "
                        "right?",
    "open_question": "Can you tell me what happened tonight?",
    "explanation": "Here's what happens next, and why: I'm going to talk to everyone, then we'll "
                   "decide together.",
    "offering_choices": "Would you rather talk here or over by the car?",
    "calm_request": "Could you take a step back for me, please?",
    "reassurance": "You're not in trouble. I'm here to make sure everyone is okay.",
}
# the order unused tactics are suggested in: the ones that open a conversation first
UNUSED_ORDER = ("empathy", "open_question", "active_listening", "name_use", "explanation",
                "offering_choices", "reassurance", "calm_request")


def level_of(agitation: float) -> str:
    """The band an agitation value falls in (calm < 20 <= wary < 40 <= upset < 60 <= agitated
    < 80 <= explosive)."""
    for name, _lo, hi, _color in LEVELS:
        if agitation < hi:
            return name
    return LEVELS[-1][0]


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


@lru_cache(maxsize=1)
def _provenance() -> tuple[dict[str, str | None], str | None]:
    from deescalwild.provenance import git_commit, versions

    return versions(), git_commit()


def _label(tactic: str) -> str:
    return label(tactic) if tactic in TACTICS or tactic in PERSONA_LABELS else tactic


def _per_turn(turn: TurnRecord) -> dict[str, list[Verdict]]:
    """The turn's verdicts grouped by tactic, in first-seen order (one occurrence each)."""
    out: dict[str, list[Verdict]] = {}
    for v in turn.verdicts:
        out.setdefault(v.tactic, []).append(v)
    return out


def _has_escalation(turn: TurnRecord) -> bool:
    return any(v.kind == "escalation" for v in turn.verdicts)


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _evidence(turns: Sequence[TurnRecord], tactic: str, limit: int = 2) -> list[tuple[int, str]]:
    """(turn index, quoted trainee words) for a tactic, distinct, oldest first."""
    seen: list[tuple[int, str]] = []
    for t in turns:
        for v in t.verdicts:
            if v.tactic != tactic:
                continue
            words = [e for e in v.evidence if e.strip()] or [t.trainee[a:b] for a, b in v.spans]
            words = words or [t.trainee]
            for w in words:
                q = _quote(w)
                if q and all(q != s for _, s in seen):
                    seen.append((t.index, q))
                if len(seen) >= limit:
                    return seen
    return seen


def _score(session: SessionRecord) -> dict[str, Any]:
    turns = session.turns
    if not turns:
        return {"value": None, "formula": SCORE_FORMULA, "parts": {},
                "reason": "no turns were played: there is nothing to score"}
    start, end = session.agitation_start, turns[-1].agitation_after
    distinct = sorted({v.tactic for t in turns if not _has_escalation(t) for v in t.verdicts
                       if v.tactic in DEESCALATION}, key=DEESCALATION.index)
    occurrences = sum(1 for t in turns for tactic, vs in _per_turn(t).items()
                      if vs[0].kind == "escalation" or tactic in ESCALATION)
    agitation_points = AGITATION_WEIGHT * (start - end)
    tactic_points = TACTIC_POINTS * min(len(distinct), TACTIC_CAP)
    escalation_points = -ESCALATION_POINTS * occurrences
    raw = BASE + agitation_points + tactic_points + escalation_points
    value = _round_half_up(min(100.0, max(0.0, raw)))
    return {"value": value, "formula": SCORE_FORMULA,
            "parts": {"base": BASE, "agitation_start": _r(start), "agitation_end": _r(end),
                      "agitation_points": _r(agitation_points),
                      "distinct_deescalation": distinct, "tactic_points": tactic_points,
                      "escalation_occurrences": occurrences,
                      "escalation_points": escalation_points, "raw": _r(raw)}}


def _counts(turns: Sequence[TurnRecord]) -> dict[str, dict[str, int]]:
    de = dict.fromkeys(DEESCALATION, 0)
    esc = dict.fromkeys(ESCALATION, 0)
    persona = dict.fromkeys((PERSONA_TRIGGER, PERSONA_CALM), 0)
    other: dict[str, int] = {}
    for t in turns:
        for tactic in _per_turn(t):
            bucket = (de if tactic in de else esc if tactic in esc
                      else persona if tactic in persona else other)
            bucket[tactic] = bucket.get(tactic, 0) + 1
    out = {"deescalation": de, "escalation": esc, "persona": persona}
    if other:  # a judge may name something outside the taxonomy: shown, never dropped
        out["other"] = other
    return out


def _moment(t: TurnRecord, direction: int) -> dict[str, Any]:
    movers = [v for v in t.verdicts if v.effect * direction > 0] or list(t.verdicts)
    movers.sort(key=lambda v: -abs(v.effect))
    explained = sum(v.effect for v in t.verdicts)
    return {"turn": t.index, "trainee": t.trainee, "agitation_before": _r(t.agitation_before),
            "agitation_after": _r(t.agitation_after), "delta": _r(t.delta),
            "verdicts": [{"tactic": v.tactic, "kind": v.kind, "evidence": list(v.evidence),
                          "effect": _r(v.effect)} for v in movers],
            "other": _r(t.delta - explained)}  # drift, caps: what no verdict accounts for


def _moments(turns: Sequence[TurnRecord]) -> dict[str, list[dict[str, Any]]]:
    up = sorted((t for t in turns if t.delta > 0), key=lambda t: (-t.delta, t.index))
    down = sorted((t for t in turns if t.delta < 0), key=lambda t: (t.delta, t.index))
    return {"up": [_moment(t, 1) for t in up[:TOP_MOMENTS]],
            "down": [_moment(t, -1) for t in down[:TOP_MOMENTS]]}


def _where(pairs: Sequence[tuple[int, str]]) -> str:
    return "; ".join(f'turn {i + 1}: "{q}"' for i, q in pairs)


def _suggestions(session: SessionRecord, counts: dict[str, dict[str, int]],
                 persona_name: str | None) -> list[dict[str, Any]]:
    turns = session.turns
    if not turns:
        return []
    out: list[dict[str, Any]] = []
    start, end = session.agitation_start, turns[-1].agitation_after
    if end > start:
        worst = max(turns, key=lambda t: (t.delta, -t.index))
        out.append({"rule": "ended_above_start", "turns": [worst.index], "text": (
            f"The civilian ended more agitated than they started ({start:.0f} -> {end:.0f}). "
            f'The biggest rise was turn {worst.index + 1} ({worst.delta:+.0f}): '
            f'"{_quote(worst.trainee)}". Go back to what lowered it and slow down.')})
    # escalations, worst first: the agitation they added, then how often
    added: dict[str, float] = {}
    for t in turns:
        for v in t.verdicts:
            if v.kind == "escalation":
                added[v.tactic] = added.get(v.tactic, 0.0) + max(v.effect, 0.0)
    esc_used = [e for e in (*ESCALATION, PERSONA_TRIGGER)
                if counts["escalation"].get(e, 0) or counts["persona"].get(e, 0)]
    esc_used += [e for e in added if e not in esc_used]
    esc_used.sort(key=lambda e: (-added.get(e, 0.0), -(counts["escalation"].get(e, 0)
                                                        + counts["persona"].get(e, 0))))
    for e in esc_used[:MAX_ESCALATION_SUGGESTIONS]:
        how, example = INSTEAD.get(e, ("try a de-escalation tactic instead",
                                       EXAMPLES["empathy"]))
        ev = _evidence(turns, e)
        out.append({"rule": f"escalation:{e}", "turns": sorted({i for i, _ in ev}), "text": (
            f"{_label(e)} ({_where(ev)}): {how}. For example: \"{example}\"")})
    first_two = turns[:2]
    if not any(v.tactic == "introduction" for t in first_two for v in t.verdicts):
        out.append({"rule": "no_early_introduction", "turns": [t.index for t in first_two],
                    "text": "Introduce yourself early: say who you are and why you are there "
                            "in your first or second turn. For example: "
                            f"\"{EXAMPLES['introduction']}\""})
    unused = [u for u in UNUSED_ORDER if counts["deescalation"].get(u, 0) == 0]
    for u in unused:
        example = EXAMPLES[u]
        if u == "name_use" and persona_name:
            first = persona_name.split()[0]
            example = f"What should I call you? ... {first}, I want to make sure I understand."
        out.append({"rule": f"unused:{u}", "turns": [], "text": (
            f"You never used {_label(u).lower()}: {TACTICS[u].definition} "
            f"For example: \"{example}\"")})
    return out[:MAX_SUGGESTIONS]


def _strengths(turns: Sequence[TurnRecord]) -> list[dict[str, Any]]:
    """De-escalation tactics that lowered agitation most (sum of their effects), best first."""
    lowered: dict[str, list[float]] = {}
    for t in turns:
        for v in t.verdicts:
            if v.kind == "deescalation" and v.effect < 0:
                lowered.setdefault(v.tactic, []).append(v.effect)
    best = sorted(lowered.items(), key=lambda kv: (sum(kv[1]), kv[0]))[:3]
    return [{"tactic": k, "label": _label(k), "effect": _r(sum(vs)), "times": len(vs)}
            for k, vs in best]


def build_report(session: SessionRecord, card: Card | None = None) -> dict[str, Any]:
    """The after-action report of `session` as a JSON-ready dict (`REPORT_SCHEMA`). `card` adds
    its objectives and persona name; without it (a card deleted since) the session's own copy
    of the title is used."""
    from deescalwild.bench.bootstrap import percentiles

    turns = session.turns
    persona_name = getattr(getattr(card, "persona", None), "name", None) if card else None
    counts = _counts(turns)
    start = session.agitation_start
    values = [start, *(t.agitation_after for t in turns)]
    timeline = [{"step": 0, "turn": None, "agitation": _r(start), "delta": 0.0,
                 "level": level_of(start)}]
    timeline += [{"step": i, "turn": t.index, "agitation": _r(t.agitation_after),
                  "delta": _r(t.delta), "level": level_of(t.agitation_after)}
                 for i, t in enumerate(turns, 1)]
    lat = percentiles(t.latency_s for t in turns)
    first = percentiles(t.first_token_s for t in turns)
    versions, commit = _provenance()
    end_t = session.ended_at
    return {
        "schema": REPORT_SCHEMA,
        "session_id": session.id,
        "card": {"id": session.card_id, "title": card.title if card else session.card_title,
                 "objectives": list(card.learning_objectives) if card else [],
                 "persona": persona_name, "available": card is not None},
        "responder": session.responder, "analyser": session.analyser, "seed": session.seed,
        "started_at": session.started_at, "ended_at": end_t,
        "duration_s": None if end_t is None else _r(end_t - session.started_at, 3),
        "intended_use": INTENDED_USE,
        "agitation": {"start": _r(start), "end": _r(values[-1]), "min": _r(min(values)),
                      "max": _r(max(values)), "start_level": level_of(start),
                      "end_level": level_of(values[-1])},
        "opening": session.opening,
        "transcript": [{"index": t.index, "trainee": t.trainee, "reply": t.reply,
                        "verdicts": [v.to_dict() for v in t.verdicts],
                        "agitation_before": _r(t.agitation_before),
                        "agitation_after": _r(t.agitation_after), "delta": _r(t.delta),
                        "latency_s": t.latency_s, "first_token_s": t.first_token_s,
                        "error": t.error} for t in turns],
        "timeline": timeline,
        "counts": counts,
        "moments": _moments(turns),
        "suggestions": _suggestions(session, counts, persona_name),
        "strengths": _strengths(turns),
        "latency": {"turns": lat["n"], "p50_s": lat["p50"], "p95_s": lat["p95"],
                    "max_s": lat["max"], "mean_s": lat["mean"], "first_token_p50_s": first["p50"]},
        "score": _score(session),
        "meta": {"generated_at": time.time(), "versions": versions, "git_commit": commit,
                 "session": dict(session.meta)},
    }


# --- Markdown ------------------------------------------------------------------------------
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_<>[]|#"})


def _md(text: str) -> str:
    """User or model text made inert in Markdown (no HTML, links or emphasis), on one line."""
    return " ".join(str(text).split()).translate(_MD_SPECIAL)


def _annotation(v: dict[str, Any]) -> str:
    ev = "; ".join(f'"{_md(e)}"' for e in v.get("evidence", [])) or "(no quote)"
    return f"[{v['tactic']}: {ev}] {v.get('effect', 0.0):+.1f}"


def _fmt_s(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def _score_line(score: dict[str, Any]) -> str:
    if score["value"] is None:
        return f"**Score: none**: {score.get('reason', '')}"
    p = score["parts"]
    return (f"**Score: {score['value']} / 100** = clamp({p['base']} {p['agitation_points']:+g} "
            f"(agitation {p['agitation_start']:g} -> {p['agitation_end']:g}) "
            f"+{p['tactic_points']} ({len(p['distinct_deescalation'])} distinct tactics) "
            f"{p['escalation_points']:+d} ({p['escalation_occurrences']} escalations)) "
            f"= {p['raw']:g}")


def to_markdown(report: dict[str, Any]) -> str:
    """A readable after-action report: score and formula, counts, moments, suggestions, and the
    transcript with each verdict as `[tactic: "the words"] effect`."""
    card, ag = report["card"], report["agitation"]
    L = [f"# After-action report: {_md(card['title'] or card['id'])}", "",
         f"> {INTENDED_USE}", "",
         f"Session {_md(report['session_id'])} · card {_md(card['id'])} · responder "
         f"{_md(report['responder'])} · analyser {_md(report['analyser'])} · "
         f"{len(report['transcript'])} turns · agitation {ag['start']:g} ({ag['start_level']}) "
         f"-> {ag['end']:g} ({ag['end_level']})", ""]
    if card["objectives"]:
        L += ["## Learning objectives", "", *(f"- {_md(o)}" for o in card["objectives"]), ""]
    L += ["## Score", "", _score_line(report["score"]), "",
          f"Formula: {report['score']['formula']}", "", "## Agitation", "",
          "![Agitation per turn](timeline.svg)", "",
          " -> ".join(f"{p['agitation']:g}" for p in report["timeline"]), ""]
    L += ["## Tactics", "", "| tactic | kind | turns |", "|---|---|---:|"]
    for kind, group in report["counts"].items():
        L += [f"| {_md(_label(k))} | {kind} | {n} |" for k, n in group.items()]
    L += [""]
    for title, key in (("Turns that raised agitation most", "up"),
                       ("Turns that lowered agitation most", "down")):
        L += [f"## {title}", ""]
        for m in report["moments"][key] or []:
            why = ", ".join(f"{v['tactic']} {v['effect']:+.1f}" for v in m["verdicts"]) or "none"
            other = f"; other {m['other']:+.1f}" if m["other"] else ""
            L.append(f"- Turn {m['turn'] + 1} ({m['delta']:+.1f}): \"{_md(m['trainee'])}\" "
                     f"(verdicts: {why}{other})")
        if not report["moments"][key]:
            L.append("- none")
        L.append("")
    if report["strengths"]:
        L += ["## What worked", "", *(f"- {s['label']}: {s['effect']:+.1f} over {s['times']} "
                                      f"use(s)" for s in report["strengths"]), ""]
    L += ["## Suggestions", ""]
    L += [f"{i}. {_md(s['text'])}" for i, s in enumerate(report["suggestions"], 1)] or ["- none"]
    L += ["", "## Transcript", ""]
    if report["opening"]:
        L += [f"**Civilian (opening):** {_md(report['opening'])}", ""]
    for t in report["transcript"]:
        L += [f"### Turn {t['index'] + 1} · agitation {t['agitation_before']:g} -> "
              f"{t['agitation_after']:g} ({t['delta']:+.1f}) · {_fmt_s(t['latency_s'])}", "",
              f"**Trainee:** {_md(t['trainee'])}", ""]
        if t["verdicts"]:
            L += [" ".join(_annotation(v) for v in t["verdicts"]), ""]
        L += [f"**Civilian:** {_md(t['reply'])}", ""]
        if t.get("error"):
            L += [f"*(responder error: {_md(t['error'])})*", ""]
    lat = report["latency"]
    L += ["## Latency", "", f"{lat['turns']} turns: p50 {_fmt_s(lat['p50_s'])}, p95 "
          f"{_fmt_s(lat['p95_s'])}, max {_fmt_s(lat['max_s'])} (server side, whole reply)", "",
          f"*Generated by deescalwild {report['meta']['versions'].get('deescalwild')} "
          f"(commit {report['meta']['git_commit'] or 'unknown'}).*", ""]
    return "\n".join(L)


# --- SVG -----------------------------------------------------------------------------------
def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def timeline_svg(report: dict[str, Any], width: int = 640, height: int = 240) -> str:
    """An inline SVG line chart of agitation per step (start, then each turn) over the level
    bands; each point has a `<title>` tooltip with the turn and its change."""
    pts = report["timeline"]
    left, right, top, bottom = 36, 72, 10, 28
    pw, ph = width - left - right, height - top - bottom
    n = max(len(pts) - 1, 1)

    def x(step: int) -> float:
        return left + pw * step / n

    def y(a: float) -> float:
        return top + ph * (100 - max(0.0, min(100.0, a))) / 100

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="Agitation per turn" class="timeline" '
           f'font-family="sans-serif" font-size="11">',
           "<title>Agitation per turn</title>"]
    for name, lo, hi, color in LEVELS:
        out.append(f'<rect class="band" x="{left}" y="{y(hi):.1f}" width="{pw}" '
                   f'height="{y(lo) - y(hi):.1f}" fill="{color}"><title>{name}: {lo:g}-{hi:g}'
                   f"</title></rect>")
        out.append(f'<text x="{left + pw + 6}" y="{(y(lo) + y(hi)) / 2 + 4:.1f}" '
                   f'fill="#555">{name}</text>')
    for tick in range(0, 101, 20):
        out.append(f'<line x1="{left - 4}" x2="{left + pw}" y1="{y(tick):.1f}" '
                   f'y2="{y(tick):.1f}" stroke="#bbb" stroke-width="0.5"/>')
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    every = max(1, math.ceil(n / 20))
    for p in pts:
        if p["step"] % every == 0 or p["step"] == len(pts) - 1:
            label = "start" if p["turn"] is None else str(p["turn"] + 1)
            out.append(f'<text x="{x(p["step"]):.1f}" y="{height - bottom + 16}" '
                       f'text-anchor="middle">{label}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 2}" text-anchor="middle" '
               f'fill="#555">turn</text>')
    line = " ".join(f"{x(p['step']):.1f},{y(p['agitation']):.1f}" for p in pts)
    out.append(f'<polyline points="{line}" fill="none" stroke="#1f4e79" stroke-width="2"/>')
    for p in pts:
        if p["turn"] is None:
            tip = f"Start: agitation {p['agitation']:g} ({p['level']})"
        else:
            before = p["agitation"] - p["delta"]
            tip = (f"Turn {p['turn'] + 1}: {before:g} -> {p['agitation']:g} "
                   f"({p['delta']:+.1f}, {p['level']})")
        color = "#c62828" if p["delta"] > 0 else "#2e7d32" if p["delta"] < 0 else "#1f4e79"
        out.append(f'<circle class="point" cx="{x(p["step"]):.1f}" cy="{y(p["agitation"]):.1f}" '
                   f'r="4" fill="{color}"><title>{_e(tip)}</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


# --- HTML ----------------------------------------------------------------------------------
def highlight(text: str, verdicts: Sequence[dict[str, Any]]) -> str:
    """`text` escaped, with each verdict's spans wrapped in `<mark>`. Overlapping spans are cut
    at every boundary, so each piece of text is escaped exactly once and marks never nest; a
    piece's title names every tactic covering it."""
    n = len(text)
    spans = []
    for v in verdicts:
        for a, b in v.get("spans", []):
            a, b = max(0, min(int(a), n)), max(0, min(int(b), n))
            if a < b:
                spans.append((a, b, v["tactic"], v.get("kind", "")))
    cuts = sorted({0, n, *(a for a, _, _, _ in spans), *(b for _, b, _, _ in spans)})
    out = []
    for lo, hi in itertools.pairwise(cuts):
        cover = [(t, k) for a, b, t, k in spans if a <= lo and hi <= b]
        piece = _e(text[lo:hi])
        if not cover:
            out.append(piece)
            continue
        kinds = {k for _, k in cover}
        cls = "mix" if len(kinds) > 1 else "esc" if "escalation" in kinds else "de"
        names = ", ".join(dict.fromkeys(_label(t) for t, _ in cover))
        out.append(f'<mark class="{cls}" title="{_e(names)}">{piece}</mark>')
    return "".join(out)


_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;color:#222}
.banner{background:#fff8e1;border:1px solid #e0c060;padding:.5rem .8rem;border-radius:6px}
h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
.score{font-size:2.4rem;font-weight:700}.formula{color:#555;font-size:.9rem}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .6rem;text-align:left}
td.n{text-align:right}tr.zero td{color:#999}
mark.de{background:#c8e6c9}mark.esc{background:#ffcdd2}mark.mix{background:#ffe0b2}
.turn{border-left:3px solid #ccc;padding-left:.8rem;margin:1rem 0}
.who{font-weight:600}.up{color:#c62828}.down{color:#2e7d32}.chip{display:inline-block;
margin:.1rem .2rem;padding:0 .4rem;border-radius:4px;font-size:.85rem;background:#eee}
.chip.escalation{background:#ffcdd2}.chip.deescalation{background:#c8e6c9}
.meta{color:#666;font-size:.85rem}svg.timeline{width:100%;height:auto;max-width:42rem}
"""


def _delta_span(d: float) -> str:
    cls = "up" if d > 0 else "down" if d < 0 else ""
    return f'<span class="{cls}">{d:+.1f}</span>'


def to_html(report: dict[str, Any]) -> str:
    """A self-contained page (inline CSS and SVG, no script, no external resource) with every
    piece of user, card and model text escaped."""
    card, ag, score = report["card"], report["agitation"], report["score"]
    title = _e(card["title"] or card["id"])
    H = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         f"<title>After-action report: {title}</title><style>{_CSS}</style></head><body>",
         f'<p class="banner" role="note"><strong>Intended use.</strong> {_e(INTENDED_USE)}</p>',
         f"<h1>After-action report: {title}</h1>",
         f'<p class="meta">Session {_e(report["session_id"])} · card {_e(card["id"])} · '
         f'responder {_e(report["responder"])} · analyser {_e(report["analyser"])} · '
         f'{len(report["transcript"])} turns · agitation {ag["start"]:g} ({_e(ag["start_level"])})'
         f' &rarr; {ag["end"]:g} ({_e(ag["end_level"])})</p>']
    if card["objectives"]:
        H += ["<h2>Learning objectives</h2><ul>",
              *(f"<li>{_e(o)}</li>" for o in card["objectives"]), "</ul>"]
    H.append("<h2>Score</h2>")
    if score["value"] is None:
        H.append(f'<p class="score">n/a</p><p>{_e(score.get("reason", ""))}</p>')
    else:
        p = score["parts"]
        H += [f'<p class="score">{score["value"]} / 100</p>', "<table>",
              f'<tr><td>base</td><td class="n">{p["base"]}</td></tr>',
              f'<tr><td>agitation {p["agitation_start"]:g} &rarr; {p["agitation_end"]:g}, '
              f'x {AGITATION_WEIGHT}</td><td class="n">{p["agitation_points"]:+g}</td></tr>',
              f'<tr><td>distinct de-escalation tactics: '
              f'{_e(", ".join(p["distinct_deescalation"]) or "none")}</td>'
              f'<td class="n">{p["tactic_points"]:+d}</td></tr>',
              f'<tr><td>escalation occurrences: {p["escalation_occurrences"]}</td>'
              f'<td class="n">{p["escalation_points"]:+d}</td></tr>',
              f'<tr><th>raw (before clamping to 0-100)</th><th class="n">{p["raw"]:g}</th></tr>',
              "</table>"]
    H.append(f'<p class="formula">Formula: {_e(score["formula"])}</p>')
    H += ["<h2>Agitation</h2>", timeline_svg(report)]
    H += ["<h2>Tactics</h2><table><tr><th>tactic</th><th>kind</th><th>turns</th></tr>"]
    for kind, group in report["counts"].items():
        H += [f'<tr class="{"zero" if not n else ""}"><td>{_e(_label(k))}</td><td>{_e(kind)}'
              f'</td><td class="n">{n}</td></tr>' for k, n in group.items()]
    H.append("</table>")
    for head, key in (("Turns that raised agitation most", "up"),
                      ("Turns that lowered agitation most", "down")):
        H.append(f"<h2>{head}</h2><ul>")
        for m in report["moments"][key]:
            why = ", ".join(f"{_e(_label(v['tactic']))} {v['effect']:+.1f}" for v in m["verdicts"])
            other = f"; other {m['other']:+.1f}" if m["other"] else ""
            H.append(f"<li>Turn {m['turn'] + 1} ({_delta_span(m['delta'])}): "
                     f"&ldquo;{_e(m['trainee'])}&rdquo; <span class=\"meta\">{why or 'no verdict'}"
                     f"{other}</span></li>")
        H.append("</ul>" if report["moments"][key] else "<li>none</li></ul>")
    if report["strengths"]:
        H += ["<h2>What worked</h2><ul>",
              *(f"<li>{_e(s['label'])}: {s['effect']:+.1f} over {s['times']} use(s)</li>"
                for s in report["strengths"]), "</ul>"]
    H += ["<h2>Suggestions</h2><ol>",
          *(f"<li>{_e(s['text'])}</li>" for s in report["suggestions"]), "</ol>"]
    H.append("<h2>Transcript</h2>")
    if report["opening"]:
        H.append(f'<div class="turn"><span class="who">Civilian (opening):</span> '
                 f'{_e(report["opening"])}</div>')
    for t in report["transcript"]:
        chips = "".join(
            f'<span class="chip {_e(v["kind"])}" title="{_e(v.get("why", ""))}">'
            f'{_e(_label(v["tactic"]))}: '
            f'{"; ".join(f"&ldquo;{_e(e)}&rdquo;" for e in v.get("evidence", []))} '
            f'{v.get("effect", 0.0):+.1f}</span>' for v in t["verdicts"])
        H.append(f'<div class="turn" id="turn-{t["index"] + 1}"><p class="meta">Turn '
                 f'{t["index"] + 1} · agitation {t["agitation_before"]:g} &rarr; '
                 f'{t["agitation_after"]:g} ({_delta_span(t["delta"])}) · '
                 f'{_fmt_s(t["latency_s"])}</p>'
                 f'<p><span class="who">Trainee:</span> {highlight(t["trainee"], t["verdicts"])}'
                 f"</p><p>{chips}</p>"
                 f'<p><span class="who">Civilian:</span> {_e(t["reply"])}</p>'
                 + (f'<p class="meta">responder error: {_e(t["error"])}</p>' if t.get("error")
                    else "") + "</div>")
    lat, meta = report["latency"], report["meta"]
    H += ["<h2>Latency</h2>", f"<p>{lat['turns']} turns: p50 {_fmt_s(lat['p50_s'])}, p95 "
          f"{_fmt_s(lat['p95_s'])}, max {_fmt_s(lat['max_s'])} (server side, whole reply)</p>",
          f'<p class="meta">deescalwild {_e(meta["versions"].get("deescalwild"))}, commit '
          f'{_e(meta["git_commit"] or "unknown")}, report schema {_e(report["schema"])}</p>',
          "</body></html>"]
    return "\n".join(H)


# --- PNG and files -------------------------------------------------------------------------
def timeline_png(report: dict[str, Any], path: str | Path) -> Path:
    """The agitation timeline as a PNG (matplotlib, the `plot` extra), written atomically."""
    try:
        import matplotlib
    except ImportError as e:
        raise DeescalwildError("the timeline PNG needs matplotlib: "
                               "pip install 'deescalwild[plot]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = report["timeline"]
    steps = [p["step"] for p in pts]
    fig, ax = plt.subplots(figsize=(7, 3), dpi=120)
    try:
        for name, lo, hi, color in LEVELS:
            ax.axhspan(lo, hi, color=color, zorder=0)
            ax.text(1.01, (lo + hi) / 2, name, transform=ax.get_yaxis_transform(),
                    va="center", fontsize=8, color="#555")
        ax.plot(steps, [p["agitation"] for p in pts], marker="o", color="#1f4e79", zorder=2)
        ax.set_ylim(0, 100)
        ax.set_xlim(-0.2, max(steps[-1], 1) + 0.2)
        every = max(1, math.ceil(len(pts) / 20))
        shown = [p for p in pts if p["step"] % every == 0 or p is pts[-1]]
        ax.set_xticks([p["step"] for p in shown])
        ax.set_xticklabels(["start" if p["turn"] is None else str(p["turn"] + 1) for p in shown],
                           fontsize=8)
        ax.set_xlabel("turn")
        ax.set_ylabel("agitation")
        ax.set_title(f"Agitation: {report['card']['title'] or report['card']['id']}",
                     fontsize=10, parse_math=False)  # a "$" in a title is not TeX
        fig.tight_layout()
        path = Path(path)
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format="png")
    finally:
        plt.close(fig)
    return path


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """report.json, report.md, report.html, timeline.svg and timeline.png in `out_dir`, each
    written atomically. Without matplotlib the PNG is skipped with a logged note (the HTML's
    timeline is the inline SVG, so nothing else depends on it)."""
    out = Path(out_dir)
    files = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html",
             "svg": out / "timeline.svg"}
    texts = {"json": json.dumps(report, ensure_ascii=False, indent=2) + "\n",
             "md": to_markdown(report), "html": to_html(report),
             "svg": '<?xml version="1.0" encoding="UTF-8"?>\n' + timeline_svg(report) + "\n"}
    for key, path in files.items():
        with atomic_write(path) as fh:
            fh.write(texts[key])
    try:
        files["png"] = timeline_png(report, out / "timeline.png")
    except DeescalwildError as e:
        log.warning("timeline.png skipped: %s", e)
    return files
