"""The session engine: what the responder is asked, how agitation is carried from turn to turn,
what a bad turn does to a session (nothing), and that the stateless replay the OpenAI endpoint
uses agrees with a stored session."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from deescalwild.core import Reply
from deescalwild.responders.base import Request, Responder, ResponderError
from deescalwild.sim.cards import CardLibrary
from deescalwild.sim.engine import NotEnded, ResponderFailed, Simulator
from deescalwild.sim.errors import BadTurn, NotFound, SessionEnded
from deescalwild.sim.store import Store
from deescalwild.sim.tactics import load_analyser

CALM = ["Hi, I'm Officer Reyes with the county. What's going on tonight?",
        "I can see this has been a really hard night for you. Take your time.",
        "It sounds like you're worried about what happens next. You're not in trouble; "
        "you can sit here or by the car, it's up to you."]
THREATS = ["Shut up and listen to me.",
           "GET ON THE GROUND NOW or I will tase you!",
           "This is your last chance, get on the ground now!"]


class Recorder(Responder):
    """Answers `reply N` in two streamed pieces and remembers every request; `fail` makes the
    next call raise like a backend that went down."""

    prefix = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []
        self.fail = False

    def respond(self, request: Request) -> Reply:
        text = "".join(self.stream(request))
        return Reply(text=text, latency_s=0.0, first_token_s=0.0)

    def stream(self, request: Request) -> Iterator[str]:
        if self.fail:
            self.fail = False
            raise ResponderError("backend down")
        self.requests.append(request)
        yield "reply "
        yield str(len(self.requests))


@pytest.fixture
def library():
    return CardLibrary.load()


@pytest.fixture
def sim(library):
    return Simulator(library, Recorder(), load_analyser("rules"))


def _card_with_opening(library):
    return next(c for c in library if c.opening)


def test_turn_conditions_the_reply_on_the_new_agitation(sim, library):
    card = _card_with_opening(library)
    rec = sim.start(card.id)
    assert rec.agitation == card.agitation_start and rec.opening == card.opening.strip()
    turn = sim.turn(rec.id, THREATS[1])
    assert turn.agitation_after > turn.agitation_before == card.agitation_start
    assert {v.tactic for v in turn.verdicts} >= {"shouted_command", "threat"}
    req = sim.responder.requests[-1]
    # the responder sees the agitation the turn caused, as a number and as prompt text
    assert req.extra["agitation"] == turn.agitation_after
    assert str(round(turn.agitation_after)) in req.extra["state"]
    assert req.context == card.context()
    # the card's opening line is the civilian's first message, the trainee's line the last
    assert req.history == [{"role": "assistant", "content": card.opening.strip()},
                           {"role": "user", "content": THREATS[1]}]
    second = sim.turn(rec.id, "Okay. Please sit down on the curb for me.")
    assert sim.responder.requests[-1].history[1:] == [
        {"role": "user", "content": THREATS[1]}, {"role": "assistant", "content": "reply 1"},
        {"role": "user", "content": "Okay. Please sit down on the curb for me."}]
    assert second.agitation_before == turn.agitation_after
    assert second.index == 1 and second.reply == "reply 2"


def test_calm_tactics_lower_agitation_and_threats_raise_it(library):
    card = max(library, key=lambda c: c.agitation_start)
    runs = {}
    for name, lines in (("calm", CALM), ("threats", THREATS)):
        sim = Simulator(library, Recorder(), load_analyser("rules"))
        rec = sim.start(card.id)
        for line in lines:
            sim.turn(rec.id, line)
        runs[name] = sim.get(rec.id).agitation
    assert runs["calm"] < card.agitation_start < runs["threats"]


def test_stream_events_in_order_and_pieces_join_to_the_stored_reply(sim, library):
    rec = sim.start(next(iter(library)).id)
    events = list(sim.stream_turn(rec.id, CALM[0]))
    assert [e["type"] for e in events] == ["analysis", "delta", "delta", "done"]
    assert "".join(e["text"] for e in events if e["type"] == "delta") == \
        events[-1]["turn"]["reply"] == "reply 1"
    assert events[0]["agitation_after"] == events[-1]["turn"]["agitation_after"]
    assert events[0]["level"]


@pytest.mark.parametrize("text, error", [("", BadTurn), ("   \n", BadTurn),
                                         ("x" * 2001, BadTurn), (None, BadTurn)])
def test_bad_turn_raises_before_any_event_and_leaves_the_session_usable(sim, library, text,
                                                                          error):
    rec = sim.start(next(iter(library)).id)
    with pytest.raises(error):
        sim.stream_turn(rec.id, text)  # raises on the call, not on iteration
    assert sim.get(rec.id).turns == []
    assert sim.turn(rec.id, CALM[0]).index == 0


def test_unknown_and_ended_sessions(sim, library):
    with pytest.raises(NotFound, match="unknown session"):
        sim.turn("nope", CALM[0])
    with pytest.raises(NotFound, match="unknown card"):
        sim.start("no-such-card")
    rec = sim.start(next(iter(library)).id)
    with pytest.raises(NotEnded):
        sim.report(rec.id)
    sim.turn(rec.id, CALM[0])
    report = sim.end(rec.id)
    assert sim.end(rec.id) == report == sim.report(rec.id)  # ending twice is harmless
    with pytest.raises(SessionEnded):
        sim.turn(rec.id, CALM[1])


def test_responder_failure_records_nothing_and_the_turn_can_be_sent_again(sim, library):
    rec = sim.start(next(iter(library)).id)
    sim.turn(rec.id, CALM[0])
    before = sim.get(rec.id).agitation
    sim.responder.fail = True
    with pytest.raises(ResponderFailed, match="not recorded"):
        sim.turn(rec.id, THREATS[1])
    assert len(sim.get(rec.id).turns) == 1 and sim.get(rec.id).agitation == before
    assert sim.turn(rec.id, THREATS[1]).index == 1


def test_stateless_replay_agrees_with_a_played_session(sim, library):
    card = max(library, key=lambda c: c.agitation_start)
    rec = sim.start(card.id)
    lines = [CALM[0], THREATS[0], CALM[1]]
    for line in lines[:-1]:
        sim.turn(rec.id, line)
    played = sim.turn(rec.id, lines[-1])
    session_request = sim.responder.requests[-1]
    messages = [{"role": "system", "content": "ignored: the card sets the scene"}]
    if rec.opening:
        messages.append({"role": "assistant", "content": rec.opening})
    for t in sim.get(rec.id).turns[:-1]:
        messages += [{"role": "user", "content": t.trainee},
                     {"role": "assistant", "content": t.reply}]
    messages.append({"role": "user", "content": lines[-1]})
    request, agitation, verdicts = sim.reply_stateless(card.id, messages)
    assert agitation == played.agitation_after
    assert [v.to_dict() for v in verdicts] == [v.to_dict() for v in played.verdicts]
    assert request.history == session_request.history
    assert request.extra["state"] == session_request.extra["state"]


@pytest.mark.parametrize("messages, match", [
    ([], "last message"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "last message"),
    ([{"role": "tool", "content": "x"}, {"role": "user", "content": "hi"}], r"messages\[0\]"),
    ([{"role": "user", "content": 3}], r"messages\[0\].content"),
])
def test_stateless_replay_rejects_malformed_conversations(sim, library, messages, match):
    from deescalwild.sim.errors import SimError

    with pytest.raises(SimError, match=match):
        sim.reply_stateless(next(iter(library)).id, messages)


def test_concurrent_turns_on_one_session_are_serialised(sim, library):
    rec = sim.start(next(iter(library)).id)
    threads = [threading.Thread(target=sim.turn, args=(rec.id, f"{CALM[1]} ({i})"))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    turns = sim.get(rec.id).turns
    assert [t.index for t in turns] == list(range(8))
    # each turn started from where the previous one left agitation
    assert all(b.agitation_before == a.agitation_after for a, b in itertools.pairwise(turns))


def test_a_new_simulator_on_the_same_database_continues_the_session(library, tmp_path):
    db = tmp_path / "sim.db"
    first = Simulator(library, Recorder(), load_analyser("rules"), Store(db))
    rec = first.start(next(iter(library)).id)
    first.turn(rec.id, CALM[0])
    first.close()
    second = Simulator(library, Recorder(), load_analyser("rules"), Store(db))
    again = second.get(rec.id)
    assert [t.trainee for t in again.turns] == [CALM[0]]
    assert second.turn(rec.id, CALM[1]).index == 1
    report = second.end(rec.id)
    second.close()
    third = Simulator(library, Recorder(), load_analyser("rules"), Store(db))
    assert third.report(rec.id) == report
    assert third.sessions()[0]["id"] == rec.id


def test_a_store_failure_leaves_memory_and_database_agreeing(library, tmp_path):
    class Flaky(Store):
        fail_turn = fail_end = True

        def add_turn(self, session_id, turn):
            if self.fail_turn:
                self.fail_turn = False
                raise OSError("disk full")
            super().add_turn(session_id, turn)

        def end_session(self, session_id, ended_at, report):
            if self.fail_end:
                self.fail_end = False
                raise OSError("disk full")
            super().end_session(session_id, ended_at, report)

    store = Flaky(tmp_path / "sim.db")
    sim = Simulator(library, Recorder(), load_analyser("rules"), store)
    rec = sim.start(next(iter(library)).id)
    with pytest.raises(OSError):
        sim.turn(rec.id, CALM[0])
    assert sim.get(rec.id).turns == [] and store.load(rec.id).turns == []
    assert sim.turn(rec.id, CALM[0]).index == 0  # the same turn again: stored as turn 0
    with pytest.raises(OSError):
        sim.end(rec.id)
    assert not sim.get(rec.id).ended and store.load(rec.id).ended_at is None
    report = sim.end(rec.id)  # ending can be tried again
    assert store.report(rec.id) == report and sim.get(rec.id).ended
