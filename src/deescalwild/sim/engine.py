"""The session engine: one trainee turn in, one civilian reply out, agitation in between.

A turn goes: validate the text -> the analyser reads it for tactics (`sim/tactics.py`) -> the
agitation rule moves the civilian's agitation from those verdicts and the card's triggers
(`sim/agitation.py`) -> the responder answers, conditioned on the new agitation -> the turn is
stored. The order matters: the civilian reacts to *this* line, so the reply must see the
agitation it caused.

How agitation reaches the responder (`Request.extra`): `state` is a sentence LLM backends append
to their system prompt (`responders/prompt.py`); `agitation` is the number the retrieval
responder matches real replies' estimated intensity against, and `avoid` the lines the civilian
already said (retrieval never repeats one while another candidate is left). Every backend
therefore works the same way: the simulator knows nothing of any one of them.

Concurrency: one `Simulator` serves every request of a server. Turns of one session are
serialised by a per-session lock (two tabs sending at once must not interleave the history);
different sessions run in parallel. Responder calls are serialised by one lock unless the
backend declares `thread_safe = True` (the simulator's retrieval does: a search only reads the
index).

A responder failure is not the trainee's fault and must not cost them the session: the turn is
not recorded, agitation stays where it was, and the error says to try again (HTTP 502).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deescalwild.responders.base import Request, Responder, ResponderError
from deescalwild.sim import agitation as rule
from deescalwild.sim.errors import BadTurn, NotFound, SessionEnded, SimError
from deescalwild.sim.records import SessionRecord, TurnRecord, Verdict

if TYPE_CHECKING:
    from deescalwild.sim.cards import Card, CardLibrary
    from deescalwild.sim.store import Store
    from deescalwild.sim.tactics import Analyser

__all__ = ["Event", "ResponderFailed", "Simulator", "open_simulator"]

Event = dict[str, Any]
MAX_TURN_CHARS = 2000


class ResponderFailed(SimError):
    """The civilian's backend failed on this turn (server down, empty reply): retry."""

    status = 502


class NotEnded(SimError):
    """A report asked for before the session ended."""

    status = 409


class Simulator:
    """Sessions over a card library, one responder and one analyser (module docstring: how)."""

    def __init__(self, cards: CardLibrary, responder: Responder, analyser: Analyser,
                 store: Store | None = None, *, max_turn_chars: int = MAX_TURN_CHARS,
                 seed: int = 0) -> None:
        from deescalwild.provenance import git_commit, versions

        self.cards = cards
        self.responder = responder
        self.analyser = analyser
        self.store = store
        self.max_turn_chars = max_turn_chars
        self.seed = seed
        self._live: dict[str, SessionRecord] = {}  # sessions touched since start (cache)
        self._locks: dict[str, threading.Lock] = {}
        self._registry_lock = threading.Lock()
        self._reports: dict[str, dict[str, Any]] = {}  # ended sessions' reports (cache)
        # held around every responder call, also by the OpenAI endpoint's stateless replies
        self.responder_lock = (nullcontext() if getattr(responder, "thread_safe", False)
                               else threading.Lock())
        self._meta = {"versions": versions(), "git_commit": git_commit(),
                      "responder_settings": _safe_settings(responder)}

    # --- sessions -----------------------------------------------------------------------------
    def start(self, card_id: str, meta: dict[str, Any] | None = None) -> SessionRecord:
        card = self.cards.get(card_id)
        rec = SessionRecord(id=uuid.uuid4().hex, card_id=card.id, card_title=card.title,
                            responder=self.responder.spec, analyser=self.analyser.name,
                            agitation_start=float(card.agitation_start),
                            started_at=time.time(), opening=card.opening.strip(),
                            seed=self.seed, meta={**self._meta, **(meta or {})})
        if self.store is not None:
            self.store.save_session(rec)
        with self._registry_lock:
            self._live[rec.id] = rec
        return rec

    def get(self, session_id: str) -> SessionRecord:
        with self._registry_lock:
            rec = self._live.get(session_id)
        if rec is None and self.store is not None:
            rec = self.store.load(session_id)
            if rec is not None:
                with self._registry_lock:
                    rec = self._live.setdefault(session_id, rec)
        if rec is None:
            raise NotFound(f"unknown session {session_id!r}")
        return rec

    def sessions(self, limit: int = 100) -> list[dict[str, Any]]:
        """Past and live sessions, newest first (the history page)."""
        if self.store is not None:
            return self.store.list_sessions(limit)
        with self._registry_lock:
            recs = sorted(self._live.values(), key=lambda r: r.started_at, reverse=True)
        return [{"id": r.id, "card_id": r.card_id, "card_title": r.card_title,
                 "started_at": r.started_at, "ended_at": r.ended_at, "turns": len(r.turns),
                 "agitation_start": r.agitation_start, "agitation_end": r.agitation,
                 "score": None} for r in recs[:limit]]

    def _lock(self, session_id: str) -> threading.Lock:
        with self._registry_lock:
            return self._locks.setdefault(session_id, threading.Lock())

    # --- turns --------------------------------------------------------------------------------
    def turn(self, session_id: str, text: str) -> TurnRecord:
        """Play one trainee turn and return it with the civilian's whole reply."""
        done: TurnRecord | None = None
        for event in self.stream_turn(session_id, text):
            if event["type"] == "done":
                done = TurnRecord.from_dict(event["turn"])
        assert done is not None  # stream_turn either raises or ends with "done"
        return done

    def stream_turn(self, session_id: str, text: str) -> Iterator[Event]:
        """The turn as events: `analysis` (verdicts, agitation before/after, level), then the
        reply's `delta` pieces, then `done` with the stored turn. Bad input (empty or oversized
        text, unknown or ended session) raises here, before any event, so a web handler can
        still answer 4xx."""
        text = self.check_text(text)
        rec = self.get(session_id)
        if rec.ended:
            raise SessionEnded(f"session {session_id} has ended; start a new one")
        card = self.cards.get(rec.card_id)
        return self._play(rec, card, text)

    def check_text(self, text: Any) -> str:
        if not isinstance(text, str):
            raise BadTurn("text: expected a string")
        text = text.strip()
        if not text:
            raise BadTurn("text: the turn is empty; say something to the civilian")
        if len(text) > self.max_turn_chars:
            raise BadTurn(f"text: {len(text):,} characters; a turn holds at most "
                          f"{self.max_turn_chars:,}")
        if not is_valid_unicode(text):
            raise BadTurn("text: contains an unpaired surrogate (not valid Unicode text)")
        return text

    def _play(self, rec: SessionRecord, card: Card, text: str) -> Iterator[Event]:
        with self._lock(rec.id):
            if rec.ended:  # ended while this turn waited for the lock
                raise SessionEnded(f"session {rec.id} has ended; start a new one")
            t0 = time.perf_counter()
            before = rec.agitation
            verdicts, after = self._assess(card, text, rec.turns, before)
            yield {"type": "analysis", "verdicts": [v.to_dict() for v in verdicts],
                   "agitation_before": before, "agitation_after": after,
                   "level": rule.level(after)}
            request = self._request(card, _history(rec), text, after, len(rec.turns), rec.id)
            pieces: list[str] = []
            first: float | None = None
            try:
                with self.responder_lock:
                    for piece in self.responder.stream(request):
                        if not piece:
                            continue
                        if first is None:
                            first = time.perf_counter() - t0
                        pieces.append(piece)
                        yield {"type": "delta", "text": piece}
            except ResponderError as e:
                raise ResponderFailed(f"the civilian's responder failed ({e}); the turn was "
                                      "not recorded, send it again") from e
            reply = "".join(pieces).strip()
            if not reply:
                raise ResponderFailed("the civilian's responder returned an empty reply; the "
                                      "turn was not recorded, send it again")
            turn = TurnRecord(index=len(rec.turns), trainee=text, reply=reply,
                              verdicts=verdicts, agitation_before=before,
                              agitation_after=after, latency_s=time.perf_counter() - t0,
                              first_token_s=first, at=time.time())
            if self.store is not None:  # stored first: memory never holds an unsaved turn
                self.store.add_turn(rec.id, turn)
            rec.turns.append(turn)
            yield {"type": "done", "turn": turn.to_dict()}

    def _assess(self, card: Card, text: str, turns: Sequence[TurnRecord],
                before: float) -> tuple[list[Verdict], float]:
        verdicts = self.analyser.analyse(text, card, [t.trainee for t in turns])
        return verdicts, rule.update(before, verdicts, card, turns)

    def _request(self, card: Card, history: list[dict], text: str, agitation: float,
                 index: int, sid: str) -> Request:
        """The responder's request: the conversation so far plus the trainee's line, with the
        agitation as prompt text (`state`), as a number, and the lines already said."""
        said = [m["content"] for m in history if m["role"] == "assistant"]
        history = [*history, {"role": "user", "content": text}]
        return Request(context=card.context(), history=history, id=f"sim:{sid}#{index}",
                       seed=self.seed + index,
                       extra={"state": rule.state_text(agitation, card),
                              "agitation": agitation, "avoid": said,
                              "scenario_id": f"sim:{card.id}", "card_id": card.id})

    # --- stateless (OpenAI-compatible clients) -------------------------------------------------
    def reply_stateless(self, card_id: str, messages: list[dict[str, Any]]
                        ) -> tuple[Request, float, list[Verdict]]:
        """The request for the last user message of a whole conversation a client sends (the
        OpenAI API is stateless): the analyser and the agitation rule are replayed over the
        user messages in order, so the same conversation always gets the same agitation.
        System messages are ignored: the card sets the scene."""
        card = self.cards.get(card_id)
        convo: list[dict[str, str]] = []
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, dict) else None
            if role == "system" or role == "developer":
                continue
            if role not in ("user", "assistant"):
                raise SimError(f"messages[{i}].role: expected system, user or assistant, "
                               f"got {role!r}")
            content = m.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
                if any(not isinstance(p.get("text"), str) for p in parts):
                    raise SimError(f"messages[{i}].content: a text part's text must be a string")
                content = "".join(p["text"] for p in parts)
            if not isinstance(content, str) or not is_valid_unicode(content):
                raise SimError(f"messages[{i}].content: expected a string of valid Unicode")
            if len(content) > 4 * self.max_turn_chars:
                raise BadTurn(f"messages[{i}].content: {len(content):,} characters; too long")
            convo.append({"role": role, "content": content})
        if not convo or convo[-1]["role"] != "user":
            raise SimError("messages: the last message must be the trainee's (role user)")
        text = self.check_text(convo[-1]["content"])
        history: list[dict] = []
        turns: list[TurnRecord] = []
        agitation = float(card.agitation_start)
        verdicts: list[Verdict] = []
        for m in convo:
            if m["role"] == "assistant":
                history.append(m)
                if turns:
                    turns[-1].reply = m["content"]
                continue
            line = m["content"].strip()
            if not line:
                continue
            verdicts, after = self._assess(card, line, turns, agitation)
            turns.append(TurnRecord(index=len(turns), trainee=line, reply="",
                                    verdicts=verdicts, agitation_before=agitation,
                                    agitation_after=after, latency_s=0.0))
            agitation = after
            history.append({"role": "user", "content": line})
        request = self._request(card, history[:-1], text, agitation, len(turns) - 1,
                                "stateless")
        return request, agitation, verdicts

    # --- reports ------------------------------------------------------------------------------
    def end(self, session_id: str) -> dict[str, Any]:
        """End the session and return its after-action report (the stored one when it had
        already ended: ending twice is harmless)."""
        from deescalwild.sim.report import build_report

        rec = self.get(session_id)
        with self._lock(session_id):
            if rec.ended:
                return self.report(session_id)
            ended_at = time.time()
            # built and stored before the session is marked ended in memory: if either fails,
            # the session is still running everywhere, and ending it can be tried again
            report = build_report(replace(rec, ended_at=ended_at),
                                  self._card_or_none(rec.card_id))
            if self.store is not None:
                self.store.end_session(rec.id, ended_at, report)
            rec.ended_at = ended_at
            if self.store is None:
                self._reports[rec.id] = report
            else:  # the store has it all now: a long-running server does not keep it in memory
                with self._registry_lock:
                    self._live.pop(rec.id, None)
            return report

    def report(self, session_id: str) -> dict[str, Any]:
        rec = self.get(session_id)
        if not rec.ended:
            raise NotEnded(f"session {session_id} is still running; end it to get its report")
        report = self._reports.get(session_id)  # sessions without a store
        if report is None and self.store is not None:
            report = self.store.report(session_id)
        if report is None:  # ended, report lost (e.g. written by an older version): rebuild
            from deescalwild.sim.report import build_report

            report = build_report(rec, self._card_or_none(rec.card_id))
        return report

    def _card_or_none(self, card_id: str) -> Card | None:
        try:
            return self.cards.get(card_id)
        except NotFound:  # a card removed since the session was played
            return None

    def close(self) -> None:
        self.responder.close()
        if self.store is not None:
            self.store.close()


def _history(rec: SessionRecord) -> list[dict[str, str]]:
    """A session as chat messages: the card's opening line, then trainee and civilian turns."""
    history = [{"role": "assistant", "content": rec.opening}] if rec.opening else []
    for t in rec.turns:
        history += [{"role": "user", "content": t.trainee},
                    {"role": "assistant", "content": t.reply}]
    return history


def is_valid_unicode(text: str) -> bool:
    """False for strings with unpaired surrogates (JSON can carry them, UTF-8 and SQLite not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe_settings(responder: Responder) -> dict[str, Any]:
    try:
        return responder.settings()
    except Exception:  # settings are informative only; never fail a session over them
        return {"backend": responder.prefix}


def open_simulator(*, responder: str = "retrieval", analyser: str = "rules",
                   cards: Sequence[Path] = (), db: Path | str | None = None,
                   train: Path | None = None, seed: int = 0) -> Simulator:
    """A simulator as the CLI builds it. `retrieval` without a `train=` option indexes `train`
    (every kept scenario of that corpus, any split: the simulator is not an evaluation) or,
    without it, the shipped sample corpus."""
    from deescalwild.responders.registry import load_responder, parse_spec
    from deescalwild.sim.cards import CardLibrary
    from deescalwild.sim.tactics import load_analyser

    library = CardLibrary.load(list(cards))
    name, _, opts = parse_spec(responder)
    if name == "retrieval" and "train" not in opts:
        from deescalwild.sim.corpus import simulator_retrieval

        backend: Responder = simulator_retrieval(responder, train)
    else:
        backend = load_responder(responder)
    backend.check()
    store = None
    if db is not None:
        from deescalwild.sim.store import Store

        store = Store(db)
    return Simulator(library, backend, load_analyser(analyser), store, seed=seed)
