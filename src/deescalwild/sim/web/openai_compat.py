"""`POST /v1/chat/completions` and `GET /v1/models`: the simulator as an OpenAI-compatible
server, so a Unity/VR client or any OpenAI SDK can drive a civilian without knowing our API.

How a request maps onto the simulator:

- `model` is a card id (`GET /v1/models` lists them); an unknown one is a 404 in OpenAI's error
  shape (the SDKs raise `NotFoundError`).
- `messages` is the whole conversation, as OpenAI clients send it: `user` messages are the
  trainee's lines, `assistant` messages the civilian's earlier replies. **System messages are
  ignored**: the card defines the scene, the persona and the agitation rule, and a client
  cannot override them. The last message must be the trainee's.
- **Stateless (the default).** The API keeps no state, so the analyser and the agitation rule
  are replayed over every user message (`Simulator.reply_stateless`): the same conversation
  always reaches the same agitation, and the reply is conditioned on it. Nothing is stored.
- **Stored session** (header `X-Deescalwild-Session: ID`, a session made with
  `POST /api/sessions`): only the last user message is used, as the next turn of that session,
  which is stored, rate-limited and gets an after-action report like any other (`POST
  /api/sessions/ID/end`). The earlier messages are ignored: the session has its own history.
- The answer is a standard `chat.completion` (or, with `stream: true`, Server-Sent Events of
  `chat.completion.chunk`s: a first chunk with the role, content deltas, a last chunk with
  `finish_reason: "stop"`, then `data: [DONE]`), plus a non-standard `deescalwild` field:
  `{agitation, level, tactics}` (and `session_id`, `turn` for a stored session). OpenAI
  clients ignore fields they do not know.
- Token counts in `usage` are rough (characters / 4): there is no tokenizer here, and the
  retrieval civilian has none.
- Sampling parameters (`temperature`, `max_tokens`, ...) are accepted and ignored: the
  responder's own settings apply.

Like `app.py`, this module avoids `from __future__ import annotations` (FastAPI reads the
handlers' annotations at runtime).
"""

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from deescalwild.responders.base import ResponderError, stripped
from deescalwild.sim.errors import SimError
from deescalwild.sim.web.security import Limits, RateLimiter, error_payload, error_type

log = logging.getLogger(__name__)

__all__ = ["ChatRequest", "add_openai_routes"]

SESSION_HEADER = "X-Deescalwild-Session"


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens, ...: accepted, ignored

    model: str = Field(description="a card id (GET /v1/models)")
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


def rough_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _responder_failed(e: Exception) -> SimError:
    from deescalwild.sim.engine import ResponderFailed

    return ResponderFailed(f"the civilian's responder failed ({e}); send the request again")


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    last = messages[-1]
    if last.get("role") != "user":
        raise SimError("messages: the last message must be the trainee's (role user)")
    content = last.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content
                          if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        raise SimError(f"messages[{len(messages) - 1}].content: expected a string")
    return content


class _Reply:
    """What a completion answers with: its text pieces (an iterator whose join is the stripped
    reply) and the `deescalwild` field. `close()` releases what the pieces hold (the engine's
    session lock) even when they were never read."""

    def __init__(self, pieces: Iterator[str], info: dict[str, Any], prompt_chars: int,
                 source: Any = None) -> None:
        self.pieces = pieces
        self.info = info
        self.prompt_chars = prompt_chars
        self.source = source

    def close(self) -> None:
        for gen in (self.pieces, self.source):
            if gen is not None and hasattr(gen, "close"):
                gen.close()


def add_openai_routes(app: Any, sim: Any, limits: Limits, rate: RateLimiter,
                      executor: Executor) -> None:
    """Add the `/v1/` routes to the app (`app.py` calls this)."""
    from fastapi import Header, Request
    from fastapi.responses import StreamingResponse
    from starlette.concurrency import run_in_threadpool

    from deescalwild.sim import agitation
    from deescalwild.sim.web.app import drive

    def stateless(body: ChatRequest) -> _Reply:
        request, agit, verdicts = sim.reply_stateless(body.model, body.messages)
        info = {"agitation": agit, "level": agitation.level(agit),
                "tactics": [v.to_dict() for v in verdicts]}
        prompt = sum(len(m.get("content", "")) for m in request.history)

        def pieces() -> Iterator[str]:
            said = False
            try:
                with sim.responder_lock:
                    for piece in stripped(sim.responder.stream(request)):
                        said = True
                        yield piece
            except ResponderError as e:
                raise _responder_failed(e) from e
            if not said:  # as in a session: an empty reply is the backend's failure
                raise _responder_failed(ResponderError("empty reply"))

        return _Reply(pieces(), info, prompt)

    def stored(body: ChatRequest, session_id: str) -> _Reply:
        rec = sim.get(session_id)
        if body.model != rec.card_id:
            raise SimError(f"model: session {session_id} plays card {rec.card_id!r}, "
                           f"not {body.model!r}")
        text = sim.check_text(_last_user_text(body.messages))
        rate.hit(f"turn:{session_id}", limits.turns_per_minute, "turns in this session")
        events = sim.stream_turn(session_id, text)
        first = next(events, None)  # validation errors are raised before this returns
        if first is None:
            raise SimError("the turn produced no events")
        info = {"agitation": first["agitation_after"], "level": first["level"],
                "tactics": first["verdicts"], "session_id": session_id,
                "turn": len(rec.turns)}

        def deltas() -> Iterator[str]:
            for event in events:
                if event["type"] == "delta":
                    yield event["text"]
                elif event["type"] == "done":
                    info["turn"] = event["turn"]["index"]

        return _Reply(stripped(deltas()), info, len(text), source=events)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model(card) for card in sim.cards]}

    @app.get("/v1/models/{model_id}")
    def model(model_id: str) -> dict[str, Any]:
        return _model(sim.cards.get(model_id))

    def prepare(body: ChatRequest, session_id: str | None, client: str) -> _Reply:
        sim.cards.get(body.model)  # unknown model: 404 first
        if session_id:
            return stored(body, session_id)
        rate.hit(f"v1:{client}", limits.stateless_per_minute, "chat completions")
        return stateless(body)

    def complete(body: ChatRequest, session_id: str | None, client: str) -> dict[str, Any]:
        reply = prepare(body, session_id, client)
        try:
            text = "".join(reply.pieces).strip()
        finally:
            reply.close()
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": body.model, "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": _usage(reply.prompt_chars, text), "deescalwild": reply.info}

    def start_stream(body: ChatRequest, session_id: str | None,
                     client: str) -> tuple[_Reply, str | None]:
        reply = prepare(body, session_id, client)
        try:
            return reply, next(reply.pieces, None)  # a responder failing at once: still a 502
        except BaseException:
            reply.close()
            raise

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request,
                               x_deescalwild_session: str | None = Header(None)) -> Any:
        client = request.client.host if request.client else "?"
        if not body.stream:
            return await run_in_threadpool(complete, body, x_deescalwild_session, client)
        reply, first = await run_in_threadpool(start_stream, body, x_deescalwild_session,
                                                client)
        usage = bool((body.stream_options or {}).get("include_usage"))
        chunks = _sse(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.model, first,
                      drive(reply.pieces, executor), reply, usage)
        return StreamingResponse(chunks, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _model(card: Any) -> dict[str, Any]:
    created = 0
    if getattr(card, "path", None) is not None:
        try:
            created = int(card.path.stat().st_mtime)
        except OSError:
            created = 0
    return {"id": card.id, "object": "model", "created": created, "owned_by": "deescalwild",
            "deescalwild": card.summary()}


def _usage(prompt_chars: int, text: str) -> dict[str, int]:
    p, c = (prompt_chars + 3) // 4, rough_tokens(text)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False,
                                  separators=(",", ":")).encode("utf-8") + b"\n\n"


async def _sse(cid: str, created: int, model: str, first: str | None,
               pieces: AsyncIterator[str], reply: _Reply, include_usage: bool
               ) -> AsyncIterator[bytes]:
    """The chunks of a streamed completion (module docstring). A failure mid-reply ends the
    stream with an `error` event, which the OpenAI SDKs raise as an APIError."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return _event({"id": cid, "object": "chat.completion.chunk", "created": created,
                       "model": model, "system_fingerprint": None,
                       "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": finish}], **extra})

    parts: list[str] = []
    try:
        yield chunk({"role": "assistant", "content": ""})
        if first:
            parts.append(first)
            yield chunk({"content": first})
        async for piece in pieces:
            if piece:
                parts.append(piece)
                yield chunk({"content": piece})
        yield chunk({}, "stop", deescalwild=reply.info)
        if include_usage:
            yield _event({"id": cid, "object": "chat.completion.chunk", "created": created,
                          "model": model, "choices": [],
                          "usage": _usage(reply.prompt_chars, "".join(parts))})
        yield b"data: [DONE]\n\n"
    except SimError as e:
        yield _event(error_payload(e.status, str(e), error_type(e), "/v1/"))
    except Exception as e:  # never a stream cut off without a word: the SDK raises this
        log.exception("internal error in a streamed chat completion")
        yield _event(error_payload(500, f"internal error ({type(e).__name__}); see the server "
                                   "log", "internal_error", "/v1/"))
