"""The one place that builds yt-dlp's options and calls it.

Every stage that talks to a video site goes through here, so they all share one set of options
(quiet, no config or cookie files, the run's timeouts) and one retry policy: rate limits (HTTP
429), server errors (5xx), timeouts and dropped connections are retried with exponential backoff
and full jitter (`deescalwild.responders.retry`), honouring `Retry-After` when the server sent
one; a throttle message without a status ("rate-limited", "try again later") is retried at the
longest wait the policy allows; anything else (404, unsupported URL, private video, geo block,
a TLS certificate that does not verify) fails at once. Failures leave
as `StageError` with one line of text and no terminal colour codes, ready for the manifest.

yt-dlp is imported inside the functions that call it, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from deescalwild.acquire.tasks import Settings, StageError
from deescalwild.responders.retry import (
    GiveUp,
    RetryPolicy,
    Verdict,
    call_with_retry,
    one_line,
    parse_retry_after,
    retryable_status,
)

__all__ = ["classify", "download", "extract_info", "fetch", "policy", "reason",
           "ydl_options"]

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# yt-dlp's own transient failures when no HTTP status is attached (the text is all we have)
_TRANSIENT_TEXT = re.compile(
    r"HTTP Error (?:408|429|5\d\d)\b|timed out|time-out|connection (?:reset|aborted|refused)"
    r"|remote end closed|incomplete ?read|\bbytes read\b|temporarily unavailable"
    r"|too many requests|try again later|rate[- ]?limit", re.IGNORECASE)
# a site throttling us (YouTube: "This content isn't available, try again later. The current
# session has been rate-limited by YouTube for up to an hour"): retried, but each retry waits as
# long as the policy allows (`backoff_cap_s`), and the final reason says it was rate-limited
_RATE_LIMIT_TEXT = re.compile(r"rate[- ]?limit|too many requests|try again later",
                              re.IGNORECASE)
_HTTP_STATUS = re.compile(r"HTTP Error (\d{3})\b")
# yt-dlp's exception classes that mean the network, not the request, failed
_TRANSPORT_NAMES = frozenset({"TransportError", "IncompleteRead", "ProxyError", "SSLError"})
# ... except a certificate that does not verify: the same on every try (yt-dlp's
# CertificateVerifyError is an SSLError; the standard library's is an ssl.SSLError)
_FINAL_NAMES = frozenset({"CertificateVerifyError", "SSLCertVerificationError"})


class _Logger:
    """yt-dlp prints errors to stderr even when quiet; send everything to `logging` instead (the
    error itself comes back as an exception)."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)


def ydl_options(settings: Settings, **extra: Any) -> dict[str, Any]:
    """yt-dlp parameters for one call: silent, colourless, no user config or cookies read, file
    URLs only when the run allows them. yt-dlp's own HTTP retries resume a download that broke
    mid-way; extraction is retried by `extract_info`'s policy instead (not both)."""
    opts: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "color": "never",
        "logger": _Logger(),
        "ignoreconfig": True,
        "cookiefile": None,
        "enable_file_urls": settings.allow_file_urls,
        "socket_timeout": settings.timeout_s,
        "retries": settings.max_retries,
        "fragment_retries": settings.max_retries,
        "extractor_retries": 0,
        "retry_sleep_functions": {
            "http": _backoff(settings), "fragment": _backoff(settings)},
        "noplaylist": True,
        "check_formats": False,
    }
    opts.update(extra)
    return opts


def policy(settings: Settings) -> RetryPolicy:
    """The run's retry policy (a server's Retry-After is capped at `backoff_cap_s`)."""
    return RetryPolicy(max_retries=settings.max_retries, base_delay_s=settings.backoff_base_s,
                       max_delay_s=settings.backoff_cap_s,
                       max_retry_after_s=settings.backoff_cap_s)


def extract_info(url: str, settings: Settings, *, flat: bool = False, download: bool = False,
                 sleep: Callable[[float], None] = time.sleep, **extra: Any) -> dict[str, Any]:
    """yt-dlp's info dict for `url` (`flat`: list a channel's or playlist's entries without
    opening each). Retried on transient failures; `StageError` when it fails for good."""
    opts = ydl_options(settings, **extra)
    if flat:
        opts["extract_flat"] = "in_playlist"
        opts["noplaylist"] = False

    def call() -> dict[str, Any]:
        import yt_dlp

        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=download)
            return ydl.sanitize_info(info)

    return _retrying(call, settings, url, sleep)


def download(url: str, settings: Settings, dest_dir: str | Path, format: str | None = None,
             *, sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download the media of one video (`format`, default `settings.audio_format`: best audio,
    else the best single file) into `dest_dir`, named `media.<ext>`; returns the file.
    A URL that turns out to be a playlist is refused rather than downloading all its entries."""
    dest = Path(dest_dir)
    opts = ydl_options(settings, format=format or settings.audio_format,
                       outtmpl={"default": "media.%(ext)s"},
                       paths={"home": str(dest), "temp": str(dest)},
                       overwrites=True, continuedl=False, nopart=False)

    def call() -> Path:
        import yt_dlp

        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=False)
            if info.get("_type", "video") != "video" or info.get("entries") is not None:
                raise StageError(f"{url} is a playlist, not a video (add it to expand its "
                                 "videos)")
            info = ydl.process_ie_result(info, download=True)
            files = [d.get("filepath") for d in info.get("requested_downloads") or []]
            files = [f for f in files if f and Path(f).is_file()]
            if not files:
                raise StageError(f"yt-dlp downloaded nothing for {url}")
            return Path(files[0])

    return _retrying(call, settings, url, sleep)


def fetch(url: str, settings: Settings, *, headers: dict[str, str] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> bytes:
    """The body of one URL (a caption file) through yt-dlp's networking, so proxies, file-URL
    permission and retries are the same as for the media. `headers`: the `http_headers` yt-dlp
    gave with the URL, sent with the request."""
    def call() -> bytes:
        import yt_dlp
        from yt_dlp.networking import Request

        req = Request(url, headers={str(k): str(v) for k, v in (headers or {}).items()})
        with yt_dlp.YoutubeDL(ydl_options(settings)) as ydl, ydl.urlopen(req) as resp:
            return resp.read()

    return _retrying(call, settings, url, sleep)


def classify(exc: BaseException) -> Verdict:
    """Transient (retry) or final? An HTTP status found along the exception chain decides
    (429, 408, 5xx retry); else a certificate that does not verify is final; else a
    network-level error retries; else the message's text does ("HTTP Error 503", "timed out",
    "connection reset", "rate-limited", "try again later"); everything else is final. A
    throttle found only in the text asks for the longest wait the policy allows."""
    if isinstance(exc, StageError):
        return Verdict(exc.retryable)
    for e in _chain(exc):
        status = getattr(e, "status", None)
        if isinstance(status, int) and hasattr(e, "response"):
            headers = getattr(e.response, "headers", None)
            return Verdict(retryable_status(status),
                           parse_retry_after(headers) if retryable_status(status) else None)
    if any(c.__name__ in _FINAL_NAMES for e in _chain(exc) for c in type(e).__mro__):
        return Verdict(False)
    for e in _chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError)) or any(
                c.__name__ in _TRANSPORT_NAMES for c in type(e).__mro__):
            return Verdict(True)
    text = str(exc)
    m = _HTTP_STATUS.search(text)
    if m:
        return Verdict(retryable_status(int(m.group(1))))
    if _RATE_LIMIT_TEXT.search(text):
        return Verdict(True, math.inf)  # capped at the policy's max_retry_after_s
    return Verdict(bool(_TRANSIENT_TEXT.search(text)))


def reason(exc: BaseException) -> str:
    """yt-dlp's message as one line: no colour codes, no "ERROR:" prefix, no plea to file a
    bug report."""
    text = _ANSI.sub("", str(exc) or type(exc).__name__)
    text = re.sub(r"^\s*ERROR:\s*", "", text)
    text = text.split("; please report this issue", 1)[0]
    return one_line(text, limit=300)


def _retrying(call: Callable[[], Any], settings: Settings, url: str,
              sleep: Callable[[float], None]) -> Any:
    try:
        return call_with_retry(call, classify, policy(settings), sleep=sleep,
                               what=f"yt-dlp {url}")
    except GiveUp as g:
        cause = g.cause
        if isinstance(cause, StageError):
            raise cause from None
        retryable = classify(cause).retry
        tries = f" (after {g.attempts} attempts)" if g.attempts > 1 else ""
        throttled = "rate-limited, try again later: " if retryable and _rate_limited(cause) \
            else ""
        raise StageError(throttled + reason(cause) + tries, retryable=retryable) from cause


def _rate_limited(exc: BaseException) -> bool:
    """Did the site refuse for sending too much (HTTP 429, or a throttle message)?"""
    return any(getattr(e, "status", None) == 429 for e in _chain(exc)) or bool(
        _RATE_LIMIT_TEXT.search(str(exc)) or "HTTP Error 429" in str(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: yt-dlp keeps the original in `exc_info` (DownloadError,
    ExtractorError) or `cause` (ExtractorError, RequestError), Python in __cause__/__context__."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        cur = todo.pop(0)
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        info = getattr(cur, "exc_info", None)
        if isinstance(info, tuple) and len(info) > 1:
            todo.append(info[1])
        todo += [getattr(cur, "cause", None), cur.__cause__, cur.__context__]


def _backoff(settings: Settings) -> Callable[[int], float]:
    """yt-dlp's retry sleep (attempt n, from 1): the same capped exponential, without jitter."""
    def sleep_for(n: int) -> float:
        return min(settings.backoff_cap_s, settings.backoff_base_s * 2.0 ** max(n - 1, 0))
    return sleep_for
