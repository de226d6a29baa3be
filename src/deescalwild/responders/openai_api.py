"""`openai:BASE_URL#MODEL`: any OpenAI-compatible chat server (llama.cpp server, Ollama, vLLM, LM
Studio, hosted APIs) through the official `openai` SDK.

The SDK's own retries are off (`max_retries=0`): `retry.RetryPolicy` retries 429/5xx/dropped
connections so the policy is the same as Gemini's and lands in settings. Replies are streamed by
default so the first token's arrival is measured. Decoding defaults are the paper's (temperature
0.6, top_p 0.9, max_tokens 128, repetition penalty 1.05); the penalty is not an OpenAI parameter,
so it travels in `extra_body` under both names servers use (`repetition_penalty`: vLLM, SGLang,
TGI; `repeat_penalty`: llama.cpp, LM Studio); `repetition_penalty=none` leaves it out for servers
that reject unknown fields (api.openai.com).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from deescalwild.errors import DeescalwildError
from deescalwild.responders.api_base import APIResponder, Attempt
from deescalwild.responders.base import Options, Request
from deescalwild.responders.prompt import chat_messages
from deescalwild.responders.retry import (
    ReplyProblem,
    Verdict,
    is_transport_error,
    one_line,
    parse_retry_after,
    retryable_status,
    root_reason,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "not-needed"  # local servers ignore the key, but the SDK insists on one
CHECK_TIMEOUT_S = 10.0


def none_if_blank(value: Any) -> Any:
    """`?repetition_penalty=none` (or empty) in a spec means: do not send it."""
    if isinstance(value, str) and value.strip().lower() in ("", "none", "null", "off"):
        return None
    return value


class OpenAIOptions(Options):
    temperature: float = Field(0.6, ge=0, description="sampling temperature (paper: 0.6)")
    top_p: float = Field(0.9, gt=0, le=1, description="nucleus sampling mass (paper: 0.9)")
    max_tokens: int = Field(128, ge=1, description="reply length cap in tokens (paper: 128)")
    repetition_penalty: float | None = Field(
        1.05, gt=0, description="sent in extra_body as repetition_penalty and repeat_penalty "
        "(vLLM, llama.cpp; paper: 1.05); 'none' to leave out (api.openai.com rejects it)")
    seed: int | None = Field(None, description="sampling seed sent to the server when the "
                             "request has none of its own")
    timeout: float = Field(60.0, gt=0, description="seconds to wait to connect, for a reply, or "
                           "between streamed pieces (per attempt)")
    max_retries: int = Field(5, ge=0, description="retries on 429, 5xx, dropped connections, "
                             "timeouts (exponential backoff, full jitter)")
    stream: bool = Field(True, description="stream the reply so first-token latency is measured")
    system_role: bool = Field(True, description="send the scene as a system message; false folds "
                              "it into the first user turn (templates without a system role)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key "
                             "(local servers need none)")

    _blank = field_validator("repetition_penalty", "seed", mode="before")(none_if_blank)


def parse_arg(arg: str) -> tuple[str, str]:
    """`BASE_URL#MODEL` -> (base_url, model); a bare `MODEL` means api.openai.com."""
    arg = arg.strip()
    if "://" not in arg:
        if not arg or "#" in arg:
            raise DeescalwildError("openai: needs BASE_URL#MODEL, e.g. "
                                   "openai:http://127.0.0.1:8080/v1#llama (or openai:MODEL for "
                                   "api.openai.com)")
        return DEFAULT_BASE_URL, arg
    base_url, _, model = arg.partition("#")
    base_url, model = base_url.strip().rstrip("/"), model.strip()
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DeescalwildError(f"openai: {base_url!r} is not an http(s) URL; expected "
                               "openai:http://HOST:PORT/v1#MODEL")
    if not model:
        raise DeescalwildError(f"openai: no model after the URL; write openai:{base_url}#MODEL "
                               "(the name the server serves, see GET /v1/models)")
    return base_url, model


class OpenAIResponder(APIResponder):
    prefix = "openai"
    description = ("an OpenAI-compatible chat server (llama.cpp, vLLM, Ollama, LM Studio, hosted): "
                   "openai:BASE_URL#MODEL; key from $OPENAI_API_KEY when the server needs one")
    Options = OpenAIOptions

    def __init__(self, arg: str = "", options: Options | None = None, *,
                 spec: str | None = None, sleep: Callable[[float], None] | None = None,
                 rand: Callable[[], float] | None = None) -> None:
        super().__init__(arg, options, spec=spec, sleep=sleep, rand=rand)
        self.base_url, self.model = parse_arg(arg)

    # --- setup ----------------------------------------------------------------------------
    def _key(self) -> str | None:
        return os.environ.get(self.options.api_key_env) or None

    def _make_client(self) -> Any:
        from openai import OpenAI

        self._client = OpenAI(base_url=self.base_url, api_key=self._key() or NO_KEY,
                              max_retries=0, timeout=self.options.timeout)
        return self._client

    def check(self) -> None:
        """One GET of `{base_url}/models`: unreachable or a refused key fails the run now; a 404
        is fine (some servers lack the route)."""
        import openai

        env = self.options.api_key_env
        if urlsplit(self.base_url).hostname == "api.openai.com":
            if not self._key():
                raise DeescalwildError(f"openai: api.openai.com needs a key; set {env} "
                                       "(or choose another variable with ?api_key_env=NAME)")
            if self.options.repetition_penalty is not None:
                raise DeescalwildError("openai: api.openai.com rejects repetition_penalty; add "
                                       "?repetition_penalty=none to the responder spec")
        timeout = min(self.options.timeout, CHECK_TIMEOUT_S)
        try:
            self.client().with_options(timeout=timeout).models.with_raw_response.list()
        except openai.APIStatusError as e:
            if e.status_code in (401, 403):
                raise DeescalwildError(
                    f"openai: {self.base_url} refused the key (HTTP {e.status_code}); set {env} "
                    "(or ?api_key_env=NAME)") from e
        except openai.APITimeoutError as e:
            raise DeescalwildError(f"cannot reach {self.base_url}: no answer within {timeout:g}s; "
                                   "is the server running?") from e
        except openai.APIConnectionError as e:
            reason = one_line(root_reason(e), (self._key(),))
            raise DeescalwildError(f"cannot reach {self.base_url}: {reason}; is the server "
                                   "running?") from e

    # --- the request ----------------------------------------------------------------------
    def request_kwargs(self, request: Request) -> dict[str, Any]:
        """The `chat.completions.create` arguments for one request (without `stream`)."""
        o = self.options
        kw: dict[str, Any] = {"model": self.model,
                              "messages": chat_messages(request, system_role=o.system_role),
                              "temperature": o.temperature, "top_p": o.top_p,
                              "max_tokens": o.max_tokens}
        seed = request.seed if request.seed is not None else o.seed
        if seed is not None:
            kw["seed"] = seed
        if o.repetition_penalty is not None:
            kw["extra_body"] = self.extra_body()
        return kw

    def extra_body(self) -> dict[str, float]:
        rp = self.options.repetition_penalty
        return {} if rp is None else {"repetition_penalty": rp, "repeat_penalty": rp}

    def _pieces(self, request: Request, at: Attempt) -> Iterator[str]:
        """Text pieces of one attempt; records timing, finish reason and token count in `at`."""
        client = self.client()
        if not self.options.stream:
            resp = client.chat.completions.create(**self.request_kwargs(request))
            if resp.usage is not None:
                at.tokens = resp.usage.completion_tokens
            if not resp.choices:
                raise ReplyProblem("the server returned no choices")
            choice = resp.choices[0]
            at.finish = choice.finish_reason
            text = choice.message.content or ""
            if text:
                at.timer.first()
                yield text
            self._final(at)
            return
        stream = client.chat.completions.create(**self.request_kwargs(request), stream=True,
                                                stream_options={"include_usage": True})
        with stream:
            for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    at.tokens = chunk.usage.completion_tokens
                for choice in chunk.choices or []:
                    if choice.index != 0:
                        continue
                    if choice.finish_reason:
                        at.finish = choice.finish_reason
                    piece = choice.delta.content if choice.delta is not None else None
                    if piece:
                        at.timer.first()
                        yield piece
        self._final(at)

    @staticmethod
    def _final(at: Attempt) -> None:
        if at.finish == "content_filter":
            raise ReplyProblem("the server's content filter stopped the reply "
                               "(finish_reason=content_filter)")

    def _classify(self, e: BaseException) -> Verdict:
        import openai

        if isinstance(e, openai.APIStatusError):
            return Verdict(retryable_status(e.status_code), parse_retry_after(e.response.headers))
        if isinstance(e, openai.APIConnectionError):  # includes timeouts
            return Verdict(True)
        if isinstance(e, ReplyProblem):
            return Verdict(False)
        return Verdict(is_transport_error(e))

    def _failure(self, c: BaseException) -> str:
        """Status code and the server's message, or what the connection did."""
        import openai

        if isinstance(c, openai.APIStatusError):
            body = c.body if isinstance(c.body, dict) else {}
            return f"HTTP {c.status_code}: {body.get('message') or c.message}"
        if isinstance(c, openai.APITimeoutError):
            return f"timed out after {self.options.timeout:g}s"
        if isinstance(c, openai.APIConnectionError):
            return f"connection failed: {root_reason(c)}"
        return super()._failure(c)

    # --- bookkeeping ----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Server, model, decoding, retry policy; never the key (only the variable's name)."""
        s = super().settings()
        s.update(base_url=self.base_url, model=self.model, extra_body=self.extra_body(),
                 retry=self.policy.to_dict())
        return s

