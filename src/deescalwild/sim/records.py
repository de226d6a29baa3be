"""What a simulator session is made of, as plain data: a tactic verdict, a turn, a session.

One module with no heavy imports, shared by the engine, the store (SQLite, JSON columns), the
report and the web API, so all of them read and write the same shape (`docs/simulator.md`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["deescalation", "escalation"]
SESSION_SCHEMA = "deescalwild.sim-session/1"


@dataclass(slots=True)
class Verdict:
    """One tactic the analyser found in a trainee turn, with the words that triggered it.

    `spans` are character offsets into the turn's text (`text[a:b]` is each piece of evidence),
    so an interface can highlight them; `effect` is the agitation change this verdict caused
    (after the persona's multipliers and repetition damping: set by the agitation rule, 0.0
    until then)."""

    tactic: str  # taxonomy id, e.g. "empathy", "threat" (sim/tactics.py: TACTICS)
    kind: Kind
    evidence: list[str]
    spans: list[tuple[int, int]] = field(default_factory=list)
    why: str = ""  # one line shown to the trainee: which rule fired
    source: str = "rules"  # "rules", "judge:SPEC", "persona" (a card's trigger phrase)
    effect: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies recursively, a measurable share of a turn
        return {"tactic": self.tactic, "kind": self.kind, "evidence": list(self.evidence),
                "spans": [list(s) for s in self.spans], "why": self.why,
                "source": self.source, "effect": self.effect}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        return cls(tactic=d["tactic"], kind=d["kind"], evidence=list(d.get("evidence", [])),
                   spans=[(int(a), int(b)) for a, b in d.get("spans", [])],
                   why=d.get("why", ""), source=d.get("source", "rules"),
                   effect=float(d.get("effect", 0.0)))


@dataclass(slots=True)
class TurnRecord:
    """One exchange: the trainee's line, how it was read, the civilian's answer."""

    index: int  # 0-based within the session
    trainee: str
    reply: str
    verdicts: list[Verdict]
    agitation_before: float
    agitation_after: float  # the agitation the reply was conditioned on
    latency_s: float  # server-side: analysis + agitation + the whole reply
    first_token_s: float | None = None
    error: str | None = None  # the responder failed; `reply` is then a fallback line
    at: float = 0.0  # unix time the turn finished

    @property
    def delta(self) -> float:
        return self.agitation_after - self.agitation_before

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "trainee": self.trainee, "reply": self.reply,
                "verdicts": [v.to_dict() for v in self.verdicts],
                "agitation_before": self.agitation_before,
                "agitation_after": self.agitation_after, "latency_s": self.latency_s,
                "first_token_s": self.first_token_s, "error": self.error, "at": self.at}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TurnRecord:
        return cls(index=int(d["index"]), trainee=d["trainee"], reply=d["reply"],
                   verdicts=[Verdict.from_dict(v) for v in d.get("verdicts", [])],
                   agitation_before=float(d["agitation_before"]),
                   agitation_after=float(d["agitation_after"]),
                   latency_s=float(d.get("latency_s", 0.0)),
                   first_token_s=d.get("first_token_s"), error=d.get("error"),
                   at=float(d.get("at", 0.0)))


@dataclass(slots=True)
class SessionRecord:
    """A whole session. `opening` is the civilian's first line when the card has one (it is not a
    turn: no trainee line precedes it)."""

    id: str
    card_id: str
    card_title: str
    responder: str  # the responder spec
    analyser: str  # "rules" or "judge:SPEC"
    agitation_start: float
    started_at: float
    opening: str = ""
    turns: list[TurnRecord] = field(default_factory=list)
    ended_at: float | None = None
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # versions, git commit, client, ...

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def agitation(self) -> float:
        """The current agitation: after the last turn, or the card's start."""
        return self.turns[-1].agitation_after if self.turns else self.agitation_start

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SESSION_SCHEMA, "id": self.id, "card_id": self.card_id,
                "card_title": self.card_title, "responder": self.responder,
                "analyser": self.analyser, "agitation_start": self.agitation_start,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "opening": self.opening, "seed": self.seed, "meta": self.meta,
                "turns": [t.to_dict() for t in self.turns]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionRecord:
        return cls(id=d["id"], card_id=d["card_id"], card_title=d.get("card_title", ""),
                   responder=d.get("responder", ""), analyser=d.get("analyser", "rules"),
                   agitation_start=float(d["agitation_start"]),
                   started_at=float(d["started_at"]), opening=d.get("opening", ""),
                   turns=[TurnRecord.from_dict(t) for t in d.get("turns", [])],
                   ended_at=d.get("ended_at"), seed=int(d.get("seed", 0)),
                   meta=dict(d.get("meta", {})))
