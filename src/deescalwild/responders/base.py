"""The responder protocol: how the benchmark and the simulator ask a backend for the civilian's
next line.

A backend is a small class with a spec prefix, an options model (pydantic, `extra="forbid"`, one
description per field, so `deescalwild responders list` can print them and a typo in a spec is an
error), and one method, `respond`. Batching and streaming are optional: the defaults loop over
`respond` and yield its whole text. Timing is the backend's job because only it knows when the
first token arrived.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from deescalwild.core import Case, Reply

__all__ = ["Options", "Reply", "Request", "Responder", "ResponderError", "Timer"]

Message = dict[str, str]  # {"role": "user"|"assistant", "content": str}


class ResponderError(Exception):
    """A backend failed for one request (server error, empty reply, ...): recorded on the case,
    counted, never scored. Setup problems (bad spec, missing model) are `DeescalwildError`s."""


class Options(BaseModel):
    """Base of every backend's options: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(slots=True)
class Request:
    """What a responder is asked: the scene (`context`) and the conversation so far, ending with
    the officer's (`user`) turn. `seed` makes sampling backends repeatable per request."""

    context: str
    history: list[Message]
    id: str = ""
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the simulator's agitation

    @classmethod
    def from_case(cls, case: Case, seed: int | None = None) -> Request:
        return cls(context=case.context, history=case.history, id=case.id, seed=seed)


class Responder:
    """Base class of all backends. Subclasses set `prefix`, `Options`, and implement `respond`."""

    prefix: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    needs_key: ClassVar[str | None] = None  # environment variable holding the API key, if any
    can_stream: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True  # same request -> same reply (cacheable as is)

    def __init__(self, arg: str = "", options: Options | None = None, *,
                 spec: str | None = None) -> None:
        self.arg = arg
        self.options = options if options is not None else self.Options()
        self.spec = spec or (f"{self.prefix}:{arg}" if arg else self.prefix)

    # --- the protocol ---------------------------------------------------------------------
    def check(self) -> None:
        """Fail fast, before a run, when the backend cannot work at all (server unreachable,
        key missing): raise `DeescalwildError` with one line saying what to do."""

    def respond(self, request: Request) -> Reply:
        raise NotImplementedError

    def respond_batch(self, requests: Sequence[Request]) -> list[Reply]:
        """Replies in request order. Backends that batch on the device override this."""
        return [self.respond(r) for r in requests]

    def stream(self, request: Request) -> Iterator[str]:
        """Text pieces of the reply as they are produced; the default yields the whole reply.
        Raises `ResponderError` when the backend fails."""
        reply = self.respond(request)
        if reply.error:
            raise ResponderError(reply.error)
        yield reply.text

    def settings(self) -> dict[str, Any]:
        """Everything that determines the replies, recorded in results.json (no secrets)."""
        return {"backend": self.prefix, "arg": self.arg, **self.options.model_dump(mode="json")}

    def close(self) -> None:
        """Release models, sessions, sockets."""

    def __enter__(self) -> Responder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Timer:
    """Wall-clock timing of one reply: `first()` when the first token arrives, `reply()` at the
    end. Uses `perf_counter` (monotonic, sub-microsecond)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.first_token_s: float | None = None

    def first(self) -> None:
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self.t0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def reply(self, text: str, tokens: int | None = None, error: str | None = None) -> Reply:
        latency = self.elapsed()
        first = self.first_token_s if self.first_token_s is not None else latency
        return Reply(text=text if error is None else "", latency_s=latency,
                     first_token_s=first, tokens=tokens, error=error)


def stripped(pieces: Iterable[str]) -> Iterator[str]:
    """Streamed text pieces whose concatenation is the whole reply `.strip()`ped: leading
    blanks are dropped and trailing ones held back until more text follows (what local backends
    stream must join to exactly what `respond` returns)."""
    pending, started = "", False
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        text = pending + piece
        body = text.rstrip()
        pending = text[len(body):]
        if body:
            yield body
