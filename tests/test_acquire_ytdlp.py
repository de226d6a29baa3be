"""The yt-dlp wrapper (acquire/ytdlp.py) against a local HTTP server that fails on purpose: which
failures are retried (429, 5xx, dropped connections) and which are final (404, bad URL, file URLs
when not allowed), Retry-After honoured, messages as one clean line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from media_fixtures import FlakyServer, flaky_server, make_clip, needs_ffmpeg

from deescalwild.acquire import ytdlp
from deescalwild.acquire.tasks import Settings, StageError

pytestmark = needs_ffmpeg


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    make_clip(root / "clip.webm", seconds=2.0)
    return root


@pytest.fixture
def server(media) -> Iterator[FlakyServer]:
    with flaky_server(media) as srv:
        yield srv


def settings(tmp_path: Path, **kw) -> Settings:
    kw.setdefault("backoff_base_s", 0.01)
    return Settings(workdir=str(tmp_path / "w"), out_dir=str(tmp_path / "out"), **kw)


def test_options_are_quiet_configless_and_follow_settings(tmp_path):
    opts = ytdlp.ydl_options(settings(tmp_path, timeout_s=12.5, max_retries=2),
                             format="bestaudio")
    assert opts["quiet"] and opts["noprogress"] and opts["ignoreconfig"]
    assert opts["enable_file_urls"] is False and opts["socket_timeout"] == 12.5
    assert opts["retries"] == 2 and opts["format"] == "bestaudio"
    assert opts["cookiefile"] is None and "cookiesfrombrowser" not in opts
    assert ytdlp.ydl_options(settings(tmp_path, allow_file_urls=True))["enable_file_urls"]


def test_download_and_extract_from_local_server(server, tmp_path):
    s = settings(tmp_path)
    info = ytdlp.extract_info(f"{server.url}/clip.webm", s)
    assert info["extractor"] == "generic" and info["id"] == "clip"
    path = ytdlp.download(f"{server.url}/clip.webm", s, tmp_path / "dl")
    assert path == tmp_path / "dl" / "media.webm"
    assert path.read_bytes() == (server.root / "clip.webm").read_bytes()


def test_429_then_ok_is_retried(server, tmp_path):
    server.fail("/clip.webm", 429, 429)
    slept: list[float] = []
    path = ytdlp.download(f"{server.url}/clip.webm", settings(tmp_path), tmp_path / "dl",
                          sleep=slept.append)
    assert path.stat().st_size == (server.root / "clip.webm").stat().st_size
    assert [c for _, c in server.requests][:3] == [429, 429, 200]
    assert len(slept) == 2 and all(0 <= t <= 0.02 for t in slept)  # backoff: base 0.01, x2


def test_retry_after_is_honoured(server, tmp_path):
    server.fail("/clip.webm", 503)
    server.retry_after = "7"
    slept: list[float] = []
    ytdlp.extract_info(f"{server.url}/clip.webm", settings(tmp_path), sleep=slept.append)
    assert slept == [7.0]


def test_dropped_connection_is_retried(server, tmp_path):
    server.fail("/clip.webm", "drop")
    info = ytdlp.extract_info(f"{server.url}/clip.webm", settings(tmp_path), sleep=lambda t: None)
    assert info["id"] == "clip" and server.requests[0] == ("/clip.webm", 0)


def test_5xx_gives_up_after_max_retries_as_retryable(server, tmp_path):
    server.fail("/clip.webm", 500, 502, 503, 504)
    with pytest.raises(StageError) as e:
        ytdlp.extract_info(f"{server.url}/clip.webm", settings(tmp_path, max_retries=2),
                           sleep=lambda t: None)
    assert e.value.retryable is True
    assert "HTTP Error 503" in e.value.reason and "after 3 attempts" in e.value.reason
    assert [c for _, c in server.requests] == [500, 502, 503]


def test_404_fails_at_once_not_retryable(server, tmp_path):
    slept: list[float] = []
    with pytest.raises(StageError) as e:
        ytdlp.download(f"{server.url}/gone.webm", settings(tmp_path), tmp_path / "dl",
                       sleep=slept.append)
    assert e.value.retryable is False and slept == []
    assert "HTTP Error 404" in e.value.reason and not e.value.reason.startswith("ERROR")
    assert "\n" not in e.value.reason and "\x1b" not in e.value.reason
    assert [c for _, c in server.requests] == [404]


def test_file_urls_only_when_allowed(media, tmp_path):
    url = (media / "clip.webm").as_uri()
    with pytest.raises(StageError, match="file:// URLs are disabled") as e:
        ytdlp.extract_info(url, settings(tmp_path))
    assert e.value.retryable is False
    path = ytdlp.download(url, settings(tmp_path, allow_file_urls=True), tmp_path / "dl")
    assert path.stat().st_size > 1000


def test_classify_and_reason_on_yt_dlp_messages():
    from yt_dlp.utils import DownloadError, ExtractorError

    def err(msg: str) -> DownloadError:
        return DownloadError(f"\x1b[0;31mERROR:\x1b[0m {msg}")

    assert ytdlp.classify(err("[youtube] x: HTTP Error 429: Too Many Requests")).retry
    assert ytdlp.classify(err("unable to download video data: The read operation timed out"))\
        .retry
    assert ytdlp.classify(err("[Errno 104] Connection reset by peer")).retry
    for final in ("[youtube] abc: Private video. Sign in if you've been granted access",
                  "[generic] Unsupported URL: https://example.com/",
                  "[youtube] abc: The uploader has not made this video available in your country",
                  "[tiktok] 123: HTTP Error 404: Not Found"):
        assert not ytdlp.classify(err(final)).retry, final
    bug = ExtractorError("Unable to extract title")  # not `expected`: yt-dlp adds a bug plea
    assert "please report" in str(bug)
    assert ytdlp.reason(bug) == "Unable to extract title"
    assert ytdlp.reason(err("[generic] x: boom\nsecond line")) == "[generic] x: boom second line"


YOUTUBE_THROTTLE = (
    "Video unavailable. This content isn't available, try again later. The current session has "
    "been rate-limited by YouTube for up to an hour. It is recommended to use `-t sleep`")


def _throttled():
    """YouTube's session throttle as yt-dlp raises it: an `expected` ExtractorError, no HTTP
    status, wrapped in a DownloadError."""
    import sys

    from yt_dlp.utils import DownloadError, ExtractorError

    try:
        raise ExtractorError(YOUTUBE_THROTTLE, expected=True, video_id="abc")
    except ExtractorError:
        return DownloadError("ERROR: [youtube] abc: " + YOUTUBE_THROTTLE, sys.exc_info())


def test_youtube_rate_limit_is_retried_slowly_then_fails_retryable(tmp_path):
    from yt_dlp.utils import DownloadError

    assert ytdlp.classify(_throttled()).retry
    for text in ("Too Many Requests", "rate limit exceeded", "please try again later"):
        assert ytdlp.classify(DownloadError(f"ERROR: [x] y: {text}")).retry, text
    s = settings(tmp_path, max_retries=2, backoff_cap_s=30.0)
    slept: list[float] = []
    calls: list[int] = []

    def call():
        calls.append(1)
        raise _throttled()

    with pytest.raises(StageError) as e:
        ytdlp._retrying(call, s, "https://www.youtube.com/watch?v=abc", slept.append)
    assert len(calls) == 3 and slept == [30.0, 30.0]  # the longest wait, not a second or two
    assert e.value.retryable is True
    assert e.value.reason.startswith("rate-limited, try again later: ")
    assert "after 3 attempts" in e.value.reason


def test_certificate_errors_are_final():
    import sys

    from yt_dlp.networking.exceptions import CertificateVerifyError, SSLError
    from yt_dlp.utils import DownloadError

    cert = CertificateVerifyError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert not ytdlp.classify(cert).retry
    try:
        raise cert
    except CertificateVerifyError:
        wrapped = DownloadError("ERROR: Unable to download webpage: certificate verify failed",
                                sys.exc_info())
    assert not ytdlp.classify(wrapped).retry
    assert ytdlp.classify(SSLError("EOF occurred in violation of protocol")).retry


def test_fetch_sends_the_tracks_http_headers(tmp_path):
    import http.server
    import threading

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("X-Caption-Token"))
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"WEBVTT")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/c.vtt"
        assert ytdlp.fetch(url, settings(tmp_path), headers={"X-Caption-Token": "t1"}) \
            == b"WEBVTT"
        assert ytdlp.fetch(url, settings(tmp_path)) == b"WEBVTT"
    finally:
        srv.shutdown()
        srv.server_close()
    assert seen == ["t1", None]
