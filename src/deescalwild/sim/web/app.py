"""The web simulator: the page, the REST API and the OpenAI-compatible endpoint over one
`Simulator`.

Routes (`docs/simulator.md` shows requests and answers):

    GET  /                              the page (static/index.html)
    GET  /history                       past sessions (static/history.html)
    GET  /static/...                    the page's script and style
    GET  /sessions/{id}/report          the after-action report as a page
    GET  /healthz                       {"status": "ok", ...}; open even with a token
    GET  /api/cards                     [card summary, ...]
    POST /api/sessions                  {"card_id", "meta"?} -> {"session_id", "card", ...}
    GET  /api/sessions?limit=N          the history list, newest first
    GET  /api/sessions/{id}             the session with its turns
    POST /api/sessions/{id}/turns       {"text", "stream"?} -> the reply (or NDJSON events)
    POST /api/sessions/{id}/end         -> the report (ending twice is harmless)
    GET  /api/sessions/{id}/report      -> the report (409 while the session runs)
    GET  /v1/models, /v1/models/{id}    the cards, in OpenAI's shape
    POST /v1/chat/completions           model = card id; `stream` supported (openai_compat.py)

Choices, and why:

- **The engine and the responder run in the thread pool** (plain `def` handlers, or
  `run_in_threadpool`), so a slow responder holds a worker thread, never the event loop. A
  streamed reply is produced to its end in a thread of its own and handed over as it comes
  (`drive`): a client leaving mid-reply must not leave the session locked.
- **A streamed turn's first event is produced before the answer starts**, inside the handler:
  the engine raises every validation error (empty or long text, unknown or ended session)
  before its first event, so those still get a 4xx status; only a responder failing
  mid-reply becomes an `{"type": "error", ...}` line at the end of the stream.
- **Every error is JSON** `{"error": {"message", "type", "status"}}`: simulator errors carry
  their status (`sim/errors.py`), other user errors are 400, a request that does not match the
  schema is 422 naming the field (400 when it is not JSON at all), unknown routes 404; under
  `/v1/` the OpenAI error shape. Nothing a client sends can produce a 500.
- **No interactive API docs**: Swagger UI loads scripts from a CDN, and nothing here may
  reach outside the machine. `/openapi.json` is served for client authors.

This module does not use `from __future__ import annotations`: FastAPI reads the handlers'
annotations at runtime, and the handlers are defined inside `create_app` so that importing this
module (the CLI does, lazily) does not import FastAPI.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deescalwild.errors import DeescalwildError
from deescalwild.sim.errors import SimError
from deescalwild.sim.web.security import Limits, RateLimiter, error_payload, error_type

__all__ = ["LOCAL_HOSTS", "STATIC", "Limits", "create_app", "serve"]

STATIC = Path(__file__).with_name("static")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger("deescalwild.sim.web")
T = TypeVar("T")


class NewSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    card_id: str = Field(description="a card id from GET /api/cards")
    meta: dict[str, Any] = Field(default_factory=dict,
                                 description="anything the client wants kept with the session "
                                             "(stored under meta.client)")

    @field_validator("meta")
    @classmethod
    def _storable(cls, meta: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(meta, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (ValueError, UnicodeEncodeError) as e:
            raise ValueError("must be plain JSON with valid Unicode text (no NaN, no unpaired "
                             "surrogates)") from e
        return meta


class NewTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the trainee's line")
    stream: bool = Field(False, description="answer with NDJSON events as the reply is produced")


def _field(loc: tuple) -> str:
    parts = [str(x) for x in loc if x not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "request body"


def validation_message(errors: list[dict[str, Any]]) -> tuple[int, str]:
    """(status, one line) for FastAPI's request validation errors: 400 when the body is not
    JSON, else 422 naming each field and what was expected."""
    for e in errors:
        if e.get("type") == "json_invalid":
            where = (e.get("ctx") or {}).get("error", "")
            return 400, f"request body: not valid JSON ({where})" if where else \
                "request body: not valid JSON"
    msgs = []
    for e in errors[:5]:
        field, kind = _field(tuple(e.get("loc", ()))), e.get("type", "")
        if kind == "missing":
            msgs.append(f"{field}: required" if field != "request body" else
                        "request body: required (a JSON object)")
        elif kind == "extra_forbidden":
            msgs.append(f"{field}: unknown field")
        else:
            msgs.append(f"{field}: {e.get('msg', 'invalid').lower()}")
    return 422, "; ".join(msgs) or "invalid request"


def create_app(sim: Any, *, token: str | None = None, limits: Limits | None = None) -> Any:
    """The FastAPI app serving `sim` (a `deescalwild.sim.engine.Simulator`)."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from deescalwild import __version__
    from deescalwild.sim import agitation
    from deescalwild.sim.web.openai_compat import add_openai_routes
    from deescalwild.sim.web.security import Guard, check_token

    if token is not None:
        check_token(token)  # here, not when the first request builds the middleware
    limits = limits or Limits()
    sim.max_turn_chars = limits.max_turn_chars  # one limit, whichever path a turn takes
    rate = RateLimiter()
    # drives streamed replies to their end whatever the client does (see `drive`); sized like
    # the request threads (a streamed turn already holds its session's lock when it gets here,
    # so a small pool cannot deadlock: every task it runs can finish)
    executor = ThreadPoolExecutor(max_workers=limits.worker_threads(sim.responder),
                                  thread_name_prefix="deescalwild-stream")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        # the pool sync handlers run in (turns included): sized for the responder (Limits)
        anyio.to_thread.current_default_thread_limiter().total_tokens = \
            limits.worker_threads(sim.responder)
        yield
        # replies under way (their clients may have left) finish and are stored before the
        # caller closes the store; nothing new starts
        executor.shutdown(wait=True)

    app = FastAPI(title="deescalwild training simulator", version=__version__,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json", lifespan=lifespan)
    app.state.sim = sim
    app.state.limits = limits
    app.state.rate = rate
    app.state.executor = executor

    # --- errors --------------------------------------------------------------------------
    def error(request: Request, status: int, message: str, type_: str,
              headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_payload(status, message, type_, request.url.path),
                            status_code=status, headers=headers)

    @app.exception_handler(SimError)
    async def sim_error(request: Request, exc: SimError) -> JSONResponse:
        retry = getattr(exc, "retry_after", None)
        return error(request, exc.status, str(exc), error_type(exc),
                     {"Retry-After": str(retry)} if retry else None)

    @app.exception_handler(DeescalwildError)
    async def user_error(request: Request, exc: DeescalwildError) -> JSONResponse:
        return error(request, 400, str(exc), error_type(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = validation_message(list(exc.errors()))
        return error(request, status, message, "invalid_request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no such page or endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error(request, exc.status_code, message,
                     {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code,
                                                                       "http_error"),
                     getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error(request, 500, f"internal error ({type(exc).__name__}); see the server "
                     "log", "internal_error")

    # --- helpers -------------------------------------------------------------------------
    def session_json(rec: Any) -> dict[str, Any]:
        d = rec.to_dict()
        d["agitation"] = rec.agitation
        d["level"] = agitation.level(rec.agitation)
        d["ended"] = rec.ended
        return d

    def page(name: str) -> FileResponse:
        path = STATIC / name
        if not path.is_file():
            raise DeescalwildError(f"the page {name} is not installed (looked in {STATIC})")
        return FileResponse(path, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    # --- pages ---------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return page("index.html")

    @app.get("/history", include_in_schema=False)
    def history() -> FileResponse:
        return page("history.html")

    @app.get("/sessions/{session_id}/report", include_in_schema=False)
    def report_page(session_id: str) -> HTMLResponse:
        from deescalwild.sim.report import to_html

        return HTMLResponse(to_html(sim.report(session_id)))

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "cards": len(sim.cards),
                "responder": sim.responder.spec, "analyser": sim.analyser.name,
                "store": sim.store is not None}

    # --- the API -------------------------------------------------------------------------
    @app.get("/api/cards")
    def cards() -> list[dict[str, Any]]:
        return [card.summary() for card in sim.cards]

    @app.post("/api/sessions")
    def new_session(body: NewSession) -> dict[str, Any]:
        card = sim.cards.get(body.card_id)  # unknown id: 404 before the rate limit counts
        rate.hit("sessions", limits.sessions_per_minute, "new sessions")
        rec = sim.start(card.id, {"client": body.meta} if body.meta else None)
        return {"session_id": rec.id, "card": card.summary(), "agitation": rec.agitation,
                "level": agitation.level(rec.agitation), "opening": rec.opening,
                "started_at": rec.started_at}

    @app.get("/api/sessions")
    def list_sessions(limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        return sim.sessions(limit)

    @app.get("/api/sessions/{session_id}")
    def get_session(session_id: str) -> dict[str, Any]:
        return session_json(sim.get(session_id))

    def start_turn(session_id: str, text: str, stream: bool) -> Any:
        text = sim.check_text(text)  # the limit is Limits.max_turn_chars (set above)
        sim.get(session_id)  # unknown session: 404 before the rate limit counts
        rate.hit(f"turn:{session_id}", limits.turns_per_minute, "turns in this session")
        if stream:
            events = sim.stream_turn(session_id, text)
            first = next(events, None)  # errors before the first event are still a 4xx
            if first is None:
                raise SimError("the turn produced no events")
            return first, events
        t = sim.turn(session_id, text)
        return {"reply": t.reply, "agitation": t.agitation_after,
                "agitation_before": t.agitation_before,
                "level": agitation.level(t.agitation_after),
                "tactics": [v.to_dict() for v in t.verdicts], "latency_s": t.latency_s,
                "first_token_s": t.first_token_s, "turn": t.index}

    @app.post("/api/sessions/{session_id}/turns")
    async def turn(session_id: str, body: NewTurn) -> Any:
        # the engine runs in the thread pool (a slow responder never blocks the event loop)
        out = await run_in_threadpool(start_turn, session_id, body.text, body.stream)
        if not body.stream:
            return out
        first, events = out
        return StreamingResponse(ndjson(first, drive(events, executor)),
                                 media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/sessions/{session_id}/end")
    def end(session_id: str) -> dict[str, Any]:
        return sim.end(session_id)

    @app.get("/api/sessions/{session_id}/report")
    def report(session_id: str) -> dict[str, Any]:
        return sim.report(session_id)

    add_openai_routes(app, sim, limits, rate, executor)
    app.add_middleware(Guard, token=token, limits=limits)
    return app


def _line(event: dict[str, Any]) -> bytes:
    import json

    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def drive(iterator: Iterator[T], executor: Executor) -> AsyncIterator[T]:
    """The items of a blocking iterator, produced in `executor` from now on and handed to the
    event loop as they come; its exception is raised where the items are consumed.

    Why not let Starlette iterate a sync generator itself: the engine's turn generator holds
    the session's lock (and, for backends that are not thread-safe, the responder's) until it
    ends. Iterated at the client's pace, a client that goes away mid-reply leaves it suspended
    holding them, and the session (or the whole responder) hangs. Here the producer always
    runs to the end: the turn is completed and stored, and the locks released, whether or not
    anyone still reads it. Call it from the event loop (an `async def` handler)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    def put(item: tuple[int, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def produce() -> None:
        try:
            for item in iterator:
                put((0, item))
            put((1, None))
        except BaseException as e:
            put((2, e))

    executor.submit(produce)

    async def consume() -> AsyncIterator[T]:
        while True:
            kind, item = await queue.get()
            if kind == 0:
                yield item
            elif kind == 1:
                return
            else:
                raise item

    return consume()


async def ndjson(first: dict[str, Any], events: AsyncIterator[dict[str, Any]]
                 ) -> AsyncIterator[bytes]:
    """The engine's events as NDJSON lines; a failure after the first event (the responder
    failing mid-reply) becomes a last `{"type": "error", "error": {...}}` line."""
    yield _line(first)
    try:
        async for event in events:
            yield _line(event)
    except SimError as e:
        yield _line({"type": "error", **error_payload(e.status, str(e), error_type(e))})
    except Exception as e:
        log.exception("streamed turn failed")
        yield _line({"type": "error", **error_payload(500, f"internal error "
                                                          f"({type(e).__name__})",
                                                          "internal_error")})


def serve(sim: Any, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          limits: Limits | None = None, log_level: str = "info", access_log: bool = False) -> None:
    """Run the app with uvicorn until interrupted. A host other than loopback without a token
    is refused: anyone on the network could otherwise play (and read) the sessions. The access
    log is off by default: it would record `?token=` and session ids."""
    if host not in LOCAL_HOSTS and not token:
        raise DeescalwildError(f"binding to {host} exposes the simulator to the network; pass "
                               "--token (or set DEESCALWILD_TOKEN) so every request must carry "
                               "it")
    import signal
    import threading

    import uvicorn

    app = create_app(sim, token=token, limits=limits)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal, whose default action
    # kills the process before the caller's `finally` (closing the store) runs; a handler that
    # exits instead lets it run, and the exit status says the shutdown was clean.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main else None
    try:
        # proxy_headers off: uvicorn would otherwise believe a loopback client's
        # X-Forwarded-For, and the per-address rate limit with it
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log,
                    server_header=False, proxy_headers=False)
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)
