"""The web simulator in a real browser: Debian's Chromium, driven by Python playwright, against
the real server (uvicorn in a thread) with the retrieval civilian over the sample corpus.

One trainee session end to end: pick a card, play four turns (calm and escalating), watch the
streamed replies, the tactic chips and the agitation meter, survive a refused turn, end the
session and read the after-action report; the history lists it, and the page holds at 360 px.
A trainee line carrying `<script>` and an `onerror` image must be shown as text, never become
markup. Screenshots go to `tmp_path` and, when it is set, `$DEESCALWILD_SCREENSHOT_DIR`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("DEESCALWILD_CHROMIUM", "/usr/bin/chromium")
CARD = "traffic-stop-night-shift"  # starts at 45: room to move both ways

# (line, the kind of chip it must get, the way agitation must move)
TURNS = [
    ("Good evening, I'm Officer Dana Reyes with the county police. I stopped you because "
     "your rear tail light is out.", "deescalation", -1),
    ("Step out of the car NOW! I don't care where you're going!", "escalation", +1),
    ("Sorry, that came out wrong. I can see you're worried about getting to work; this will "
     "only be a warning and then we'll get you on your way.", "deescalation", -1),
    ("I hear you. <script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"
     " Could you please tell me what time your shift starts?", "deescalation", -1),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(sample_corpus, db: Path, token: str | None = None):
    """The app over the shipped cards, a retrieval civilian over the sample corpus and a
    SQLite store, served by uvicorn in a thread; yields (base URL, simulator)."""
    uvicorn = pytest.importorskip("uvicorn")
    from deescalwild.bench.cases import scenario_cases
    from deescalwild.responders.retrieval import RetrievalResponder
    from deescalwild.sim.cards import CardLibrary
    from deescalwild.sim.engine import Simulator
    from deescalwild.sim.store import Store
    from deescalwild.sim.tactics import load_analyser
    from deescalwild.sim.web.app import create_app

    responder = RetrievalResponder.from_cases(
        c for sc in sample_corpus for c in scenario_cases(sc, history=3))
    responder.thread_safe = True  # a BM25 search only reads the index
    sim = Simulator(CardLibrary.load(), responder, load_analyser("rules"), Store(db))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(sim, token=token), host="127.0.0.1",
                                        port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the simulator server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", sim
    finally:
        srv.should_exit = True
        thread.join(10)
        sim.close()


@pytest.fixture
def server(sample_corpus, tmp_path):
    with _serve(sample_corpus, tmp_path / "sim.db") as s:
        yield s


@pytest.fixture
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="python playwright is not installed (pip install "
        "playwright; no browser download needed)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install "
                    "chromium) or set DEESCALWILD_CHROMIUM")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _save(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.evaluate("window.scrollTo(0, 0)")  # the sticky meter then sits under the scene
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("DEESCALWILD_SCREENSHOT_DIR"):
        out = Path(os.environ["DEESCALWILD_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, out / name)
    assert shot.stat().st_size > 5000  # a real rendering, not a blank page
    return shot


def _watch(page) -> list[str]:
    """Uncaught script errors and CSP violations of a page, as they happen."""
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}")
            if m.type == "error" and "Content Security Policy" in m.text else None)
    return problems


# wait_for_function predicates are written as functions: a bare expression is evaluated with
# eval(), which the page's Content-Security-Policy (rightly) refuses


def _meter(page) -> float:
    return float(page.get_attribute("#agitation", "aria-valuenow"))


def test_trainee_session_in_the_browser(server, browser, tmp_path):
    base, sim = server
    # reduced motion: the meter's width transition is off, so screenshots show final values
    context = browser.new_context(viewport={"width": 1100, "height": 900},
                                  reduced_motion="reduce")
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems = _watch(page)
    page.goto(base + "/")

    # the intended use is stated; every shipped card is offered with its persona
    assert "never for profiling" in " ".join(page.text_content("#intended-use").lower().split())
    page.wait_for_selector(f'[data-card-id="{CARD}"]')
    assert page.locator("#cards [data-card-id]").count() == len(sim.cards)
    card = page.locator(f'[data-card-id="{CARD}"]')
    assert "Renata Solis" in card.text_content() and "45" in card.text_content()
    assert page.is_disabled("#start")
    card.click()
    assert page.is_checked(f'input[value="{CARD}"]') and page.is_enabled("#start")
    _save(page, tmp_path, "sim_cards.png")
    page.click("#start")

    # the scene, the opening line, the meter at the card's start, focus in the message box
    page.wait_for_selector("#chat:not([hidden])")
    assert page.text_content("#scene-title").startswith("Traffic stop")
    assert page.locator(".msg.civilian").count() == 1
    assert "on my way to work" in page.text_content(".msg.civilian .text")
    assert _meter(page) == 45.0
    assert page.evaluate("document.activeElement.id") == "message"
    session_id = re.search(r"session=([0-9a-f]+)", page.url).group(1)

    for i, (line, kind, direction) in enumerate(TURNS):
        before = _meter(page)
        page.fill("#message", line)
        page.press("#message", "Enter")
        page.wait_for_function(
            "n => document.querySelectorAll('.msg.civilian').length === n"
            " && !document.querySelector('.msg.typing') && !document.querySelector('#message')"
            ".disabled", arg=i + 2)
        trainee = page.locator(".msg.trainee").nth(i)
        assert trainee.locator(".text").text_content() == line  # shown verbatim, as text
        reply = page.locator(".msg.civilian").nth(i + 1).locator(".text").text_content()
        assert reply.strip() and reply == sim.get(session_id).turns[i].reply
        after = _meter(page)
        assert (after - before) * direction > 0, (i, line, before, after)
        assert after == pytest.approx(sim.get(session_id).turns[i].agitation_after, abs=0.05)
        assert trainee.locator(f".chip.{kind}").count() >= 1, (i, line)
        assert page.is_hidden("#error")
        # the chip says why: its title and, on tap, a detail line quote the evidence
        chip = trainee.locator(f".chip.{kind}").first
        assert "Evidence" in chip.get_attribute("title")
        chip.click()
        assert trainee.locator(".chip-why").is_visible()

    # the hostile line stayed text: no element was made from it and nothing ran
    assert page.locator(".msg script, .msg img").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    band = int(page.get_attribute("#agitation", "data-band"))
    assert band == min(4, int(_meter(page) // 20))

    # a refused turn (over the server's length limit) is reported; the session goes on
    page.evaluate("document.querySelector('#message').removeAttribute('maxlength')")
    page.fill("#message", "please " * 400)
    page.press("#message", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "2,000" in page.text_content("#error-text")
    assert page.locator(".msg.trainee").count() == len(TURNS)  # the refused line was taken back
    assert page.input_value("#message").startswith("please")
    assert len(sim.get(session_id).turns) == len(TURNS)
    page.fill("#message", "Thank you for waiting. What questions do you have for me?")
    page.click("#send")
    page.wait_for_function("() => document.querySelectorAll('.msg.civilian').length === 6"
                           " && !document.querySelector('.msg.typing')")
    assert len(sim.get(session_id).turns) == len(TURNS) + 1
    assert page.is_hidden("#error")  # the next turn cleared the message
    _save(page, tmp_path, "sim_session.png")

    # the same session reopened on a 360 px screen (VR and tablet browsers): nothing overflows
    narrow = context.new_page()
    narrow.set_viewport_size({"width": 360, "height": 740})
    narrow_problems = _watch(narrow)
    narrow.goto(f"{base}/?session={session_id}")
    narrow.wait_for_function("() => document.querySelectorAll('.msg.trainee').length === 5")
    assert narrow.locator(".msg.trainee .chip").count() == page.locator(
        ".msg.trainee .chip").count()
    assert _meter(narrow) == _meter(page)
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 360
    _save(narrow, tmp_path, "sim_session_360px.png")
    narrow.close()

    # end -> the after-action report, with the score and the transcript (escaped)
    page.click("#end")
    page.wait_for_url(f"**/sessions/{session_id}/report")
    assert re.fullmatch(r"\d+ / 100", page.text_content(".score").strip())
    body = page.text_content("body")
    assert TURNS[0][0] in body and TURNS[3][0] in body
    assert page.locator("script, img").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    _save(page, tmp_path, "sim_report.png")

    # the history lists the session with its score and a link to the report
    page.goto(base + "/history")
    row = page.locator(f'tr[data-session-id="{session_id}"]')
    row.wait_for()
    assert "Traffic stop" in row.text_content()
    assert re.search(r"\d+", row.locator('td[data-label="Score"]').text_content())
    assert row.locator("a.report-link").get_attribute("href") == \
        f"/sessions/{session_id}/report"
    _save(page, tmp_path, "sim_history.png")
    page.set_viewport_size({"width": 360, "height": 740})  # rows stack into cards
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    assert problems == [] and narrow_problems == []
    context.close()


def test_page_with_a_token(sample_corpus, browser, tmp_path):
    """A server with --token: /?token=T once sets the cookie (the token leaves the address bar),
    then the page's own requests carry it; a stale page gets a visible, actionable message."""
    with _serve(sample_corpus, tmp_path / "sim.db", token="s3cret-token") as (base, sim):
        context = browser.new_context()
        context.set_default_timeout(10_000)
        page = context.new_page()
        problems = _watch(page)
        page.goto(f"{base}/?token=s3cret-token&card={CARD}")
        assert "token" not in page.url and f"card={CARD}" in page.url
        page.wait_for_selector(f'[data-card-id="{CARD}"]')
        assert page.is_checked(f'input[value="{CARD}"]')  # ?card= preselects
        page.click("#start")
        page.fill("#message", "Hi, I'm Officer Reyes. What's going on tonight?")
        page.press("#message", "Enter")
        page.wait_for_function("() => document.querySelectorAll('.msg.civilian').length === 2"
                               " && !document.querySelector('.msg.typing')")
        assert len(sim.sessions()) == 1 and sim.sessions()[0]["turns"] == 1

        context.clear_cookies()  # the cookie is gone (another browser profile, expiry)
        page.fill("#message", "Can you tell me more?")
        page.press("#message", "Enter")
        page.wait_for_selector("#error:not([hidden])")
        assert "token" in page.text_content("#error-text")
        assert page.input_value("#message") == "Can you tell me more?"  # nothing lost
        assert page.is_enabled("#message")
        assert problems == []
        context.close()
