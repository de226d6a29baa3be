"""The `openai:` and `gemini:` backends end to end through the real SDKs against local fake
servers (tests/fake_llm_servers.py), and the retry policy they share. No network, no key, no
real waiting: backoff sleeps are recorded, not slept."""

from __future__ import annotations

import json
import socket

import pytest
from fake_llm_servers import Blocked, Drop, Fail, FakeGeminiServer, FakeOpenAIServer, Say

from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import Request, ResponderError
from deescalwild.responders.prompt import chat_messages, system_prompt
from deescalwild.responders.registry import SpecError, load_responder
from deescalwild.responders.retry import (
    GiveUp,
    RetryPolicy,
    Verdict,
    call_with_retry,
    is_transport_error,
    one_line,
    parse_retry_after,
    stream_with_retry,
)

KEY = "sk-test-DO-NOT-LEAK-0123456789"
ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY",
       "GOOGLE_GENAI_API_VERSION", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI",
       "GOOGLE_GENAI_USE_ENTERPRISE", "MY_KEY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def oai():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def gem():
    with FakeGeminiServer() as srv:
        yield srv


def request(seed: int | None = None) -> Request:
    return Request(context="Traffic stop on a highway at night.", id="case-1", seed=seed,
                   history=[{"role": "user", "content": "License and registration, please."},
                            {"role": "assistant", "content": "What did I do?"},
                            {"role": "user", "content": "You ran the red light back there."}])


def openai_responder(srv: FakeOpenAIServer, opts: str = "", sleeps: list | None = None):
    r = load_responder(f"openai:{srv.url}#fake-model" + (f"?{opts}" if opts else ""))
    r.sleep = (sleeps if sleeps is not None else []).append
    r.rand = lambda: 1.0  # the top of each jitter window: delays are exactly the caps
    return r


def gemini_responder(srv: FakeGeminiServer, opts: str = "", sleeps: list | None = None,
                     model: str = "gemini-2.5-flash"):
    r = load_responder(f"gemini:{model}?base_url={srv.url}" + (f"&{opts}" if opts else ""))
    r.sleep = (sleeps if sleeps is not None else []).append
    r.rand = lambda: 1.0
    return r


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the retry policy ---------------------------------------------------------------------


def failing(times: int, exc: Exception, result: str = "ok"):
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc
        return result

    return fn, calls


def test_backoff_doubles_up_to_the_cap_and_jitter_stays_inside_the_window():
    policy = RetryPolicy(max_retries=6, base_delay_s=1.0, max_delay_s=10.0)
    sleeps: list[float] = []
    fn, calls = failing(6, ConnectionError("reset"))
    assert call_with_retry(fn, lambda e: Verdict(True), policy, sleep=sleeps.append,
                           rand=lambda: 1.0) == "ok"
    assert calls["n"] == 7
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    # full jitter: anywhere in [0, cap], so with the real RNG never above the cap
    for k in range(8):
        cap = min(10.0, 2.0 ** k)
        assert all(0.0 <= policy.delay(k, None) <= cap for _ in range(50))


def test_retry_after_replaces_the_random_wait_and_is_capped():
    policy = RetryPolicy(max_retries=3, max_retry_after_s=60.0)
    sleeps: list[float] = []
    waits = iter([7.0, 3600.0])
    fn, _ = failing(2, RuntimeError("429"))
    call_with_retry(fn, lambda e: Verdict(True, next(waits)), policy, sleep=sleeps.append,
                    rand=lambda: 0.0)
    assert sleeps == [7.0, 60.0]


def test_not_retryable_fails_at_once_and_retries_are_bounded():
    sleeps: list[float] = []
    fn, calls = failing(99, ValueError("400 bad request"))
    with pytest.raises(GiveUp) as info:
        call_with_retry(fn, lambda e: Verdict(False), RetryPolicy(), sleep=sleeps.append)
    assert (calls["n"], info.value.attempts, sleeps) == (1, 1, [])
    assert isinstance(info.value.cause, ValueError)

    fn, calls = failing(99, TimeoutError("slow"))
    with pytest.raises(GiveUp) as info:
        call_with_retry(fn, lambda e: Verdict(True), RetryPolicy(max_retries=2),
                        sleep=sleeps.append)
    assert (calls["n"], info.value.attempts, len(sleeps)) == (3, 3, 2)


def test_parse_retry_after_reads_seconds_milliseconds_and_dates():
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = 1_700_000_000.0
    date = "Tue, 14 Nov 2023 22:13:40 GMT"  # now + 20 s
    assert parse_retry_after({"retry-after": date}, now=lambda: now) == pytest.approx(20.0)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None


def test_transport_errors_are_found_behind_sdk_wrappers():
    class TimeoutException(Exception):  # the httpx/httpx2 base class, matched by name
        pass

    class ReadTimeout(TimeoutException):
        pass

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise RuntimeError("Connection error.") from inner
    except RuntimeError as wrapped:
        assert is_transport_error(wrapped)
    assert is_transport_error(ReadTimeout("timed out"))
    assert not is_transport_error(ValueError("bad json"))


def test_stream_with_retry_retries_only_before_the_first_piece():
    opened = {"n": 0}

    def flaky_open():
        opened["n"] += 1
        if opened["n"] < 3:
            raise ConnectionError("refused")
        return iter(["", "Hello", " there"])

    sleeps: list[float] = []
    pieces = list(stream_with_retry(flaky_open, lambda e: Verdict(True), RetryPolicy(),
                                    sleep=sleeps.append, rand=lambda: 1.0))
    assert pieces == ["Hello", " there"] and opened["n"] == 3 and sleeps == [1.0, 2.0]

    def breaks_midway():
        opened["n"] += 1
        yield "Hello"
        raise ConnectionError("reset")

    opened["n"] = 0
    got: list[str] = []
    with pytest.raises(GiveUp):
        for piece in stream_with_retry(breaks_midway, lambda e: Verdict(True), RetryPolicy(),
                                       sleep=sleeps.append):
            got.append(piece)
    assert got == ["Hello"] and opened["n"] == 1  # not replayed after a piece was handed on


def test_one_line_masks_secrets_and_flattens():
    assert one_line(f"bad key {KEY}\nsecond line", (KEY,)) == "bad key *** second line"
    assert len(one_line("x" * 1000, limit=50)) == 50


# --- openai: -------------------------------------------------------------------------------


def test_openai_sends_the_prompt_and_decoding_options(oai):
    r = openai_responder(oai)
    reply = r.respond(request(seed=11))
    assert reply.ok and reply.text == "Okay, okay. I'm calm now."
    (post,) = oai.posts()
    body = post.body
    assert post.path == "/v1/chat/completions"
    assert body["model"] == "fake-model"
    assert body["messages"] == chat_messages(request())
    assert body["messages"][0] == {"role": "system",
                                   "content": system_prompt(request().context)}
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.6, 0.9, 128)
    assert (body["repetition_penalty"], body["repeat_penalty"]) == (1.05, 1.05)
    assert body["seed"] == 11  # the request's seed
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert post.headers["authorization"] == "Bearer not-needed"


def test_openai_spec_options_reach_the_server(oai):
    r = openai_responder(oai, "temperature=0&top_p=1&max_tokens=16&seed=5&"
                              "repetition_penalty=none&stream=false&system_role=false")
    assert r.respond(request()).ok
    body = oai.posts()[0].body
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0, 1, 16, 5)
    assert "repetition_penalty" not in body and "repeat_penalty" not in body
    assert not body.get("stream") and "stream_options" not in body
    assert body["messages"] == chat_messages(request(), system_role=False)
    assert body["messages"][0]["role"] == "user"


def test_openai_loads_through_the_registry_and_rejects_typos(oai):
    r = load_responder(f"openai:http://127.0.0.1:{oai.port}/v1#fake-model?max_tokens=16")
    assert (r.base_url, r.model, r.options.max_tokens) == (oai.url, "fake-model", 16)
    assert r.respond(request()).ok
    assert oai.posts()[0].body["max_tokens"] == 16
    with pytest.raises(SpecError, match="max_tokenz"):
        load_responder(f"openai:{oai.url}#m?max_tokenz=3")


def test_openai_arg_forms():
    with pytest.raises(DeescalwildError, match="no model"):
        load_responder("openai:http://127.0.0.1:8080/v1")
    with pytest.raises(DeescalwildError, match="http"):
        load_responder("openai:ftp://host/v1#m")
    r = load_responder("openai:gpt-4o-mini")
    assert (r.base_url, r.model) == ("https://api.openai.com/v1", "gpt-4o-mini")


def test_openai_check_catches_hosted_api_mistakes_without_a_request(monkeypatch):
    r = load_responder("openai:gpt-4o-mini")
    with pytest.raises(DeescalwildError, match="OPENAI_API_KEY"):
        r.check()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(DeescalwildError, match="repetition_penalty=none"):
        r.check()


def test_openai_retries_429_with_backoff_then_answers(oai):
    sleeps: list[float] = []
    r = openai_responder(oai, sleeps=sleeps)
    oai.queue(Fail(429, "slow down"), Fail(429, "slow down"), Say("Fine. Here."))
    reply = r.respond(request())
    assert reply.text == "Fine. Here." and reply.error is None
    assert len(oai.posts()) == 3
    assert sleeps == [1.0, 2.0]  # exponential: the first two windows, at their top


def test_openai_honours_retry_after(oai):
    sleeps: list[float] = []
    r = openai_responder(oai, sleeps=sleeps)
    oai.queue(Fail(429, headers={"Retry-After": "3"}),
              Fail(503, headers={"retry-after-ms": "1500"}))
    assert r.respond(request()).ok
    assert sleeps == [3.0, 1.5]


def test_openai_server_errors_are_retried_client_errors_are_not(oai):
    sleeps: list[float] = []
    r = openai_responder(oai, sleeps=sleeps)
    oai.queue(Fail(500, "boom"), Say("Alright."))
    assert r.respond(request()).text == "Alright."
    assert len(oai.posts()) == 2 and len(sleeps) == 1

    oai.queue(Fail(400, "unknown field foo"))
    reply = r.respond(request())
    assert reply.text == "" and reply.error == "HTTP 400: unknown field foo"
    assert len(oai.posts()) == 3 and len(sleeps) == 1  # no retry


def test_openai_gives_up_after_max_retries_and_the_sdk_does_not_retry(oai):
    sleeps: list[float] = []
    r = openai_responder(oai, "max_retries=2", sleeps=sleeps)
    oai.queue(*[Fail(503, "overloaded")] * 5)
    reply = r.respond(request())
    assert reply.error == "HTTP 503: overloaded (gave up after 3 attempts)"
    assert len(oai.posts()) == 3 and len(sleeps) == 2

    r0 = openai_responder(oai, "max_retries=0")
    assert not r0.respond(request()).ok
    assert len(oai.posts()) == 4  # exactly one more: the SDK's own retries are off


def test_openai_dropped_connection_is_retried(oai):
    r = openai_responder(oai)
    oai.queue(Drop(), Say("I'm here."))
    assert r.respond(request()).text == "I'm here."
    assert len(oai.posts()) == 2


def test_openai_timeout_is_an_error_reply(oai):
    r = openai_responder(oai, "timeout=0.2&max_retries=0&stream=false")
    oai.queue(Say("too late", delay_s=1.0))
    reply = r.respond(request())
    assert reply.error == "timed out after 0.2s" and reply.text == ""


@pytest.mark.parametrize("text", ["", "  \n "])
def test_openai_empty_reply_is_an_error_not_an_answer(oai, text):
    for opts in ("stream=true", "stream=false"):
        r = openai_responder(oai, opts)
        oai.queue(Say(text))
        reply = r.respond(request())
        assert reply.text == "" and reply.error == "empty reply (finish_reason=stop)"
    assert len(oai.posts()) == 2  # not retried


def test_openai_content_filter_is_an_error(oai):
    oai.queue(Say("I will", finish="content_filter"))
    reply = openai_responder(oai).respond(request())
    assert reply.text == "" and "content_filter" in reply.error


def test_openai_streaming_measures_first_token_and_usage(oai):
    r = openai_responder(oai)
    oai.queue(Say("Why are you stopping me?", chunk_delay_s=0.05))
    reply = r.respond(request())
    assert reply.text == "Why are you stopping me?"
    assert reply.tokens == 5  # from the usage chunk
    assert 0 < reply.first_token_s <= reply.latency_s
    assert reply.latency_s - reply.first_token_s >= 0.15  # 4 gaps of 50 ms after the first

    oai.queue(Say("Why are you stopping me?"))
    assert list(r.stream(request())) == ["Why ", "are ", "you ", "stopping ", "me?"]


def test_openai_tokens_are_none_without_usage(oai):
    oai.queue(Say("No usage here.", usage=False))
    reply = openai_responder(oai, "stream=false").respond(request())
    assert reply.ok and reply.tokens is None
    oai.queue(Say("Usage here.", usage=True))
    assert openai_responder(oai, "stream=false").respond(request()).tokens == 2


def test_openai_stream_raises_responder_error_after_retries(oai):
    sleeps: list[float] = []
    r = openai_responder(oai, "max_retries=1", sleeps=sleeps)
    oai.queue(Fail(502, "bad gateway"), Fail(502, "bad gateway"))
    with pytest.raises(ResponderError, match="HTTP 502: bad gateway"):
        list(r.stream(request()))
    assert len(oai.posts()) == 2 and sleeps == [1.0]
    oai.queue(Say(""))
    with pytest.raises(ResponderError, match="empty reply"):
        list(r.stream(request()))


def test_openai_check_on_a_closed_port_is_one_line():
    port = closed_port()
    r = load_responder(f"openai:http://127.0.0.1:{port}/v1#m")
    with pytest.raises(DeescalwildError) as info:
        r.check()
    msg = str(info.value)
    assert msg.startswith(f"cannot reach http://127.0.0.1:{port}/v1: ")
    assert msg.endswith("; is the server running?") and "\n" not in msg
    assert "refused" in msg.lower()


def test_openai_check_accepts_404_but_not_a_refused_key(oai, monkeypatch):
    r = openai_responder(oai)
    r.check()
    assert [q.path for q in oai.requests] == ["/v1/models"]
    oai.models_status = 404
    r.check()  # servers without /models are fine
    oai.models_status = 401
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(DeescalwildError, match=r"HTTP 401.*OPENAI_API_KEY") as info:
        openai_responder(oai).check()
    assert KEY not in str(info.value)


def test_openai_key_is_sent_but_never_recorded_or_echoed(oai, monkeypatch, caplog):
    monkeypatch.setenv("MY_KEY", KEY)
    r = openai_responder(oai, "api_key_env=MY_KEY")
    oai.queue(Fail(429, f"Rate limit for key {KEY}"), Fail(401, f"Incorrect API key: {KEY}"))
    with caplog.at_level("DEBUG", logger="deescalwild"):
        reply = r.respond(request())
    assert oai.posts()[0].headers["authorization"] == f"Bearer {KEY}"
    assert reply.error == "HTTP 401: Incorrect API key: *** (gave up after 2 attempts)"
    assert "retry 1/5" in caplog.text and "***" in caplog.text
    assert KEY not in caplog.text
    assert KEY not in json.dumps(r.settings())
    assert r.settings()["api_key_env"] == "MY_KEY"


def test_openai_settings_record_server_decoding_and_retry_policy(oai):
    s = openai_responder(oai, "max_retries=3&temperature=0.2").settings()
    assert (s["base_url"], s["model"], s["temperature"], s["top_p"]) == (oai.url, "fake-model",
                                                                          0.2, 0.9)
    assert s["extra_body"] == {"repetition_penalty": 1.05, "repeat_penalty": 1.05}
    assert s["retry"]["max_retries"] == 3 and s["retry"]["backoff"].startswith("exponential")
    json.dumps(s)  # serialisable as is


# --- gemini: -------------------------------------------------------------------------------


def test_gemini_request_shape(gem, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    reply = gemini_responder(gem).respond(request(seed=3))
    assert reply.ok and reply.text == "Okay, okay. I'm calm now."
    (post,) = gem.posts()
    assert post.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert post.query == {"alt": "sse"}
    assert post.headers["x-goog-api-key"] == KEY
    body = post.body
    assert body["systemInstruction"]["parts"] == [{"text": system_prompt(request().context)}]
    assert [(c["role"], c["parts"][0]["text"]) for c in body["contents"]] == [
        ("user", "License and registration, please."), ("model", "What did I do?"),
        ("user", "You ran the red light back there.")]
    cfg = body["generationConfig"]
    assert (cfg["temperature"], cfg["topP"], cfg["maxOutputTokens"], cfg["seed"]) == (
        0.6, 0.9, 128, 3)
    budget = cfg["thinkingConfig"].get("thinkingBudget", cfg["thinkingConfig"].get(
        "thinking_budget"))
    assert budget == 0
    assert "safetySettings" not in body


@pytest.mark.parametrize(("opts", "budget", "cap"), [
    ("thinking_budget=256", 256, 128 + 256),
    ("thinking_budget=-1&max_tokens=64", -1, 64 + 8192),
    ("max_tokens=32", 0, 32),
    ("thinking_budget=none", None, 128),
])
def test_gemini_output_cap_leaves_room_for_thinking(gem, monkeypatch, opts, budget, cap):
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    r = gemini_responder(gem, opts)
    assert r.respond(request()).ok
    cfg = gem.posts()[0].body["generationConfig"]
    assert cfg["maxOutputTokens"] == cap == r.settings()["max_output_tokens"]
    if budget is None:
        assert "thinkingConfig" not in cfg
    else:
        assert budget in cfg["thinkingConfig"].values()


def test_gemini_safety_off_and_non_stream(gem, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    r = gemini_responder(gem, "safety=off&stream=false")
    reply = r.respond(request())
    assert reply.ok and 0 < reply.first_token_s <= reply.latency_s
    post = gem.posts()[0]
    assert post.path.endswith(":generateContent") and "alt" not in post.query
    settings = {s["category"]: s["threshold"] for s in post.body["safetySettings"]}
    assert len(settings) == 4 and set(settings.values()) == {"OFF"}


def test_gemini_503_then_success_and_retry_info(gem, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    sleeps: list[float] = []
    r = gemini_responder(gem, sleeps=sleeps)
    retry_info = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
    gem.queue(Fail(503, "The model is overloaded."), Fail(429, "quota", details=retry_info),
              Say("Okay."))
    reply = r.respond(request())
    assert reply.text == "Okay." and len(gem.posts()) == 3
    assert sleeps == [1.0, 7.0]  # backoff, then the server's RetryInfo


def test_gemini_client_errors_fail_at_once_and_sdk_does_not_retry(gem, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    sleeps: list[float] = []
    gem.queue(Fail(400, "Invalid thinking budget"))
    reply = gemini_responder(gem, sleeps=sleeps).respond(request())
    assert reply.error == "HTTP 400 INVALID_ARGUMENT: Invalid thinking budget"
    assert len(gem.posts()) == 1 and sleeps == []
    gem.queue(Fail(503, "overloaded"))
    reply = gemini_responder(gem, "max_retries=0").respond(request())
    assert reply.error == "HTTP 503 UNAVAILABLE: overloaded" and len(gem.posts()) == 2


@pytest.mark.parametrize("stream", ["true", "false"])
@pytest.mark.parametrize(("item", "expect"), [
    (Say("", finish="SAFETY"), "reply blocked (finish_reason=SAFETY)"),
    (Say("I'd rather", finish="RECITATION"), "reply blocked (finish_reason=RECITATION)"),
    (Blocked("PROHIBITED_CONTENT"), "prompt blocked (PROHIBITED_CONTENT)"),
    (Say("", finish="MAX_TOKENS", thoughts_tokens=128),
     "thinking used the whole output budget (128 thinking tokens"),
    (Say("", finish="MAX_TOKENS"), "reply cut off at max_output_tokens=128"),
    (Say("   "), "empty reply (finish_reason=STOP)"),
])
def test_gemini_blocked_and_empty_replies_are_errors(gem, monkeypatch, stream, item, expect):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    gem.queue(item)
    reply = gemini_responder(gem, f"stream={stream}").respond(request())
    assert reply.text == "" and reply.error.startswith(expect)
    assert len(gem.posts()) == 1  # final: not retried


def test_gemini_truncated_reply_with_text_is_kept(gem, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    gem.queue(Say("I was just going to", finish="MAX_TOKENS", thoughts_tokens=10))
    reply = gemini_responder(gem).respond(request())
    assert reply.text == "I was just going to" and reply.tokens == 5


def test_gemini_streaming_skips_thoughts_and_counts_tokens(gem, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    r = gemini_responder(gem, "thinking_budget=64")
    gem.queue(Say("Sir, I was not speeding.", thought="He seems calm; answer politely.",
                  thoughts_tokens=12, chunk_delay_s=0.05))
    reply = r.respond(request())
    assert reply.text == "Sir, I was not speeding." and reply.tokens == 5
    assert 0 < reply.first_token_s <= reply.latency_s
    assert reply.latency_s - reply.first_token_s >= 0.15
    assert r.usage()["thinking_tokens"] == 12 and r.usage()["reply_tokens"] == 5
    gem.queue(Say("Sir, I was not speeding.", thought="hmm"))
    assert list(r.stream(request())) == ["Sir, ", "I ", "was ", "not ", "speeding."]


def test_gemini_check(gem, monkeypatch):
    r = gemini_responder(gem)
    with pytest.raises(DeescalwildError, match="GOOGLE_API_KEY or GEMINI_API_KEY"):
        r.check()
    assert gem.requests == []  # no request without a key
    assert "GOOGLE_API_KEY" in r.respond(request()).error  # a reply error, not an exception

    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    gemini_responder(gem).check()
    assert gem.requests[-1].method == "GET"
    assert gem.requests[-1].path == "/v1beta/models/gemini-2.5-flash"
    with pytest.raises(DeescalwildError, match="model 'gemini-9' not found"):
        gemini_responder(gem, model="gemini-9").check()

    port = closed_port()
    far = load_responder(f"gemini:gemini-2.5-flash?base_url=http://127.0.0.1:{port}")
    with pytest.raises(DeescalwildError, match=f"cannot reach http://127.0.0.1:{port}/") as info:
        far.check()
    assert "\n" not in str(info.value)


def test_gemini_key_choice_and_secrecy(gem, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-var-key-0000")
    monkeypatch.setenv("MY_KEY", KEY)
    with pytest.raises(DeescalwildError, match="set OTHER_KEY"):
        gemini_responder(gem, "api_key_env=OTHER_KEY").check()
    r = gemini_responder(gem, "api_key_env=MY_KEY")
    gem.queue(Fail(403, f"API key {KEY} was revoked"))
    reply = r.respond(request())
    assert gem.posts()[0].headers["x-goog-api-key"] == KEY
    assert reply.error == "HTTP 403 PERMISSION_DENIED: API key *** was revoked"
    assert KEY not in json.dumps(r.settings())
    assert "gemini-var-key" not in json.dumps(r.settings())
