"""The web simulator's REST API (FastAPI TestClient): the whole flow, streamed turns, every bad
input answered 4xx with a message (and the session still usable), rate limits, the token,
security headers."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from deescalwild.bench.cases import scenario_cases
from deescalwild.core import Reply
from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import Responder, ResponderError
from deescalwild.responders.retrieval import RetrievalResponder
from deescalwild.sim.cards import CardLibrary
from deescalwild.sim.engine import Simulator
from deescalwild.sim.report import REPORT_SCHEMA
from deescalwild.sim.store import Store
from deescalwild.sim.tactics import load_analyser
from deescalwild.sim.web.app import Limits, create_app, serve

_TestClient = pytest.importorskip("fastapi.testclient").TestClient


def TestClient(app):  # fastapi's, on a loopback Host (security.py refuses others)
    return _TestClient(app, base_url="http://127.0.0.1")


CALM = ["Hi, I'm Officer Diaz. What's your name?",
        "I understand this is frustrating. Can you tell me what happened?",
        "Would you like to sit down while we talk, or stay standing?"]


@pytest.fixture(scope="module")
def responder(sample_corpus):
    r = RetrievalResponder.from_cases(c for s in sample_corpus for c in scenario_cases(s))
    r.thread_safe = True
    return r


@pytest.fixture(scope="module")
def library():
    return CardLibrary.load()


def make_sim(library, responder, store=None) -> Simulator:
    return Simulator(library, responder, load_analyser("rules"), store or Store(":memory:"))


@pytest.fixture
def sim(library, responder):
    return make_sim(library, responder)


@pytest.fixture
def client(sim):
    return TestClient(create_app(sim))


def new_session(client, card_id: str | None = None) -> str:
    r = client.post("/api/sessions", json={"card_id": card_id or client.app.state.sim.cards.ids[0]})
    assert r.status_code == 200, r.text
    return r.json()["session_id"]


def assert_error(r, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["status"] == status and err["type"] and err["message"]
    for w in words:
        assert w.lower() in err["message"].lower(), err["message"]
    return err


def test_full_rest_flow(client, sim):
    cards = client.get("/api/cards").json()
    assert len(cards) >= 8 and [c["id"] for c in cards] == sim.cards.ids
    card = sim.cards.get(cards[0]["id"])
    r = client.post("/api/sessions", json={"card_id": card.id, "meta": {"client": "pytest"}})
    assert r.status_code == 200
    start = r.json()
    sid = start["session_id"]
    assert start["card"]["id"] == card.id and start["agitation"] == card.agitation_start
    assert start["opening"] == card.opening.strip() and isinstance(start["level"], str)
    assert "escalated_by" not in json.dumps(start["card"])  # triggers are not shown up front

    before = float(card.agitation_start)
    for i, text in enumerate(CALM):
        r = client.post(f"/api/sessions/{sid}/turns", json={"text": text})
        assert r.status_code == 200, r.text
        t = r.json()
        assert t["turn"] == i and t["reply"].strip() and t["latency_s"] >= 0
        assert t["agitation_before"] == pytest.approx(before)
        assert 0 <= t["agitation"] <= 100
        assert all({"tactic", "kind", "evidence", "spans"} <= v.keys() for v in t["tactics"])
        before = t["agitation"]
        assert float(r.headers["x-response-time"].removesuffix("ms")) >= 0
    rec = client.get(f"/api/sessions/{sid}").json()
    assert [t["trainee"] for t in rec["turns"]] == CALM and not rec["ended"]
    assert rec["agitation"] == pytest.approx(before) and rec["meta"]["client"] == {
        "client": "pytest"}
    assert_error(client.get(f"/api/sessions/{sid}/report"), 409, "end it")

    report = client.post(f"/api/sessions/{sid}/end").json()
    assert report["schema"] == REPORT_SCHEMA
    assert client.post(f"/api/sessions/{sid}/end").json() == report  # ending twice: same
    assert client.get(f"/api/sessions/{sid}/report").json() == report
    page = client.get(f"/sessions/{sid}/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "I&#x27;m Officer Diaz" in page.text or "I&#39;m Officer Diaz" in page.text
    [row] = client.get("/api/sessions").json()
    assert row["id"] == sid and row["turns"] == 3 and row["ended_at"] is not None
    assert row["score"] == report["score"]["value"]
    assert client.get(f"/api/sessions/{sid}").json()["ended"]


def test_streamed_turn_is_ndjson_events_in_order(client, sim):
    sid = new_session(client)
    r = client.post(f"/api/sessions/{sid}/turns", json={"text": CALM[1], "stream": True})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    events = [json.loads(line) for line in r.text.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "analysis" and kinds[-1] == "done" and kinds.count("delta") >= 1
    assert set(kinds[1:-1]) == {"delta"}
    done = events[-1]["turn"]
    assert "".join(e["text"] for e in events if e["type"] == "delta").strip() == done["reply"]
    assert events[0]["agitation_after"] == done["agitation_after"]
    assert events[0]["verdicts"] == done["verdicts"]
    assert sim.get(sid).turns[0].reply == done["reply"]  # stored like a plain turn
    # a plain turn after a streamed one continues the same session
    assert client.post(f"/api/sessions/{sid}/turns", json={"text": "ok"}).json()["turn"] == 1


def test_bad_input_is_4xx_and_the_session_stays_usable(client, sim):
    sid = new_session(client)
    turns = f"/api/sessions/{sid}/turns"
    assert_error(client.post("/api/sessions", json={"card_id": "no-such-card"}), 404,
                 "no-such-card")
    assert_error(client.post(turns, json={"text": "   "}), 422, "empty")
    assert_error(client.post(turns, json={"text": "a" * 2001}), 422, "2,001", "2,000")
    assert_error(client.post(turns, json={"text": "a" * 70_000}), 413, "bytes")

    def chunked():  # no Content-Length: the size is counted as the bytes arrive
        for _ in range(80):
            yield b"x" * 1024

    assert_error(client.post(turns, content=chunked(),
                             headers={"content-type": "application/json"}), 413)
    assert_error(client.post(turns, content=b'{"text": "hi"',
                             headers={"content-type": "application/json"}), 400, "JSON")
    assert_error(client.post(turns, json={"text": 5}), 422, "text")
    assert_error(client.post(turns, json={"text": "hi", "stream": {"x": 1}}), 422, "stream")
    assert_error(client.post(turns, json={}), 422, "text: required")
    assert_error(client.post(turns, json={"txt": "hi"}), 422, "txt: unknown field")
    assert_error(client.post(turns, json=["hi"]), 422)
    assert_error(client.post(turns, content=b"", headers={"content-type": "application/json"}),
                 422, "request body")
    assert_error(client.post("/api/sessions/nope/turns", json={"text": "hi"}), 404, "nope")
    assert_error(client.post("/api/sessions/nope/turns", json={"text": "hi", "stream": True}),
                 404)
    assert_error(client.get("/api/sessions/nope"), 404)
    assert_error(client.post("/api/sessions/nope/end"), 404)
    assert_error(client.get("/sessions/nope/report"), 404)
    assert_error(client.get("/api/sessions?limit=0"), 422, "limit")
    assert_error(client.get("/api/nothing-here"), 404, "/api/nothing-here")
    assert_error(client.delete("/api/cards"), 405)
    assert_error(client.post(turns, content=b"{}", headers={"content-length": "abc"}), 400)
    # nothing above was recorded, and the session still plays
    assert sim.get(sid).turns == []
    assert client.post(turns, json={"text": CALM[0]}).json()["turn"] == 0

    client.post(f"/api/sessions/{sid}/end")
    assert_error(client.post(turns, json={"text": "hello?"}), 409, "ended")
    assert_error(client.post(turns, json={"text": "hello?", "stream": True}), 409)
    assert len(sim.get(sid).turns) == 1


def test_max_turn_chars_limit_of_the_app(sim):
    client = TestClient(create_app(sim, limits=Limits(max_turn_chars=10)))
    sid = new_session(client)
    assert_error(client.post(f"/api/sessions/{sid}/turns", json={"text": "a" * 11}), 422, "10")
    assert client.post(f"/api/sessions/{sid}/turns", json={"text": "hi there"}).status_code == 200


class Broken(Responder):
    prefix = "broken"

    def respond(self, request):
        return Reply(text="", error="backend down")


def test_responder_failure_is_502_and_not_recorded(library):
    sim = make_sim(library, Broken())
    client = TestClient(create_app(sim))
    sid = new_session(client)
    assert_error(client.post(f"/api/sessions/{sid}/turns", json={"text": "hi"}), 502,
                 "backend down")
    r = client.post(f"/api/sessions/{sid}/turns", json={"text": "hi", "stream": True})
    assert r.status_code == 200  # the analysis was already sent: the error is the last event
    events = [json.loads(line) for line in r.text.splitlines()]
    assert [e["type"] for e in events] == ["analysis", "error"]
    assert events[-1]["error"]["status"] == 502
    assert sim.get(sid).turns == []
    # the session lock was released: another turn runs (and fails the same clean way)
    assert_error(client.post(f"/api/sessions/{sid}/turns", json={"text": "hi"}), 502)


def test_openai_endpoint_errors(library, sim):
    client = TestClient(create_app(sim))
    card = sim.cards.ids[0]
    url = "/v1/chat/completions"
    err = assert_error(client.post(url, json={"model": "nope", "messages": [
        {"role": "user", "content": "hi"}]}), 404, "nope")
    assert err["type"] == "invalid_request_error" and err["code"] == "not_found"
    assert_error(client.post(url, json={"model": card, "messages": []}), 422, "messages")
    assert_error(client.post(url, json={"model": card, "messages": "hi"}), 422, "messages")
    assert_error(client.post(url, json={"messages": [{"role": "user", "content": "hi"}]}),
                 422, "model: required")
    assert_error(client.post(url, json={"model": card, "messages": [
        {"role": "tool", "content": "x"}, {"role": "user", "content": "hi"}]}), 400, "role")
    ok = client.post(url, json={"model": card, "temperature": 0.2, "max_tokens": 50,
                                "messages": [{"role": "user", "content": [
                                    {"type": "text", "text": "Hello, I'm Officer Diaz."}]}]})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]

    broken = TestClient(create_app(make_sim(library, Broken())))
    msgs = [{"role": "user", "content": "hi"}]
    for stream in (False, True):  # a failure before the first piece: a 502, not a stream
        err = assert_error(broken.post(url, json={"model": card, "messages": msgs,
                                                  "stream": stream}), 502, "backend down")
        assert err["type"] == "api_error"


class HalfBroken(Responder):
    prefix = "half"

    def respond(self, request):
        return Reply(text="Look, I")

    def stream(self, request):
        yield "Look, I"
        raise ResponderError("connection reset")


def test_openai_stream_failing_midway_ends_with_an_error_event(library):
    client = TestClient(create_app(make_sim(library, HalfBroken())))
    r = client.post("/v1/chat/completions", json={
        "model": library.ids[0], "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line.removeprefix("data: ")) for line in r.text.split("\n\n")
              if line.strip()]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[1]["choices"][0]["delta"]["content"] == "Look, I"
    assert events[-1]["error"]["status"] == 502 and "connection reset" in \
        events[-1]["error"]["message"]
    assert "[DONE]" not in r.text  # the client must not take the half reply as complete


class Slow(Responder):
    """Streams five words, 0.1 s apart; not thread-safe (calls are serialised)."""

    prefix = "slow"

    def respond(self, request):
        return Reply(text="one two three four five")

    def stream(self, request):
        for word in ("one ", "two ", "three ", "four ", "five"):
            time.sleep(0.1)
            yield word


def test_client_leaving_mid_stream_does_not_lock_the_session(library):
    """The reply is produced to its end (and stored) even when nobody reads it; the session's
    and the responder's locks are released."""
    uvicorn = pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    sim = make_sim(library, Slow())
    srv = uvicorn.Server(uvicorn.Config(create_app(sim), host="127.0.0.1", port=0,
                                        log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not srv.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        base = f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
        sid = httpx.post(f"{base}/api/sessions", json={"card_id": library.ids[0]}
                         ).json()["session_id"]
        with httpx.stream("POST", f"{base}/api/sessions/{sid}/turns",
                          json={"text": "hello", "stream": True}) as r:
            assert json.loads(next(r.iter_lines()))["type"] == "analysis"
        with httpx.stream("POST", f"{base}/v1/chat/completions", json={
                "model": library.ids[0], "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}) as r:
            next(r.iter_lines())
        # both left mid-reply; the session and the (serialised) responder still answer
        r = httpx.post(f"{base}/api/sessions/{sid}/turns", json={"text": "again"}, timeout=10)
        assert r.status_code == 200 and r.json()["turn"] == 1
        assert [t.reply for t in sim.get(sid).turns] == ["one two three four five"] * 2
    finally:
        srv.should_exit = True
        thread.join(10)


def test_rate_limits(sim):
    client = TestClient(create_app(sim, limits=Limits(turns_per_minute=2,
                                                      sessions_per_minute=3)))
    a, b = new_session(client), new_session(client)
    for _ in range(2):
        assert client.post(f"/api/sessions/{a}/turns", json={"text": "hello"}).status_code == 200
    r = client.post(f"/api/sessions/{a}/turns", json={"text": "hello"})
    assert_error(r, 429, "at most 2")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert client.post(f"/api/sessions/{b}/turns", json={"text": "hello"}).status_code == 200
    assert len(sim.get(a).turns) == 2
    new_session(client)
    assert_error(client.post("/api/sessions", json={"card_id": sim.cards.ids[0]}), 429)


def test_rate_limiter_window_slides():
    from deescalwild.sim.errors import RateLimited
    from deescalwild.sim.web.security import RateLimiter

    now = [0.0]
    rl = RateLimiter(window=60, clock=lambda: now[0])
    rl.hit("k", 2)
    now[0] = 30
    rl.hit("k", 2)
    with pytest.raises(RateLimited) as e:
        rl.hit("k", 2)
    assert e.value.retry_after == 30
    now[0] = 60.5  # the first hit left the window
    rl.hit("k", 2)
    rl.hit("other", 2)


def test_token_required(sim):
    client = TestClient(create_app(sim, token="s3cret-token"))
    assert client.get("/healthz").json()["status"] == "ok"  # open
    for path in ("/", "/history", "/static/app.js", "/api/cards", "/v1/models"):
        r = client.get(path)
        assert_error(r, 401, "token")
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert_error(client.get("/api/cards", headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(client.get("/api/cards?token=wrong"), 401)
    assert client.get("/api/cards",
                      headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get("/api/cards",
                      headers={"X-Deescalwild-Token": "s3cret-token"}).status_code == 200
    assert client.post("/api/sessions", json={"card_id": sim.cards.ids[0]}).status_code == 401
    # the browser: ?token= once -> a redirect without it, and an HttpOnly cookie from then on
    r = client.get("/?token=s3cret-token&x=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?x=1"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.cookies.get("deescalwild_token") == "s3cret-token"
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.post("/api/sessions", json={"card_id": sim.cards.ids[0]}).status_code == 200


def test_security_headers_and_page(client):
    for r in (client.get("/"), client.get("/api/cards"), client.get("/nope"),
              client.post("/api/sessions", json={"card_id": "x"})):
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "app;dur=" in r.headers["server-timing"]
    for path in ("/", "/history"):
        html = client.get(path).text
        assert "/static/app.js" in html
        # the CSP allows no inline script: every <script> must load a file
        assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None
        assert "http://" not in html and "https://" not in html  # no external resources
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert client.get("/docs").status_code == 404  # Swagger UI would load a CDN script
    assert client.get("/openapi.json").json()["info"]["title"]


def test_serve_refuses_a_public_bind_without_token(sim):
    with pytest.raises(DeescalwildError, match="exposes the simulator"):
        serve(sim, host="0.0.0.0", port=0)


def test_text_that_cannot_be_stored_is_refused_and_the_session_survives(client, sim):
    sid = new_session(client)
    body = b'{"text": "ok \\ud800"}'  # a lone surrogate: valid JSON, not storable text
    r = client.post(f"/api/sessions/{sid}/turns", content=body,
                    headers={"content-type": "application/json"})
    assert_error(r, 422, "surrogate")
    r = client.post("/api/sessions", content=b'{"card_id": "%s", "meta": {"x": "\\udfff"}}'
                    % sim.cards.ids[0].encode(), headers={"content-type": "application/json"})
    assert_error(r, 422, "meta")
    assert client.post(f"/api/sessions/{sid}/turns", json={"text": CALM[0]}).status_code == 200
    assert client.post(f"/api/sessions/{sid}/end").status_code == 200
    assert [t["index"] for t in client.get(f"/api/sessions/{sid}").json()["turns"]] == [0]


def test_dns_rebinding_and_cross_origin_posts_are_refused(sim):
    app = create_app(sim)
    elsewhere = _TestClient(app, base_url="http://evil.example:8000")
    assert_error(elsewhere.get("/api/sessions"), 421, "localhost")
    for host in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"):
        assert _TestClient(app, base_url=host).get("/api/cards").status_code == 200
    local = TestClient(app)
    sid = new_session(local)
    r = local.post(f"/api/sessions/{sid}/end", headers={"Origin": "http://evil.example"})
    assert_error(r, 403, "cross-origin")
    assert local.post(f"/api/sessions/{sid}/end",
                      headers={"Origin": "http://127.0.0.1"}).status_code == 200
    # with a token, any Host name may be used (a DNS-rebound page cannot know the token)
    tokened = _TestClient(create_app(sim, token="s3cret-token"),
                          base_url="http://trainer.academy.lan")
    assert tokened.get("/api/cards", headers={"Authorization": "Bearer s3cret-token"}
                       ).status_code == 200


def test_token_redirect_stays_on_this_server_and_tokens_must_be_header_safe(sim):
    client = TestClient(create_app(sim, token="s3cret-token"))
    r = client.get("/caf\u00e9?token=s3cret-token", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/caf%C3%A9"
    for bad in ("short", "caf\u00e9-token-long"):
        with pytest.raises(DeescalwildError, match="--token"):
            create_app(sim, token=bad)


def test_request_threads_follow_the_responder(responder):
    # retrieval is CPU-bound under the GIL: two threads; a network backend waits on I/O
    assert Limits().worker_threads(responder) == 2
    assert Limits().worker_threads(object()) == 40
    assert Limits(workers=5).worker_threads(responder) == 5
