"""`deescalwild simulate`: a session in the terminal, drawn with rich.

The trainee types a line; the tactics it was read for are shown at once (what the analyser saw
and why), the agitation meter moves, and the civilian's reply streams in. `/end` (or end of
input) ends the session and prints the after-action report's headline: the score with its
formula and the suggestions; the full report is written to files.

rich rather than textual: a scrolling transcript is what a chat is, it works in any terminal and
over ssh, and it reads from stdin, so a session can be scripted (`simulate < lines.txt`) and
tested through the CLI runner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from deescalwild.sim import agitation as rule
from deescalwild.sim.engine import Simulator
from deescalwild.sim.errors import SimError
from deescalwild.sim.taxonomy import label

HELP = "Type what you say to the civilian. /end ends the session and shows the report; /help."
BAND_STYLE = {"calm": "green", "wary": "cyan", "upset": "yellow", "agitated": "orange3",
              "explosive": "red"}
INTENDED_USE = ("For training officers in de-escalation: the score is practice feedback. Never "
                "for profiling real people or automated decisions about anyone.")


def meter(agitation: float, width: int = 20) -> str:
    """`[#####.....] 48 upset` as rich markup, coloured by band."""
    level = rule.level(agitation)
    filled = round(agitation / 100 * width)
    style = BAND_STYLE.get(level, "white")
    return (f"[{style}]{'█' * filled}[/][dim]{'░' * (width - filled)}[/] "
            f"[bold {style}]{agitation:.0f}[/] {level}")


def chips(verdicts: list[dict[str, Any]]) -> str:
    """One line per verdict: ✓/✗, the tactic's label, the words that triggered it, its effect."""
    lines = []
    for v in verdicts:
        good = v["kind"] == "deescalation"
        name = label(v["tactic"])
        words = " / ".join(f"“{e}”" for e in v.get("evidence", [])[:3])
        effect = v.get("effect", 0.0)
        mark, style = ("✓", "green") if good else ("✗", "red")
        lines.append(f"   [{style}]{mark} {escape(name)}[/] [dim]{escape(words)}"
                     f"{f' ({effect:+.1f})' if effect else ''}[/]")
    return "\n".join(lines)


def run_terminal(sim: Simulator, card_id: str, console: Console | None = None,
                 read: Callable[[], str] | None = None,
                 report_dir: Path | None = None) -> dict[str, Any]:
    """Play one session interactively; returns the report (written under `report_dir/ID/`)."""
    from deescalwild.sim.report import write_report

    console = console or Console(highlight=False)
    read = read or (lambda: console.input("[bold]you › [/]"))
    card = sim.cards.get(card_id)
    rec = sim.start(card.id, meta={"client": "terminal"})
    objectives = "\n".join(f"  • {escape(o)}" for o in card.learning_objectives)
    console.print(Panel(
        f"[bold]{escape(card.title)}[/] ({escape(card.call_type)})\n\n"
        f"[bold]Setting[/] {escape(card.setting)}\n[bold]Dispatch[/] {escape(card.dispatch)}\n\n"
        f"[bold]Objectives[/]\n{objectives}\n\n[dim]{escape(INTENDED_USE)}\n{HELP}[/]",
        title="deescalwild simulator", expand=False))
    console.print(f"agitation {meter(rec.agitation)}")
    if rec.opening:
        console.print(f"[bold magenta]{escape(card.persona.name)} ›[/] {escape(rec.opening)}")
    while True:
        try:
            line = read()
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        line = line.strip()
        if line in ("/end", "/quit", "/exit"):
            break
        if line in ("/help", "?"):
            console.print(f"[dim]{HELP}[/]")
            continue
        if not line:
            continue
        before: float | None = None
        try:
            events = sim.stream_turn(rec.id, line)
            for ev in events:
                if ev["type"] == "analysis":
                    before = ev["agitation_before"]
                    if ev["verdicts"]:
                        console.print(chips(ev["verdicts"]))
                    delta = ev["agitation_after"] - ev["agitation_before"]
                    console.print(f"   agitation {meter(ev['agitation_after'])} "
                                  f"[dim]({delta:+.1f})[/]")
                    console.print(f"[bold magenta]{escape(card.persona.name)} ›[/] ", end="")
                elif ev["type"] == "delta":
                    console.print(escape(ev["text"]), end="", soft_wrap=True)
                    console.file.flush()
                elif ev["type"] == "done":
                    console.print()
        except SimError as e:
            console.print(f"\n[red]{escape(str(e))}[/]")
            if before is not None:  # analysed, then the reply failed: nothing was recorded
                console.print(f"   agitation back to {meter(before)}")
    report = sim.end(rec.id)
    _print_summary(console, report)
    if report_dir is not None:
        paths = write_report(report, Path(report_dir) / rec.id)
        console.print(f"report: {paths.get('html', next(iter(paths.values())))}")
    return report


def _print_summary(console: Console, report: dict[str, Any]) -> None:
    score = report.get("score") or {}
    value = score.get("value")
    console.rule("after-action report")
    if value is None:
        console.print(f"score: — ({escape(str(score.get('reason', 'no turns played')))})")
    else:
        console.print(f"[bold]score {value}[/] / 100   [dim]{escape(score.get('formula', ''))}[/]")
    for s in report.get("suggestions", [])[:6]:
        text = s.get("text", s) if isinstance(s, dict) else s
        console.print(f" • {escape(str(text))}")
