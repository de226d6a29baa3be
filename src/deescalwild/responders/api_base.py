"""What the HTTP API backends (`openai:`, `gemini:`) share: one SDK client built lazily under a
lock, the retry loop around each attempt, the reply or error that comes out of it, and
streaming that retries only before the first piece (lm-evaluation-harness's one base class
for API models). A backend builds the request, reads the answer (`_pieces`), and says which
failures are worth retrying (`_classify`) and how to name them (`_failure`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from deescalwild.core import Reply
from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import Options, Request, Responder, ResponderError, Timer
from deescalwild.responders.retry import (
    GiveUp,
    ReplyProblem,
    RetryPolicy,
    Verdict,
    call_with_retry,
    one_line,
    root_reason,
    stream_with_retry,
)


@dataclass
class Attempt:
    """One attempt's timing and what the server said about it."""

    timer: Timer = field(default_factory=Timer)
    finish: str | None = None
    tokens: int | None = None


class APIResponder(Responder):
    """Base of the API backends; subclasses set `model` in `__init__` and implement the hooks."""

    Attempt: type[Attempt] = Attempt
    model: str = ""
    can_stream = True
    deterministic = True  # cache by request + seed; sampling settings are in settings()

    def __init__(self, arg: str = "", options: Options | None = None, *,
                 spec: str | None = None, sleep: Callable[[float], None] | None = None,
                 rand: Callable[[], float] | None = None) -> None:
        super().__init__(arg, options, spec=spec)
        self.policy = RetryPolicy(max_retries=self.options.max_retries)
        self.sleep = sleep or time.sleep  # injectable: tests do not wait
        self.rand = rand or random.random
        self._client: Any = None
        self._client_lock = threading.Lock()  # the simulator may ask from several threads

    # --- hooks ----------------------------------------------------------------------------
    def _key(self) -> str | None:
        raise NotImplementedError

    def _make_client(self) -> Any:
        raise NotImplementedError

    def _pieces(self, request: Request, at: Attempt) -> Iterator[str]:
        """Text pieces of one attempt; records timing, finish reason and tokens in `at`."""
        raise NotImplementedError

    def _classify(self, e: BaseException) -> Verdict:
        raise NotImplementedError

    def _failure(self, cause: BaseException) -> str:
        """What went wrong in the last attempt, in the SDK's terms (status and message,
        timeout, connection); `_describe` adds the attempts and masks the key."""
        return f"{type(cause).__name__}: {root_reason(cause)}"

    def _describe(self, e: GiveUp) -> str:
        """`Reply.error` for a failure: one line, key masked."""
        c = e.cause
        msg = str(c) if isinstance(c, ReplyProblem) else self._failure(c)
        if e.attempts > 1:
            msg += f" (gave up after {e.attempts} attempts)"
        return one_line(msg, (self._key(),), limit=300)

    def _empty(self, at: Attempt) -> ReplyProblem:
        return ReplyProblem(f"empty reply (finish_reason={at.finish})")

    # --- shared ---------------------------------------------------------------------------
    def client(self) -> Any:
        with self._client_lock:
            return self._client or self._make_client()

    def _retry_kwargs(self) -> dict[str, Any]:
        return {"sleep": self.sleep, "rand": self.rand, "what": f"{self.prefix} {self.model}",
                "secrets": (self._key(),)}

    def respond(self, request: Request) -> Reply:
        """One reply; latency and first-token time are those of the attempt that succeeded."""

        def attempt() -> tuple[Attempt, str]:
            at = self.Attempt()
            text = "".join(self._pieces(request, at)).strip()
            if not text:
                raise self._empty(at)
            return at, text

        started = Timer()
        try:
            self.client()  # built before any attempt's clock starts: SDK setup is not latency
            at, text = call_with_retry(attempt, self._classify, self.policy,
                                       **self._retry_kwargs())
        except GiveUp as e:
            return started.reply("", error=self._describe(e))
        except DeescalwildError as e:  # e.g. no key: every request would fail the same way
            return started.reply("", error=str(e))
        except Exception as e:  # a bug or SDK surprise: still one request's failure
            return started.reply("", error=self._describe(GiveUp(e, 1)))
        return at.timer.reply(text, tokens=at.tokens)

    def stream(self, request: Request) -> Iterator[str]:
        """Text pieces as they arrive; retries happen only before the first piece."""
        got = False
        try:
            self.client()
            for piece in stream_with_retry(lambda: self._pieces(request, self.Attempt()),
                                           self._classify, self.policy, **self._retry_kwargs()):
                got = True
                yield piece
        except GiveUp as e:
            raise ResponderError(self._describe(e)) from e
        if not got:
            raise ResponderError("empty reply")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
