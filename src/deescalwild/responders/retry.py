"""One retry policy for every API backend: retry rate limits (429), server errors (5xx) and
dropped connections with exponential backoff and full jitter, honour `Retry-After`, give up after
`max_retries`.

Ours rather than the SDKs' (both are built with their own retries off) so the policy is the same
for OpenAI-compatible servers and Gemini, is tested, and is recorded in a run's settings. It knows
no HTTP library: the caller passes `classify`, which says whether an exception is worth another
try and how long the server asked us to wait.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, TypeVar

__all__ = ["GiveUp", "ReplyProblem", "RetryPolicy", "Verdict", "call_with_retry",
           "is_transport_error", "one_line", "parse_retry_after", "retryable_status",
           "root_reason", "stream_with_retry"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# httpx / httpx2 transport failures that are worth another try (matched by class name, so this
# module imports neither): timeouts, refused or reset connections, a server that hung up.
_TRANSIENT_NAMES = frozenset({"TimeoutException", "NetworkError", "RemoteProtocolError"})


class Verdict(NamedTuple):
    """`classify`'s answer: try again?, and the server's requested wait in seconds, if any."""

    retry: bool
    retry_after: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff (AWS architecture blog, "Exponential Backoff and Jitter"):
    the wait before retry k (0-based) is uniform in [0, min(max_delay_s, base_delay_s * 2**k)],
    which spreads a burst of clients that hit one rate limit. A `Retry-After` from the server
    replaces the random wait, capped at `max_retry_after_s` so a daily-quota answer cannot stall a
    run for hours."""

    max_retries: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 60.0

    def delay(self, retry: int, retry_after: float | None,
              rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `retry` (0 for the first retry)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        cap = min(self.max_delay_s, self.base_delay_s * (2.0 ** retry))
        return cap * rand()

    def to_dict(self) -> dict[str, Any]:
        """For settings(): what a rerun needs to retry the same way."""
        return {"max_retries": self.max_retries, "backoff": "exponential, full jitter",
                "retry_on": "429, 408, 5xx, connection errors, timeouts", **{
                    k: v for k, v in asdict(self).items() if k != "max_retries"}}


class ReplyProblem(Exception):
    """The server answered, but not with a usable reply (empty, blocked, filtered): final, since
    asking again is not what the policy is for."""


class GiveUp(Exception):
    """The call failed for good: `cause` is the last exception, `attempts` how many were made
    (1 when the error was not retryable)."""

    def __init__(self, cause: BaseException, attempts: int) -> None:
        self.cause = cause
        self.attempts = attempts
        super().__init__(f"gave up after {attempts} attempt(s): {cause}")


def call_with_retry(fn: Callable[[], T], classify: Callable[[BaseException], Verdict],
                    policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep,
                    rand: Callable[[], float] = random.random, what: str = "request",
                    secrets: tuple[str | None, ...] = ()) -> T:
    """`fn()`, retried per `policy` while `classify` says the failure is transient. Raises
    `GiveUp` (from the last exception) when it is not, or when the retries are spent. `sleep`
    and `rand` are injectable so tests run without waiting; `secrets` are masked in the log."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as e:
            verdict = classify(e)
            if not verdict.retry or attempt >= policy.max_retries:
                raise GiveUp(e, attempt + 1) from e
            wait = policy.delay(attempt, verdict.retry_after, rand)
            log.info("%s failed (%s); retry %d/%d in %.2fs", what, one_line(e, secrets),
                     attempt + 1, policy.max_retries, wait)
            sleep(wait)
            attempt += 1


def stream_with_retry(open_pieces: Callable[[], Iterable[str]],
                      classify: Callable[[BaseException], Verdict], policy: RetryPolicy, *,
                      sleep: Callable[[float], None] = time.sleep,
                      rand: Callable[[], float] = random.random, what: str = "stream",
                      secrets: tuple[str | None, ...] = ()) -> Iterator[str]:
    """Text pieces of a streamed reply. Opening the stream, up to its first non-empty piece, is
    retried like `call_with_retry`; once a piece has been handed on a failure is final (the
    caller already has part of the reply), raised as `GiveUp`. An empty stream yields nothing."""
    attempts = 0

    def first() -> tuple[str | None, Iterator[str]]:
        nonlocal attempts
        attempts += 1
        it = iter(open_pieces())
        for piece in it:
            if piece:
                return piece, it
        return None, it

    head, rest = call_with_retry(first, classify, policy, sleep=sleep, rand=rand, what=what,
                                 secrets=secrets)
    if head is None:
        return
    yield head
    try:
        yield from rest
    except Exception as e:
        raise GiveUp(e, attempts) from e


def retryable_status(code: int | None) -> bool:
    """HTTP statuses worth another try: rate limited, request timeout, server errors. 400, 401,
    403, 404, 422 mean the request itself is wrong and would fail again."""
    return code is not None and (code in (408, 429) or 500 <= code <= 599)


def is_transport_error(exc: BaseException) -> bool:
    """A connection that failed or timed out (httpx, httpx2 or the standard library), looked for
    along the exception's cause chain because SDKs wrap them."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (ConnectionError, TimeoutError)):
            return True
        if any(c.__name__ in _TRANSIENT_NAMES for c in type(cur).__mro__):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def parse_retry_after(headers: Mapping[str, str] | Any | None,
                      now: Callable[[], float] = time.time) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI) or `Retry-After` (RFC 9110: seconds or an
    HTTP-date); None when absent or unreadable."""
    if headers is None:
        return None
    get = getattr(headers, "get", None)
    if get is None:
        return None
    ms = get("retry-after-ms") or get("Retry-After-Ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = get("retry-after") or get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now(), 0.0)


def root_reason(exc: BaseException) -> str:
    """The innermost cause's message ("[Errno 111] Connection refused"), which SDKs hide behind
    generic wrappers ("Connection error.")."""
    seen: set[int] = set()
    cur, last = exc, exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if str(cur):
            last = cur
        cur = cur.__cause__ or cur.__context__
    return str(last) or type(last).__name__


def one_line(what: BaseException | str, secrets: tuple[str | None, ...] = (),
             limit: int = 200) -> str:
    """A failure as one short line for `Reply.error` and logs, with any secret (an API key a
    proxy might echo) masked."""
    text = what if isinstance(what, str) else (str(what) or type(what).__name__)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
