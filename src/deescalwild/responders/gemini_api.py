"""`gemini:MODEL`: Google's Gemini API through `google-genai`.

Three things differ from an OpenAI-compatible server and are handled here:
- Thinking. Gemini 2.5 counts thinking tokens against `max_output_tokens`, so a 128-token cap can
  be spent thinking and leave no reply. `thinking_budget` is off by default (0, which 2.5 Flash
  allows), and the request's output cap is `max_tokens` plus the thinking budget (plus
  `DYNAMIC_THINKING_CAP` for dynamic thinking, -1).
- Blocking. A blocked prompt, or a reply stopped for SAFETY / RECITATION / PROHIBITED_CONTENT /
  BLOCKLIST / SPII ..., is an error naming the reason, never an (empty) answer.
- Retries. The SDK retries nothing here (`HttpRetryOptions(attempts=1)`, automatic stream
  continuation off); `retry.RetryPolicy` does, the same way as for `openai:`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from deescalwild.errors import DeescalwildError
from deescalwild.responders.api_base import APIResponder, Attempt
from deescalwild.responders.base import Options, Request
from deescalwild.responders.openai_api import none_if_blank
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

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"
KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")  # google-genai's own precedence
# Output tokens reserved for thinking when the budget is dynamic (-1): generous for one spoken
# turn (2.5 Flash rarely thinks past 2k tokens on a short prompt), and bounded so a run's cost is.
DYNAMIC_THINKING_CAP = 8192
CHECK_TIMEOUT_S = 10.0
FINE_FINISH = frozenset({"STOP", "MAX_TOKENS", "FINISH_REASON_UNSPECIFIED"})
SAFETY_CATEGORIES = ("HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH",
                     "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_DANGEROUS_CONTENT")


class GeminiOptions(Options):
    temperature: float = Field(0.6, ge=0, le=2, description="sampling temperature (paper: 0.6)")
    top_p: float = Field(0.9, gt=0, le=1, description="nucleus sampling mass (paper: 0.9)")
    max_tokens: int = Field(128, ge=1, description="reply budget in tokens, not counting thinking "
                            "(paper: 128)")
    thinking_budget: int | None = Field(
        0, ge=-1, description="thinking tokens: 0 off (2.5 Flash), -1 dynamic (output cap "
        f"max_tokens+{DYNAMIC_THINKING_CAP}), N>0 fixed (cap max_tokens+N), 'none' sends no "
        "thinking config (models without thinking)")
    seed: int | None = Field(None, description="sampling seed when the request has none")
    timeout: float = Field(60.0, gt=0, description="seconds per attempt (connect, reply, or "
                           "between streamed pieces)")
    max_retries: int = Field(5, ge=0, description="retries on 429, 5xx, dropped connections, "
                             "timeouts (exponential backoff, full jitter)")
    stream: bool = Field(True, description="stream the reply so first-token latency is measured")
    safety: Literal["default", "off"] = Field(
        "default", description="'off' turns the four adjustable harm filters off (heated "
        "encounters are often profane); 'default' keeps Google's thresholds")
    api_key_env: str | None = Field(None, description="environment variable holding the key "
                                    "(default: GOOGLE_API_KEY, then GEMINI_API_KEY)")
    base_url: str | None = Field(None, description="API root for proxies and tests (default "
                                 f"{DEFAULT_BASE_URL})")
    api_version: str = Field("v1beta", description="API version in the URL (pinned so an SDK "
                             "upgrade cannot change it)")

    _blank = field_validator("seed", "thinking_budget", "api_key_env", "base_url",
                             mode="before")(none_if_blank)


@dataclass
class _Attempt(Attempt):
    thoughts: int | None = None
    prompt: int | None = None
    answered: bool = False  # the server sent a response (counted in usage)


def enum_name(value: Any) -> str | None:
    """An SDK enum or string ("FinishReason.SAFETY", "SAFETY") -> "SAFETY"."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


class GeminiResponder(APIResponder):
    prefix = "gemini"
    description = ("Google Gemini API via google-genai: gemini:MODEL (e.g. "
                   "gemini:gemini-2.5-flash); key from $GOOGLE_API_KEY or $GEMINI_API_KEY")
    Options = GeminiOptions
    needs_key = "GEMINI_API_KEY"
    Attempt = _Attempt

    def __init__(self, arg: str = "", options: Options | None = None, *,
                 spec: str | None = None, sleep: Callable[[float], None] | None = None,
                 rand: Callable[[], float] | None = None) -> None:
        super().__init__(arg, options, spec=spec, sleep=sleep, rand=rand)
        self.model = arg.strip().removeprefix("models/")
        if not self.model:
            raise DeescalwildError("gemini: needs a model name, e.g. gemini:gemini-2.5-flash")
        self.base_url = (self.options.base_url or DEFAULT_BASE_URL).rstrip("/") + "/"
        self._lock = threading.Lock()
        self._usage = {"responses": 0, "prompt_tokens": 0, "reply_tokens": 0,
                       "thinking_tokens": 0}

    # --- setup ----------------------------------------------------------------------------
    def _key_source(self) -> tuple[str | None, str | None]:
        """(variable name, key) of the first variable that is set."""
        names = (self.options.api_key_env,) if self.options.api_key_env else KEY_VARIABLES
        for name in names:
            value = os.environ.get(name, "").strip()
            if value:
                return name, value
        return None, None

    def _key(self) -> str | None:
        return self._key_source()[1]

    def _missing_key(self) -> DeescalwildError:
        names = (self.options.api_key_env,) if self.options.api_key_env else KEY_VARIABLES
        return DeescalwildError(f"gemini: no API key; set {' or '.join(names)} "
                                "(or name another variable with ?api_key_env=NAME)")

    def _make_client(self) -> Any:
        """SDK retries off (one attempt), API version pinned, key passed explicitly so the SDK's
        own environment lookups (and Vertex AI switches) play no part."""
        from google import genai
        from google.genai import types

        key = self._key()
        if key is None:
            raise self._missing_key()
        http = types.HttpOptions(base_url=self.base_url, api_version=self.options.api_version,
                                 timeout=int(self.options.timeout * 1000),
                                 retry_options=types.HttpRetryOptions(attempts=1))
        self._client = genai.Client(vertexai=False, api_key=key, http_options=http)
        return self._client

    def check(self) -> None:
        """Key present, API reachable, model known: one GET of the model's metadata (no
        tokens spent)."""
        from google.genai import errors, types

        if self._key() is None:
            raise self._missing_key()
        secrets = (self._key(),)
        try:
            self.client().models.get(model=self.model, config=types.GetModelConfig(
                http_options=types.HttpOptions(timeout=int(CHECK_TIMEOUT_S * 1000))))
        except errors.APIError as e:
            what = one_line(f"HTTP {e.code} {e.status or ''}: {e.message or ''}", secrets)
            if e.code == 404:
                raise DeescalwildError(f"gemini: model {self.model!r} not found ({what}); see "
                                       "https://ai.google.dev/gemini-api/docs/models") from e
            if e.code in (400, 401, 403):
                var = self._key_source()[0]
                raise DeescalwildError(f"gemini: the API refused the request ({what}); check the "
                                       f"key in {var} and the model name") from e
        except Exception as e:
            if is_transport_error(e):
                reason = one_line(root_reason(e), secrets)
                raise DeescalwildError(f"cannot reach {self.base_url}: {reason}; check the "
                                       "network (or the base_url option)") from e
            raise

    # --- the request ----------------------------------------------------------------------
    def max_output_tokens(self) -> int:
        """The reply budget plus room for thinking, which Gemini 2.5 counts against the cap."""
        o = self.options
        if o.thinking_budget is None:
            return o.max_tokens
        if o.thinking_budget < 0:
            return o.max_tokens + DYNAMIC_THINKING_CAP
        return o.max_tokens + o.thinking_budget

    def request_parts(self, request: Request) -> tuple[list[Any], Any]:
        """(contents, config) for `generate_content`: the shared system prompt as
        `system_instruction`, history with roles user/model."""
        from google.genai import types

        o = self.options
        system, *history = chat_messages(request, system_role=True)
        contents = [types.Content(role="model" if m["role"] == "assistant" else "user",
                                  parts=[types.Part(text=m["content"])]) for m in history]
        seed = request.seed if request.seed is not None else o.seed
        safety = None
        if o.safety == "off":
            safety = [types.SafetySetting(category=c, threshold="OFF") for c in SAFETY_CATEGORIES]
        config = types.GenerateContentConfig(
            system_instruction=system["content"], temperature=o.temperature, top_p=o.top_p,
            max_output_tokens=self.max_output_tokens(), candidate_count=1, seed=seed,
            thinking_config=None if o.thinking_budget is None
            else types.ThinkingConfig(thinking_budget=o.thinking_budget),
            safety_settings=safety, automatic_continuation=False,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
        return contents, config

    def _pieces(self, request: Request, at: _Attempt) -> Iterator[str]:
        """Text pieces of one attempt (thought parts skipped); records finish reason and token
        counts in `at`; raises `ReplyProblem` when the prompt or the reply was blocked."""
        contents, config = self.request_parts(request)
        models = self.client().models
        try:
            if self.options.stream:
                chunks: Any = models.generate_content_stream(model=self.model,
                                                             contents=contents, config=config)
            else:
                chunks = [models.generate_content(model=self.model, contents=contents,
                                                  config=config)]
            for chunk in chunks:
                at.answered = True
                usage = chunk.usage_metadata
                if usage is not None:
                    at.tokens = usage.candidates_token_count
                    at.thoughts = usage.thoughts_token_count
                    at.prompt = usage.prompt_token_count
                feedback = chunk.prompt_feedback
                if feedback is not None and feedback.block_reason:
                    raise ReplyProblem(f"prompt blocked ({enum_name(feedback.block_reason)}"
                                       + (f": {feedback.block_reason_message}"
                                          if feedback.block_reason_message else "") + ")")
                for cand in (chunk.candidates or [])[:1]:
                    if cand.finish_reason:
                        at.finish = enum_name(cand.finish_reason)
                    for part in (cand.content.parts or []) if cand.content else []:
                        if part.text and not part.thought:
                            at.timer.first()
                            yield part.text
        finally:
            self._count(at)
        if at.finish is not None and at.finish not in FINE_FINISH:
            raise ReplyProblem(f"reply blocked (finish_reason={at.finish})")

    def _count(self, at: _Attempt) -> None:
        if not at.answered:
            return
        with self._lock:
            self._usage["responses"] += 1
            self._usage["prompt_tokens"] += at.prompt or 0
            self._usage["reply_tokens"] += at.tokens or 0
            self._usage["thinking_tokens"] += at.thoughts or 0

    def _empty(self, at: _Attempt) -> ReplyProblem:
        cap = self.max_output_tokens()
        if at.finish == "MAX_TOKENS" and at.thoughts:
            return ReplyProblem(f"thinking used the whole output budget ({at.thoughts} thinking "
                                f"tokens of max_output_tokens={cap}); raise max_tokens or lower "
                                "thinking_budget")
        if at.finish == "MAX_TOKENS":
            return ReplyProblem(f"reply cut off at max_output_tokens={cap} before any text")
        return ReplyProblem(f"empty reply (finish_reason={at.finish})")

    def _classify(self, e: BaseException) -> Verdict:
        from google.genai import errors

        if isinstance(e, errors.APIError):
            return Verdict(retryable_status(e.code), retry_after(e))
        if isinstance(e, ReplyProblem):
            return Verdict(False)
        return Verdict(is_transport_error(e))

    def _failure(self, c: BaseException) -> str:
        from google.genai import errors

        if isinstance(c, errors.APIError):
            return f"HTTP {c.code} {c.status or ''}: {c.message or ''}".replace(" :", ":")
        if is_transport_error(c) and "timeout" in type(c).__name__.lower():
            return f"timed out after {self.options.timeout:g}s"
        if is_transport_error(c):
            return f"connection failed: {root_reason(c)}"
        return super()._failure(c)

    # --- bookkeeping ----------------------------------------------------------------------
    def usage(self) -> dict[str, int]:
        """Tokens so far (responses received, prompt, reply, thinking): what a run cost, which
        `Reply.tokens` (reply tokens only) does not show."""
        with self._lock:
            return dict(self._usage)

    def settings(self) -> dict[str, Any]:
        """Model, endpoint, decoding, output cap, retry policy; never the key."""
        s = super().settings()
        s.update(model=self.model, base_url=self.base_url,
                 max_output_tokens=self.max_output_tokens(),
                 dynamic_thinking_cap=DYNAMIC_THINKING_CAP
                 if (self.options.thinking_budget or 0) < 0 else None,
                 retry=self.policy.to_dict())
        return s



_DELAY = re.compile(r"^\s*([0-9]*\.?[0-9]+)s\s*$")


def retry_after(e: Any) -> float | None:
    """The wait a Gemini error asks for: a `Retry-After` header, or the `RetryInfo.retryDelay`
    ("37s") that the API puts in a 429's error details."""
    headers = getattr(getattr(e, "response", None), "headers", None)
    wait = parse_retry_after(headers)
    if wait is not None:
        return wait
    details = e.details if isinstance(getattr(e, "details", None), dict) else {}
    inner = details.get("error", details)
    for d in inner.get("details", []) if isinstance(inner, dict) else []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("RetryInfo"):
            m = _DELAY.match(str(d.get("retryDelay", "")))
            if m:
                return float(m.group(1))
    return None
