"""The simulator's verbs as a user types them: `cards`, a scripted `simulate`, and `serve`'s
refusal to expose itself without a token."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deescalwild.cli import cli

CALM = ("Good evening, I'm Officer Reyes with the county police. What's going on tonight?\n"
        "I can see you're worried about getting to work. You're not in trouble.\n/end\n")
THREATS = ("GET OUT OF THE CAR NOW or I will tase you!\n"
           "Shut up, idiot. This is your last chance!\n/end\n")


def _run(args, input=None):
    return CliRunner().invoke(cli, args, input=input, catch_exceptions=False)


def test_cards_list_show_and_validate(tmp_path):
    out = _run(["cards", "list", "--json"])
    cards = [json.loads(line) for line in out.output.splitlines()]
    assert len(cards) >= 8 and {"id", "title", "agitation_start"} <= cards[0].keys()
    shown = _run(["cards", "show", cards[0]["id"]]).output
    assert f"id: {cards[0]['id']}" in shown and "# scene text given to the responder" in shown
    assert _run(["cards", "validate", str(tmp_path.parent / tmp_path.name)]).exit_code == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\ntitle: X\nagitation_start: loud\n")
    res = CliRunner().invoke(cli, ["cards", "validate", str(bad)])
    assert res.exit_code == 1 and "bad.yaml:3" in res.output and "agitation_start" in res.output


def test_unknown_card_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["simulate", "--card", "nope"], input="/end\n")
    assert res.exit_code != 0 and "unknown card 'nope'" in str(res.exception)


def _play(tmp_path, card, script):
    out = _run(["simulate", "--card", card, "--db", str(tmp_path / "sim.db"),
                "--report-dir", str(tmp_path / "reports")], input=script)
    reports = sorted((tmp_path / "reports").glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    return out.output, json.loads(reports[-1].read_text())


def test_scripted_terminal_sessions_write_reports_and_react_to_tactics(tmp_path):
    card = "traffic-stop-night-shift"
    calm_out, calm = _play(tmp_path, card, CALM)
    threat_out, threat = _play(tmp_path, card, THREATS)
    assert "Introduction" in calm_out and "Threat" in threat_out  # verdicts shown as they happen
    assert "score" in calm_out and "after-action report" in calm_out
    start = calm["timeline"][0]["agitation"]
    assert calm["timeline"][-1]["agitation"] < start < threat["timeline"][-1]["agitation"]
    assert calm["score"]["value"] > threat["score"]["value"]
    assert len(calm["transcript"]) == len(threat["transcript"]) == 2
    for name in ("report.html", "report.md", "timeline.svg"):
        assert (tmp_path / "reports" / calm["session_id"] / name).is_file()
    # both sessions are in the database `serve` would show
    from deescalwild.sim.store import Store

    assert len(Store(tmp_path / "sim.db").list_sessions()) == 2


def test_serve_refuses_a_public_address_without_a_token(monkeypatch):
    monkeypatch.delenv("DEESCALWILD_TOKEN", raising=False)
    res = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert res.exit_code != 0 and "--token" in str(res.exception)


def test_terminal_takes_back_a_turn_whose_reply_failed(tmp_path):
    import io

    from rich.console import Console

    from deescalwild.core import Reply
    from deescalwild.responders.base import Responder, ResponderError
    from deescalwild.sim.cards import CardLibrary
    from deescalwild.sim.engine import Simulator
    from deescalwild.sim.tactics import load_analyser
    from deescalwild.sim.terminal import run_terminal

    class FailsOnce(Responder):
        prefix = "fails-once"
        failed = False

        def respond(self, request):
            if not self.failed:
                self.failed = True
                raise ResponderError("backend down")
            return Reply(text="Fine.", latency_s=0.0, first_token_s=0.0)

    sim = Simulator(CardLibrary.load(), FailsOnce(), load_analyser("rules"))
    lines = iter(["GET OUT OF THE CAR NOW or I will tase you!", "Sorry. Please step out.",
                  "/end"])
    out = io.StringIO()
    report = run_terminal(sim, "traffic-stop-night-shift", Console(file=out, width=120),
                          read=lambda: next(lines))
    text = out.getvalue()
    assert "backend down" in text and "agitation back to" in text
    assert [t["trainee"] for t in report["transcript"]] == ["Sorry. Please step out."]
