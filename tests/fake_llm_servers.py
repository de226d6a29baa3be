"""Local stand-ins for an OpenAI-compatible server and the Gemini API, so the API backends (and
the simulator) are tested end to end through the real SDKs without a network or a key.

Each server runs `http.server.ThreadingHTTPServer` on 127.0.0.1 (a free port) in a background
thread, records every request (method, path, query, lower-cased headers, JSON body), and answers
from a script: a queue of `Say` (a reply), `Fail` (an HTTP error), `Drop` (hang up without an
answer) and, for Gemini, `Blocked` (prompt blocked). When the queue is empty it says `default`.

    with FakeOpenAIServer() as srv:
        srv.queue(Fail(429, headers={"Retry-After": "2"}), Say("Fine."))
        responder = load_responder(f"openai:{srv.url}#fake-model")
        ...
        assert srv.requests[-1].body["temperature"] == 0.6
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Blocked", "Drop", "Fail", "FakeGeminiServer", "FakeOpenAIServer", "Recorded", "Say"]


@dataclass
class Say:
    """A reply. `finish` defaults to the protocol's normal stop ("stop" / "STOP"). Streamed as
    word pieces (or `pieces` when given) with `chunk_delay_s` between them."""

    text: str
    finish: str | None = None
    delay_s: float = 0.0  # before the response starts
    chunk_delay_s: float = 0.0
    pieces: list[str] | None = None
    usage: bool = True  # report token usage
    thoughts_tokens: int | None = None  # Gemini: usageMetadata.thoughtsTokenCount
    thought: str | None = None  # Gemini: a thought part (`"thought": true`) before the text

    def split(self) -> list[str]:
        if self.pieces is not None:
            return list(self.pieces)
        return re.findall(r"\S+\s*", self.text) or ([self.text] if self.text else [])


@dataclass
class Fail:
    """An HTTP error with the protocol's JSON error body."""

    status: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    details: list[dict[str, Any]] | None = None  # Gemini: error.details (e.g. RetryInfo)


@dataclass
class Drop:
    """Close the connection without answering (a crashed or restarting server)."""


@dataclass
class Blocked:
    """Gemini only: the prompt itself was blocked (`promptFeedback.blockReason`)."""

    reason: str = "SAFETY"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class _Handler(BaseHTTPRequestHandler):
    server: Any  # ThreadingHTTPServer with a `.fake` attribute

    def log_message(self, format: str, *args: Any) -> None:  # silence the access log
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        rec = Recorded(self.command, parts.path, dict(parse_qsl(parts.query)),
                       {k.lower(): v for k, v in self.headers.items()}, body)
        fake = self.server.fake
        with fake.lock:
            fake.requests.append(rec)
        fake.handle(self, rec)

    # --- writing helpers ------------------------------------------------------------------
    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, events: list[Any], delay_s: float, done: bool) -> None:
        """Server-sent events; the body ends when the connection closes (HTTP/1.0)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for i, event in enumerate(events):
            if i and delay_s:
                time.sleep(delay_s)
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        if done:
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    def drop(self) -> None:
        self.close_connection = True
        self.connection.close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is part of the script, not a failure."""


class _FakeServer:
    """Lifecycle, script and request log shared by both fakes."""

    def __init__(self, default: Say | None = None) -> None:
        self.default = default or Say("Okay, okay. I'm calm now.")
        self.script: deque[Any] = deque()
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def queue(self, *items: Any) -> _FakeServer:
        """Answer the next requests with these, in order (then `default`)."""
        with self.lock:
            self.script.extend(items)
        return self

    def next_item(self) -> Any:
        with self.lock:
            return self.script.popleft() if self.script else self.default

    def posts(self) -> list[Recorded]:
        """The generation requests (POSTs) received so far."""
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> _FakeServer:
        httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, h: _Handler, rec: Recorded) -> None:
        raise NotImplementedError


class FakeOpenAIServer(_FakeServer):
    """`GET /v1/models` and `POST /v1/chat/completions` (JSON, or SSE when `stream` is true, with
    a usage chunk when `stream_options.include_usage` is). `url` is the SDK's base_url."""

    def __init__(self, default: Say | None = None, model: str = "fake-model") -> None:
        super().__init__(default)
        self.model = model
        self.models_status = 200  # set 404 to mimic servers without /models

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def handle(self, h: _Handler, rec: Recorded) -> None:
        if rec.method == "GET" and rec.path.endswith("/models"):
            if self.models_status != 200:
                h.send_json(self.models_status, {"error": {"message": "no such route"}})
                return
            h.send_json(200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}]})
            return
        if not (rec.method == "POST" and rec.path.endswith("/chat/completions")):
            h.send_json(404, {"error": {"message": f"no route {rec.path}"}})
            return
        item = self.next_item()
        if isinstance(item, Drop):
            h.drop()
            return
        time.sleep(getattr(item, "delay_s", 0.0))
        if isinstance(item, Fail):
            h.send_json(item.status, {"error": {"message": item.message, "type": "fake_error",
                                                "code": str(item.status)}}, item.headers)
            return
        assert isinstance(item, Say), f"FakeOpenAIServer cannot play {item!r}"
        body = rec.body if isinstance(rec.body, dict) else {}
        pieces = item.split()
        finish = item.finish or "stop"
        prompt_tokens = sum(len(str(m.get("content", "")).split())
                            for m in body.get("messages", []))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                 "total_tokens": prompt_tokens + len(pieces)}
        base = {"id": "chatcmpl-fake", "created": int(time.time()),
                "model": body.get("model", self.model)}
        if not body.get("stream"):
            h.send_json(200, {**base, "object": "chat.completion", "choices": [{
                "index": 0, "finish_reason": finish,
                "message": {"role": "assistant", "content": item.text}}],
                **({"usage": usage} if item.usage else {})})
            return
        chunk = {**base, "object": "chat.completion.chunk"}
        events: list[Any] = [{**chunk, "choices": [{"index": 0, "finish_reason": None,
                                                    "delta": {"role": "assistant"}}]}]
        events += [{**chunk, "choices": [{"index": 0, "finish_reason": None,
                                          "delta": {"content": p}}]} for p in pieces]
        events.append({**chunk, "choices": [{"index": 0, "finish_reason": finish, "delta": {}}]})
        if item.usage and (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": usage})
        h.send_sse(events, item.chunk_delay_s, done=True)


_GEMINI_PATH = re.compile(
    r"^/(?P<version>v1[a-z0-9]*)/models/(?P<model>[^:/]+)(?::(?P<verb>\w+))?$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class FakeGeminiServer(_FakeServer):
    """`GET /{version}/models/{model}`, `POST ...:generateContent` and
    `POST ...:streamGenerateContent?alt=sse`, in the JSON shapes google-genai parses. `url` is
    the SDK's `HttpOptions.base_url`. Models outside `models` get 404 on GET."""

    def __init__(self, default: Say | None = None,
                 models: tuple[str, ...] = ("gemini-2.5-flash", "fake-gemini")) -> None:
        super().__init__(default)
        self.models = models

    @property
    def url(self) -> str:
        return self.root

    @staticmethod
    def error(h: _Handler, status: int, message: str, headers: dict[str, str] | None = None,
              details: list[dict[str, Any]] | None = None) -> None:
        err: dict[str, Any] = {"code": status, "message": message,
                               "status": _STATUS_NAMES.get(status, "UNKNOWN")}
        if details:
            err["details"] = details
        h.send_json(status, {"error": err}, headers)

    def handle(self, h: _Handler, rec: Recorded) -> None:
        m = _GEMINI_PATH.match(rec.path)
        if m is None:
            self.error(h, 404, f"no route {rec.path}")
            return
        model, verb = m["model"], m["verb"]
        if rec.method == "GET" and verb is None:
            if model not in self.models:
                self.error(h, 404, f"models/{model} is not found for API version "
                           f"{m['version']}")
                return
            h.send_json(200, {"name": f"models/{model}", "displayName": model,
                              "inputTokenLimit": 1048576, "outputTokenLimit": 65536})
            return
        if rec.method != "POST" or verb not in ("generateContent", "streamGenerateContent"):
            self.error(h, 404, f"no route {rec.method} {rec.path}")
            return
        item = self.next_item()
        if isinstance(item, Drop):
            h.drop()
            return
        time.sleep(getattr(item, "delay_s", 0.0))
        if isinstance(item, Fail):
            self.error(h, item.status, item.message, item.headers, item.details)
            return
        body = rec.body if isinstance(rec.body, dict) else {}
        prompt_tokens = sum(len(str(p.get("text", "")).split())
                            for c in body.get("contents", []) for p in c.get("parts", []))
        if isinstance(item, Blocked):
            payload = {"promptFeedback": {"blockReason": item.reason},
                       "usageMetadata": {"promptTokenCount": prompt_tokens,
                                         "totalTokenCount": prompt_tokens}}
            if verb == "streamGenerateContent":
                h.send_sse([payload], 0.0, done=False)
            else:
                h.send_json(200, payload)
            return
        assert isinstance(item, Say), f"FakeGeminiServer cannot play {item!r}"
        pieces = item.split()
        usage: dict[str, Any] = {"promptTokenCount": prompt_tokens,
                                 "candidatesTokenCount": len(pieces),
                                 "totalTokenCount": prompt_tokens + len(pieces)
                                 + (item.thoughts_tokens or 0)}
        if item.thoughts_tokens is not None:
            usage["thoughtsTokenCount"] = item.thoughts_tokens
        finish = item.finish or "STOP"

        def candidate(parts: list[str], last: bool, first: bool) -> dict[str, Any]:
            c: dict[str, Any] = {"index": 0, "content": {"role": "model"}}
            out = [{"text": item.thought, "thought": True}] if first and item.thought else []
            out += [{"text": p} for p in parts]
            if out:
                c["content"]["parts"] = out
            if last:
                c["finishReason"] = finish
            return c

        def event(parts: list[str], last: bool, first: bool = False) -> dict[str, Any]:
            e: dict[str, Any] = {"candidates": [candidate(parts, last, first)],
                                 "modelVersion": model, "responseId": "fake"}
            if last and item.usage:
                e["usageMetadata"] = usage
            return e

        if verb == "generateContent":
            h.send_json(200, event([item.text] if item.text else [], last=True, first=True))
            return
        events = [event([p], last=False, first=i == 0) for i, p in enumerate(pieces[:-1])]
        events.append(event(pieces[-1:], last=True, first=len(pieces) <= 1))
        h.send_sse(events, item.chunk_delay_s, done=False)
