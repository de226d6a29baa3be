"""What keeps the web simulator safe to run on a training network: a shared token, request-size
and rate limits, security headers, and the JSON error shape every refusal uses.

Choices, and why:

- **One ASGI middleware (`Guard`), not several.** Token, body size, headers and timing are checked
  in one pass over the raw ASGI messages, before FastAPI parses anything: a refused request costs
  no JSON parsing, and a pure ASGI middleware (unlike Starlette's `BaseHTTPMiddleware`) leaves
  streamed answers streaming.
- **Token.** With `--token T` every request but `/healthz` must carry it: `Authorization: Bearer
  T` (what the OpenAI SDKs send as their API key), `X-Deescalwild-Token: T`, or, for a browser,
  `?token=T` once: the answer is a redirect to the same page without the token in the address,
  setting an HttpOnly, SameSite=Strict cookie that carries it from then on (so it stays out of
  the history, bookmarks and Referer headers). Comparisons use `hmac.compare_digest`.
- **Body size.** The body is read (at most `max_body_bytes` + 1 bytes) before the app sees it:
  a `Content-Length` over the limit is refused before reading, and a chunked body without one is
  cut off at the limit; both answer 413. Bodies here are a line of text, so buffering is free.
- **Rate limits** are sliding windows in memory (`RateLimiter`): per session for turns, global
  for new sessions, per client address for the stateless OpenAI endpoint. A 429 carries
  `Retry-After` (seconds until the oldest request in the window expires).
- **Host and Origin.** Without a token the server trusts that only this machine can reach it,
  which DNS rebinding would break (a web page whose name now resolves to 127.0.0.1 could read
  every session): so a request whose `Host` is not a loopback name is refused (421). Any request
  that changes something and carries an `Origin` must come from this server's own origin (403),
  so another site (or another local port) cannot post a form to end a session.
- **Headers.** A strict Content-Security-Policy (scripts only from this server: the page has no
  inline script; inline styles allowed for the report's SVG), `nosniff`, no Referer, no framing.
  `X-Response-Time` and `Server-Timing` give the server-side time until the answer's headers.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from deescalwild.errors import DeescalwildError
from deescalwild.sim.errors import RateLimited

__all__ = ["COOKIE", "Guard", "Limits", "RateLimiter", "check_token", "error_payload", "error_type"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

COOKIE = "deescalwild_token"
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]{8,}")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1", ""})
OPEN_PATHS = frozenset({"/healthz"})
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Request limits of the web app; 0 switches a rate limit off."""

    max_body_bytes: int = 64 * 1024  # any request body (413 above)
    max_turn_chars: int = 2000  # one trainee turn (422 above; the engine has its own cap too)
    turns_per_minute: int = 30  # per session, /api turns and /v1 with X-Deescalwild-Session
    sessions_per_minute: int = 60  # new sessions, all clients together
    stateless_per_minute: int = 240  # /v1/chat/completions without a session, per client address
    # threads answering requests; 0: 2 for an in-process, thread-safe responder (retrieval:
    # CPU-bound under the GIL, where more threads only contend: benchmarks/sim_load.py measured
    # 280 turns/s with 1, 260 with 2, 200 with 40), else 40 (network backends wait on I/O)
    workers: int = 0

    def worker_threads(self, responder: Any) -> int:
        if self.workers > 0:
            return self.workers
        return 2 if getattr(responder, "thread_safe", False) else 40


class RateLimiter:
    """Sliding-window counters: at most `limit` hits per key in the last `window` seconds."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def hit(self, key: str, limit: int, what: str = "requests") -> None:
        """Count one hit, or raise `RateLimited` (with `.retry_after` seconds) when the window
        is full (the refused hit is not counted)."""
        if limit <= 0:
            return
        now = self.clock()
        with self._lock:
            self._calls += 1
            if self._calls % 1024 == 0:
                self._sweep(now)
            q = self._hits.setdefault(key, deque())
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= limit:
                retry = max(1, int(q[0] + self.window - now + 0.999))
                err = RateLimited(f"too many {what}: at most {limit} per "
                                  f"{self.window:g} s; retry in {retry} s")
                err.retry_after = retry  # type: ignore[attr-defined]
                raise err
            q.append(now)

    def _sweep(self, now: float) -> None:
        """Forget keys with no hit in the window (ended sessions), so memory stays bounded."""
        for key in [k for k, q in self._hits.items() if not q or q[-1] <= now - self.window]:
            del self._hits[key]


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def error_type(exc: BaseException) -> str:
    """`NotFound` -> "not_found", `SessionEnded` -> "session_ended"; the base classes (a plain
    `SimError`, `DeescalwildError`) -> "bad_request"."""
    name = type(exc).__name__
    if name in ("SimError", "DeescalwildError"):
        return "bad_request"
    return _CAMEL.sub("_", name).lower()


_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def error_payload(status: int, message: str, type_: str, path: str = "") -> dict[str, Any]:
    """`{"error": {"message", "type", "status"}}`; under `/v1/` the OpenAI error shape (its
    `type`, with ours as `code`, and `param`), which the OpenAI SDKs turn into their errors.
    A message quoting the client's input is made encodable (an unpaired surrogate would
    otherwise turn a 4xx into a 500)."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if path.startswith("/v1/"):
        kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500
                                 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": type_,
                          "status": status}}
    return {"error": {"message": message, "type": type_, "status": status}}


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def check_token(token: str) -> str:
    """The token, if it can travel in HTTP headers and a cookie as it is."""
    if not TOKEN_CHARS.fullmatch(token):
        raise DeescalwildError("--token: use 8 or more ASCII letters, digits or -._~+/= "
                               "(it travels in HTTP headers and a cookie)")
    return token


def _host_name(host: str) -> str:
    """`Host` without its port ("[::1]:8000" -> "[::1]", "localhost:8000" -> "localhost")."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v.strip().strip('"')
    return None


def _is_page(path: str) -> bool:
    return not path.startswith(("/api/", "/v1/")) and path not in OPEN_PATHS


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, token: str | None,
                 limits: Limits) -> None:
        self.app = app
        self.token = check_token(token).encode("ascii") if token else None
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "")
        extra: list[tuple[bytes, bytes]] = []

        async def send_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - t0) * 1000
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, *extra,
                                      (b"x-response-time", f"{ms:.2f}ms".encode()),
                                      (b"server-timing", f"app;dur={ms:.2f}".encode())]
            await send(message)

        host = (_header(scope, b"host") or "").lower()
        if self.token is None and _host_name(host) not in LOOPBACK_NAMES:
            await _error(send_headers, 421, f"this simulator answers only to localhost, not to "
                         f"Host {host[:100]!r}; serve with --token to reach it by another name",
                         "misdirected_request", path)
            return
        origin = _header(scope, b"origin")
        if (scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin
                and origin.lower().split("://", 1)[-1] != host):
            await _error(send_headers, 403, "cross-origin requests may not change anything here",
                         "forbidden", path)
            return
        if self.token is not None and path not in OPEN_PATHS:
            verdict = self._authorise(scope)
            if verdict is None:
                await _error(send_headers, 401, "this simulator needs its token: send "
                             "'Authorization: Bearer TOKEN' (or X-Deescalwild-Token), or open "
                             "/?token=TOKEN once in the browser", "unauthorized", path,
                             [(b"www-authenticate", b'Bearer realm="deescalwild"')])
                return
            if verdict == "query" and scope["method"] in ("GET", "HEAD") and _is_page(path):
                await self._redirect_with_cookie(scope, send_headers)
                return

        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read_body(scope, receive, send_headers, path)
            if body is None:
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send_headers)

    def _authorise(self, scope: Scope) -> str | None:
        """Where the valid token came from ("header", "cookie", "query"), None if nowhere."""
        assert self.token is not None
        auth = _header(scope, b"authorization") or ""
        scheme, _, value = auth.partition(" ")
        candidates = [("header", value.strip() if scheme.lower() == "bearer" else None),
                      ("header", _header(scope, b"x-deescalwild-token")),
                      ("cookie", _cookie(scope, COOKIE)),
                      ("query", dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
                       .get("token"))]
        for source, got in candidates:
            if got and hmac.compare_digest(got.encode("utf-8"), self.token):
                return source
        return None

    async def _redirect_with_cookie(self, scope: Scope, send: Send) -> None:
        query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                              keep_blank_values=True) if k != "token"]
        # quoted (a non-Latin path would not fit the header) and on this server ("//x" would
        # be another host)
        path = "/" + quote(scope.get("path", "/"), safe="/").lstrip("/")
        location = path + (f"?{urlencode(query)}" if query else "")
        assert self.token is not None
        cookie = (f"{COOKIE}={self.token.decode('utf-8')}; Path=/; HttpOnly; SameSite=Strict")
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("latin-1")),
                                (b"set-cookie", cookie.encode("latin-1")),
                                (b"cache-control", b"no-store"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def _read_body(self, scope: Scope, receive: Receive, send: Send,
                         path: str) -> bytes | None:
        """The whole body, or None after answering 413/400 (or when the client went away)."""
        limit = self.limits.max_body_bytes
        too_big = (f"request body over {limit:,} bytes; a turn holds at most "
                   f"{self.limits.max_turn_chars:,} characters")
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await _error(send, 400, "Content-Length: expected a number of bytes",
                             "bad_request", path)
                return None
            if n > limit:
                await _error(send, 413, too_big, "payload_too_large", path)
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _error(send, 413, too_big, "payload_too_large", path)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the buffered body over once, then the client's own messages
    (disconnects, which streaming answers listen for)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _error(send: Send, status: int, message: str, type_: str, path: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(error_payload(status, message, type_, path)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
