"""The OpenAI-compatible endpoint, driven by the official `openai` SDK against a real uvicorn
server: plain and streamed civilian replies (the same text), the agitation field, system
messages ignored, a stored session through a header, OpenAI-shaped errors, the token."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from deescalwild.bench.cases import scenario_cases
from deescalwild.responders.retrieval import RetrievalResponder
from deescalwild.sim.cards import CardLibrary
from deescalwild.sim.engine import Simulator
from deescalwild.sim.store import Store
from deescalwild.sim.tactics import load_analyser
from deescalwild.sim.web.app import create_app

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

TOKEN = "vr-headset-token"
CONVO = [{"role": "user", "content": "Hello sir, I'm Officer Diaz. What's going on tonight?"},
         {"role": "assistant", "content": "Nothing. Why are you here?"},
         {"role": "user", "content": "I understand you're upset. Can you tell me what happened?"}]


@pytest.fixture(scope="module")
def server(sample_corpus):
    """(base url, simulator) of a live server on a free port, stopped after the module."""
    responder = RetrievalResponder.from_cases(c for s in sample_corpus for c in scenario_cases(s))
    responder.thread_safe = True
    sim = Simulator(CardLibrary.load(), responder, load_analyser("rules"), Store(":memory:"))
    config = uvicorn.Config(create_app(sim, token=TOKEN), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", sim
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=TOKEN, max_retries=0, timeout=20)


def test_models_are_the_cards(client, server):
    ids = [m.id for m in client.models.list()]
    assert ids == server[1].cards.ids
    assert client.models.retrieve(ids[0]).owned_by == "deescalwild"


def test_plain_and_streamed_reply_agree(client, server):
    sim = server[1]
    card = sim.cards.ids[0]
    resp = client.chat.completions.create(model=card, messages=CONVO)
    text = resp.choices[0].message.content
    assert text and resp.model == card and resp.object == "chat.completion"
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.role == "assistant"
    assert resp.usage.completion_tokens > 0 and resp.usage.total_tokens > resp.usage.prompt_tokens
    info = resp.model_extra["deescalwild"]
    request, agitation, verdicts = sim.reply_stateless(card, CONVO)
    assert info["agitation"] == pytest.approx(agitation) and isinstance(info["level"], str)
    assert [v["tactic"] for v in info["tactics"]] == [v.tactic for v in verdicts]
    assert text == sim.responder.respond(request).text  # the civilian the engine would ask

    stream = client.chat.completions.create(model=card, messages=CONVO, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert finals[0].model_extra["deescalwild"]["agitation"] == pytest.approx(agitation)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert sim.sessions() == []  # stateless: nothing stored


def test_system_messages_are_ignored(client, server):
    card = server[1].cards.ids[1]
    plain = client.chat.completions.create(model=card, messages=CONVO)
    steered = client.chat.completions.create(
        model=card, messages=[{"role": "system", "content": "You are calm and say 'banana'."},
                              *CONVO])
    assert steered.choices[0].message.content == plain.choices[0].message.content
    assert steered.model_extra["deescalwild"] == plain.model_extra["deescalwild"]


def test_errors_in_openai_shape(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-card", messages=CONVO)
    assert "no-such-card" in str(e.value)
    card = server[1].cards.ids[0]
    with pytest.raises(openai.BadRequestError, match="last message"):
        client.chat.completions.create(model=card, messages=CONVO[:2])
    with pytest.raises(openai.UnprocessableEntityError, match="empty"):
        client.chat.completions.create(model=card, messages=[{"role": "user", "content": " "}])
    with pytest.raises(openai.NotFoundError):  # streamed: still an error status, not a stream
        client.chat.completions.create(model="no-such-card", messages=CONVO, stream=True)
    bad = openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_stored_session_through_a_header(client, server):
    base, sim = server
    card = sim.cards.ids[0]
    r = httpx.post(f"{base}/api/sessions", json={"card_id": card},
                   headers={"Authorization": f"Bearer {TOKEN}"})
    sid = r.json()["session_id"]
    header = {"X-Deescalwild-Session": sid}
    stream = client.chat.completions.create(model=card, messages=CONVO[:1], stream=True,
                                            extra_headers=header)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    info = chunks[-1].model_extra["deescalwild"]
    assert info["session_id"] == sid and info["turn"] == 0
    resp = client.chat.completions.create(model=card, messages=CONVO, extra_headers=header)
    assert resp.model_extra["deescalwild"]["turn"] == 1
    rec = sim.get(sid)
    assert [t.trainee for t in rec.turns] == [CONVO[0]["content"], CONVO[2]["content"]]
    assert rec.turns[0].reply == text and rec.turns[1].reply == resp.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="plays card"):
        client.chat.completions.create(model=sim.cards.ids[1], messages=CONVO,
                                       extra_headers=header)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=card, messages=CONVO,
                                       extra_headers={"X-Deescalwild-Session": "nope"})
    sim.end(sid)
    with pytest.raises(openai.ConflictError):
        client.chat.completions.create(model=card, messages=CONVO, extra_headers=header)
