"""Media for the acquisition tests, made on the spot: a short spoken clip (espeak-ng, else a
tone) encoded by ffmpeg, a web page that embeds it with a caption track, and a local HTTP
server that serves them to yt-dlp (`serve_dir`), or one that fails on purpose first
(`flaky_server`: 429s, 5xx, dropped connections). Nothing leaves 127.0.0.1.

    with serve_dir(tmp_path) as base:
        url = f"{base}/clip.webm"
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FFMPEG = shutil.which("ffmpeg")
ESPEAK = shutil.which("espeak-ng") or shutil.which("espeak")

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed "
                                  "(apt-get install ffmpeg)")

VTT = """WEBVTT

00:00:00.000 --> 00:00:01.500
Good evening, I'm Officer Vega.

00:00:01.500 --> 00:00:03.000
Why did you stop me?
"""


def make_clip(path: Path, text: str = "Good evening. Why did you stop me?",
              seconds: float = 3.0) -> Path:
    """An audio clip (the container follows the suffix: .webm, .m4a, .mp3, .wav, .mp4 with a
    black video track). Speech from espeak-ng when installed, else a 440 Hz tone."""
    assert FFMPEG, "ffmpeg is required"
    path.parent.mkdir(parents=True, exist_ok=True)
    src: list[str]
    if ESPEAK:
        wav = path.with_suffix(".speech.wav")
        subprocess.run([ESPEAK, "-w", str(wav), text], check=True, capture_output=True)
        src = ["-i", str(wav)]
    else:
        src = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    video = (["-f", "lavfi", "-i", f"color=c=black:s=64x48:d={seconds}", "-shortest"]
             if path.suffix == ".mp4" else [])
    cmd = [FFMPEG, "-y", "-loglevel", "error", *src, *video, "-t", str(seconds),
           "-ar", "48000", "-ac", "2", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    if ESPEAK:
        path.with_suffix(".speech.wav").unlink(missing_ok=True)
    return path


def make_page(root: Path, media: str = "clip.webm", vtt: str | None = VTT,
              title: str = "Traffic stop on Main Street") -> Path:
    """An HTML page embedding `media` (and a caption track when `vtt` is given): yt-dlp's generic
    extractor reads its <video> and <track> elements."""
    track = ""
    if vtt is not None:
        (root / "clip.en.vtt").write_text(vtt, encoding="utf-8")
        track = '<track kind="captions" srclang="en" label="English" src="clip.en.vtt">'
    page = root / "watch.html"
    page.write_text(f"<!doctype html><html><head><title>{title}</title></head><body>"
                    f'<video controls src="{media}">{track}</video></body></html>',
                    encoding="utf-8")
    return page


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_dir(root: Path) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class FlakyServer:
    """Serves a folder, but answers the first requests of a path as told: `fail("/a.webm", 429,
    429)` gives two 429s before the file; "drop" closes the connection without an answer.
    `requests` lists (path, status) in order (status 0 for a drop)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plan: dict[str, list[int | str]] = {}
        self.retry_after: str | None = None
        self.requests: list[tuple[str, int]] = []
        self.url = ""

    def fail(self, path: str, *answers: int | str) -> None:
        self.plan.setdefault(path, []).extend(answers)

    def handler(self, *args, **kwargs):
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *a: object) -> None:
                pass

            def send_response(self, code: int, message: str | None = None) -> None:
                server.requests.append((self.path, code))
                super().send_response(code, message)

            def do_GET(self) -> None:
                todo = server.plan.get(self.path)
                if todo:
                    answer = todo.pop(0)
                    if answer == "drop":
                        server.requests.append((self.path, 0))
                        self.close_connection = True
                        return
                    self.send_response(int(answer))
                    if server.retry_after is not None:
                        self.send_header("Retry-After", server.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                super().do_GET()

        return Handler(*args, directory=str(server.root), **kwargs)


@contextlib.contextmanager
def flaky_server(root: Path) -> Iterator[FlakyServer]:
    srv = FlakyServer(root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(FlakyServer.handler, srv))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield srv
    finally:
        httpd.shutdown()
        httpd.server_close()
